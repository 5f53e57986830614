package agentconnections

import (
	"encoding/json"
	"fmt"
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
