package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

func connectionIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("conn-%04d", i)
	}
	return ids
}

func (s *stack) startTeardown(in ac.RemoveAgentConnectionsInput) client.WorkflowRun {
	s.t.Helper()
	run, err := s.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       ac.RemoveAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:                s.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: 10 * time.Minute,
	}, ac.RemoveAgentConnectionsWorkflowType, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return run
}

func (s *stack) teardownResult(run client.WorkflowRun) ac.RemoveAgentConnectionsResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var res ac.RemoveAgentConnectionsResult
	if err := run.Get(ctx, &res); err != nil {
		s.t.Fatalf("teardown: %v", err)
	}
	return res
}

func TestIntegration_Teardown500WithTransientFailuresAnd422(t *testing.T) {
	all := connectionIDs(500)
	s := newStack(t, "agent-big", all...)
	s.em.MarkInvalid("conn-0042")
	s.em.SetErrorRate(503, 0.05)
	s.em.InjectNext(emulator.Fault{Status: 429, RetryAfter: "1", Method: "DELETE"})
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-big", Concurrency: 50}))
	s.em.SetErrorRate(503, 0)

	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	if res.Total != 500 || sum != 500 || len(res.Connections) != 500 {
		t.Errorf("got total %d, counts summing to %d, %d outcomes; want 500 each", res.Total, sum, len(res.Connections))
	}
	if res.Removed != 499 || res.Failed != 1 || !res.Verified {
		t.Errorf("got removed %d failed %d verified %t, want 499, 1, true", res.Removed, res.Failed, res.Verified)
	}
	for _, o := range res.Connections {
		if o.ConnectionID == "conn-0042" && (o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrValidation) {
			t.Errorf("got %+v for the 422 connection, want failed ValidationError", o)
		}
	}
	st := s.em.Stats()
	if st.Injected == 0 {
		t.Error("got no injected failures, want the 5% error rate to have hit some requests")
	}
	// Each connection removed exactly once at the control plane; a second DELETE after a removal
	// would be answered 204 (or 404) again and show up here.
	if st.Removed != 499 {
		t.Errorf("got %d DELETEs that removed a connection, want 499", st.Removed)
	}
	for _, id := range all {
		if n := st.ByMethodStatus["DELETE 204"]; n != 499 {
			t.Fatalf("got %d DELETEs answered 204, want 499 (one per removed connection)", n)
		}
		if s.em.HasConnection("agent-big", id) != (id == "conn-0042") {
			t.Errorf("got %s present %t at the end", id, s.em.HasConnection("agent-big", id))
		}
	}
	if st.Delete404 != 0 {
		t.Errorf("got %d DELETEs answered 404, want 0 (no connection deleted twice)", st.Delete404)
	}
}

func TestIntegration_TeardownAndStandaloneRemovalsNeverOverlap(t *testing.T) {
	all := connectionIDs(120)
	s := newStack(t, "agent-race", all...)
	s.em.SetLatency(30 * time.Millisecond)
	teardown := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-race", Concurrency: 10})
	// Standalone removals of some of the same connections, started while the teardown runs.
	var wg sync.WaitGroup
	results := make([]ac.RemoveConnectionResult, 30)
	errs := make([]error, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := all[i*4]
			run := s.start(ac.RemoveConnectionInput{AgentID: "agent-race", ConnectionID: id, MissingOK: new(bool)})
			results[i], errs[i] = s.result(run)
		}()
	}
	res := s.teardownResult(teardown)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("standalone removal of %s: %v", all[i*4], err)
			continue
		}
		if o := results[i].Outcome; o != ac.OutcomeRemoved && o != ac.OutcomeAlreadyAbsent {
			t.Errorf("got %+v for a standalone removal, want removed or already_absent", results[i])
		}
	}
	if res.Removed+res.AlreadyAbsent != 120 || res.Failed != 0 {
		t.Errorf("got removed %d absent %d failed %d, want all 120 gone and no failure", res.Removed, res.AlreadyAbsent, res.Failed)
	}
	for _, id := range all {
		if n := s.em.DeleteCount(id); n != 1 {
			t.Errorf("got %d DELETEs for %s, want exactly 1:", n, id)
			for _, e := range s.em.Log() {
				if strings.HasSuffix(e.Path, "/"+id) {
					t.Logf("  %s %s %d from %s to %s", e.Method, e.Path, e.Status, e.Time.Add(-e.Duration).Format("15:04:05.000"), e.Time.Format("15:04:05.000"))
				}
			}
		}
	}
}

func TestIntegration_Teardown10000ContinuesAsNew(t *testing.T) {
	all := connectionIDs(10_000)
	s := newStack(t, "agent-huge", all...)
	// A small history bound makes the teardown continue as new several times on the way.
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-huge", Concurrency: 100, MaxHistoryEvents: 400}))
	if res.Total != 10_000 || res.Removed != 10_000 || !res.Verified {
		t.Errorf("got total %d removed %d verified %t, want 10000, 10000, true", res.Total, res.Removed, res.Verified)
	}
	if res.Runs < 3 {
		t.Errorf("got %d runs, want the teardown to have continued as new", res.Runs)
	}
	st := s.em.Stats()
	if st.Removed != 10_000 || st.ByMethodStatus["DELETE 204"] != 10_000 {
		t.Errorf("got %d removing DELETEs of %d answered 204, want 10000 each (no connection twice)", st.Removed, st.ByMethodStatus["DELETE 204"])
	}
}
