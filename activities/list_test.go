package activities

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

func (f *fixture) list(t *testing.T, agentID string) (ListConnectionsResult, error) {
	t.Helper()
	val, err := f.env.ExecuteActivity(f.acts.ListConnections, ListConnectionsInput{AgentID: agentID})
	var res ListConnectionsResult
	if err == nil {
		if gerr := val.Get(&res); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return res, err
}

const fullEntry = `{"id":%q,"agent_id":"agent-1","oauth_token_id":"tok","provider_id":"github","provider_account_label":null,"scopes":["repo"],"expires_at":null,"created_by":"u","created_at":"2026-11-26T12:00:00Z"}`

func TestListConnections_Success(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		wantIDs      []string
		wantRequests int64
	}{
		{name: "sorted", handler: status(200, `{"data":[`+fmt.Sprintf(fullEntry, "c3")+`,`+fmt.Sprintf(fullEntry, "c1")+`,`+fmt.Sprintf(fullEntry, "c2")+`]}`), wantIDs: []string{"c1", "c2", "c3"}, wantRequests: 1},
		{name: "duplicates dropped", handler: status(200, `{"data":[{"id":"c2"},{"id":"c1"},{"id":"c2"},{"id":"c3"},{"id":"c1"}]}`), wantIDs: []string{"c1", "c2", "c3"}, wantRequests: 1},
		{name: "empty", handler: status(200, `{"data":[]}`), wantIDs: []string{}, wantRequests: 1},
		{name: "503 then 200 in process", handler: sequence(status(503, ""), status(200, `{"data":[{"id":"c1"}]}`)), wantIDs: []string{"c1"}, wantRequests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			res, err := f.list(t, "agent-1")
			if err != nil {
				t.Fatalf("got error %v, want success", err)
			}
			if !reflect.DeepEqual(res.ConnectionIDs, tt.wantIDs) {
				t.Errorf("got ids %q, want %q", res.ConnectionIDs, tt.wantIDs)
			}
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
			}
		})
	}
}

// The list is paged by byte budget over sorted IDs, so no page nears the payload limit however
// long the IDs; every ID comes back exactly once.
func TestListConnections_PagesByBytes(t *testing.T) {
	var body strings.Builder
	body.WriteString(`{"data":[`)
	var want []string
	for i := range 40 {
		id := fmt.Sprintf("c%03d-%s<&>", 39-i, strings.Repeat("x", 170)) // 18 JSON bytes for 3 characters
		want = append(want, id)
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"id":%q}`, id)
	}
	body.WriteString(`]}`)
	slices.Sort(want)
	f := newFixture(t, status(200, body.String()))
	var got []string
	after, pages := "", 0
	for {
		val, err := f.env.ExecuteActivity(f.acts.ListConnections, ListConnectionsInput{AgentID: "agent-1", After: after, MaxBytes: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var res ListConnectionsResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		pages++
		if b, _ := json.Marshal(res.ConnectionIDs); len(b) > 1000+len(res.ConnectionIDs)+1 {
			t.Errorf("got a %d-byte page, want at most 1000 bytes of IDs as JSON", len(b))
		}
		if res.Listed != 40 {
			t.Errorf("got listed %d, want 40", res.Listed)
		}
		got = append(got, res.ConnectionIDs...)
		if !res.More {
			break
		}
		after = res.ConnectionIDs[len(res.ConnectionIDs)-1]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %d ids over %d pages, want the 40 sorted once each", len(got), pages)
	}
	if pages < 8 {
		t.Errorf("got %d pages, want at least 8 for 40 IDs of 205 bytes in 1000-byte pages", pages)
	}
}

func TestListConnections_Emulator(t *testing.T) {
	em := emulator.New(emulator.Options{APIKey: testKey, TenantID: testTenant, PathPrefix: "/api-host"})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close)
	em.Seed("agent-1", "c1", "c2", "c3")
	f := newFixtureAt(t, srv.URL+"/api-host", nil, srv)

	res, err := f.list(t, "agent-1")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if want := []string{"c1", "c2", "c3"}; !reflect.DeepEqual(res.ConnectionIDs, want) {
		t.Errorf("got ids %q, want %q", res.ConnectionIDs, want)
	}
	_, err = f.list(t, "agent-unknown")
	if appErr := appError(t, err); appErr.Type() != ac.ErrAgentNotFound || !appErr.NonRetryable() {
		t.Errorf("got %v for an unknown agent, want a non-retryable %s", err, ac.ErrAgentNotFound)
	}

	// Without the install's path prefix every route answers 404: the same failure, which names
	// the URL to check.
	noPrefix := newFixtureAt(t, srv.URL, nil, srv)
	_, err = noPrefix.list(t, "agent-1")
	if appErr := appError(t, err); appErr.Type() != ac.ErrAgentNotFound || !strings.Contains(appErr.Message(), "LANGSMITH_CONTROL_PLANE_URL") {
		t.Errorf("got %v without the path prefix, want %s naming LANGSMITH_CONTROL_PLANE_URL", err, ac.ErrAgentNotFound)
	}
}

func TestListConnections_StatusTable(t *testing.T) {
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		wantType      string
		wantRetryable bool
		wantRequests  int64
		wantDelay     time.Duration
		wantInMessage string
	}{
		{name: "400", handler: status(400, `{"detail":"bad"}`), wantType: ac.ErrBadRequest, wantRequests: 1, wantInMessage: "bad"},
		{name: "401", handler: status(401, `{"detail":"Invalid API key"}`), wantType: ac.ErrUnauthorized, wantRequests: 1, wantInMessage: "LANGSMITH_API_KEY"},
		{name: "403", handler: status(403, `{"detail":"forbidden"}`), wantType: ac.ErrUnauthorized, wantRequests: 1, wantInMessage: "LANGSMITH_TENANT_ID"},
		{name: "422", handler: status(422, `{"detail":[{"loc":["path","agent_id"],"msg":"too long","type":"t"}]}`), wantType: ac.ErrValidation, wantRequests: 1, wantInMessage: "path.agent_id: too long"},
		{name: "408", handler: status(408, ""), wantType: ac.ErrUnavailable, wantRetryable: true, wantRequests: 1},
		{name: "429 with Retry-After", handler: status(429, "", "Retry-After", "9"), wantType: ac.ErrRateLimited, wantRetryable: true, wantRequests: 1, wantDelay: 9 * time.Second},
		{name: "500", handler: status(500, ""), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 1},
		{name: "503 retried in process", handler: status(503, ""), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 3},
		{name: "502 with Retry-After", handler: status(502, "", "Retry-After", "4"), wantType: ac.ErrServerError, wantRetryable: true, wantRequests: 1, wantDelay: 4 * time.Second},
		{name: "404 is a missing agent, not an empty one", handler: status(404, `{"detail":"Agent agent-1 not found."}`), wantType: ac.ErrAgentNotFound, wantRequests: 1,
			wantInMessage: "404 Not Found to GET /v2/auth/agents/{agent_id}/connections"},
		{name: "404 names the URL prefix to check", handler: status(404, ""), wantType: ac.ErrAgentNotFound, wantRequests: 1, wantInMessage: "LANGSMITH_CONTROL_PLANE_URL"},
		{name: "418", handler: status(418, "teapot"), wantType: ac.ErrUnexpectedStatus, wantRequests: 1, wantInMessage: "teapot"},
		{name: "204", handler: status(204, ""), wantType: ac.ErrUnexpectedStatus, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			_, err := f.list(t, "agent-1")
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
			if !strings.Contains(appErr.Message(), tt.wantInMessage) {
				t.Errorf("got message %q, want it to contain %q", appErr.Message(), tt.wantInMessage)
			}
			if got := f.requests.Load(); got != tt.wantRequests {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
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

func TestListConnections_UnreadableBodyIsNotRetried(t *testing.T) {
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
			f.acts.listBodyLimit = 64
			_, err := f.list(t, "agent-1")
			appErr := appError(t, err)
			if appErr.Type() != ac.ErrUnexpectedStatus || !appErr.NonRetryable() {
				t.Errorf("got type %q non-retryable %t, want %q non-retryable", appErr.Type(), appErr.NonRetryable(), ac.ErrUnexpectedStatus)
			}
			for _, want := range []string{"list response body", tt.wantInMessage} {
				if !strings.Contains(appErr.Message(), want) {
					t.Errorf("got message %q, want it to contain %q", appErr.Message(), want)
				}
			}
			if got := f.requests.Load(); got != 1 {
				t.Errorf("got %d requests, want 1", got)
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

func TestListConnections_RefusedAgentIDSendsNothing(t *testing.T) {
	for _, agent := range []string{"", "a/b", "..", "a b", "a%2F", strings.Repeat("a", ac.MaxIDBytes+1)} {
		t.Run(fmt.Sprintf("%q", agent), func(t *testing.T) {
			f := newFixture(t, status(200, `{"data":[]}`))
			_, err := f.list(t, agent)
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

func TestListConnections_URLAndHeaders(t *testing.T) {
	var got *http.Request
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		got = r.Clone(r.Context())
		status(200, `{"data":[]}`)(w, r)
	}))
	t.Cleanup(srv.Close)
	f := newFixtureAt(t, srv.URL+"/api-host/", &n, srv)
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

func TestListConnections_CredentialsNeverLogged(t *testing.T) {
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
					t.Errorf("got a credential in logs or error:\n%s", text)
				}
			}
		})
	}
}
