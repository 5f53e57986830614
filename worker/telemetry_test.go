package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
	"github.com/agentops/agentconnections/internal/telemetry"
)

func TestLoadConfig_TracingSettings(t *testing.T) {
	tests := []struct {
		name        string
		env         []string
		wantTracing telemetry.TraceConfig
		wantService string
	}{
		{"nothing set: no export", nil, telemetry.TraceConfig{}, "agent-connections-worker"},
		{"endpoint: http/protobuf by default", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318"},
			telemetry.TraceConfig{Endpoint: "http://collector:4318", Protocol: "http/protobuf"}, "agent-connections-worker"},
		{"the traces endpoint wins", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://traces.example:443/v1/traces"},
			telemetry.TraceConfig{Endpoint: "https://traces.example:443/v1/traces", Protocol: "http/protobuf"}, "agent-connections-worker"},
		{"grpc", []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"},
			telemetry.TraceConfig{Endpoint: "http://collector:4317", Protocol: "grpc"}, "agent-connections-worker"},
		{"the traces protocol wins", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
			telemetry.TraceConfig{Endpoint: "http://collector:4317", Protocol: "grpc"}, "agent-connections-worker"},
		{"exporter none turns it off", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318", "OTEL_TRACES_EXPORTER=none"},
			telemetry.TraceConfig{}, "agent-connections-worker"},
		{"service name", []string{"OTEL_SERVICE_NAME=connections-eu"}, telemetry.TraceConfig{}, "connections-eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey}, tt.env...)
			cfg, err := loadConfig(env.LookupEnv, nil)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if cfg.Tracing != tt.wantTracing {
				t.Errorf("tracing: got %+v, want %+v", cfg.Tracing, tt.wantTracing)
			}
			if cfg.ServiceName != tt.wantService {
				t.Errorf("service name: got %q, want %q", cfg.ServiceName, tt.wantService)
			}
		})
	}
}

func TestRun_BadTracingSettingIsOneLine(t *testing.T) {
	tests := []struct {
		name string
		env  string
		want string
	}{
		{"protocol", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
			`worker: OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" is not one of http/protobuf, grpc`},
		{"traces protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift",
			`worker: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" is not one of http/protobuf, grpc`},
		{"endpoint without a scheme", "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317",
			`worker: OTEL_EXPORTER_OTLP_ENDPOINT: must start with http:// or https://`},
		{"endpoint without a host", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http:///v1/traces",
			`worker: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: has no host`},
		{"endpoint that does not parse, with a secret in it", "OTEL_EXPORTER_OTLP_ENDPOINT=http://user:" + testAPIKey + "@[::1",
			`worker: OTEL_EXPORTER_OTLP_ENDPOINT: is not a URL`},
		{"exporter", "OTEL_TRACES_EXPORTER=jaeger", `worker: OTEL_TRACES_EXPORTER: "jaeger" is not one of otlp, none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(t, "TEMPORAL_ADDRESS=127.0.0.1:1", tt.env)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), nil, env, &stdout, &stderr); code != exitConfig {
				t.Errorf("exit code: got %d, want %d", code, exitConfig)
			}
			if got := lines(stderr.String()); len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), tt.want)
			}
			assertNoSecret(t, "stderr", stderr.String())
		})
	}
}

func TestHealth_ServesMetricsWhenGiven(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	srv := httptest.NewServer((&health{metrics: metrics}).handler())
	t.Cleanup(srv.Close)
	if code, body := probe(t, http.MethodGet, srv.URL+"/metrics"); code != http.StatusOK || body != "m 1\n" {
		t.Errorf("got %d %q, want 200 %q", code, body, "m 1\n")
	}
	if code, _ := probe(t, http.MethodGet, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz: got %d, want 503 before start", code)
	}
}

// get answers a GET's status and body; 0 when nothing answered.
func get(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestRun_ProbesWhileConnecting points the worker at a server that accepts and never answers: the
// dial hangs, and meanwhile /healthz and /metrics answer and /readyz says 503.
func TestRun_ProbesWhileConnecting(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
		}
	}()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := baseEnv(t, "TEMPORAL_ADDRESS="+silent.Addr().String(), "WORKER_HTTP_ADDRESS="+httpAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, _ := get("http://" + httpAddr + "/healthz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not 200 within 5s; stderr: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := get("http://" + httpAddr + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz while connecting: got %d, want 503", code)
	}
	if code, body := get("http://" + httpAddr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics while connecting: got %d, want 200 with the process's metrics", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code after a stop while connecting: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(dialTimeout + 5*time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestRun_ReadyzFollowsPollingAndStop runs the worker against a dev server: /readyz is 200 while
// it polls, /metrics shows the removal it ran and the SDK's own metrics, and once a stop is asked
// /readyz is 503 while an in-flight removal still finishes (and /healthz stays 200).
func TestRun_ReadyzFollowsPollingAndStop(t *testing.T) {
	hostPort := devserver.ForTest(t, devserver.Options{}).Address
	slowArrived := make(chan struct{})
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			close(slowArrived)
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(api.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + httpAddr
	env := baseEnv(t,
		"TEMPORAL_ADDRESS="+hostPort,
		"TEMPORAL_TASK_QUEUE=worker-probes",
		"LANGSMITH_CONTROL_PLANE_URL="+api.URL,
		"WORKER_HTTP_ADDRESS="+httpAddr,
		"WORKER_STOP_TIMEOUT=20s",
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()
	waitReady(t, base+"/readyz", done, &stderr)

	c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	start := func(conn string) client.WorkflowRun {
		wr, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
			ID: ac.RemoveConnectionWorkflowID("a1", conn), TaskQueue: "worker-probes",
		}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: conn})
		if err != nil {
			t.Fatalf("start workflow: %v", err)
		}
		return wr
	}
	wfCtx, wfCancel := context.WithTimeout(context.Background(), time.Minute)
	defer wfCancel()
	if err := start("c1").Get(wfCtx, nil); err != nil {
		t.Fatalf("removal: %v", err)
	}
	if code, _ := get(base + "/readyz"); code != http.StatusOK {
		t.Errorf("readyz while polling: got %d, want 200", code)
	}
	_, metrics := get(base + "/metrics")
	for _, want := range []string{
		`agent_connections_removals_total{failure_type="",outcome="removed"} 1`,
		`agent_connections_http_requests_total{method="DELETE",route="/v2/auth/agents/{agent_id}/connections/{connection_id}",status_class="2xx"} 1`,
		"temporal_request_total{",
		"temporal_activity_execution_latency_seconds_bucket{",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics: want %s in\n%s", want, metrics)
		}
	}
	assertNoSecret(t, "metrics", metrics)

	start("slow")
	select {
	case <-slowArrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow DELETE did not arrive within 30s")
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(base + "/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz while stopping: got %d, want 503 within 5s", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := get(base + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz while stopping: got %d, want 200", code)
	}
	select {
	case code := <-done:
		t.Fatalf("run returned %d before the in-flight removal finished", code)
	default:
	}
	close(release)
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of the release")
	}
	if code, _ := get(base + "/healthz"); code != 0 {
		t.Errorf("healthz after exit: got %d, want no answer", code)
	}
}
