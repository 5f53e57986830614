package agentconnections

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRestoreAgentConnectionsWorkflowID(t *testing.T) {
	if got := RestoreAgentConnectionsWorkflowID("a1"); got != "restore-agent-connections/a1" {
		t.Errorf("got %q", got)
	}
	if RestoreAgentConnectionsWorkflowType != "RestoreAgentConnectionsWorkflow" {
		t.Errorf("got type %q", RestoreAgentConnectionsWorkflowType)
	}
}

func TestRestoreInput_JSON(t *testing.T) {
	raw := `{"agent_id": "a1", "connections": [{"connection_id": "c1", "oauth_token_id": "t1", "provider_id": "github", "scopes": ["repo"]}]}`
	var in RestoreAgentConnectionsInput
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		t.Fatal(err)
	}
	want := ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo"}}
	if in.AgentID != "a1" || len(in.Connections) != 1 || fmt.Sprint(in.Connections[0]) != fmt.Sprint(want) {
		t.Fatalf("got %+v", in)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("got %v, want a valid input", err)
	}
	if in.ConcurrencyOrDefault() != DefaultTeardownConcurrency {
		t.Errorf("got concurrency %d", in.ConcurrencyOrDefault())
	}
}

func TestRestoreInput_Validate(t *testing.T) {
	ok := ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t1"}
	many := make([]ConnectionSnapshot, MaxTeardownConnections+1)
	for i := range many {
		many[i] = ConnectionSnapshot{ConnectionID: fmt.Sprint("c", i), OAuthTokenID: fmt.Sprint("t", i)}
	}
	big := make([]ConnectionSnapshot, 2000)
	for i := range big {
		big[i] = ConnectionSnapshot{ConnectionID: fmt.Sprint("c", i), OAuthTokenID: strings.Repeat("t", 200) + fmt.Sprint(i)}
	}
	cases := map[string]RestoreAgentConnectionsInput{
		"bad agent":       {AgentID: "a/b", Connections: []ConnectionSnapshot{ok}},
		"no token":        {AgentID: "a1", Connections: []ConnectionSnapshot{{ConnectionID: "c1"}}},
		"token with a %":  {AgentID: "a1", Connections: []ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "t%2F"}}},
		"no connection":   {AgentID: "a1", Connections: []ConnectionSnapshot{{OAuthTokenID: "t1"}}},
		"concurrency":     {AgentID: "a1", Connections: []ConnectionSnapshot{ok}, Concurrency: MaxTeardownConcurrency + 1},
		"too many scopes": {AgentID: "a1", Connections: []ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "t1", Scopes: make([]string, MaxSnapshotScopes+1)}}},
		"too many":        {AgentID: "a1", Connections: many},
		"too many bytes":  {AgentID: "a1", Connections: big},
	}
	for name, in := range cases {
		if err := in.Validate(); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
	if err := (RestoreAgentConnectionsInput{AgentID: "a1"}).Validate(); err != nil {
		t.Errorf("an empty restore: got %v, want nil", err)
	}
}

func TestRestoreResult_NewConnectionIDs(t *testing.T) {
	r := RestoreAgentConnectionsResult{Connections: []RestoreOutcome{
		{ConnectionID: "c1", Outcome: OutcomeRestored, NewConnectionID: "n1"},
		{ConnectionID: "c2", Outcome: OutcomeAlreadyPresent, NewConnectionID: "n2"},
		{ConnectionID: "c3", Outcome: OutcomeFailed, FailureType: ErrValidation},
	}}
	got := r.NewConnectionIDs()
	if len(got) != 2 || got["c1"] != "n1" || got["c2"] != "n2" {
		t.Errorf("got %v", got)
	}
}

func TestBoundSnapshot(t *testing.T) {
	long := strings.Repeat("s", 300)
	got, ok := BoundSnapshot(ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{long, long, long, long}})
	if !ok || got.OAuthTokenID != "t1" || got.ProviderID != "github" || len(got.Scopes) != 3 || got.SnapshotBytes() > MaxSnapshotBytes {
		t.Errorf("got %+v (%d bytes), want the token, the provider and the 3 scopes that fit in %d bytes", got, got.SnapshotBytes(), MaxSnapshotBytes)
	}
	many := make([]string, MaxSnapshotScopes+5)
	for i := range many {
		many[i] = "s"
	}
	if got, _ := BoundSnapshot(ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t1", Scopes: many}); len(got.Scopes) != MaxSnapshotScopes {
		t.Errorf("got %d scopes, want %d", len(got.Scopes), MaxSnapshotScopes)
	}
	if got, _ := BoundSnapshot(ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: strings.Repeat("<", 200)}); got.ProviderID != "" {
		t.Errorf("got provider of %d bytes, want a provider over the bound left out", len(got.ProviderID))
	}
	for _, tok := range []string{"", "a/b", strings.Repeat("x", MaxIDBytes+1)} {
		if got, ok := BoundSnapshot(ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: tok, ProviderID: "p"}); ok || got.OAuthTokenID != "" || got.ProviderID != "" {
			t.Errorf("token %q: got %+v ok %t, want no snapshot", tok, got, ok)
		}
	}
	// SnapshotBytes is what the fields add to an entry's JSON.
	s := ConnectionSnapshot{ConnectionID: "c1", OAuthTokenID: "t<1", ProviderID: "p", Scopes: []string{"a", "b&"}}
	bare, _ := json.Marshal(ConnectionOutcome{ConnectionID: "c1"})
	full, _ := json.Marshal(ConnectionOutcome{ConnectionID: "c1"}.WithSnapshot(s))
	if got := s.SnapshotBytes(); got != len(full)-len(bare) {
		t.Errorf("got SnapshotBytes %d, want %d (the JSON difference)", got, len(full)-len(bare))
	}
}

// A teardown's report entries are restore entries as JSON; RestoreEntries keeps, of those with a
// snapshot, the removed ones and those a request of the teardown may have removed (interrupted,
// given up on with a transient type, or already absent after an earlier request of it).
func TestRestoreEntries_FromATeardownsReport(t *testing.T) {
	report := []ConnectionOutcome{
		{ConnectionID: "c1", Outcome: OutcomeRemoved, Attempts: 1, OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo"}},
		{ConnectionID: "c2", Outcome: OutcomeFailed, FailureType: ErrInterrupted, OAuthTokenID: "t2"},
		{ConnectionID: "c3", Outcome: OutcomeFailed, FailureType: ErrValidation, OAuthTokenID: "t3"},
		{ConnectionID: "c4", Outcome: OutcomeAlreadyAbsent, Attempts: 1, OAuthTokenID: "t4"},
		{ConnectionID: "c5", Outcome: OutcomeRemoved},
		{ConnectionID: "c6", Outcome: OutcomeSkipped, OAuthTokenID: "t6"},
		{ConnectionID: "c7", Outcome: OutcomeAlreadyAbsent, Attempts: 2, EarlierRequest: true, OAuthTokenID: "t7"},
		{ConnectionID: "c8", Outcome: OutcomeRemained, OAuthTokenID: "t8"},
		// Given up after requests with no final answer (a timeout, a 5xx): one may have removed it.
		{ConnectionID: "c9", Outcome: OutcomeFailed, FailureType: ErrServerError, Attempts: 8, OAuthTokenID: "t9"},
		{ConnectionID: "c10", Outcome: OutcomeFailed, FailureType: ErrNotFound, Attempts: 1, OAuthTokenID: "t10"},
		// A 401 after a DELETE that was cut off (simulation seed 45): that DELETE may have removed it.
		{ConnectionID: "c11", Outcome: OutcomeFailed, FailureType: ErrUnauthorized, Attempts: 2, EarlierRequest: true, OAuthTokenID: "t11"},
	}
	got := RestoreEntries(report)
	want := []ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo"}},
		{ConnectionID: "c2", OAuthTokenID: "t2"}, {ConnectionID: "c7", OAuthTokenID: "t7"}, {ConnectionID: "c9", OAuthTokenID: "t9"},
		{ConnectionID: "c11", OAuthTokenID: "t11"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	b, _ := json.Marshal(RemoveAgentConnectionsResult{AgentID: "a1", Connections: report[:1]})
	var in RestoreAgentConnectionsInput
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	if err := in.Validate(); err != nil || !reflect.DeepEqual(in.Connections, want[:1]) {
		t.Errorf("got %+v (validate: %v), want the teardown's result read as a restore input of c1", in, err)
	}
}

// The digest names the distinct tokens: order, duplicates and connection IDs do not change it;
// another token does.
func TestRestoreInputDigest(t *testing.T) {
	a := RestoreInputDigest([]ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "t1"}, {ConnectionID: "c2", OAuthTokenID: "t2"}})
	b := RestoreInputDigest([]ConnectionSnapshot{{ConnectionID: "x", OAuthTokenID: "t2"}, {OAuthTokenID: "t1"}, {OAuthTokenID: "t1"}})
	if a != b || len(a) != 64 {
		t.Errorf("got %q and %q, want one 64-digit digest", a, b)
	}
	for _, other := range [][]ConnectionSnapshot{
		{{OAuthTokenID: "t1"}},
		{{OAuthTokenID: "t1"}, {OAuthTokenID: "t2"}, {OAuthTokenID: "t3"}},
		{{OAuthTokenID: "t1t2"}},
		{{OAuthTokenID: "t"}, {OAuthTokenID: "1t2"}},
	} {
		if RestoreInputDigest(other) == a {
			t.Errorf("%+v has the digest of t1, t2", other)
		}
	}
}
