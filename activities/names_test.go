package activities

import (
	"testing"

	ac "github.com/agentops/agentconnections"
)

// The worker registers the struct whole, so each activity type is its method's name; the
// contract's names must reach the right methods.
func TestActivityTypeNames(t *testing.T) {
	f := newFixture(t, status(200, `{"data":[{"id":"c1"}]}`))
	val, err := f.env.ExecuteActivity(ac.ListConnectionsActivityType, ListConnectionsInput{AgentID: "agent-1"})
	if err != nil {
		t.Fatalf("%s: %v", ac.ListConnectionsActivityType, err)
	}
	var list ListConnectionsResult
	if err := val.Get(&list); err != nil || len(list.ConnectionIDs) != 1 {
		t.Errorf("got (%+v, %v) from %s, want one connection", list, err, ac.ListConnectionsActivityType)
	}

	f = newFixture(t, status(204, ""))
	val, err = f.env.ExecuteActivity(ac.RemoveConnectionsActivityType, RemoveConnectionsInput{AgentID: "agent-1", Items: items("c1")})
	if err != nil {
		t.Fatalf("%s: %v", ac.RemoveConnectionsActivityType, err)
	}
	var batch RemoveConnectionsResult
	if err := val.Get(&batch); err != nil || len(batch.Done) != 1 {
		t.Errorf("got (%+v, %v) from %s, want one done", batch, err, ac.RemoveConnectionsActivityType)
	}

	// With no coordinator and a 204 server, each of these succeeds; an unregistered name would not.
	for _, name := range []string{ac.RemoveConnectionActivityType, "CheckTeardownClaim", "AwaitTeardownOutcome", "AwaitStandaloneRemoval"} {
		if _, err := f.env.ExecuteActivity(name, ConnectionRef{AgentID: "a", ConnectionID: "c"}); err != nil {
			t.Errorf("got %v running %s, want success", err, name)
		}
	}
}
