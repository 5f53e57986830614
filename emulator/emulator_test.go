package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentops/agentconnections/emulator"
)

const (
	testKey    = "key-secret-value"
	testBearer = "bearer-secret-value"
	testTenant = "tenant-1"
)

var apiKey = map[string]string{"X-Api-Key": testKey}

// newServer starts an emulator behind an httptest.Server. The emulator is closed first at cleanup,
// so hanging requests cannot block the httptest.Server's Close.
func newServer(t *testing.T, opts emulator.Options) (*emulator.Server, *httptest.Server) {
	t.Helper()
	em := emulator.New(opts)
	ts := httptest.NewServer(em)
	t.Cleanup(ts.Close)
	t.Cleanup(em.Close)
	return em, ts
}

type result struct {
	status int
	header http.Header
	body   string
}

// noRedirects shows redirects instead of following them: following one could reach another route.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func send(ctx context.Context, method, url, body string, headers map[string]string) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return result{}, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func call(t *testing.T, method, url, body string, headers map[string]string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := send(ctx, method, url, body, headers)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func connURL(ts *httptest.Server, agentID, connID string) string {
	return ts.URL + "/v2/auth/agents/" + agentID + "/connections/" + connID
}

func listURL(ts *httptest.Server, agentID string) string {
	return ts.URL + "/v2/auth/agents/" + agentID + "/connections"
}

func wantStatus(t *testing.T, r result, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status: got %d, want %d (body %q)", r.status, want, r.body)
	}
}

func wantJSON(t *testing.T, r result, want string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type: got %q, want application/json", ct)
	}
	var got, exp any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("body: got %s, want %s", r.body, want)
	}
}

func wantConnections(t *testing.T, em *emulator.Server, agentID string, want ...string) {
	t.Helper()
	got := em.Connections(agentID)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("connections of %s: got %q, want %q", agentID, got, want)
	}
}

// eventually polls cond, for state the server records after the client has given up.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemove_204Then204AgainThen404ForNeverHad(t *testing.T) {
	em, ts := newServer(t, emulator.Options{APIKey: testKey, Seed: map[string][]string{"a1": {"c1", "c2"}}})

	r := call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
	wantStatus(t, r, http.StatusNoContent)
	if r.body != "" {
		t.Errorf("204 body: got %q, want empty", r.body)
	}
	wantConnections(t, em, "a1", "c2")

	r = call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
	wantStatus(t, r, http.StatusNoContent)

	tests := []struct{ name, agent, conn string }{
		{"never had", "a1", "c9"},
		{"unknown agent", "nobody", "c5"},
		{"other agent's connection", "a2", "c2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, http.MethodDelete, connURL(ts, tt.agent, tt.conn), "", apiKey)
			wantStatus(t, r, http.StatusNotFound)
			wantJSON(t, r, `{"detail":"Connection `+tt.conn+` not found."}`)
		})
	}
	wantConnections(t, em, "a1", "c2")
	if got := em.DeleteCount("c1"); got != 2 {
		t.Errorf("DeleteCount(c1): got %d, want 2", got)
	}
	st := em.Stats()
	if st.Removed != 1 || st.Delete404 != 3 {
		t.Errorf("stats removed, delete_404: got %d, %d, want 1, 3", st.Removed, st.Delete404)
	}
}

func TestList_CreationOrderAndSchema(t *testing.T) {
	em, ts := newServer(t, emulator.Options{})
	em.Seed("a1", "zz", "aa")
	em.Seed("a1", "mm", "zz") // zz exists already: skipped, keeps its place

	r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey)
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	var ids []string
	for _, c := range body.Data {
		ids = append(ids, fmt.Sprint(c["id"]))
	}
	if want := []string{"zz", "aa", "mm"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ids: got %q, want %q", ids, want)
	}
	c := body.Data[0]
	for _, k := range []string{"id", "agent_id", "oauth_token_id", "provider_id", "provider_account_label", "scopes", "expires_at", "created_by", "created_at"} {
		if _, ok := c[k]; !ok {
			t.Errorf("field %q: got absent, want present", k)
		}
	}
	if c["provider_account_label"] != nil || c["expires_at"] != nil {
		t.Errorf("nullable fields: got %v, %v, want null, null", c["provider_account_label"], c["expires_at"])
	}
	if _, ok := c["scopes"].([]any); !ok {
		t.Errorf("scopes: got %T, want array", c["scopes"])
	}
	if c["agent_id"] != "a1" {
		t.Errorf("agent_id: got %v, want a1", c["agent_id"])
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(c["created_at"])); err != nil {
		t.Errorf("created_at %v: got %v, want RFC3339", c["created_at"], err)
	}

	// An agent the control plane never had is a 404, not an empty list.
	r = call(t, http.MethodGet, listURL(ts, "nobody"), "", apiKey)
	wantStatus(t, r, http.StatusNotFound)
	wantJSON(t, r, `{"detail":"Agent nobody not found."}`)

	// One that had connections and lost them all lists none.
	em.Seed("emptied", "e1")
	wantStatus(t, call(t, http.MethodDelete, listURL(ts, "emptied")+"/e1", "", apiKey), http.StatusNoContent)
	r = call(t, http.MethodGet, listURL(ts, "emptied"), "", apiKey)
	wantStatus(t, r, http.StatusOK)
	wantJSON(t, r, `{"data":[]}`)
}

func TestCreate(t *testing.T) {
	em, ts := newServer(t, emulator.Options{})

	r := call(t, http.MethodPost, listURL(ts, "a1"), `{"oauth_token_id":"tok-1"}`, apiKey)
	wantStatus(t, r, http.StatusCreated)
	var c map[string]any
	if err := json.Unmarshal([]byte(r.body), &c); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	id, _ := c["id"].(string)
	if !strings.HasPrefix(id, "conn-") || len(id) <= len("conn-") {
		t.Errorf("generated id: got %q, want conn-<hex>", id)
	}
	if c["oauth_token_id"] != "tok-1" || c["agent_id"] != "a1" {
		t.Errorf("created: got %s, want oauth_token_id tok-1 and agent_id a1", r.body)
	}

	r = call(t, http.MethodPost, listURL(ts, "a1"), `{"oauth_token_id":"tok-2","id":"mine"}`, apiKey)
	wantStatus(t, r, http.StatusCreated)
	wantConnections(t, em, "a1", id, "mine")

	r = call(t, http.MethodPost, listURL(ts, "a1"), `{"oauth_token_id":"tok-3","id":"mine"}`, apiKey)
	wantStatus(t, r, http.StatusConflict)
	wantJSON(t, r, `{"detail":"Connection mine already exists."}`)

	long := strings.Repeat("x", emulator.MaxIDBytes+1)
	bad := []struct{ name, body, want string }{
		{"missing field", `{}`, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"Field required","type":"missing"}]}`},
		{"only id", `{"id":"x"}`, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"Field required","type":"missing"}]}`},
		{"empty body", ``, `{"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}`},
		{"not json", `oauth_token_id=1`, `{"detail":[{"loc":["body",0],"msg":"JSON decode error","type":"json_invalid"}]}`},
		{"not an object", `["tok"]`, `{"detail":[{"loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","type":"model_attributes_type"}]}`},
		{"wrong type", `{"oauth_token_id":7}`, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"Input should be a valid string","type":"string_type"}]}`},
		{"id too long", `{"oauth_token_id":"t","id":"` + long + `"}`, `{"detail":[{"loc":["body","id"],"msg":"String should have at most 256 characters","type":"string_too_long"}]}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, http.MethodPost, listURL(ts, "a2"), tt.body, apiKey)
			wantStatus(t, r, http.StatusUnprocessableEntity)
			wantJSON(t, r, tt.want)
		})
	}
	wantConnections(t, em, "a2")
}

func TestAuth(t *testing.T) {
	_, ts := newServer(t, emulator.Options{APIKey: testKey, BearerToken: testBearer, TenantID: testTenant,
		Seed: map[string][]string{"a1": {}}})
	tests := []struct {
		name    string
		headers map[string]string
		status  int
		detail  string
	}{
		{"no credentials", nil, 401, "Not authenticated"},
		{"tenant only", map[string]string{"X-Tenant-Id": testTenant}, 401, "Not authenticated"},
		{"basic auth is not a credential", map[string]string{"Authorization": "Basic " + testKey, "X-Tenant-Id": testTenant}, 401, "Not authenticated"},
		{"wrong key", map[string]string{"X-Api-Key": "wrong-secret", "X-Tenant-Id": testTenant}, 401, "Invalid API key"},
		{"wrong bearer", map[string]string{"Authorization": "Bearer wrong-secret", "X-Tenant-Id": testTenant}, 401, "Invalid API key"},
		{"right key wrong bearer", map[string]string{"X-Api-Key": testKey, "Authorization": "Bearer wrong-secret", "X-Tenant-Id": testTenant}, 401, "Invalid API key"},
		{"key without tenant", map[string]string{"X-Api-Key": testKey}, 403, ""},
		{"key with other tenant", map[string]string{"X-Api-Key": testKey, "X-Tenant-Id": "tenant-2"}, 403, ""},
		{"key and tenant", map[string]string{"X-Api-Key": testKey, "X-Tenant-Id": testTenant}, 200, ""},
		{"bearer and tenant", map[string]string{"Authorization": "Bearer " + testBearer, "X-Tenant-Id": testTenant}, 200, ""},
		{"lower-case bearer scheme", map[string]string{"Authorization": "bearer " + testBearer, "X-Tenant-Id": testTenant}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodDelete} {
				url := listURL(ts, "a1")
				if method == http.MethodDelete {
					url = connURL(ts, "a1", "c1")
				}
				r := call(t, method, url, "", tt.headers)
				if tt.status == 200 {
					if r.status == 401 || r.status == 403 {
						t.Fatalf("%s: got %d %s, want accepted", method, r.status, r.body)
					}
					continue
				}
				wantStatus(t, r, tt.status)
				var body struct {
					Detail string `json:"detail"`
				}
				if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Detail == "" {
					t.Fatalf("%s body: got %q, want {\"detail\": string}", method, r.body)
				}
				if tt.detail != "" && body.Detail != tt.detail {
					t.Errorf("%s detail: got %q, want %q", method, body.Detail, tt.detail)
				}
				for _, secret := range []string{testKey, testBearer, "wrong-secret", testTenant} {
					if strings.Contains(r.body, secret) || strings.Contains(fmt.Sprint(r.header), secret) {
						t.Errorf("%s response echoes a credential: got %q", method, r.body)
					}
				}
			}
		})
	}

	t.Run("unconfigured emulator accepts any credential but needs one", func(t *testing.T) {
		openEm, open := newServer(t, emulator.Options{})
		openEm.Seed("a1")
		wantStatus(t, call(t, http.MethodGet, listURL(open, "a1"), "", nil), 401)
		wantStatus(t, call(t, http.MethodGet, listURL(open, "a1"), "", map[string]string{"X-Api-Key": "anything"}), 200)
		wantStatus(t, call(t, http.MethodGet, listURL(open, "a1"), "", map[string]string{"Authorization": "Bearer anything"}), 200)
	})
	t.Run("key-only emulator refuses a bearer token alone", func(t *testing.T) {
		_, keyOnly := newServer(t, emulator.Options{APIKey: testKey})
		wantStatus(t, call(t, http.MethodGet, listURL(keyOnly, "a1"), "", map[string]string{"Authorization": "Bearer " + testKey}), 401)
	})
}

func TestValidation422(t *testing.T) {
	long := strings.Repeat("x", emulator.MaxIDBytes+1)
	maxLen := strings.Repeat("y", emulator.MaxIDBytes)
	em, ts := newServer(t, emulator.Options{
		Seed:                 map[string][]string{"a1": {"bad", "worse", maxLen}},
		InvalidConnectionIDs: []string{"bad"},
	})
	em.MarkInvalid("worse")

	tests := []struct {
		name, method, url string
		status            int
		want              string
	}{
		{"long connection id", http.MethodDelete, connURL(ts, "a1", long), 422,
			`{"detail":[{"loc":["path","connection_id"],"msg":"String should have at most 256 characters","type":"string_too_long"}]}`},
		{"long agent id on list", http.MethodGet, listURL(ts, long), 422,
			`{"detail":[{"loc":["path","agent_id"],"msg":"String should have at most 256 characters","type":"string_too_long"}]}`},
		{"both long", http.MethodDelete, connURL(ts, long, long), 422,
			`{"detail":[{"loc":["path","agent_id"],"msg":"String should have at most 256 characters","type":"string_too_long"},{"loc":["path","connection_id"],"msg":"String should have at most 256 characters","type":"string_too_long"}]}`},
		{"invalid from options", http.MethodDelete, connURL(ts, "a1", "bad"), 422,
			`{"detail":[{"loc":["path","connection_id"],"msg":"Value error, invalid connection id","type":"value_error"}]}`},
		{"invalid from MarkInvalid", http.MethodDelete, connURL(ts, "a1", "worse"), 422,
			`{"detail":[{"loc":["path","connection_id"],"msg":"Value error, invalid connection id","type":"value_error"}]}`},
		{"256 bytes is fine", http.MethodDelete, connURL(ts, "a1", maxLen), 204, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, tt.method, tt.url, "", apiKey)
			wantStatus(t, r, tt.status)
			if tt.want != "" {
				wantJSON(t, r, tt.want)
			}
		})
	}
	wantConnections(t, em, "a1", "bad", "worse")
}

func TestEscapedSlashAndUncleanPathsDoNotReachAnotherRoute(t *testing.T) {
	em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": {"c1", "c2"}}})
	tests := []struct {
		name, method, path string
		status             int
		want               string
	}{
		{"escaped slash in connection id", http.MethodDelete, "/v2/auth/agents/a1/connections/c1%2Fx", 404, `{"detail":"Connection c1/x not found."}`},
		{"escaped dot-dot in connection id", http.MethodDelete, "/v2/auth/agents/a1/connections/x%2F..%2Fc1", 404, `{"detail":"Connection x/../c1 not found."}`},
		{"escaped slash in agent id", http.MethodDelete, "/v2/auth/agents/a1%2Fconnections%2Fc1/connections/c2", 404, `{"detail":"Connection c2 not found."}`},
		{"escaped slash before connections", http.MethodGet, "/v2/auth/agents/a1/connections%2Fc1", 404, `{"detail":"Not Found"}`},
		{"dot-dot is not cleaned into the list route", http.MethodDelete, "/v2/auth/agents/a1/connections/c1/..", 404, `{"detail":"Not Found"}`},
		{"double slash is not redirected", http.MethodDelete, "/v2/auth/agents/a1//connections/c1", 404, `{"detail":"Not Found"}`},
		{"trailing slash is not the delete route", http.MethodDelete, "/v2/auth/agents/a1/connections/", 404, `{"detail":"Not Found"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, tt.method, ts.URL+tt.path, "", apiKey)
			wantStatus(t, r, tt.status)
			wantJSON(t, r, tt.want)
		})
	}
	wantConnections(t, em, "a1", "c1", "c2")
}

func TestUnknownRouteAndMethod(t *testing.T) {
	_, ts := newServer(t, emulator.Options{})
	r := call(t, http.MethodGet, ts.URL+"/v2/deployments", "", apiKey)
	wantStatus(t, r, http.StatusNotFound)
	wantJSON(t, r, `{"detail":"Not Found"}`)

	r = call(t, http.MethodPut, listURL(ts, "a1"), "", apiKey)
	wantStatus(t, r, http.StatusMethodNotAllowed)
	wantJSON(t, r, `{"detail":"Method Not Allowed"}`)
	if got := r.header.Get("Allow"); got != "GET, POST" {
		t.Errorf("Allow: got %q, want %q", got, "GET, POST")
	}
	r = call(t, http.MethodGet, connURL(ts, "a1", "c1"), "", apiKey)
	wantStatus(t, r, http.StatusMethodNotAllowed)
}

func TestPathPrefix(t *testing.T) {
	em, ts := newServer(t, emulator.Options{PathPrefix: "api-host/", Seed: map[string][]string{"a1": {"c1", "c2"}}})
	tests := []struct {
		name, path string
		status     int
	}{
		{"without prefix", "/v2/auth/agents/a1/connections/c1", 404},
		{"prefix lookalike", "/api-hostx/v2/auth/agents/a1/connections/c1", 404},
		{"with prefix", "/api-host/v2/auth/agents/a1/connections/c1", 204},
		{"escaped slash under prefix", "/api-host/v2/auth/agents/a1/connections/c2%2Fx", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, call(t, http.MethodDelete, ts.URL+tt.path, "", apiKey), tt.status)
		})
	}
	wantConnections(t, em, "a1", "c2")
	wantStatus(t, call(t, http.MethodGet, ts.URL+"/_emulator/stats", "", nil), 200)
}

func TestErrorRate(t *testing.T) {
	t.Run("rate 1 answers every request and removes nothing", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{ErrorRates: map[int]float64{503: 1}, Seed: map[string][]string{"a1": {"c1"}}})
		for range 5 {
			r := call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
			wantStatus(t, r, 503)
			wantJSON(t, r, `{"detail":"Service Unavailable"}`)
		}
		wantConnections(t, em, "a1", "c1")
		if st := em.Stats(); st.Injected != 5 || st.Removed != 0 {
			t.Errorf("injected, removed: got %d, %d, want 5, 0", st.Injected, st.Removed)
		}
		em.SetErrorRate(503, 0)
		wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 204)
	})
	t.Run("rate 0 answers none", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": {"c1"}}})
		em.SetErrorRate(500, 0)
		for range 5 {
			wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 200)
		}
	})
	t.Run("429 by rate carries Retry-After", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{})
		em.SetErrorRate(429, 1)
		r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey)
		wantStatus(t, r, 429)
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After: got %q, want 1", got)
		}
	})
	t.Run("rate one half answers some", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{RandSeed: 42})
		em.SetErrorRate(502, 0.5)
		failed := 0
		for range 100 {
			if call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey).status == 502 {
				failed++
			}
		}
		if failed < 20 || failed > 80 {
			t.Errorf("502 answers of 100 at rate 0.5: got %d, want 20-80", failed)
		}
	})
}

func TestInjectNext(t *testing.T) {
	em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": {"c1", "c2", "c3"}}})
	em.InjectNext(emulator.Fault{Status: 503, Method: "delete", ConnectionID: "c1"})
	em.InjectNext(emulator.Fault{Status: 500, Count: 2, Route: emulator.RouteList})

	// A DELETE of another connection and a POST do not consume either fault.
	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c2"), "", apiKey), 204)
	wantStatus(t, call(t, http.MethodPost, listURL(ts, "a1"), `{"oauth_token_id":"t"}`, apiKey), 201)

	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 503)
	if !em.HasConnection("a1", "c1") {
		t.Fatalf("c1 after an injected 503: got removed, want kept")
	}
	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 204)
	if got := em.DeleteCount("c1"); got != 2 {
		t.Errorf("DeleteCount(c1): got %d, want 2", got)
	}

	for i, want := range []int{500, 500, 200} {
		if r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey); r.status != want {
			t.Errorf("list %d: got %d, want %d", i+1, r.status, want)
		}
	}
	if p := em.Faults().Pending; len(p) != 0 {
		t.Errorf("pending faults: got %v, want none", p)
	}

	t.Run("agent filter", func(t *testing.T) {
		em.InjectNext(emulator.Fault{Status: 502, AgentID: "a9"})
		wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 200)
		wantStatus(t, call(t, http.MethodGet, listURL(ts, "a9"), "", apiKey), 502)
	})
	t.Run("delay-only fault serves the request after the delay", func(t *testing.T) {
		em.InjectNext(emulator.Fault{Delay: 50 * time.Millisecond, ConnectionID: "c3"})
		start := time.Now()
		wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c3"), "", apiKey), 204)
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("elapsed: got %s, want >= 50ms", d)
		}
	})
	t.Run("invalid fault panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Errorf("InjectNext(status 42): got no panic, want one")
			}
		}()
		em.InjectNext(emulator.Fault{Status: 42})
	})
}

func TestFaultBodies(t *testing.T) {
	em, ts := newServer(t, emulator.Options{})
	tests := []struct {
		name        string
		fault       emulator.Fault
		contentType string
		check       func(body string) bool
	}{
		{"json default", emulator.Fault{Status: 502}, "application/json",
			func(b string) bool { return b == `{"detail":"Bad Gateway"}` }},
		{"detail override", emulator.Fault{Status: 500, Detail: "boom"}, "application/json",
			func(b string) bool { return b == `{"detail":"boom"}` }},
		{"truncated json", emulator.Fault{Status: 500, Body: emulator.BodyTruncated}, "application/json",
			func(b string) bool {
				return b != "" && !json.Valid([]byte(b)) && strings.HasPrefix(`{"detail":"Internal Server Error"}`, b)
			}},
		{"text", emulator.Fault{Status: 503, Body: emulator.BodyText}, "text/plain; charset=utf-8",
			func(b string) bool { return b == "Service Unavailable\n" }},
		{"html", emulator.Fault{Status: 504, Body: emulator.BodyHTML}, "text/html",
			func(b string) bool { return strings.Contains(b, "<title>504 Gateway Timeout</title>") }},
		{"empty", emulator.Fault{Status: 500, Body: emulator.BodyEmpty}, "",
			func(b string) bool { return b == "" }},
		{"204 has no body", emulator.Fault{Status: 204}, "",
			func(b string) bool { return b == "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			em.InjectNext(tt.fault)
			r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey)
			wantStatus(t, r, tt.fault.Status)
			if got := r.header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("content-type: got %q, want %q", got, tt.contentType)
			}
			if !tt.check(r.body) {
				t.Errorf("body: got %q, want the %s shape", r.body, tt.name)
			}
		})
	}
}

func TestRetryAfter429(t *testing.T) {
	em, ts := newServer(t, emulator.Options{})

	em.InjectNext(emulator.Fault{Status: 429, RetryAfter: "2"})
	r := call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
	wantStatus(t, r, 429)
	if got := r.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After seconds: got %q, want 2", got)
	}

	em.InjectNext(emulator.Fault{Status: 429, RetryAfter: "30", RetryAfterDate: true})
	before := time.Now()
	r = call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
	wantStatus(t, r, 429)
	when, err := http.ParseTime(r.header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q: got %v, want an HTTP date", r.header.Get("Retry-After"), err)
	}
	if when.Before(before.Add(25*time.Second)) || when.After(before.Add(time.Hour)) {
		t.Errorf("Retry-After date: got %s, want about 30s after %s", when, before.UTC())
	}
	if got := em.Stats().Status429; got != 2 {
		t.Errorf("status_429: got %d, want 2", got)
	}
}

func TestLatency(t *testing.T) {
	em, ts := newServer(t, emulator.Options{Latency: time.Hour})
	em.Seed("a1")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := send(ctx, http.MethodGet, listURL(ts, "a1"), "", apiKey)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request under an hour of latency with a 50ms deadline: got %v, want %v", err, context.DeadlineExceeded)
	}
	eventually(t, "the abandoned request to be recorded", func() bool {
		return em.Stats().ByMethodStatus["GET "+strconv.Itoa(emulator.StatusNoAnswer)] == 1
	})

	em.SetLatency(50 * time.Millisecond)
	start := time.Now()
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 200)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("elapsed with 50ms latency: got %s, want >= 50ms", d)
	}
}

func TestHang(t *testing.T) {
	t.Run("until the client gives up", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": {"c1"}}})
		em.InjectNext(emulator.Fault{Hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := send(ctx, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hanging request: got %v, want %v", err, context.DeadlineExceeded)
		}
		if !em.HasConnection("a1", "c1") {
			t.Errorf("c1 after a hang: got removed, want kept")
		}
		wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 204)
	})
	t.Run("until the server is closed", func(t *testing.T) {
		em, ts := newServer(t, emulator.Options{})
		em.InjectNext(emulator.Fault{Hang: true})
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := send(ctx, http.MethodGet, listURL(ts, "a1"), "", apiKey)
			errc <- err
		}()
		eventually(t, "the hang fault to be taken", func() bool { return len(em.Faults().Pending) == 0 })
		em.Close()
		err := <-errc
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("hanging request after Close: got %v, want a dropped connection", err)
		}
	})
}

func TestRateLimitMode(t *testing.T) {
	em, ts := newServer(t, emulator.Options{RateLimitPerMinute: 3})
	em.Seed("a1")
	for i := range 3 {
		if r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey); r.status != 200 {
			t.Fatalf("request %d: got %d, want 200", i+1, r.status)
		}
	}
	r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey)
	wantStatus(t, r, 429)
	wantJSON(t, r, `{"detail":"Too Many Requests"}`)
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
		t.Errorf("Retry-After: got %q, want 1-60 seconds", r.header.Get("Retry-After"))
	}
	// Another key has its own bucket.
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", map[string]string{"X-Api-Key": "other"}), 200)
	em.SetRateLimit(0)
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 200)
	if got := em.Stats().Status429; got != 1 {
		t.Errorf("status_429: got %d, want 1", got)
	}
}

// A bucket smaller than a minute's worth answers 429 once it is spent, however high the rate.
func TestRateLimitBurst(t *testing.T) {
	em, ts := newServer(t, emulator.Options{RateLimitPerMinute: 60, RateLimitBurst: 2})
	em.Seed("a1")
	for i := range 2 {
		if r := call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey); r.status != 200 {
			t.Fatalf("request %d: got %d, want 200", i+1, r.status)
		}
	}
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 429)
	em.SetRateLimitBurst(3) // refills: three more
	for range 3 {
		wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 200)
	}
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", apiKey), 429)
	if err := (emulator.Options{RateLimitBurst: -1}).Validate(); err == nil {
		t.Error("a negative burst validated")
	}
}

func TestControlAPI(t *testing.T) {
	logs := &lockedBuffer{}
	em, ts := newServer(t, emulator.Options{APIKey: testKey, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctl := func(method, path, body string) result {
		t.Helper()
		return call(t, method, ts.URL+"/_emulator/"+path, body, nil)
	}

	r := ctl(http.MethodPost, "seed", `{"agent_id":"a1","connection_ids":["c1","c2"],"invalid_connection_ids":["bad"]}`)
	wantStatus(t, r, 200)
	wantJSON(t, r, `{"agent_id":"a1","connection_ids":["c1","c2"]}`)
	wantJSON(t, ctl(http.MethodGet, "connections?agent_id=a1", ""), `{"agent_id":"a1","connection_ids":["c1","c2"]}`)
	em.Seed("a1", "bad")
	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "bad"), "", apiKey), 422)

	wantStatus(t, ctl(http.MethodPost, "faults", `{"status":503,"count":1,"method":"DELETE","connection_id":"c1","delay":"1ms"}`), 204)
	wantStatus(t, ctl(http.MethodPost, "error-rate", `{"status":500,"rate":0.25}`), 204)
	wantStatus(t, ctl(http.MethodPost, "latency", `{"latency":"2ms"}`), 204)
	wantStatus(t, ctl(http.MethodPost, "rate-limit", `{"per_minute":1000}`), 204)
	wantJSON(t, ctl(http.MethodGet, "faults", ""), `{"latency":"2ms","rate_limit_per_minute":1000,
		"error_rates":[{"status":500,"rate":0.25}],
		"pending":[{"status":503,"count":1,"method":"DELETE","connection_id":"c1","delay":"1ms"}]}`)
	wantStatus(t, ctl(http.MethodPost, "error-rate", `{"status":500,"rate":0}`), 204)

	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 503)
	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "c1"), "", apiKey), 204)
	wantStatus(t, call(t, http.MethodDelete, connURL(ts, "a1", "nope"), "", apiKey), 404)
	wantStatus(t, call(t, http.MethodGet, listURL(ts, "a1"), "", map[string]string{"X-Api-Key": "wrong-secret"}), 401)

	r = ctl(http.MethodGet, "stats", "")
	wantStatus(t, r, 200)
	wantJSON(t, r, `{"requests":5,"by_method_status":{"DELETE 422":1,"DELETE 503":1,"DELETE 204":1,"DELETE 404":1,"GET 401":1},
		"deletes_by_connection":{"bad":1,"c1":2,"nope":1},"removed":1,"delete_404":1,"status_429":0,"injected":1}`)

	r = ctl(http.MethodGet, "log", "")
	wantStatus(t, r, 200)
	var log struct {
		Data []struct {
			Time     time.Time `json:"time"`
			Method   string    `json:"method"`
			Path     string    `json:"path"`
			Status   int       `json:"status"`
			Duration string    `json:"duration"`
			Injected bool      `json:"injected"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.body), &log); err != nil {
		t.Fatalf("decode log %q: %v", r.body, err)
	}
	if len(log.Data) != 5 {
		t.Fatalf("log entries: got %d, want 5", len(log.Data))
	}
	if e := log.Data[1]; e.Method != "DELETE" || e.Path != "/v2/auth/agents/a1/connections/c1" || e.Status != 503 || !e.Injected || e.Time.IsZero() || e.Duration == "" {
		t.Errorf("log entry 2: got %+v, want the injected DELETE of c1", e)
	}

	// Reset clears the faults only; with flags it also clears stats and connections.
	wantStatus(t, ctl(http.MethodPost, "reset", ""), 204)
	wantJSON(t, ctl(http.MethodGet, "faults", ""), `{"latency":"0s","rate_limit_per_minute":0,"error_rates":[],"pending":[]}`)
	if got := em.Stats().Requests; got != 5 {
		t.Errorf("requests after reset: got %d, want 5", got)
	}
	wantStatus(t, ctl(http.MethodPost, "reset", `{"stats":true,"connections":true}`), 204)
	wantJSON(t, ctl(http.MethodGet, "stats", ""), `{"requests":0,"by_method_status":{},"deletes_by_connection":{},"removed":0,"delete_404":0,"status_429":0,"injected":0}`)
	wantJSON(t, ctl(http.MethodGet, "log", ""), `{"data":[]}`)
	wantConnections(t, em, "a1")

	bad := []struct{ name, method, path, body string }{
		{"unknown field", http.MethodPost, "faults", `{"staus":503}`},
		{"bad fault status", http.MethodPost, "faults", `{"status":42}`},
		{"bad route", http.MethodPost, "faults", `{"status":503,"route":"nowhere"}`},
		{"bad delay", http.MethodPost, "faults", `{"status":503,"delay":"soon"}`},
		{"rate out of range", http.MethodPost, "error-rate", `{"status":503,"rate":2}`},
		{"rate missing", http.MethodPost, "error-rate", `{"status":503}`},
		{"negative latency", http.MethodPost, "latency", `{"latency":"-1s"}`},
		{"seed without agent", http.MethodPost, "seed", `{"connection_ids":["c1"]}`},
		{"not json", http.MethodPost, "reset", `stats`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := ctl(tt.method, tt.path, tt.body)
			wantStatus(t, r, 400)
		})
	}
	wantStatus(t, ctl(http.MethodGet, "nowhere", ""), 404)
	wantStatus(t, ctl(http.MethodGet, "healthz", ""), 200)

	eventually(t, "request lines in the log", func() bool { return strings.Count(logs.String(), "msg=request") >= 5 })
	out := logs.String()
	if !strings.Contains(out, "method=DELETE path=/v2/auth/agents/a1/connections/c1 status=503") {
		t.Errorf("log output: got %q, want a line with method, path and status", out)
	}
	for _, secret := range []string{testKey, "wrong-secret"} {
		if strings.Contains(out, secret) || strings.Contains(r.body, secret) {
			t.Errorf("logs contain a credential: got %q", out)
		}
	}
}

func TestFaultJSONRoundTrip(t *testing.T) {
	in := `{"status":429,"count":2,"method":"DELETE","route":"remove","agent_id":"a1","connection_id":"c1","retry_after":5,"retry_after_date":true,"detail":"slow down","body":"text","delay":0.5,"hang":true}`
	var f emulator.Fault
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	want := emulator.Fault{Status: 429, Count: 2, Method: "DELETE", Route: emulator.RouteRemove, AgentID: "a1", ConnectionID: "c1",
		RetryAfter: "5", RetryAfterDate: true, Detail: "slow down", Body: emulator.BodyText, Delay: 500 * time.Millisecond, Hang: true}
	if f != want {
		t.Fatalf("unmarshal: got %+v, want %+v", f, want)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var back emulator.Fault
	if err := json.Unmarshal(b, &back); err != nil || back != want {
		t.Fatalf("round trip of %s: got %+v (%v), want %+v", b, back, err, want)
	}
}

func TestNewPanicsOnInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts emulator.Options
	}{
		{"bad error rate status", emulator.Options{ErrorRates: map[int]float64{99: 0.1}}},
		{"bad error rate", emulator.Options{ErrorRates: map[int]float64{503: 1.5}}},
		{"bad prefix", emulator.Options{PathPrefix: "/a?b"}},
		{"prefix over the control api", emulator.Options{PathPrefix: "/_emulator"}},
		{"negative latency", emulator.Options{Latency: -time.Second}},
		{"bad fault", emulator.Options{Faults: []emulator.Fault{{Body: "xml"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); err == nil {
				t.Errorf("Validate: got nil, want an error")
			}
			defer func() {
				if recover() == nil {
					t.Errorf("New: got no panic, want one")
				}
			}()
			emulator.New(tt.opts)
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	em, ts := newServer(t, emulator.Options{LogLimit: 50})
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
	}
	em.Seed("a1", ids...)
	var wg sync.WaitGroup
	for _, id := range ids {
		for range 2 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := send(ctx, http.MethodDelete, connURL(ts, "a1", id), "", apiKey); err != nil {
					t.Errorf("delete %s: %v", id, err)
				}
				_ = em.Stats()
				_ = em.Connections("a1")
				em.SetLatency(0)
			})
		}
	}
	wg.Wait()
	st := em.Stats()
	if st.Removed != n || st.Requests != 2*n {
		t.Errorf("removed, requests: got %d, %d, want %d, %d", st.Removed, st.Requests, n, 2*n)
	}
	if got := len(em.Log()); got != 50 {
		t.Errorf("log entries with LogLimit 50: got %d, want 50", got)
	}
	wantConnections(t, em, "a1")
}

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	t.Run("defaults", func(t *testing.T) {
		cfg, err := emulator.ParseFlags(nil, env(nil), io.Discard)
		if err != nil {
			t.Fatalf("ParseFlags: %v", err)
		}
		if cfg.Addr != "127.0.0.1:8765" || cfg.AddrFile != "" || cfg.Options.APIKey != "" || cfg.Options.Latency != 0 ||
			cfg.Options.RateLimitPerMinute != 0 || len(cfg.Options.ErrorRates) != 0 || len(cfg.Options.Seed) != 0 {
			t.Errorf("defaults: got %+v, want addr 127.0.0.1:8765 and nothing else", cfg)
		}
	})
	t.Run("every flag", func(t *testing.T) {
		args := []string{
			"--addr", "127.0.0.1:0", "--addr-file", "/tmp/addr", "--api-key", "k", "--tenant-id", "t",
			"--bearer-token", "b", "--path-prefix", "/api-host", "--seed", "a1:c1,c2", "--seed", "a2:",
			"--seed", "a1:c3", "--invalid", "bad", "--invalid", "worse", "--latency", "20ms",
			"--error-rate", "503=0.3", "--error-rate", "429=1", "--rate-limit-per-minute", "60",
			"--fault", `{"status":503,"connection_id":"c1"}`,
		}
		cfg, err := emulator.ParseFlags(args, env(map[string]string{"EMULATOR_API_KEY": "from-env"}), io.Discard)
		if err != nil {
			t.Fatalf("ParseFlags: %v", err)
		}
		want := emulator.Config{Addr: "127.0.0.1:0", AddrFile: "/tmp/addr", Options: emulator.Options{
			APIKey: "k", TenantID: "t", BearerToken: "b", PathPrefix: "/api-host",
			Seed:                 map[string][]string{"a1": {"c1", "c2", "c3"}, "a2": {}},
			InvalidConnectionIDs: []string{"bad", "worse"}, Latency: 20 * time.Millisecond,
			ErrorRates: map[int]float64{503: 0.3, 429: 1}, RateLimitPerMinute: 60,
			Faults: []emulator.Fault{{Status: 503, ConnectionID: "c1"}},
		}}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("config: got %+v, want %+v", cfg, want)
		}
	})
	t.Run("api key from the environment", func(t *testing.T) {
		cfg, err := emulator.ParseFlags(nil, env(map[string]string{"EMULATOR_API_KEY": "from-env"}), io.Discard)
		if err != nil || cfg.Options.APIKey != "from-env" {
			t.Errorf("api key: got %q (%v), want from-env", cfg.Options.APIKey, err)
		}
	})
	t.Run("api key from a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, []byte("  from-file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for name, tt := range map[string]struct {
			args []string
			env  map[string]string
		}{
			"flag":     {args: []string{"--api-key-file", path}},
			"variable": {env: map[string]string{"EMULATOR_API_KEY_FILE": path, "EMULATOR_API_KEY": "loses"}},
		} {
			cfg, err := emulator.ParseFlags(tt.args, env(tt.env), io.Discard)
			if err != nil || cfg.Options.APIKey != "from-file" {
				t.Errorf("%s: got %q (%v), want from-file", name, cfg.Options.APIKey, err)
			}
		}
		empty := filepath.Join(t.TempDir(), "empty")
		if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"--api-key-file", empty},
			{"--api-key-file", filepath.Join(t.TempDir(), "missing")},
			{"--api-key-file", path, "--api-key", "k"},
		} {
			if _, err := emulator.ParseFlags(args, env(nil), io.Discard); err == nil {
				t.Errorf("ParseFlags(%q): got nil error, want one", args)
			}
		}
	})
	t.Run("help", func(t *testing.T) {
		var out bytes.Buffer
		_, err := emulator.ParseFlags([]string{"-h"}, env(nil), &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("-h: got %v, want %v", err, flag.ErrHelp)
		}
		if !strings.Contains(out.String(), "-addr-file") {
			t.Errorf("usage: got %q, want the flag list", out.String())
		}
	})
	bad := [][]string{
		{"--seed", "no-colon"},
		{"--seed", ":c1"},
		{"--seed", "a1:c1,,c2"},
		{"--invalid", ""},
		{"--error-rate", "503"},
		{"--error-rate", "99=0.1"},
		{"--error-rate", "503=1.5"},
		{"--error-rate", "x=0.1"},
		{"--latency", "soon"},
		{"--latency", "-1s"},
		{"--rate-limit-per-minute", "-1"},
		{"--path-prefix", "/a b"},
		{"--fault", `{"status":1000}`},
		{"--fault", `{"nope":1}`},
		{"--addr", ""},
		{"--unknown"},
		{"positional"},
	}
	for _, args := range bad {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if _, err := emulator.ParseFlags(args, env(nil), io.Discard); err == nil {
				t.Errorf("ParseFlags(%q): got nil error, want one", args)
			}
		})
	}
}

func TestRun_AddrFileServesAndShutsDownWithAHangingRequest(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	cfg, err := emulator.ParseFlags([]string{"--addr", "127.0.0.1:0", "--addr-file", addrFile, "--seed", "a1:c1",
		"--fault", `{"hang":true,"route":"list"}`}, nil, io.Discard)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- emulator.Run(ctx, cfg) }()

	var addr string
	eventually(t, "the address file", func() bool {
		b, err := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != ""
	})
	base := "http://" + addr
	wantStatus(t, call(t, http.MethodGet, base+"/_emulator/healthz", "", nil), 200)
	wantStatus(t, call(t, http.MethodDelete, base+"/v2/auth/agents/a1/connections/c1", "", apiKey), 204)

	hung := make(chan error, 1)
	go func() {
		_, err := send(context.Background(), http.MethodGet, base+"/v2/auth/agents/a1/connections", "", apiKey)
		hung <- err
	}()
	eventually(t, "the hang fault to be taken", func() bool {
		r, err := send(context.Background(), http.MethodGet, base+"/_emulator/faults", "", nil)
		return err == nil && strings.Contains(r.body, `"pending":[]`)
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run: got no return 10s after cancel, want a prompt shutdown")
	}
	if err := <-hung; err == nil {
		t.Errorf("hanging request at shutdown: got an answer, want a dropped connection")
	}
	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Errorf("address file after shutdown: got %v, want removed", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines and the test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
