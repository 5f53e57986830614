package integration

import (
	"strings"
	"testing"

	ac "github.com/agentops/agentconnections"
)

// Two replicas on one task queue share a teardown's batches, and each connection is still removed
// once.
func TestIntegration_TwoReplicasShareATeardown(t *testing.T) {
	s := newStack(t, "agent-shared", connectionIDs(400)...)
	first := s.worker
	s.startWorker()
	second := s.worker
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-shared", Concurrency: 40}))
	if res.Removed != 400 {
		t.Fatalf("got %d removed, want 400", res.Removed)
	}
	if st := s.em.Stats(); st.Removed != 400 || st.ByMethodStatus["DELETE 204"] != 400 {
		t.Errorf("got %d removing DELETEs of %d answered 204, want 400 each", st.Removed, st.ByMethodStatus["DELETE 204"])
	}
	// Each replica logs the batches it ran (debug level in these tests).
	batches := func(out string) int { return strings.Count(out, `"ActivityType":"RemoveConnections"`) }
	if batches(first.Output()) == 0 || batches(second.Output()) == 0 {
		t.Errorf("got batch log lines %d and %d, want both replicas to have run some", batches(first.Output()), batches(second.Output()))
	}
}
