package controlplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// newHTTPClient builds the one retryablehttp client all of a Client's calls share. Every field that
// matters is set here on purpose; the library's defaults (4 retries on any 5xx, a logger on
// stderr, an error handler that drops the last response) are not what the status table needs.
func newHTTPClient(cfg Config, p *pacer) *retryablehttp.Client {
	transport := cfg.Transport
	if transport == nil {
		transport = newTransport()
	}
	metrics := cfg.Metrics
	if metrics == nil {
		metrics = noMetrics{}
	}
	transport = &instrumentedTransport{next: transport, metrics: metrics, tracer: tracerFrom(cfg.TracerProvider), traced: traces(cfg.TracerProvider)}
	retry := cfg.HTTPRetry
	if retry.Max == 0 {
		retry.Max = DefaultHTTPRetryMax
	}
	if retry.Max < 0 {
		retry.Max = 0
	}
	if retry.WaitMin <= 0 {
		retry.WaitMin = DefaultRetryWaitMin
	}
	if retry.WaitMax <= 0 {
		retry.WaitMax = DefaultRetryWaitMax
	}
	var logger any
	if cfg.Logger != nil {
		logger = cfg.Logger
	}
	return &retryablehttp.Client{
		HTTPClient: &http.Client{
			// Without CloseIdleConnections: see keepPoolTransport.
			Transport: keepPoolTransport{next: transport},
			// One request's whole life: connect, headers and body.
			Timeout: cfg.RequestTimeout,
			// The API does not redirect; following one could send the key to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Logger:       logger,
		RetryMax:     retry.Max,
		RetryWaitMin: retry.WaitMin,
		RetryWaitMax: retry.WaitMax,
		CheckRetry:   checkRetry,
		Backoff:      retryablehttp.DefaultBackoff,
		// An in-process retry waits its turn like any request (send waits for the first one), and
		// is held to the same deadline rule (see ErrTooLateToSend).
		PrepareRetry: func(req *http.Request) error {
			call := callContext(req.Context())
			if err := timedWait(call, p, metrics); err != nil {
				return err
			}
			return tooLateToSend(call, req.Context(), cfg.RequestTimeout)
		},
		// Keep the last response so the call can classify it.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		// Called before every request, the first included: count it (and heartbeat the count)
		// before it leaves. It sees the request headers, so it never logs the request.
		RequestLogHook: func(_ retryablehttp.Logger, req *http.Request, _ int) {
			if info, ok := req.Context().Value(requestInfoKey{}).(*requestInfo); ok && info.tracker != nil {
				info.tracker.sent()
			}
		},
	}
}

// keepPoolTransport is the transport the shared http.Client holds. It passes requests on and
// deliberately has no CloseIdleConnections method, so the client's CloseIdleConnections does
// nothing: go-retryablehttp calls it whenever a request gives up (retries exhausted, the context
// ended during a retry wait), and it would otherwise drop the keep-alive connections every
// concurrent removal shares, so that a burst of 5xx answers would make every removal reconnect.
// Nothing else closes idle connections: they time out (IdleConnTimeout) or end with the process.
type keepPoolTransport struct {
	next http.RoundTripper
}

func (t keepPoolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.next.RoundTrip(req)
}

// timedWait waits for the pacer and reports how long it took.
func timedWait(ctx context.Context, p *pacer, m Metrics) error {
	start := time.Now()
	err := p.wait(ctx)
	m.PacerWait(time.Since(start))
	return err
}

// newTransport is a pooled keep-alive transport sized for one worker's concurrent calls.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 100
	t.MaxIdleConnsPerHost = 100
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = true
	return t
}

// checkRetry decides the in-process retries. It retries only what is quick and safe to repeat
// (DELETE is idempotent): a refused or reset connection, and 502/503/504 without Retry-After.
// A 429 or any Retry-After goes back to Temporal, which waits the asked delay visibly in history;
// a timed-out request already used its whole budget, so it goes back to Temporal too.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return false, ctxErr
	}
	if callContext(ctx).Err() != nil {
		// A detached request's call ended (a cancelled batch, a stopping worker): the answer
		// that came is its outcome; nothing more is sent.
		return false, nil
	}
	if notRepeatable(ctx) {
		// A POST creates: repeat it only when it cannot have left (create.go checks the rest).
		return err != nil && errors.Is(err, syscall.ECONNREFUSED), nil
	}
	if err != nil {
		return isQuickNetworkError(err), nil
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return resp.Header.Get("Retry-After") == "", nil
	}
	return false, nil
}

// callContext is the context that ends the call a request belongs to: the request's own, or,
// for a detached request, the call's context it was detached from.
func callContext(reqCtx context.Context) context.Context {
	if info, ok := reqCtx.Value(requestInfoKey{}).(*requestInfo); ok && info.stop != nil {
		return info.stop
	}
	return reqCtx
}

// isQuickNetworkError reports a failure that happened fast and can be retried at once.
func isQuickNetworkError(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// requestTracker counts the requests of one call as they leave, and reports each new total (the
// caller records it, in a Temporal heartbeat, so the count survives a retry or a worker restart).
type requestTracker struct {
	count  atomic.Int64
	onSent func(total int)
}

func (t *requestTracker) sent() {
	n := int(t.count.Add(1))
	if t.onSent != nil {
		t.onSent(n)
	}
}

func (t *requestTracker) total() int { return int(t.count.Load()) }
