package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// tracedActivities runs the activities against handler with the SDK's tracing interceptor and
// an in-memory span exporter.
func tracedActivities(t *testing.T, handler http.HandlerFunc) (*testsuite.TestActivityEnvironment, *activities.Activities, *tracetest.InMemoryExporter, *url.URL) {
	t.Helper()
	api := httptest.NewServer(handler)
	t.Cleanup(api.Close)
	u, err := url.Parse(api.URL)
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tel, err := New(context.Background(), Options{SpanExporter: exp, ServiceVersion: "v9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	if !tel.Tracing() {
		t.Fatal("got tracing off with a span exporter, want it on")
	}
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:        api.URL,
		Credentials:    controlplane.StaticCredentials{APIKey: testKey, TenantID: testTenant, BearerToken: testBearer},
		TracerProvider: tel.TracerProvider(),
		HTTPRetry:      controlplane.HTTPRetry{WaitMin: 1, WaitMax: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	icpt, err := tel.TracingInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	env := quietSuite().NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{icpt}})
	env.RegisterActivity(acts)
	return env, acts, exp, u
}

func spanNamed(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// assertNoSecretInSpans checks every attribute, event, status and resource value of every span.
func assertNoSecretInSpans(t *testing.T, spans tracetest.SpanStubs) {
	t.Helper()
	var all []string
	for _, s := range spans {
		all = append(all, s.Name, s.Status.Description)
		for _, kv := range s.Attributes {
			all = append(all, string(kv.Key), kv.Value.String())
		}
		for _, ev := range s.Events {
			all = append(all, ev.Name)
			for _, kv := range ev.Attributes {
				all = append(all, kv.Value.String())
			}
		}
		for _, kv := range s.Resource.Attributes() {
			all = append(all, kv.Value.String())
		}
	}
	text := strings.Join(all, "\n")
	for _, secret := range []string{testKey, testBearer, testTenant} {
		if strings.Contains(text, secret) {
			t.Errorf("got %q in the spans, want it never there", secret)
		}
	}
}

func TestTracing_HTTPSpanIsAChildOfTheActivitySpan(t *testing.T) {
	env, acts, exp, u := tracedActivities(t, func(w http.ResponseWriter, r *http.Request) {
		// Echo the key back, as a misbehaving proxy might: it must not reach a span either.
		w.Header().Set("X-Echo", r.Header.Get("X-Api-Key"))
		w.WriteHeader(http.StatusNoContent)
	})
	if _, err := env.ExecuteActivity(acts.RemoveConnection, activities.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: true}); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	activitySpans := spanNamed(spans, "RunActivity:RemoveConnection")
	httpSpans := spanNamed(spans, "DELETE "+controlplane.RouteConnection)
	if len(activitySpans) != 1 || len(httpSpans) != 1 {
		t.Fatalf("got %d activity and %d HTTP spans, want 1 and 1: %v", len(activitySpans), len(httpSpans), spanNames(spans))
	}
	act, req := activitySpans[0], httpSpans[0]
	if req.Parent.SpanID() != act.SpanContext.SpanID() || req.SpanContext.TraceID() != act.SpanContext.TraceID() {
		t.Errorf("got the HTTP span's parent %s, want the activity span %s", req.Parent.SpanID(), act.SpanContext.SpanID())
	}
	if req.SpanKind.String() != "client" {
		t.Errorf("got span kind %s, want client", req.SpanKind)
	}
	port := u.Port()
	want := map[attribute.Key]string{
		"http.request.method":         "DELETE",
		"url.template":                controlplane.RouteConnection,
		"http.response.status_code":   "204",
		"server.address":              u.Hostname(),
		"server.port":                 port,
		controlplane.AttrAgentID:      "a1",
		controlplane.AttrConnectionID: "c1",
	}
	got := attrs(req)
	for k, v := range want {
		if got[k].String() != v {
			t.Errorf("attribute %s: got %q, want %q", k, got[k].String(), v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("got attribute %s, want only %v", k, want)
		}
	}
	if req.Status.Code == codes.Error {
		t.Errorf("got status %v on a 204, want unset", req.Status)
	}
	res := map[string]string{}
	for _, kv := range req.Resource.Attributes() {
		res[string(kv.Key)] = kv.Value.String()
	}
	if res["service.name"] != DefaultServiceName || res["service.version"] != "v9.9.9" {
		t.Errorf("got resource %v, want service.name %s and service.version v9.9.9", res, DefaultServiceName)
	}
	assertNoSecretInSpans(t, spans)
}

func TestTracing_OneSpanPerRequestWithRetriesAndFailures(t *testing.T) {
	var n atomic.Int64
	env, acts, exp, _ := tracedActivities(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // retried in process: no Retry-After
			return
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"detail":[{"loc":["key"],"msg":"` + r.Header.Get("X-Api-Key") + `"}]}`))
	})
	_, err := env.ExecuteActivity(acts.RemoveConnection, activities.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: true})
	if err == nil {
		t.Fatal("got success, want the 422's ValidationError")
	}
	spans := exp.GetSpans()
	httpSpans := spanNamed(spans, "DELETE "+controlplane.RouteConnection)
	if len(httpSpans) != 2 {
		t.Fatalf("got %d HTTP spans, want one per request (2): %v", len(httpSpans), spanNames(spans))
	}
	for i, want := range []struct{ status, resend string }{{"503", ""}, {"422", "1"}} {
		a := attrs(httpSpans[i])
		if a["http.response.status_code"].String() != want.status || a["error.type"].String() != want.status {
			t.Errorf("span %d: got status %q and error.type %q, want %s", i, a["http.response.status_code"].String(), a["error.type"].String(), want.status)
		}
		if got := a["http.request.resend_count"].String(); got != want.resend {
			t.Errorf("span %d: got resend count %q, want %q", i, got, want.resend)
		}
		if httpSpans[i].Status.Code != codes.Error {
			t.Errorf("span %d: got status %v, want an error", i, httpSpans[i].Status)
		}
	}
	assertNoSecretInSpans(t, spans)
}

func TestTracing_NetworkErrorSpanNamesOnlyTheKind(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := New(context.Background(), Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:        "http://127.0.0.1:1",
		Credentials:    controlplane.StaticCredentials{APIKey: testKey},
		TracerProvider: tel.TracerProvider(),
		HTTPRetry:      controlplane.HTTPRetry{Max: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	env := quietSuite().NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	_, _ = env.ExecuteActivity(acts.ListConnections, activities.ListConnectionsInput{AgentID: "a1"})
	spans := spanNamed(exp.GetSpans(), "GET "+controlplane.RouteConnections)
	if len(spans) != 1 {
		t.Fatalf("got %d list spans, want 1: %v", len(spans), spanNames(exp.GetSpans()))
	}
	a := attrs(spans[0])
	if got := a["error.type"].String(); got != "connection_refused" {
		t.Errorf("error.type: got %q, want connection_refused", got)
	}
	if d := spans[0].Status.Description; d != "connection_refused" {
		t.Errorf("status: got %q, want only the kind, not the error's text with the URL", d)
	}
	if _, ok := a[controlplane.AttrConnectionID]; ok {
		t.Error("got a connection ID on a list span, want only the agent ID")
	}
}

func TestTracing_OffRecordsNothing(t *testing.T) {
	tel, err := New(context.Background(), Options{Traces: TraceConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing() {
		t.Error("got tracing on without an endpoint, want off")
	}
	_, span := tel.TracerProvider().Tracer("x").Start(context.Background(), "s")
	if span.IsRecording() {
		t.Error("got a recording span with tracing off, want a no-op")
	}
	if _, err := tel.TracingInterceptor(); err != nil {
		t.Errorf("interceptor with tracing off: %v", err)
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}

var _ sdktrace.SpanExporter = (*tracetest.InMemoryExporter)(nil)

func TestNew_OTLPExportersForBothProtocols(t *testing.T) {
	for _, protocol := range []string{ProtocolHTTPProtobuf, ProtocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			// Nothing listens there: building must not dial, and shutting down must not hang.
			tel, err := New(context.Background(), Options{Traces: TraceConfig{Endpoint: "http://127.0.0.1:1", Protocol: protocol}})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if !tel.Tracing() {
				t.Error("got tracing off with an endpoint, want on")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tel.Shutdown(ctx)
			if ctx.Err() != nil {
				t.Error("shutdown ran into its 5 s limit with nothing to flush, want it quick")
			}
		})
	}
}

func TestLoadTraceConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    TraceConfig
		wantErr string
	}{
		{"nothing", nil, TraceConfig{}, ""},
		{"protocol without endpoint", map[string]string{EnvOTLPProtocol: "grpc"}, TraceConfig{}, ""},
		{"endpoint", map[string]string{EnvOTLPEndpoint: " http://c:4318 "}, TraceConfig{Endpoint: "http://c:4318", Protocol: ProtocolHTTPProtobuf}, ""},
		{"none", map[string]string{EnvOTLPEndpoint: "http://c:4318", EnvTracesExporter: "none"}, TraceConfig{}, ""},
		{"bad protocol", map[string]string{EnvOTLPProtocol: "http/json"}, TraceConfig{}, `OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" is not one of http/protobuf, grpc`},
		{"bad endpoint", map[string]string{EnvOTLPTracesEndpoint: "ftp://c"}, TraceConfig{}, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must start with http:// or https://`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadTraceConfig(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			switch {
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("got error %v, want one starting with %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Errorf("got error %v, want none", err)
			case got != tt.want:
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
