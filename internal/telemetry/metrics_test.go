package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
)

const (
	testKey    = "lsv2_sk_telemetry_secret_0123456789"
	testBearer = "bearer-telemetry-secret-9876543210"
	testTenant = "tenant-telemetry-secret"
)

// newMetricsTelemetry is a Telemetry with metrics on and tracing off, shut down at the end.
func newMetricsTelemetry(t *testing.T) *Telemetry {
	t.Helper()
	tel, err := New(context.Background(), Options{Metrics: true, ServiceVersion: "v1.2.3-test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// quietSuite is a test suite whose activities log nowhere.
func quietSuite() *testsuite.WorkflowTestSuite {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	return &suite
}

// scrape GETs /metrics from the Telemetry's handler as Prometheus would and returns the text.
func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: got %d, want 200: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("scrape content type: got %q, want text/plain", ct)
	}
	return string(body)
}

// families parses the Prometheus text format.
func families(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, text)
	}
	return fams
}

// value sums the samples of a counter (or the sample counts of a histogram) whose labels include
// want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	fam, ok := fams[name]
	if !ok {
		return -1
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// labelNames lists the label names of a family's series.
func labelNames(fam *dto.MetricFamily) []string {
	seen := map[string]bool{}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			seen[l.GetName()] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestMetrics_ScrapeShowsNamesLabelsAndCounts(t *testing.T) {
	tel := newMetricsTelemetry(t)
	m := tel.Metrics()
	m.Removal(ac.OutcomeRemoved, "")
	m.Removal(ac.OutcomeRemoved, "")
	m.Removal(ac.OutcomeFailed, ac.ErrValidation)
	m.Removal(activities.OutcomeTransient, ac.ErrServerError)
	m.Request("DELETE", controlplane.RouteConnection, "2xx", 20*time.Millisecond)
	m.Request("DELETE", controlplane.RouteConnection, "5xx", 30*time.Millisecond)
	m.Request("DELETE", controlplane.RouteConnection, "2xx", 40*time.Millisecond)
	m.Request("GET", controlplane.RouteConnections, controlplane.StatusClassNetworkError, time.Second)
	m.RetryAfter(429, 3*time.Second)
	m.RetryAfter(503, time.Second)
	m.PacerWait(0)
	m.PacerWait(250 * time.Millisecond)
	// The Temporal SDK's metrics go through the same provider.
	sdk := tel.TemporalMetricsHandler().WithTags(map[string]string{"namespace": "default"})
	sdk.Counter("temporal_request").Inc(2)
	sdk.Timer("temporal_request_latency").Record(50 * time.Millisecond)

	text := scrape(t, tel)
	fams := families(t, text)

	counts := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"agent_connections_removals_total", map[string]string{"outcome": "removed", "failure_type": ""}, 2},
		{"agent_connections_removals_total", map[string]string{"outcome": "failed", "failure_type": "ValidationError"}, 1},
		{"agent_connections_removals_total", map[string]string{"outcome": "transient", "failure_type": "ServerError"}, 1},
		{"agent_connections_http_requests_total", map[string]string{"method": "DELETE", "route": controlplane.RouteConnection, "status_class": "2xx"}, 2},
		{"agent_connections_http_requests_total", map[string]string{"method": "DELETE", "route": controlplane.RouteConnection, "status_class": "5xx"}, 1},
		{"agent_connections_http_requests_total", map[string]string{"method": "GET", "route": controlplane.RouteConnections, "status_class": "network_error"}, 1},
		{"agent_connections_http_request_duration_seconds", map[string]string{"method": "DELETE", "route": controlplane.RouteConnection}, 3},
		{"agent_connections_retry_after_seconds", map[string]string{"status_code": "429"}, 1},
		{"agent_connections_retry_after_seconds", map[string]string{"status_code": "503"}, 1},
		{"agent_connections_rate_limit_wait_seconds", nil, 2},
		{"temporal_request_total", map[string]string{"namespace": "default"}, 2},
		{"temporal_request_latency_seconds", map[string]string{"namespace": "default"}, 1},
	}
	for _, c := range counts {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	wantLabels := map[string][]string{
		"agent_connections_removals_total":                {"failure_type", "outcome"},
		"agent_connections_http_requests_total":           {"method", "route", "status_class"},
		"agent_connections_http_request_duration_seconds": {"method", "route"},
		"agent_connections_retry_after_seconds":           {"status_code"},
		"agent_connections_rate_limit_wait_seconds":       nil,
	}
	for name, want := range wantLabels {
		fam := fams[name]
		if fam == nil {
			t.Errorf("got no %s in the scrape, want it", name)
			continue
		}
		if got := labelNames(fam); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s labels: got %v, want %v", name, got, want)
		}
	}
	for name, typ := range map[string]dto.MetricType{
		"agent_connections_removals_total":                dto.MetricType_COUNTER,
		"agent_connections_http_requests_total":           dto.MetricType_COUNTER,
		"agent_connections_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"temporal_request_total":                          dto.MetricType_COUNTER,
	} {
		if fam := fams[name]; fam != nil && fam.GetType() != typ {
			t.Errorf("%s: got type %v, want %v", name, fam.GetType(), typ)
		}
	}
	// The SDK's latencies are in seconds, so their buckets must resolve well under one second.
	if !strings.Contains(text, `temporal_request_latency_seconds_bucket{namespace="default",le="0.05"} 1`) {
		t.Errorf("want the SDK's 50 ms latency in the 0.05 s bucket:\n%s", text)
	}
	if !strings.Contains(text, `service_name="agent-connections-worker"`) || !strings.Contains(text, `service_version="v1.2.3-test"`) {
		t.Errorf("want target_info with the service name and version:\n%s", text)
	}
	// A process's health is part of the same scrape.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("got no %s, want the Go and process collectors", name)
		}
	}
}

func TestMetrics_OffWhenNotAsked(t *testing.T) {
	tel, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Handler() != nil || tel.TemporalMetricsHandler() != nil || tel.Metrics() != nil {
		t.Error("got metrics without Options.Metrics, want none")
	}
	// A nil *Metrics is safe to call: the worker may hand it on.
	tel.Metrics().Removal("removed", "")
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestMetrics_NoCredentialOrIDInTheScrape runs real removals, batches and a listing, with every
// kind of answer and a server that echoes the credentials back, and checks the scrape for them.
func TestMetrics_NoCredentialOrIDInTheScrape(t *testing.T) {
	const agentID, secretConn = "agent-7f3e9b", "conn-9c2d41"
	var calls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		// A misbehaving proxy echoing the headers back, in headers and body.
		echo := r.Header.Get("X-Api-Key") + " " + r.Header.Get("Authorization") + " " + r.Header.Get("X-Tenant-Id")
		w.Header().Set("X-Echo", echo)
		switch {
		case r.Method == http.MethodGet:
			_, _ = io.WriteString(w, `{"data":[{"id":"`+secretConn+`"}]}`)
		case n%5 == 1:
			w.WriteHeader(http.StatusNoContent)
		case n%5 == 2:
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"detail":[{"loc":["`+echo+`"],"msg":"`+echo+`"}]}`)
		case n%5 == 3:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, echo)
		case n%5 == 4:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, echo)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(api.Close)

	tel := newMetricsTelemetry(t)
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:     api.URL,
		Credentials: controlplane.StaticCredentials{APIKey: testKey, TenantID: testTenant, BearerToken: testBearer},
		Metrics:     tel.Metrics(),
		HTTPRetry:   controlplane.HTTPRetry{Max: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{
		ControlPlane: cp,
		Metrics:      tel.Metrics(),
	})
	if err != nil {
		t.Fatal(err)
	}
	env := quietSuite().NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	for i := range 5 {
		_, _ = env.ExecuteActivity(acts.RemoveConnection, activities.RemoveConnectionInput{AgentID: agentID, ConnectionID: secretConn + string(rune('a'+i)), MissingOK: true})
	}
	_, _ = env.ExecuteActivity(acts.ListConnections, activities.ListConnectionsInput{AgentID: agentID})
	_, _ = env.ExecuteActivity(acts.RemoveConnections, activities.RemoveConnectionsInput{AgentID: agentID, Parallelism: 2,
		Items: []activities.BatchItem{{ConnectionID: secretConn + "x"}, {ConnectionID: secretConn + "y"}, {ConnectionID: "bad id"}}})

	text := scrape(t, tel)
	if got := value(families(t, text), "agent_connections_http_requests_total", nil); got < 8 {
		t.Fatalf("got %v requests in the scrape, want at least 8:\n%s", got, text)
	}
	for _, secret := range []string{testKey, testBearer, testTenant, agentID, secretConn, "bad id"} {
		if strings.Contains(text, secret) {
			t.Errorf("got %q in the scrape, want it never there", secret)
		}
	}
}
