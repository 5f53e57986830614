package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

func (s *stack) startRestore(in ac.RestoreAgentConnectionsInput) client.WorkflowRun {
	s.t.Helper()
	run, err := s.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       ac.RestoreAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:                s.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: 10 * time.Minute,
	}, ac.RestoreAgentConnectionsWorkflowType, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return run
}

func (s *stack) restoreResult(run client.WorkflowRun) ac.RestoreAgentConnectionsResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var res ac.RestoreAgentConnectionsResult
	if err := run.Get(ctx, &res); err != nil {
		s.t.Fatalf("restore: %v", err)
	}
	return res
}

// snapshotOf is what a restore needs for the agent's current connections, read at the emulator.
func snapshotOf(em *emulator.Server, agentID string) []ac.ConnectionSnapshot {
	var out []ac.ConnectionSnapshot
	for _, c := range em.TokenConnections(agentID) {
		out = append(out, ac.ConnectionSnapshot{ConnectionID: c.ConnectionID, OAuthTokenID: c.OAuthTokenID})
	}
	return out
}

// wantOnePerToken checks, at the emulator, that each entry's token holds exactly one connection.
func wantOnePerToken(t *testing.T, em *emulator.Server, agentID string, entries []ac.ConnectionSnapshot) {
	t.Helper()
	per := em.ConnectionsPerToken(agentID)
	bad := 0
	for _, e := range entries {
		if per[e.OAuthTokenID] != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("got %d connections for %s, want exactly 1", per[e.OAuthTokenID], e.OAuthTokenID)
			}
		}
	}
	if n := len(em.TokenConnections(agentID)); n != len(entries) {
		t.Errorf("got %d connections at the emulator, want %d", n, len(entries))
	}
}

func TestIntegration_TeardownThenRestore500(t *testing.T) {
	s := newStack(t, "agent-undo", connectionIDs(500)...)
	entries := snapshotOf(s.em, "agent-undo")
	down := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-undo", Concurrency: 50}))
	if down.Removed != 500 || len(s.em.Connections("agent-undo")) != 0 {
		t.Fatalf("teardown removed %d, %d left; want all 500 gone", down.Removed, len(s.em.Connections("agent-undo")))
	}
	res := s.restoreResult(s.startRestore(ac.RestoreAgentConnectionsInput{AgentID: "agent-undo", Connections: entries, Concurrency: 50}))
	if res.Total != 500 || res.Restored != 500 || len(res.Connections) != 500 {
		t.Fatalf("got total %d restored %d failed %d with %d entries, want all 500 restored", res.Total, res.Restored, res.Failed, len(res.Connections))
	}
	ids := res.NewConnectionIDs()
	for _, e := range entries {
		n := ids[e.ConnectionID]
		if n == "" || n == e.ConnectionID || !s.em.HasConnection("agent-undo", n) {
			t.Errorf("got new ID %q for %s, want a new connection the agent has", n, e.ConnectionID)
		}
	}
	wantOnePerToken(t, s.em, "agent-undo", entries)
}

// POST answers lost after the POST created its connection (a 503, a reset, a hang past the
// worker's 5 s request timeout) or before (a 502 unserved): exactly one connection per token.
func TestIntegration_RestoreWithLostAnswersLeavesOneConnectionPerToken(t *testing.T) {
	s := newStack(t, "agent-lost")
	entries := make([]ac.ConnectionSnapshot, 0, 100)
	for _, id := range connectionIDs(100) {
		entries = append(entries, ac.ConnectionSnapshot{ConnectionID: id, OAuthTokenID: "tok-" + id})
	}
	s.em.InjectNext(emulator.Fault{Served: true, Status: http.StatusServiceUnavailable, Method: "POST", Count: 20})
	s.em.InjectNext(emulator.Fault{Served: true, Reset: true, Method: "POST", Count: 10})
	s.em.InjectNext(emulator.Fault{Served: true, Hang: true, Method: "POST", Count: 5})
	s.em.InjectNext(emulator.Fault{Status: http.StatusBadGateway, Method: "POST", Count: 10})
	res := s.restoreResult(s.startRestore(ac.RestoreAgentConnectionsInput{AgentID: "agent-lost", Connections: entries, Concurrency: 20}))
	if res.Restored != 100 {
		t.Errorf("got restored %d failed %d skipped %d, want all 100 restored", res.Restored, res.Failed, res.Skipped)
	}
	if n := len(s.em.Faults().Pending); n != 0 {
		t.Errorf("got %d faults not taken, want every answer lost as planned", n)
	}
	wantOnePerToken(t, s.em, "agent-lost", entries)
}

// The worker is killed while a POST that created its connection hangs: the batch's next attempt
// (after the heartbeat timeout) lists the agent first and takes that connection.
func TestIntegration_RestoreWorkerKilledMidPostCreatesNoSecond(t *testing.T) {
	s := newStack(t, "agent-kill")
	entries := []ac.ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "tok-c1"}}
	s.em.InjectNext(emulator.Fault{Served: true, Hang: true, Method: "POST"})
	run := s.startRestore(ac.RestoreAgentConnectionsInput{AgentID: "agent-kill", Connections: entries})
	s.waitFor("the POST to reach the control plane", func() bool { return len(s.em.Faults().Pending) == 0 })
	s.worker.Kill()
	s.startWorker()
	res := s.restoreResult(run)
	if res.Restored != 1 || res.Connections[0].NewConnectionID == "" {
		t.Errorf("got %+v, want c1 restored", res)
	}
	wantOnePerToken(t, s.em, "agent-kill", entries)
}

func TestIntegration_RestoreRevokedTokenIsTyped(t *testing.T) {
	s := newStack(t, "agent-revoked")
	s.em.RevokeTokens("tok-gone")
	entries := []ac.ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "tok-ok"}, {ConnectionID: "c2", OAuthTokenID: "tok-gone"}}
	res := s.restoreResult(s.startRestore(ac.RestoreAgentConnectionsInput{AgentID: "agent-revoked", Connections: entries}))
	if res.Restored != 1 || res.Failed != 1 {
		t.Fatalf("got %+v, want one restored and one failed", res)
	}
	for _, o := range res.Connections {
		if o.ConnectionID == "c2" && (o.FailureType != ac.ErrValidation || !strings.Contains(o.Message, "OAuth token tok-gone is revoked") || o.Attempts != 1) {
			t.Errorf("got %+v, want ValidationError with the 422's detail after one POST", o)
		}
	}
}
