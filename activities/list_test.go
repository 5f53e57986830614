package activities

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
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

// TestListConnections_MapsEachFailure checks that a failed listing (classified by the control
// plane client, whose tests hold the whole status table) is the ApplicationError the contract
// describes, and that refused input sends nothing.
func TestListConnections_MapsEachFailure(t *testing.T) {
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		in            ListConnectionsInput
		wantType      string
		wantRetryable bool
		wantStatus    int
		wantRequests  int
		wantDelay     time.Duration
		wantInMessage string
	}{
		{name: "404 is a missing agent, not an empty one", handler: status(404, `{"detail":"Agent agent-1 not found."}`), wantType: ac.ErrAgentNotFound, wantStatus: 404, wantRequests: 1, wantInMessage: "LANGSMITH_CONTROL_PLANE_URL"},
		{name: "429 hands its Retry-After to Temporal", handler: status(429, "", "Retry-After", "9"), wantType: ac.ErrRateLimited, wantRetryable: true, wantStatus: 429, wantRequests: 1, wantDelay: 9 * time.Second},
		{name: "503 after the in-process retries", handler: status(503, ""), wantType: ac.ErrServerError, wantRetryable: true, wantStatus: 503, wantRequests: 3},
		{name: "unreadable 200 is not retried", handler: status(200, `{"items":[]}`), wantType: ac.ErrUnexpectedStatus, wantStatus: 200, wantRequests: 1, wantInMessage: "list response body"},
		{name: "refused agent ID sends nothing", handler: status(200, `{"data":[]}`), in: ListConnectionsInput{AgentID: "a/b"}, wantType: ac.ErrInvalidRequest, wantInMessage: "agent_id"},
		{name: "refused after sends nothing", handler: status(200, `{"data":[]}`), in: ListConnectionsInput{AgentID: "agent-1", After: "c/d"}, wantType: ac.ErrInvalidRequest, wantInMessage: "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in.AgentID == "" {
				tt.in.AgentID = "agent-1"
			}
			f := newFixture(t, tt.handler)
			_, err := f.env.ExecuteActivity(f.acts.ListConnections, tt.in)
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
			if got := f.requests.Load(); got != int64(tt.wantRequests) {
				t.Errorf("got %d requests, want %d", got, tt.wantRequests)
			}
			var d ac.FailureDetails
			if err := appErr.Details(&d); err != nil {
				t.Fatalf("details: %v", err)
			}
			if want := (ac.FailureDetails{StatusCode: tt.wantStatus, Requests: tt.wantRequests}); d != want {
				t.Errorf("got details %+v, want %+v", d, want)
			}
		})
	}
}

// With snapshot set, each page carries the listed connections' snapshots (token, provider,
// scopes, bounded), its bytes counting them; a token ValidateID refuses leaves no snapshot, and
// only keeps the named connections.
func TestListConnections_Snapshots(t *testing.T) {
	body := `{"data":[
		{"id":"c2","oauth_token_id":"t2","provider_id":"github","scopes":["repo","read:org"]},
		{"id":"c1","oauth_token_id":"t1","provider_id":"google"},
		{"id":"c3","oauth_token_id":"bad/token","provider_id":"x"},
		{"id":"c4","oauth_token_id":"t4","scopes":["` + strings.Repeat("s", 600) + `","` + strings.Repeat("u", 600) + `"]}]}`
	f := newFixture(t, status(200, body))
	get := func(in ListConnectionsInput) ListConnectionsResult {
		t.Helper()
		val, err := f.env.ExecuteActivity(f.acts.ListConnections, in)
		if err != nil {
			t.Fatal(err)
		}
		var res ListConnectionsResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := get(ListConnectionsInput{AgentID: "agent-1", Snapshot: true})
	want := []ac.ConnectionSnapshot{
		{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: "google"},
		{ConnectionID: "c2", OAuthTokenID: "t2", ProviderID: "github", Scopes: []string{"repo", "read:org"}},
		{ConnectionID: "c4", OAuthTokenID: "t4", Scopes: []string{strings.Repeat("s", 600)}},
	}
	if !reflect.DeepEqual(res.Snapshots, want) || len(res.ConnectionIDs) != 4 {
		t.Errorf("got ids %q snapshots %+v, want 4 ids and %+v", res.ConnectionIDs, res.Snapshots, want)
	}
	if plain := get(ListConnectionsInput{AgentID: "agent-1"}); plain.Snapshots != nil {
		t.Errorf("got snapshots %+v without snapshot set, want none", plain.Snapshots)
	}
	only := get(ListConnectionsInput{AgentID: "agent-1", Snapshot: true, Only: []string{"c2", "c9"}})
	if !reflect.DeepEqual(only.ConnectionIDs, []string{"c2"}) || len(only.Snapshots) != 1 || only.Snapshots[0].OAuthTokenID != "t2" || only.Listed != 4 {
		t.Errorf("got %+v, want only c2 with its snapshot, 4 listed", only)
	}
	// Pages count the snapshots: 700 bytes hold c1, c2 and c3 (no snapshot), not c4 besides.
	var ids []string
	after, pages := "", 0
	for {
		p := get(ListConnectionsInput{AgentID: "agent-1", Snapshot: true, After: after, MaxBytes: 700})
		pages++
		ids = append(ids, p.ConnectionIDs...)
		if !p.More {
			break
		}
		after = p.ConnectionIDs[len(p.ConnectionIDs)-1]
	}
	if !slices.Equal(ids, []string{"c1", "c2", "c3", "c4"}) || pages != 2 {
		t.Errorf("got %q over %d pages, want c1..c4 over 2 pages of 700 bytes", ids, pages)
	}
}
