package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

const routeConnection = "/v2/auth/agents/{agent_id}/connections/{connection_id}"

// probe GETs a path of the worker's HTTP address: status (0 when nothing answered) and body.
func (s *stack) probe(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.httpAddr + path)
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrape reads /metrics as Prometheus would, text and parsed.
func (s *stack) scrape() (string, map[string]*dto.MetricFamily) {
	s.t.Helper()
	code, text := s.probe("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics: got %d, want 200", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		s.t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return text, fams
}

// sample sums the counter values (or histogram sample counts) of name's series whose labels
// include want; -1 when name is absent.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
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
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
		} else if h := m.GetHistogram(); h != nil {
			sum += float64(h.GetSampleCount())
		}
	}
	return sum
}

// TestIntegration_MetricsMatchWhatHappened runs a 204, a 422 and a 503-then-204 through the real
// worker and checks /metrics against them.
func TestIntegration_MetricsMatchWhatHappened(t *testing.T) {
	const agent = "agent-metrics-7c1"
	s := newStack(t, agent, "conn-ok-7c1", "conn-locked-7c1", "conn-flaky-7c1")
	s.em.MarkInvalid("conn-locked-7c1")
	// With Retry-After the 503 goes back to Temporal: a transient outcome, then a removal.
	s.em.InjectNext(emulator.Fault{Status: 503, RetryAfter: "1", ConnectionID: "conn-flaky-7c1"})

	if code, _ := s.probe("/readyz"); code != http.StatusOK {
		t.Errorf("readyz while polling: got %d, want 200", code)
	}
	if code, _ := s.probe("/healthz"); code != http.StatusOK {
		t.Errorf("healthz while polling: got %d, want 200", code)
	}

	if res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: agent, ConnectionID: "conn-ok-7c1"})); err != nil || res.Outcome != ac.OutcomeRemoved {
		t.Fatalf("conn-ok: got %+v, %v; want removed", res, err)
	}
	_, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: agent, ConnectionID: "conn-locked-7c1"}))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ac.ErrValidation {
		t.Fatalf("conn-locked: got %v, want a %s failure", err, ac.ErrValidation)
	}
	if res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: agent, ConnectionID: "conn-flaky-7c1"})); err != nil || res.Attempts != 2 {
		t.Fatalf("conn-flaky: got %+v, %v; want removed after 2 requests", res, err)
	}

	text, fams := s.scrape()
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"agent_connections_removals_total", map[string]string{"outcome": "removed", "failure_type": ""}, 2},
		{"agent_connections_removals_total", map[string]string{"outcome": "failed", "failure_type": ac.ErrValidation}, 1},
		{"agent_connections_removals_total", map[string]string{"outcome": "transient", "failure_type": ac.ErrServerError}, 1},
		{"agent_connections_removals_total", nil, 4},
		{"agent_connections_http_requests_total", map[string]string{"method": "DELETE", "route": routeConnection, "status_class": "2xx"}, 2},
		{"agent_connections_http_requests_total", map[string]string{"method": "DELETE", "route": routeConnection, "status_class": "4xx"}, 1},
		{"agent_connections_http_requests_total", map[string]string{"method": "DELETE", "route": routeConnection, "status_class": "5xx"}, 1},
		{"agent_connections_http_requests_total", nil, 4},
		{"agent_connections_http_request_duration_seconds", map[string]string{"method": "DELETE", "route": routeConnection}, 4},
		{"agent_connections_retry_after_seconds", map[string]string{"status_code": "503"}, 1},
		{"agent_connections_rate_limit_wait_seconds", nil, 4},
	}
	for _, c := range checks {
		if got := sample(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v: got %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The SDK's own metrics, from the same registry.
	for _, name := range []string{"temporal_request_total", "temporal_activity_execution_latency_seconds", "temporal_workflow_completed_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("got no %s in /metrics, want the SDK's metrics", name)
		}
	}
	if got := sample(fams, "temporal_activity_execution_failed_total", map[string]string{"activity_type": "RemoveConnection"}); got < 1 {
		t.Errorf("temporal_activity_execution_failed_total{activity_type=RemoveConnection}: got %v, want at least 1", got)
	}
	for _, secret := range []string{testKey, agent, "conn-ok-7c1", "conn-locked-7c1", "conn-flaky-7c1"} {
		if strings.Contains(text, secret) {
			t.Errorf("got %q in /metrics, want no credential or ID there", secret)
		}
	}
}

// TestIntegration_ReadyzDropsWhileStopping sends SIGTERM while a removal hangs in flight: the
// worker keeps running for its stop timeout, and /readyz says 503 (while /healthz says 200) from
// the moment the stop begins.
func TestIntegration_ReadyzDropsWhileStopping(t *testing.T) {
	s := newStackWithEnv(t, []string{"WORKER_STOP_TIMEOUT=4s"}, "agent-stop", "conn-hang")
	if code, _ := s.probe("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz while polling: got %d, want 200", code)
	}
	s.em.InjectNext(emulator.Fault{Hang: true, ConnectionID: "conn-hang"})
	run := s.start(ac.RemoveConnectionInput{AgentID: "agent-stop", ConnectionID: "conn-hang"})
	// The removal outlives this test's worker: end it, so no later start attaches to it.
	t.Cleanup(func() {
		_ = s.client.TerminateWorkflow(context.Background(), run.GetID(), run.GetRunID(), "test over")
	})
	s.waitFor("the DELETE to reach the control plane", func() bool { return len(s.em.Faults().Pending) == 0 })

	if err := syscall.Kill(s.worker.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var sawNotReady, sawHealthy bool
	deadline := time.Now().Add(10 * time.Second)
	for !s.worker.Exited() && time.Now().Before(deadline) {
		code, _ := s.probe("/readyz")
		if code == http.StatusOK && sawNotReady {
			t.Error("got /readyz 200 again after 503 during the stop, want 503 until the exit")
		}
		if code == http.StatusServiceUnavailable {
			sawNotReady = true
			if c, _ := s.probe("/healthz"); c == http.StatusOK {
				sawHealthy = true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-s.worker.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the worker did not exit within 15s of SIGTERM")
	}
	if !sawNotReady {
		t.Error("never saw /readyz 503 while the worker stopped, want it for the whole stop")
	}
	if !sawHealthy {
		t.Error("never saw /healthz 200 while the worker stopped, want it while the process serves")
	}
	if code, _ := s.probe("/readyz"); code == http.StatusOK {
		t.Error("got /readyz 200 after the exit, want no answer")
	}
	if code := s.worker.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
}

// otlpCollector receives OTLP/HTTP trace exports and keeps their raw bodies and spans.
type otlpCollector struct {
	mu     sync.Mutex
	raw    [][]byte
	spans  []*tracepb.Span
	attrs  []map[string]string // resource attributes of each export
	errors []string
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	var req collectortrace.ExportTraceServiceRequest
	switch {
	case err != nil:
		c.errors = append(c.errors, err.Error())
	case r.URL.Path != "/v1/traces":
		c.errors = append(c.errors, "export to "+r.URL.Path+", want /v1/traces")
	default:
		if err := proto.Unmarshal(body, &req); err != nil {
			c.errors = append(c.errors, err.Error())
		}
	}
	c.raw = append(c.raw, body)
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		c.attrs = append(c.attrs, res)
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (c *otlpCollector) span(name string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// TestIntegration_TracesReachTheOTLPCollector runs a removal with OTEL_EXPORTER_OTLP_ENDPOINT set:
// the collector gets the activity's span and, as its child, the DELETE's span, and never the key.
func TestIntegration_TracesReachTheOTLPCollector(t *testing.T) {
	col := &otlpCollector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	s := newStackWithEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_SERVICE_NAME=agent-connections-it",
	}, "agent-traced", "conn-traced")
	if res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "agent-traced", ConnectionID: "conn-traced"})); err != nil || res.Outcome != ac.OutcomeRemoved {
		t.Fatalf("got %+v, %v; want removed", res, err)
	}
	httpName := "DELETE " + routeConnection
	s.waitFor("the DELETE's span at the collector", func() bool { return col.span(httpName) != nil })
	// The activity span ends after its HTTP child; stopping the worker flushes it.
	s.worker.Stop(10 * time.Second)

	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.errors) > 0 {
		t.Errorf("collector: %v", col.errors)
	}
	var act, req *tracepb.Span
	for _, sp := range col.spans {
		switch sp.GetName() {
		case "RunActivity:RemoveConnection":
			act = sp
		case httpName:
			req = sp
		}
	}
	if act == nil || req == nil {
		var names []string
		for _, sp := range col.spans {
			names = append(names, sp.GetName())
		}
		t.Fatalf("got spans %v, want RunActivity:RemoveConnection and %s", names, httpName)
	}
	if !bytes.Equal(req.GetParentSpanId(), act.GetSpanId()) {
		t.Errorf("got the DELETE span's parent %s, want the activity span %s", hex.EncodeToString(req.GetParentSpanId()), hex.EncodeToString(act.GetSpanId()))
	}
	got := map[string]string{}
	for _, kv := range req.GetAttributes() {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			got[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			got[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		}
	}
	for k, want := range map[string]string{
		"http.request.method":             "DELETE",
		"url.template":                    routeConnection,
		"http.response.status_code":       "204",
		"server.address":                  "127.0.0.1",
		"agent_connections.agent_id":      "agent-traced",
		"agent_connections.connection_id": "conn-traced",
	} {
		if got[k] != want {
			t.Errorf("DELETE span attribute %s: got %q, want %q", k, got[k], want)
		}
	}
	sawResource := false
	for _, res := range col.attrs {
		if res["service.name"] == "agent-connections-it" && res["service.version"] != "" {
			sawResource = true
		}
	}
	if !sawResource {
		t.Errorf("got resources %v, want service.name agent-connections-it with a service.version", col.attrs)
	}
	for _, body := range col.raw {
		if bytes.Contains(body, []byte(testKey)) {
			t.Fatal("got the API key in an OTLP export, want it never there")
		}
	}
}
