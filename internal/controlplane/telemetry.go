package controlplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Route templates of the control plane requests: the metrics' route label and the spans'
// url.template. They carry no ID, so a label built from them stays bounded.
const (
	RouteConnection  = "/v2/auth/agents/{agent_id}/connections/{connection_id}"
	RouteConnections = "/v2/auth/agents/{agent_id}/connections"
)

// StatusClassNetworkError is the status class of a request that got no answer (refused, reset,
// timed out, cancelled); the others are 1xx to 5xx.
const StatusClassNetworkError = "network_error"

// Span attribute keys for the IDs of a request. They are identifiers, not credentials, and a span
// belongs to one request, so they cost nothing in cardinality there; metrics never carry them.
const (
	AttrAgentID      = attribute.Key("agent_connections.agent_id")
	AttrConnectionID = attribute.Key("agent_connections.connection_id")
)

// instrumentationName names the tracer of the control plane spans.
const instrumentationName = "github.com/agentops/agentconnections/internal/controlplane"

// Metrics receives what the client measures. Every argument is bounded: HTTP methods, route
// templates, status classes and status codes, never an ID and never a credential.
// Implementations must be safe for concurrent use. Config.Metrics nil records nothing.
type Metrics interface {
	// Request is called once for each HTTP request sent to the control plane, each in-process
	// retry included, with the time until its answer's headers (or its failure). statusClass is
	// 1xx to 5xx, or StatusClassNetworkError.
	Request(method, route, statusClass string, d time.Duration)
	// RetryAfter is called with each Retry-After delay the client hands back (capped at
	// Config.MaxRetryAfter), with the status that carried it (429, 408 or 5xx).
	RetryAfter(statusCode int, d time.Duration)
	// PacerWait is called once for each request (first or retried) with the time it waited for
	// the client's pacing (Config.RequestsPerSecond and any 429 pause) before leaving.
	PacerWait(d time.Duration)
}

// noMetrics is the Metrics of a Config without one.
type noMetrics struct{}

func (noMetrics) Request(string, string, string, time.Duration) {}
func (noMetrics) RetryAfter(int, time.Duration)                 {}
func (noMetrics) PacerWait(time.Duration)                       {}

// requestInfoKey carries a requestInfo in a request's context, from send to the transport.
type requestInfoKey struct{}

// requestInfo is what the instrumented transport knows about the requests of one send: the
// route template and the IDs, which the concrete URL only holds escaped.
type requestInfo struct {
	route        string
	agentID      string
	connectionID string
	// detach lets a request that has left finish when the call's context ends (see
	// DeleteRequest.Detach); the pacer wait before it still ends with the context.
	detach bool
	// endByDeadline keeps a detached request from starting when it could outlive the call's
	// deadline (ErrTooLateToSend): set for a POST, which must not be in flight when a retry of
	// the call checks for what it created.
	endByDeadline bool
	// stop is the call's own context when detach is set: the request in flight runs on without
	// it, but once it is done no in-process retry starts and no pacer wait goes on.
	stop context.Context
	// sent counts the requests of this send that reached the transport, to tell retries apart.
	sent atomic.Int64
	// tracker counts and heartbeats the call's requests before they leave (nil: none).
	tracker *requestTracker
}

// instrumentedTransport counts, times and traces every request that leaves, in-process retries
// included (retryablehttp calls the transport once per request).
type instrumentedTransport struct {
	next    http.RoundTripper
	metrics Metrics
	tracer  trace.Tracer
	// traced is false when the tracer records nothing (no provider, or the no-op one): the
	// request then goes on without a span, its attributes or a copy of the request.
	traced bool
}

func (t *instrumentedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	info, _ := req.Context().Value(requestInfoKey{}).(*requestInfo)
	route := "unknown"
	var resends int64
	if info != nil {
		route = info.route
		resends = info.sent.Add(1) - 1
	}
	if !t.traced {
		start := time.Now()
		resp, err := t.next.RoundTrip(req)
		t.record(req, route, resp, err, time.Since(start))
		return resp, err
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(req.Method),
		semconv.URLTemplate(route),
		semconv.ServerAddress(req.URL.Hostname()),
	}
	if port, err := strconv.Atoi(req.URL.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if resends > 0 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(int(resends)))
	}
	if info != nil {
		attrs = append(attrs, AttrAgentID.String(info.agentID))
		if info.connectionID != "" {
			attrs = append(attrs, AttrConnectionID.String(info.connectionID))
		}
	}
	// The span is a child of the span in the call's context (in a worker, the activity's span,
	// which the SDK's tracing interceptor puts there). It never records headers
	// or the concrete URL.
	ctx, span := t.tracer.Start(req.Context(), req.Method+" "+route,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()

	start := time.Now()
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	d := time.Since(start)
	if err != nil {
		kind := networkErrorKind(req.Context(), err)
		span.SetAttributes(semconv.ErrorTypeKey.String(kind))
		// The error's text names the URL; the kind is enough and never holds an ID.
		span.SetStatus(codes.Error, kind)
		t.metrics.Request(req.Method, route, StatusClassNetworkError, d)
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	t.metrics.Request(req.Method, route, statusClass(resp.StatusCode), d)
	return resp, nil
}

// statusClass is 1xx to 5xx for a status code, "other" for anything outside 100 to 599.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// networkErrorKind names, in a few bounded words, why a request got no answer.
func networkErrorKind(ctx context.Context, err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_reset"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "dns_error"
	}
	return StatusClassNetworkError
}

// tracerFrom is the client's tracer from a provider; nil traces nothing.
// record counts and times one request that got resp or err, as RoundTrip does without a span.
func (t *instrumentedTransport) record(req *http.Request, route string, resp *http.Response, err error, d time.Duration) {
	if err != nil {
		t.metrics.Request(req.Method, route, StatusClassNetworkError, d)
		return
	}
	t.metrics.Request(req.Method, route, statusClass(resp.StatusCode), d)
}

// traces says whether tp records spans: not nil and not the no-op provider.
func traces(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return false
	}
	return true
}

func tracerFrom(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(instrumentationName)
}

// CloseIdleConnections passes the client's call on, so wrapping the transport keeps it working.
func (t *instrumentedTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
