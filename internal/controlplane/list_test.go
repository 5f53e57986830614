package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

const fullEntry = `{"id":%q,"agent_id":"agent-1","oauth_token_id":"tok","provider_id":"github","provider_account_label":null,"scopes":["repo"],"expires_at":null,"created_by":"u","created_at":"2026-11-26T12:00:00Z"}`

func TestList_Success(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		wantIDs      []string
		wantRequests int64
	}{
		{name: "full entries, in listed order", handler: status(200, `{"data":[`+fmt.Sprintf(fullEntry, "c3")+`,`+fmt.Sprintf(fullEntry, "c1")+`,`+fmt.Sprintf(fullEntry, "c2")+`]}`), wantIDs: []string{"c3", "c1", "c2"}, wantRequests: 1},
		{name: "duplicates dropped", handler: status(200, `{"data":[{"id":"c2"},{"id":"c1"},{"id":"c2"},{"id":"c3"},{"id":"c1"}]}`), wantIDs: []string{"c2", "c1", "c3"}, wantRequests: 1},
		{name: "empty", handler: status(200, `{"data":[]}`), wantIDs: []string{}, wantRequests: 1},
		{name: "503 then 200 in process", handler: sequence(status(503, ""), status(200, `{"data":[{"id":"c1"}]}`)), wantIDs: []string{"c1"}, wantRequests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			ids, err := f.list(t, "agent-1")
			if err != nil {
				t.Fatalf("got error %v, want success", err)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("got ids %q, want %q", ids, tt.wantIDs)
			}
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
			}
		})
	}
}

func TestList_Emulator(t *testing.T) {
	em := emulator.New(emulator.Options{APIKey: testKey, TenantID: testTenant, PathPrefix: "/api-host"})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close)
	em.Seed("agent-1", "c1", "c2", "c3")
	f := newFixtureAt(t, srv.URL+"/api-host", nil)

	ids, err := f.list(t, "agent-1")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	slices.Sort(ids)
	if want := []string{"c1", "c2", "c3"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("got ids %q, want %q", ids, want)
	}
	_, err = f.list(t, "agent-unknown")
	if e := cpError(t, err); e.Type != ac.ErrAgentNotFound || e.Retryable {
		t.Errorf("got %v for an unknown agent, want a non-retryable %s", err, ac.ErrAgentNotFound)
	}

	// Without the install's path prefix every route answers 404: the same failure, which names
	// the URL to check.
	noPrefix := newFixtureAt(t, srv.URL, nil)
	_, err = noPrefix.list(t, "agent-1")
	if e := cpError(t, err); e.Type != ac.ErrAgentNotFound || !strings.Contains(e.Message, "LANGSMITH_CONTROL_PLANE_URL") {
		t.Errorf("got %v without the path prefix, want %s naming LANGSMITH_CONTROL_PLANE_URL", err, ac.ErrAgentNotFound)
	}
}

func TestList_StatusTable(t *testing.T) {
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		wantType      string
		wantStatus    int
		wantRetryable bool
		wantRequests  int64
		wantDelay     time.Duration
		wantInMessage string
	}{
		{name: "400", handler: status(400, `{"detail":"bad"}`), wantType: ac.ErrBadRequest, wantStatus: 400, wantRequests: 1, wantInMessage: "bad"},
		{name: "401", handler: status(401, `{"detail":"Invalid API key"}`), wantType: ac.ErrUnauthorized, wantStatus: 401, wantRequests: 1, wantInMessage: "LANGSMITH_API_KEY"},
		{name: "403", handler: status(403, `{"detail":"forbidden"}`), wantType: ac.ErrUnauthorized, wantStatus: 403, wantRequests: 1, wantInMessage: "LANGSMITH_TENANT_ID"},
		{name: "422", handler: status(422, `{"detail":[{"loc":["path","agent_id"],"msg":"too long","type":"t"}]}`), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: "path.agent_id: too long"},
		{name: "408", handler: status(408, ""), wantType: ac.ErrUnavailable, wantStatus: 408, wantRetryable: true, wantRequests: 1},
		{name: "429 with Retry-After", handler: status(429, "", "Retry-After", "9"), wantType: ac.ErrRateLimited, wantStatus: 429, wantRetryable: true, wantRequests: 1, wantDelay: 9 * time.Second},
		{name: "500", handler: status(500, ""), wantType: ac.ErrServerError, wantStatus: 500, wantRetryable: true, wantRequests: 1},
		{name: "503 retried in process", handler: status(503, ""), wantType: ac.ErrServerError, wantStatus: 503, wantRetryable: true, wantRequests: 3},
		{name: "502 with Retry-After", handler: status(502, "", "Retry-After", "4"), wantType: ac.ErrServerError, wantStatus: 502, wantRetryable: true, wantRequests: 1, wantDelay: 4 * time.Second},
		{name: "404 is a missing agent, not an empty one", handler: status(404, `{"detail":"Agent agent-1 not found."}`), wantType: ac.ErrAgentNotFound, wantStatus: 404, wantRequests: 1,
			wantInMessage: "404 Not Found to GET /v2/auth/agents/{agent_id}/connections"},
		{name: "404 names the URL prefix to check", handler: status(404, ""), wantType: ac.ErrAgentNotFound, wantStatus: 404, wantRequests: 1, wantInMessage: "LANGSMITH_CONTROL_PLANE_URL"},
		{name: "418", handler: status(418, "teapot"), wantType: ac.ErrUnexpectedStatus, wantStatus: 418, wantRequests: 1, wantInMessage: "teapot"},
		{name: "204", handler: status(204, ""), wantType: ac.ErrUnexpectedStatus, wantStatus: 204, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			_, err := f.list(t, "agent-1")
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
			if !strings.Contains(e.Message, tt.wantInMessage) {
				t.Errorf("got message %q, want it to contain %q", e.Message, tt.wantInMessage)
			}
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
			}
			if int64(e.Requests) != tt.wantRequests {
				t.Errorf("got error requests %d, want %d", e.Requests, tt.wantRequests)
			}
		})
	}
}

func TestList_UnreadableBodyIsNotRetried(t *testing.T) {
	tests := []struct {
		name, body, wantInMessage string
	}{
		{"malformed JSON", `{"data":[{"id":"c1"}`, "not the expected JSON"},
		{"not an object", `[{"id":"c1"}]`, "not the expected JSON"},
		{"HTML", `<html>ok</html>`, "not the expected JSON"},
		{"missing data", `{"items":[]}`, `no "data" list`},
		{"null data", `{"data":null}`, `no "data" list`},
		{"empty body", ``, "not the expected JSON"},
		{"entry without id", `{"data":[{"id":"c1"},{"agent_id":"a"}]}`, "without an id at data[1]"},
		{"null entry", `{"data":[null]}`, "without an id at data[0]"},
		{"id not a string", `{"data":[{"id":7}]}`, "not the expected JSON"},
		{"id with a slash", `{"data":[{"id":"c1"},{"id":"../x"}]}`, "data[1].id"},
		{"empty id", `{"data":[{"id":""}]}`, "data[0].id is empty"},
		{"oversized body", `{"data":[{"id":"c1"},{"id":"c2"},{"id":"c3"},{"id":"c4"},{"id":"c5"}]}`, "over the 64-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, status(200, tt.body))
			f.client.listBodyLimit = 64
			_, err := f.list(t, "agent-1")
			e := cpError(t, err)
			if e.Type != ac.ErrUnexpectedStatus || e.Retryable || e.Status != 200 {
				t.Errorf("got type %q retryable %t status %d, want %q not retryable with status 200", e.Type, e.Retryable, e.Status, ac.ErrUnexpectedStatus)
			}
			for _, want := range []string{"list response body", tt.wantInMessage} {
				if !strings.Contains(e.Message, want) {
					t.Errorf("got message %q, want it to contain %q", e.Message, want)
				}
			}
			if got := f.requests.Load(); got != 1 || e.Requests != 1 {
				t.Errorf("got %d requests at the server and %d counted, want 1 and 1", got, e.Requests)
			}
		})
	}
}

func TestParseConnectionList_TooManyConnections(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range ac.MaxTeardownConnections + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c%d"}`, i)
	}
	b.WriteString(`]}`)
	if _, err := parseConnectionList([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than a teardown takes") {
		t.Errorf("got error %v, want one about the teardown limit", err)
	}
}

func TestList_RefusedAgentIDSendsNothing(t *testing.T) {
	for _, agent := range []string{"", "a/b", "..", "a b", "a%2F", strings.Repeat("a", ac.MaxIDBytes+1)} {
		t.Run(fmt.Sprintf("%q", agent), func(t *testing.T) {
			f := newFixture(t, status(200, `{"data":[]}`))
			_, err := f.list(t, agent)
			e := cpError(t, err)
			if e.Type != ac.ErrInvalidRequest || e.Retryable {
				t.Errorf("got type %q retryable %t, want %q not retryable", e.Type, e.Retryable, ac.ErrInvalidRequest)
			}
			if got := f.requests.Load(); got != 0 {
				t.Errorf("got %d requests, want 0", got)
			}
		})
	}
}

func TestList_URLAndHeaders(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		status(200, `{"data":[]}`)(w, r)
	}))
	t.Cleanup(srv.Close)
	f := newFixtureAt(t, srv.URL+"/api-host/", nil)
	if _, err := f.list(t, "agént:1"); err != nil {
		t.Fatalf("list: %v", err)
	}
	if got == nil {
		t.Fatal("got no request, want one")
	}
	if got.Method != http.MethodGet {
		t.Errorf("got method %s, want GET", got.Method)
	}
	if want := "/api-host/v2/auth/agents/ag%C3%A9nt:1/connections"; got.URL.EscapedPath() != want {
		t.Errorf("got path %s, want %s", got.URL.EscapedPath(), want)
	}
	for h, want := range map[string]string{
		"X-Api-Key":     testKey,
		"X-Tenant-Id":   testTenant,
		"Authorization": "Bearer " + testBearer,
		"User-Agent":    "agent-connections-worker/test",
		"Accept":        "application/json",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("got header %s=%q, want %q", h, v, want)
		}
	}
}

func TestList_CredentialsNeverLogged(t *testing.T) {
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"detail":"bad key %s and %s"`, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
		}
	}
	for name, h := range map[string]http.HandlerFunc{
		"200 ok":          status(200, `{"data":[{"id":"c1"}]}`),
		"200 echo broken": echo(200),
		"404 echo":        echo(404),
		"422 echo":        echo(422),
		"503":             status(503, ""),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, h)
			_, err := f.list(t, "agent-1")
			text := f.logs.String()
			if err != nil {
				text += "\n" + err.Error()
			}
			if !strings.Contains(text, "agent_id agent-1") {
				t.Errorf("got logs %q, want the agent ID logged", text)
			}
			for _, secret := range []string{testKey, testBearer} {
				if strings.Contains(text, secret) {
					t.Error("got a credential in the logs or the error, want none")
				}
			}
		})
	}
}

// A list body the network cuts off mid-way is a transient failure: retried, never read as a list.
func TestList_BodyCutOffIsRetryable(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"data":[{"id":"c1"},`))
		// The handler returns with fewer bytes than announced: the server closes the connection.
	})
	_, err := f.client.List(context.Background(), "agent-1", f.logs)
	var e *Error
	if !errors.As(err, &e) || e.Type != ac.ErrUnavailable || !e.Retryable {
		t.Fatalf("got %v, want a retryable %s", err, ac.ErrUnavailable)
	}
	if !strings.Contains(e.Message, "cut off") {
		t.Errorf("got message %q, want it to say the body was cut off", e.Message)
	}
}
