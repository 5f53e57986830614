package activities

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
)

const (
	testKey    = "lsv2_sk_test_secret_key_0123456789"
	testBearer = "bearer-secret-token-9876543210"
	testTenant = "tenant-1"
)

// logBuffer captures everything the activity and retryablehttp log, to check what a log would show.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) add(level, msg string, keyvals ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, keyvals))
}
func (l *logBuffer) Debug(msg string, kv ...any) { l.add("DEBUG", msg, kv...) }
func (l *logBuffer) Info(msg string, kv ...any)  { l.add("INFO", msg, kv...) }
func (l *logBuffer) Warn(msg string, kv ...any)  { l.add("WARN", msg, kv...) }
func (l *logBuffer) Error(msg string, kv ...any) { l.add("ERROR", msg, kv...) }
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// fixture is one activity environment wired to one test server.
type fixture struct {
	env      *testsuite.TestActivityEnvironment
	acts     *Activities
	logs     *logBuffer
	requests *atomic.Int64
	server   *httptest.Server
}

type fixtureOption func(*Config)

// newFixture starts an httptest server running handler (counting requests) and an activity
// environment whose activities point at it with fast in-process retries.
func newFixture(t *testing.T, handler http.HandlerFunc, opts ...fixtureOption) *fixture {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return newFixtureAt(t, srv.URL, &n, srv, opts...)
}

func newFixtureAt(t *testing.T, baseURL string, n *atomic.Int64, srv *httptest.Server, opts ...fixtureOption) *fixture {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{
		BaseURL:        baseURL,
		Credentials:    StaticCredentials{APIKey: testKey, TenantID: testTenant, BearerToken: testBearer},
		RequestTimeout: 2 * time.Second,
		UserAgent:      "agent-connections-worker/test",
		HTTPRetry:      HTTPRetry{Max: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond},
		Logger:         logs,
	}
	for _, o := range opts {
		o(&cfg)
	}
	acts, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(logs)
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	if n == nil {
		n = &atomic.Int64{}
	}
	return &fixture{env: env, acts: acts, logs: logs, requests: n, server: srv}
}

func (f *fixture) remove(t *testing.T, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	t.Helper()
	val, err := f.env.ExecuteActivity(f.acts.RemoveConnection, in)
	var res ac.RemoveConnectionResult
	if err == nil {
		if gerr := val.Get(&res); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return res, err
}

func input(missingOK bool) RemoveConnectionInput {
	return RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: missingOK}
}

// appError unwraps the ApplicationError the activity failed with.
func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("got error %v (%T), want an ApplicationError", err, err)
	}
	return appErr
}

// sequence answers the i-th request with the i-th handler, repeating the last one.
func sequence(handlers ...http.HandlerFunc) http.HandlerFunc {
	var i atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		n := int(i.Add(1)) - 1
		if n >= len(handlers) {
			n = len(handlers) - 1
		}
		handlers[n](w, r)
	}
}

func status(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func TestRemoveConnection_StatusTable(t *testing.T) {
	longBody := `{"detail":"` + strings.Repeat("x", DefaultBodyLimit*2) + `"}`
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		missingOK     bool
		wantOutcome   string
		wantType      string
		wantRetryable bool
		wantRequests  int64
		wantInMessage []string
		wantDelay     time.Duration
	}{
		{name: "204 removes", handler: status(204, ""), wantOutcome: ac.OutcomeRemoved, wantRequests: 1},
		{name: "404 with missing_ok is already absent", handler: status(404, `{"detail":"Connection conn-1 not found."}`), missingOK: true, wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 1},
		{name: "404 without missing_ok on the first request is NotFound", handler: status(404, `{"detail":"Connection conn-1 not found."}`), wantType: ac.ErrNotFound, wantRequests: 1, wantInMessage: []string{"404", "Connection conn-1 not found."}},
		{name: "404 after an in-process retry is already absent", handler: sequence(status(503, ""), status(404, `{"detail":"gone"}`)), wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 2},
		{name: "422 list detail carries loc and msg", handler: status(422, `{"detail":[{"loc":["path","connection_id"],"msg":"String should have at most 256 characters","type":"string_too_long"},{"loc":["body","items",0],"msg":"bad item","type":"x"}]}`), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: []string{"path.connection_id: String should have at most 256 characters", "body.items[0]: bad item"}},
		{name: "422 string detail", handler: status(422, `{"detail":"agent is locked"}`), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: []string{"agent is locked"}},
		{name: "422 broken body still clear", handler: status(422, `{"detail":[{"loc":`), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: []string{"body is not JSON", `{"detail":[{"loc":`}},
		{name: "422 huge body read with a limit", handler: status(422, longBody), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: []string{"over the size limit"}},
		{name: "422 empty body", handler: status(422, ""), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: []string{"empty body"}},
		{name: "400 is BadRequest", handler: status(400, `{"detail":"bad"}`), wantType: ac.ErrBadRequest, wantRequests: 1, wantInMessage: []string{"400", "bad"}},
		{name: "401 names the key to check", handler: status(401, `{"detail":"Invalid API key"}`), wantType: ac.ErrUnauthorized, wantRequests: 1, wantInMessage: []string{"LANGSMITH_API_KEY"}},
		{name: "403 names the tenant to check", handler: status(403, `{"detail":"forbidden"}`), wantType: ac.ErrUnauthorized, wantRequests: 1, wantInMessage: []string{"LANGSMITH_TENANT_ID"}},
		{name: "408 is retried as Unavailable", handler: status(408, ""), wantType: ac.ErrUnavailable, wantRetryable: true, wantRequests: 1},
		{name: "429 seconds Retry-After sets the next delay", handler: status(429, `{"detail":"slow down"}`, "Retry-After", "7"), wantType: ac.ErrRateLimited, wantRetryable: true, wantRequests: 1, wantDelay: 7 * time.Second},
		{name: "429 without Retry-After", handler: status(429, ""), wantType: ac.ErrRateLimited, wantRetryable: true, wantRequests: 1},
		{name: "500 is ServerError after in-process retries", handler: status(500, ""), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 1},
		{name: "503 is retried in process then ServerError", handler: status(503, ""), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 3},
		{name: "503 then 204 succeeds in process", handler: sequence(status(503, ""), status(204, "")), wantOutcome: ac.OutcomeRemoved, wantRequests: 2},
		{name: "503 with Retry-After goes back to Temporal", handler: status(503, "", "Retry-After", "3"), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 1, wantDelay: 3 * time.Second},
		{name: "418 is UnexpectedStatus", handler: status(418, "teapot"), wantType: ac.ErrUnexpectedStatus, wantRequests: 1, wantInMessage: []string{"418", "teapot"}},
		{name: "200 is UnexpectedStatus", handler: status(200, `{}`), wantType: ac.ErrUnexpectedStatus, wantRequests: 1},
		{name: "redirect is not followed", handler: status(307, "", "Location", "https://elsewhere.invalid/"), wantType: ac.ErrUnexpectedStatus, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			res, err := f.remove(t, input(tt.missingOK))
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests at the server, want %d", got, tt.wantRequests)
			}
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("got error %v, want success", err)
				}
				if res.Outcome != tt.wantOutcome {
					t.Errorf("got outcome %q, want %q", res.Outcome, tt.wantOutcome)
				}
				if int64(res.Attempts) != tt.wantRequests {
					t.Errorf("got attempts %d, want %d", res.Attempts, tt.wantRequests)
				}
				if res.AgentID != "agent-1" || res.ConnectionID != "conn-1" {
					t.Errorf("got ids %q/%q, want agent-1/conn-1", res.AgentID, res.ConnectionID)
				}
				return
			}
			appErr := appError(t, err)
			if appErr.Type() != tt.wantType {
				t.Errorf("got type %q, want %q (message %q)", appErr.Type(), tt.wantType, appErr.Message())
			}
			if appErr.NonRetryable() == tt.wantRetryable {
				t.Errorf("got non-retryable %t, want %t", appErr.NonRetryable(), !tt.wantRetryable)
			}
			if appErr.NextRetryDelay() != tt.wantDelay {
				t.Errorf("got next retry delay %s, want %s", appErr.NextRetryDelay(), tt.wantDelay)
			}
			for _, want := range tt.wantInMessage {
				if !strings.Contains(appErr.Message(), want) {
					t.Errorf("got message %q, want it to contain %q", appErr.Message(), want)
				}
			}
			if len(appErr.Message()) > 2*maxExcerpt+200 {
				t.Errorf("got a %d-byte message, want it bounded", len(appErr.Message()))
			}
			var d ac.FailureDetails
			if err := appErr.Details(&d); err != nil {
				t.Fatalf("details: %v", err)
			}
			if int64(d.Requests) != tt.wantRequests {
				t.Errorf("got details.requests %d, want %d", d.Requests, tt.wantRequests)
			}
		})
	}
}

func TestRemoveConnection_RetryAfterHTTPDate(t *testing.T) {
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	f := newFixture(t, status(429, "", "Retry-After", at))
	_, err := f.remove(t, input(true))
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrRateLimited {
		t.Fatalf("got type %q, want %q", appErr.Type(), ac.ErrRateLimited)
	}
	// HTTP dates have one-second resolution and the clock moves on: allow a few seconds.
	if d := appErr.NextRetryDelay(); d < 85*time.Second || d > 90*time.Second {
		t.Errorf("got next retry delay %s, want about 90s", d)
	}
}

func TestRemoveConnection_404AfterEarlierAttemptIsAlreadyAbsent(t *testing.T) {
	f := newFixture(t, status(404, `{"detail":"not found"}`))
	// An earlier Temporal attempt sent two requests and heartbeated the count.
	f.env.SetHeartbeatDetails(removeProgress{Requests: 2})
	res, err := f.remove(t, input(false))
	if err != nil {
		t.Fatalf("got error %v, want already_absent", err)
	}
	if res.Outcome != ac.OutcomeAlreadyAbsent {
		t.Errorf("got outcome %q, want %q", res.Outcome, ac.OutcomeAlreadyAbsent)
	}
	if res.Attempts != 3 {
		t.Errorf("got attempts %d, want 3 (2 earlier + 1)", res.Attempts)
	}
}

func TestRemoveConnection_HeartbeatsCountBeforeTheRequestLeaves(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	var seenAtFirstRequest []int
	inner := sequence(status(503, ""), status(502, ""), status(204, ""))
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if seenAtFirstRequest == nil {
			seenAtFirstRequest = append([]int{}, seen...)
		}
		mu.Unlock()
		inner(w, r)
	})
	f.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p removeProgress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
			return
		}
		mu.Lock()
		seen = append(seen, p.Requests)
		mu.Unlock()
	})
	res, err := f.remove(t, input(false))
	if err != nil {
		t.Fatalf("got error %v, want success", err)
	}
	if res.Attempts != 3 {
		t.Errorf("got attempts %d, want 3", res.Attempts)
	}
	mu.Lock()
	defer mu.Unlock()
	// The first heartbeat of an attempt goes out at once (later ones are batched by the SDK):
	// the count must be recorded before the server sees the request.
	if fmt.Sprint(seenAtFirstRequest) != "[1]" {
		t.Errorf("got heartbeats %v when the first request arrived, want [1]", seenAtFirstRequest)
	}
}

func TestRemoveConnection_RefusedIDsSendNothing(t *testing.T) {
	bad := []struct{ name, agent, conn string }{
		{"empty agent", "", "c"},
		{"empty connection", "a", ""},
		{"too long", "a", strings.Repeat("c", ac.MaxIDBytes+1)},
		{"dot", "a", "."},
		{"dot dot", "..", "c"},
		{"slash", "a", "c/../../x"},
		{"backslash", "a", `c\d`},
		{"space", "a", "c d"},
		{"tab", "a", "c\td"},
		{"newline", "a\n", "c"},
		{"control", "a", "c\x00"},
		{"question mark", "a", "c?x=1"},
		{"hash", "a", "c#x"},
		{"percent", "a", "c%2Fx"},
		{"unicode space", "a", "c\u00a0d"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, status(204, ""))
			_, err := f.remove(t, RemoveConnectionInput{AgentID: tt.agent, ConnectionID: tt.conn})
			appErr := appError(t, err)
			if appErr.Type() != ac.ErrInvalidRequest || !appErr.NonRetryable() {
				t.Errorf("got type %q non-retryable %t, want %q non-retryable", appErr.Type(), appErr.NonRetryable(), ac.ErrInvalidRequest)
			}
			if got := f.requests.Load(); got != 0 {
				t.Errorf("got %d requests, want 0", got)
			}
		})
	}
}

func TestRemoveConnection_URLAndHeaders(t *testing.T) {
	tests := []struct {
		name, base, agent, conn, wantRawPath string
	}{
		{"plain", "", "agent-1", "conn-1", "/v2/auth/agents/agent-1/connections/conn-1"},
		{"self-hosted prefix kept", "/api-host", "a1", "c1", "/api-host/v2/auth/agents/a1/connections/c1"},
		{"prefix with trailing slash", "/api-host/", "a1", "c1", "/api-host/v2/auth/agents/a1/connections/c1"},
		{"unicode escaped", "", "agént", "c:1@x", "/v2/auth/agents/ag%C3%A9nt/connections/c:1@x"},
		{"uuid", "", "8f0c2b1e-5a3c-4c1e-9d4b-2f7e6a1b9c0d", "0b1c", "/v2/auth/agents/8f0c2b1e-5a3c-4c1e-9d4b-2f7e6a1b9c0d/connections/0b1c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *http.Request
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				got = r.Clone(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			f := newFixtureAt(t, srv.URL+tt.base, &n, srv)
			if _, err := f.remove(t, RemoveConnectionInput{AgentID: tt.agent, ConnectionID: tt.conn}); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if got == nil {
				t.Fatal("got no request, want one")
			}
			if got.Method != http.MethodDelete {
				t.Errorf("got method %s, want DELETE", got.Method)
			}
			if raw := got.URL.EscapedPath(); raw != tt.wantRawPath {
				t.Errorf("got path %s, want %s", raw, tt.wantRawPath)
			}
			wantHeaders := map[string]string{
				"X-Api-Key":     testKey,
				"X-Tenant-Id":   testTenant,
				"Authorization": "Bearer " + testBearer,
				"User-Agent":    "agent-connections-worker/test",
			}
			for h, want := range wantHeaders {
				if v := got.Header.Get(h); v != want {
					t.Errorf("got header %s=%q, want %q", h, v, want)
				}
			}
		})
	}
}

func TestRemoveConnection_OnlyConfiguredCredentialHeaders(t *testing.T) {
	var got http.Header
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}, func(c *Config) { c.Credentials = StaticCredentials{APIKey: testKey} })
	if _, err := f.remove(t, input(true)); err != nil {
		t.Fatalf("remove: %v", err)
	}
	for _, h := range []string{"X-Tenant-Id", "Authorization"} {
		if v, ok := got[h]; ok {
			t.Errorf("got header %s=%q, want it absent when not configured", h, v)
		}
	}
}

func TestRemoveConnection_NoCredentialsIsUnauthorizedWithoutRequest(t *testing.T) {
	f := newFixture(t, status(204, ""), func(c *Config) { c.Credentials = StaticCredentials{TenantID: "t"} })
	_, err := f.remove(t, input(true))
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrUnauthorized || !appErr.NonRetryable() {
		t.Errorf("got type %q non-retryable %t, want %q non-retryable", appErr.Type(), appErr.NonRetryable(), ac.ErrUnauthorized)
	}
	if got := f.requests.Load(); got != 0 {
		t.Errorf("got %d requests, want 0", got)
	}
}

func TestRemoveConnection_ConnectionRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	f := newFixtureAt(t, "http://"+addr, nil, nil)
	_, err = f.remove(t, input(true))
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrUnavailable || appErr.NonRetryable() {
		t.Errorf("got type %q non-retryable %t, want retryable %q", appErr.Type(), appErr.NonRetryable(), ac.ErrUnavailable)
	}
	var d ac.FailureDetails
	if err := appErr.Details(&d); err != nil {
		t.Fatal(err)
	}
	// A refused connection is quick and safe to retry in process: 1 + HTTPRetry.Max requests.
	if d.Requests != 3 {
		t.Errorf("got %d requests counted, want 3", d.Requests)
	}
}

func TestRemoveConnection_HangingServerTimesOutAsUnavailable(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *Config) { c.RequestTimeout = 100 * time.Millisecond })
	defer close(release)
	_, err := f.remove(t, input(true))
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrUnavailable || appErr.NonRetryable() {
		t.Errorf("got type %q non-retryable %t, want retryable %q", appErr.Type(), appErr.NonRetryable(), ac.ErrUnavailable)
	}
	// A timeout used the whole request budget: it goes back to Temporal, not retried in process.
	if got := f.requests.Load(); got != 1 {
		t.Errorf("got %d requests, want 1", got)
	}
}

func TestRemoveConnection_CredentialsNeverLogged(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		// A misbehaving server echoes the credentials back in its error body.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"detail":"bad key %s and %s"}`, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
	}
	handlers := map[string]http.HandlerFunc{
		"204":      status(204, ""),
		"503s":     status(503, ""),
		"422 echo": echo,
		"401":      status(401, `{"detail":"Invalid API key"}`),
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, h)
			_, err := f.remove(t, input(true))
			text := f.logs.String()
			if err != nil {
				text += "\n" + err.Error()
			}
			if text == "" {
				t.Fatal("got no log lines, want the activity's log to be captured")
			}
			for _, secret := range []string{testKey, testBearer} {
				if strings.Contains(text, secret) {
					t.Errorf("got a credential in logs or error:\n%s", text)
				}
			}
		})
	}
}

func TestRemoveConnection_LogsIDsStatusAndLatency(t *testing.T) {
	f := newFixture(t, status(204, ""))
	if _, err := f.remove(t, input(true)); err != nil {
		t.Fatal(err)
	}
	logs := f.logs.String()
	for _, want := range []string{"connection removed", "agent_id agent-1", "connection_id conn-1", "status 204", "latency_ms", "attempt 1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("got logs %q, want them to contain %q", logs, want)
		}
	}
}

func TestRemoveConnection_ReusesOneConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(status(204, ""))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	f := newFixtureAt(t, srv.URL, nil, srv)
	for i := range 5 {
		in := input(true)
		in.ConnectionID = fmt.Sprintf("conn-%d", i)
		if _, err := f.remove(t, in); err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("got %d TCP connections for 5 sequential removals, want 1", got)
	}
}
