package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
)

func TestDelete_StatusTable(t *testing.T) {
	longBody := `{"detail":"` + strings.Repeat("x", DefaultBodyLimit*2) + `"}`
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		missingOK     bool
		wantOutcome   string
		wantType      string
		wantStatus    int
		wantRetryable bool
		wantRequests  int64
		wantInMessage []string
		wantDelay     time.Duration
	}{
		{name: "204 removes", handler: status(204, ""), wantOutcome: ac.OutcomeRemoved, wantRequests: 1},
		{name: "404 with missing_ok is already absent", handler: status(404, `{"detail":"Connection conn-1 not found."}`), missingOK: true, wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 1},
		{name: "404 without missing_ok on the first request is NotFound", handler: status(404, `{"detail":"Connection conn-1 not found."}`), wantType: ac.ErrNotFound, wantStatus: 404, wantRequests: 1, wantInMessage: []string{"404", "Connection conn-1 not found."}},
		{name: "404 after an in-process retry is already absent", handler: sequence(status(503, ""), status(404, `{"detail":"gone"}`)), wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 2},
		{name: "422 list detail carries loc and msg", handler: status(422, `{"detail":[{"loc":["path","connection_id"],"msg":"String should have at most 256 characters","type":"string_too_long"},{"loc":["body","items",0],"msg":"bad item","type":"x"}]}`), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: []string{"path.connection_id: String should have at most 256 characters", "body.items[0]: bad item"}},
		{name: "422 string detail", handler: status(422, `{"detail":"agent is locked"}`), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: []string{"agent is locked"}},
		{name: "422 broken body still clear", handler: status(422, `{"detail":[{"loc":`), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: []string{"body is not JSON", `{"detail":[{"loc":`}},
		{name: "422 huge body read with a limit", handler: status(422, longBody), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: []string{"over the size limit"}},
		{name: "422 empty body", handler: status(422, ""), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: []string{"empty body"}},
		{name: "400 is BadRequest", handler: status(400, `{"detail":"bad"}`), wantType: ac.ErrBadRequest, wantStatus: 400, wantRequests: 1, wantInMessage: []string{"400", "bad"}},
		{name: "401 names the key to check", handler: status(401, `{"detail":"Invalid API key"}`), wantType: ac.ErrUnauthorized, wantStatus: 401, wantRequests: 1, wantInMessage: []string{"LANGSMITH_API_KEY"}},
		{name: "403 names the tenant to check", handler: status(403, `{"detail":"forbidden"}`), wantType: ac.ErrUnauthorized, wantStatus: 403, wantRequests: 1, wantInMessage: []string{"LANGSMITH_TENANT_ID"}},
		{name: "408 is retried as Unavailable", handler: status(408, ""), wantType: ac.ErrUnavailable, wantStatus: 408, wantRetryable: true, wantRequests: 1},
		{name: "429 seconds Retry-After sets the next delay", handler: status(429, `{"detail":"slow down"}`, "Retry-After", "7"), wantType: ac.ErrRateLimited, wantStatus: 429, wantRetryable: true, wantRequests: 1, wantDelay: 7 * time.Second},
		{name: "429 without Retry-After", handler: status(429, ""), wantType: ac.ErrRateLimited, wantStatus: 429, wantRetryable: true, wantRequests: 1},
		{name: "500 is ServerError after in-process retries", handler: status(500, ""), wantType: ac.ErrServerError, wantStatus: 500, wantRetryable: true, wantRequests: 1},
		{name: "503 is retried in process then ServerError", handler: status(503, ""), wantType: ac.ErrServerError, wantStatus: 503, wantRetryable: true, wantRequests: 3},
		{name: "503 then 204 succeeds in process", handler: sequence(status(503, ""), status(204, "")), wantOutcome: ac.OutcomeRemoved, wantRequests: 2},
		{name: "503 with Retry-After goes back to the caller", handler: status(503, "", "Retry-After", "3"), wantType: ac.ErrServerError, wantStatus: 503, wantRetryable: true, wantRequests: 1, wantDelay: 3 * time.Second},
		{name: "418 is UnexpectedStatus", handler: status(418, "teapot"), wantType: ac.ErrUnexpectedStatus, wantStatus: 418, wantRequests: 1, wantInMessage: []string{"418", "teapot"}},
		{name: "200 is UnexpectedStatus", handler: status(200, `{}`), wantType: ac.ErrUnexpectedStatus, wantStatus: 200, wantRequests: 1},
		{name: "redirect is not followed", handler: status(307, "", "Location", "https://elsewhere.invalid/"), wantType: ac.ErrUnexpectedStatus, wantStatus: 307, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			res, err := f.remove(t, DeleteRequest{MissingOK: tt.missingOK})
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests at the server, want %d", got, tt.wantRequests)
			}
			if int64(res.Requests) != tt.wantRequests {
				t.Errorf("got result requests %d, want %d", res.Requests, tt.wantRequests)
			}
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("got error %v, want success", err)
				}
				if res.Outcome != tt.wantOutcome {
					t.Errorf("got outcome %q, want %q", res.Outcome, tt.wantOutcome)
				}
				return
			}
			if res.Outcome != "" {
				t.Errorf("got outcome %q with an error, want none", res.Outcome)
			}
			e := cpError(t, err)
			if e.Type != tt.wantType {
				t.Errorf("got type %q, want %q (message %q)", e.Type, tt.wantType, e.Message)
			}
			if e.Status != tt.wantStatus {
				t.Errorf("got status %d, want %d", e.Status, tt.wantStatus)
			}
			if e.Retryable != tt.wantRetryable {
				t.Errorf("got retryable %t, want %t", e.Retryable, tt.wantRetryable)
			}
			if e.RetryAfter != tt.wantDelay {
				t.Errorf("got retry after %s, want %s", e.RetryAfter, tt.wantDelay)
			}
			for _, want := range tt.wantInMessage {
				if !strings.Contains(e.Message, want) {
					t.Errorf("got message %q, want it to contain %q", e.Message, want)
				}
			}
			if len(e.Message) > 2*maxExcerpt+200 {
				t.Errorf("got a %d-byte message, want it bounded", len(e.Message))
			}
			if int64(e.Requests) != tt.wantRequests {
				t.Errorf("got error requests %d, want %d", e.Requests, tt.wantRequests)
			}
		})
	}
}

func TestDelete_RetryAfterHTTPDate(t *testing.T) {
	at := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	f := newFixture(t, status(429, "", "Retry-After", at))
	_, err := f.remove(t, DeleteRequest{MissingOK: true})
	e := cpError(t, err)
	if e.Type != ac.ErrRateLimited {
		t.Fatalf("got type %q, want %q", e.Type, ac.ErrRateLimited)
	}
	// HTTP dates have one-second resolution and the clock moves on: allow a few seconds.
	if d := e.RetryAfter; d < 85*time.Second || d > 90*time.Second {
		t.Errorf("got retry after %s, want about 90s", d)
	}
}

func TestDelete_404AfterAnEarlierRequestIsAlreadyAbsent(t *testing.T) {
	tests := []struct {
		name         string
		req          DeleteRequest
		wantRequests int
	}{
		// An earlier Temporal attempt sent two requests and heartbeated the count.
		{"prior requests counted", DeleteRequest{PriorRequests: 2}, 3},
		// An earlier attempt may have sent one its heartbeat did not carry.
		{"maybe sent", DeleteRequest{MaybeSent: true}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, status(404, `{"detail":"not found"}`))
			res, err := f.remove(t, tt.req)
			if err != nil {
				t.Fatalf("got error %v, want already_absent", err)
			}
			if res.Outcome != ac.OutcomeAlreadyAbsent {
				t.Errorf("got outcome %q, want %q", res.Outcome, ac.OutcomeAlreadyAbsent)
			}
			if res.Requests != tt.wantRequests {
				t.Errorf("got requests %d, want %d", res.Requests, tt.wantRequests)
			}
			if !res.AfterEarlierRequest {
				t.Error("got AfterEarlierRequest false, want true: the earlier request may have removed it")
			}
		})
	}
	// A 404 on the first request, with missing_ok, is absent before anyone removed it.
	f := newFixture(t, status(404, `{"detail":"not found"}`))
	res, err := f.remove(t, DeleteRequest{MissingOK: true})
	if err != nil || res.Outcome != ac.OutcomeAlreadyAbsent || res.AfterEarlierRequest {
		t.Errorf("got %+v, %v; want already_absent with AfterEarlierRequest false", res, err)
	}
}

func TestDelete_OnSentRunsBeforeTheRequestLeaves(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	var seenAtRequest [][]int
	inner := sequence(status(503, ""), status(502, ""), status(204, ""))
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAtRequest = append(seenAtRequest, append([]int{}, seen...))
		mu.Unlock()
		inner(w, r)
	})
	res, err := f.remove(t, DeleteRequest{PriorRequests: 4, OnSent: func(n int) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, n)
	}})
	if err != nil {
		t.Fatalf("got error %v, want success", err)
	}
	if res.Requests != 7 {
		t.Errorf("got requests %d, want 7 (4 prior + 3)", res.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	// The count is this call's, and each request is counted before the server sees it.
	if want := [][]int{{1}, {1, 2}, {1, 2, 3}}; !reflect.DeepEqual(seenAtRequest, want) {
		t.Errorf("got counts %v as each request arrived, want %v", seenAtRequest, want)
	}
}

func TestDelete_ContextEnd(t *testing.T) {
	tests := []struct {
		name        string
		detach      bool
		wantOutcome string
	}{
		// The caller's context error comes back as it is, not as an *Error.
		{"attached request is cut off", false, ""},
		// A request that left finishes, so its outcome is known and nothing is sent twice.
		{"detached request finishes", true, ac.OutcomeRemoved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
				cancel()
				time.Sleep(50 * time.Millisecond)
				w.WriteHeader(http.StatusNoContent)
			})
			res, err := f.client.Delete(ctx, DeleteRequest{AgentID: "agent-1", ConnectionID: "conn-1", Detach: tt.detach, Logger: f.logs})
			if res.Requests != 1 || f.requests.Load() != 1 {
				t.Errorf("got %d requests counted and %d at the server, want 1 and 1", res.Requests, f.requests.Load())
			}
			if res.Outcome != tt.wantOutcome {
				t.Errorf("got outcome %q, want %q", res.Outcome, tt.wantOutcome)
			}
			var e *Error
			switch {
			case tt.wantOutcome != "" && err != nil:
				t.Errorf("got error %v, want success", err)
			case tt.wantOutcome == "" && (!errors.Is(err, context.Canceled) || errors.As(err, &e)):
				t.Errorf("got error %v (%T), want the context's own error", err, err)
			}
		})
	}
}

// A detached request whose call ends while it is in flight keeps its answer, but nothing more
// goes out: a 503 that would be retried in process ends the call instead.
func TestDelete_DetachedCallRetriesNothingAfterItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		cancel()
		w.WriteHeader(http.StatusServiceUnavailable) // no Retry-After: retried in process otherwise
	})
	res, err := f.client.Delete(ctx, DeleteRequest{AgentID: "agent-1", ConnectionID: "conn-1", Detach: true, Logger: f.logs})
	if n := f.requests.Load(); n != 1 || res.Requests != 1 {
		t.Errorf("got %d requests at the server (%d counted), want 1: no retry after the call ended", n, res.Requests)
	}
	var e *Error
	if !errors.As(err, &e) || e.Type != ac.ErrServerError || e.Status != http.StatusServiceUnavailable {
		t.Errorf("got %v, want the 503 it got as a ServerError", err)
	}
}

func TestDelete_EndedContextSendsNothingDetached(t *testing.T) {
	f := newFixture(t, status(204, ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := f.client.Delete(ctx, DeleteRequest{AgentID: "agent-1", ConnectionID: "conn-1", Detach: true})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got error %v, want the context's own error", err)
	}
	if res.Requests != 0 || f.requests.Load() != 0 {
		t.Errorf("got %d requests counted and %d at the server, want none", res.Requests, f.requests.Load())
	}
}

func TestDelete_RefusedIDsSendNothing(t *testing.T) {
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
			res, err := f.client.Delete(context.Background(), DeleteRequest{AgentID: tt.agent, ConnectionID: tt.conn})
			e := cpError(t, err)
			if e.Type != ac.ErrInvalidRequest || e.Retryable {
				t.Errorf("got type %q retryable %t, want %q not retryable", e.Type, e.Retryable, ac.ErrInvalidRequest)
			}
			if got := f.requests.Load(); got != 0 || res.Requests != 0 || e.Requests != 0 {
				t.Errorf("got %d requests at the server, %d and %d counted, want none", got, res.Requests, e.Requests)
			}
		})
	}
}

func TestDelete_URLAndHeaders(t *testing.T) {
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
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r.Clone(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			f := newFixtureAt(t, srv.URL+tt.base, nil)
			if _, err := f.remove(t, DeleteRequest{AgentID: tt.agent, ConnectionID: tt.conn}); err != nil {
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
				"Accept":        "application/json",
			}
			for h, want := range wantHeaders {
				if v := got.Header.Get(h); v != want {
					t.Errorf("got header %s=%q, want %q", h, v, want)
				}
			}
		})
	}
}

func TestDelete_DefaultUserAgent(t *testing.T) {
	var got string
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("User-Agent")
		w.WriteHeader(http.StatusNoContent)
	}, func(c *Config) { c.UserAgent = "" })
	if _, err := f.remove(t, DeleteRequest{}); err != nil {
		t.Fatal(err)
	}
	if got != DefaultUserAgent {
		t.Errorf("got User-Agent %q, want %q", got, DefaultUserAgent)
	}
}

func TestDelete_OnlyConfiguredCredentialHeaders(t *testing.T) {
	var got http.Header
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}, func(c *Config) { c.Credentials = StaticCredentials{APIKey: testKey} })
	if _, err := f.remove(t, DeleteRequest{MissingOK: true}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	for _, h := range []string{"X-Tenant-Id", "Authorization"} {
		if v, ok := got[h]; ok {
			t.Errorf("got header %s=%q, want it absent when not configured", h, v)
		}
	}
}

// failingSource is a credential source that cannot give credentials.
type failingSource struct{}

func (failingSource) Credentials() (Credentials, error) {
	return Credentials{}, errors.New("read /run/secrets/key: permission denied")
}

func TestDelete_NoCredentialsIsUnauthorizedWithoutRequest(t *testing.T) {
	for name, src := range map[string]CredentialSource{
		"tenant only":   StaticCredentials{TenantID: "t"},
		"source failed": failingSource{},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, status(204, ""), func(c *Config) { c.Credentials = src })
			_, err := f.remove(t, DeleteRequest{MissingOK: true})
			e := cpError(t, err)
			if e.Type != ac.ErrUnauthorized || e.Retryable {
				t.Errorf("got type %q retryable %t, want %q not retryable", e.Type, e.Retryable, ac.ErrUnauthorized)
			}
			if got := f.requests.Load(); got != 0 {
				t.Errorf("got %d requests, want 0", got)
			}
			if !strings.Contains(f.logs.String(), "ERROR connection removal not sent: no credentials") {
				t.Errorf("got logs %q, want an error line about the missing credentials", f.logs.String())
			}
		})
	}
}

func TestDelete_ConnectionRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	f := newFixtureAt(t, "http://"+addr, nil)
	res, err := f.remove(t, DeleteRequest{MissingOK: true})
	e := cpError(t, err)
	if e.Type != ac.ErrUnavailable || !e.Retryable || e.Status != 0 {
		t.Errorf("got type %q retryable %t status %d, want retryable %q with no status", e.Type, e.Retryable, e.Status, ac.ErrUnavailable)
	}
	// A refused connection is quick and safe to retry in process: 1 + HTTPRetry.Max requests.
	if e.Requests != 3 || res.Requests != 3 {
		t.Errorf("got %d and %d requests counted, want 3", e.Requests, res.Requests)
	}
}

func TestDelete_HangingServerTimesOutAsUnavailable(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *Config) { c.RequestTimeout = 100 * time.Millisecond })
	defer close(release)
	_, err := f.remove(t, DeleteRequest{MissingOK: true})
	e := cpError(t, err)
	if e.Type != ac.ErrUnavailable || !e.Retryable {
		t.Errorf("got type %q retryable %t, want retryable %q", e.Type, e.Retryable, ac.ErrUnavailable)
	}
	// A timeout used the whole request budget: it goes back to the caller, not retried in process.
	if got := f.requests.Load(); got != 1 {
		t.Errorf("got %d requests, want 1", got)
	}
}

func TestDelete_CredentialsNeverLogged(t *testing.T) {
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
			_, err := f.remove(t, DeleteRequest{MissingOK: true})
			text := f.logs.String()
			if err != nil {
				text += "\n" + err.Error()
			}
			if text == "" {
				t.Fatal("got no log lines, want the call's log to be captured")
			}
			for _, secret := range []string{testKey, testBearer} {
				if strings.Contains(text, secret) {
					t.Error("got a credential in the logs or the error, want none")
				}
			}
		})
	}
}

func TestDelete_Logs(t *testing.T) {
	tests := []struct {
		name    string
		quiet   bool
		handler http.HandlerFunc
		want    []string
	}{
		{"removed", false, status(204, ""), []string{"INFO connection removed", "agent_id agent-1", "connection_id conn-1", "status 204", "latency_ms", "requests 1"}},
		{"removed, quiet", true, status(204, ""), []string{"DEBUG connection removed"}},
		{"already absent", false, status(404, ""), []string{"INFO connection already absent", "earlier_request false"}},
		{"failed", true, status(422, ""), []string{"WARN connection removal failed", "failure_type " + ac.ErrValidation, "retryable false", "status 422"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			_, _ = f.remove(t, DeleteRequest{MissingOK: true, Quiet: tt.quiet})
			logs := f.logs.String()
			for _, want := range tt.want {
				if !strings.Contains(logs, want) {
					t.Errorf("got logs %q, want them to contain %q", logs, want)
				}
			}
		})
	}
}

func TestDelete_NilLoggerLogsNothing(t *testing.T) {
	f := newFixture(t, status(422, ""), func(c *Config) { c.Logger = nil })
	if _, err := f.client.Delete(context.Background(), DeleteRequest{AgentID: "agent-1", ConnectionID: "conn-1"}); err == nil {
		t.Fatal("got success, want the 422")
	}
	if got := f.logs.String(); got != "" {
		t.Errorf("got logs %q, want none", got)
	}
}

func TestDelete_ReusesOneConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(status(204, ""))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	f := newFixtureAt(t, srv.URL, nil)
	for i := range 5 {
		if _, err := f.remove(t, DeleteRequest{AgentID: "agent-1", ConnectionID: fmt.Sprintf("conn-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("got %d TCP connections for 5 sequential removals, want 1", got)
	}
}

func TestError_MessageAndType(t *testing.T) {
	e := &Error{Type: ac.ErrValidation, Message: "control plane answered 422"}
	if got, want := e.Error(), "ValidationError: control plane answered 422"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
