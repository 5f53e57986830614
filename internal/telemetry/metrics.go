package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Scope of the worker's own instruments.
const meterName = "github.com/agentops/agentconnections"

// Instrument names as Prometheus shows them: the exporter adds _total to counters and _seconds to
// instruments in seconds.
const (
	nameRemovals       = "agent_connections_removals"
	nameRequests       = "agent_connections_http_requests"
	nameRequestLatency = "agent_connections_http_request_duration"
	nameRetryAfter     = "agent_connections_retry_after"
	namePacerWait      = "agent_connections_rate_limit_wait"
)

// Label names. None of them ever holds an agent or connection ID or a credential.
const (
	labelOutcome     = "outcome"
	labelFailureType = "failure_type"
	labelMethod      = "method"
	labelRoute       = "route"
	labelStatusClass = "status_class"
	labelStatusCode  = "status_code"
)

// Bucket boundaries, in seconds.
var (
	// latencyBuckets suit a control plane answering in tens of milliseconds and requests limited to
	// LANGSMITH_REQUEST_TIMEOUT (30 s by default); the SDK's timers use them too.
	latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// retryAfterBuckets run up to the 5 minute cap on Retry-After.
	retryAfterBuckets = []float64{0, 1, 2, 5, 10, 30, 60, 120, 300}
	// waitBuckets start near zero: most requests do not wait for the pacer at all.
	waitBuckets = []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
)

// Metrics records the measurements of the control plane client and of the activities (it
// satisfies controlplane.Metrics and activities.Metrics; the worker, where they meet, asserts
// that) with OpenTelemetry instruments. A nil *Metrics records
// nothing.
type Metrics struct {
	removals   metric.Int64Counter
	requests   metric.Int64Counter
	latency    metric.Float64Histogram
	retryAfter metric.Float64Histogram
	pacerWait  metric.Float64Histogram
}

// NewMetrics creates the worker's instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter(meterName)
	m := &Metrics{}
	var err error
	if m.removals, err = meter.Int64Counter(nameRemovals,
		metric.WithDescription("Connection removals finished, one per connection: outcome removed, already_absent, failed (not retried) or transient (retried later); failure_type is the contract's failure type.")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", nameRemovals, err)
	}
	if m.requests, err = meter.Int64Counter(nameRequests,
		metric.WithDescription("HTTP requests sent to the control plane, in-process retries included, by route template and status class (network_error: no answer).")); err != nil {
		return nil, fmt.Errorf("metric %s: %w", nameRequests, err)
	}
	if m.latency, err = meter.Float64Histogram(nameRequestLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from sending a control plane request to its answer's headers (or its failure)."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("metric %s: %w", nameRequestLatency, err)
	}
	if m.retryAfter, err = meter.Float64Histogram(nameRetryAfter, metric.WithUnit("s"),
		metric.WithDescription("Retry-After delays the worker honoured (capped at 5 minutes), by the status that carried them."),
		metric.WithExplicitBucketBoundaries(retryAfterBuckets...)); err != nil {
		return nil, fmt.Errorf("metric %s: %w", nameRetryAfter, err)
	}
	if m.pacerWait, err = meter.Float64Histogram(namePacerWait, metric.WithUnit("s"),
		metric.WithDescription("Time each request waited for the worker's own pacing (LANGSMITH_REQUESTS_PER_SECOND, and any pause a 429 set) before it left."),
		metric.WithExplicitBucketBoundaries(waitBuckets...)); err != nil {
		return nil, fmt.Errorf("metric %s: %w", namePacerWait, err)
	}
	return m, nil
}

// Request counts and times one control plane request.
func (m *Metrics) Request(method, route, statusClass string, d time.Duration) {
	if m == nil {
		return
	}
	ctx := context.Background()
	m.requests.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String(labelMethod, method), attribute.String(labelRoute, route), attribute.String(labelStatusClass, statusClass))))
	m.latency.Record(ctx, d.Seconds(), metric.WithAttributeSet(attribute.NewSet(
		attribute.String(labelMethod, method), attribute.String(labelRoute, route))))
}

// Removal counts one finished connection removal.
func (m *Metrics) Removal(outcome, failureType string) {
	if m == nil {
		return
	}
	m.removals.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String(labelOutcome, outcome), attribute.String(labelFailureType, failureType))))
}

// RetryAfter records one honoured Retry-After delay.
func (m *Metrics) RetryAfter(statusCode int, d time.Duration) {
	if m == nil {
		return
	}
	m.retryAfter.Record(context.Background(), d.Seconds(), metric.WithAttributeSet(attribute.NewSet(
		attribute.String(labelStatusCode, strconv.Itoa(statusCode)))))
}

// PacerWait records the time one request waited for the pacer.
func (m *Metrics) PacerWait(d time.Duration) {
	if m == nil {
		return
	}
	m.pacerWait.Record(context.Background(), d.Seconds())
}
