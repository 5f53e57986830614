package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/examples/teardownsaga"
)

// The saga's child-workflow variant on the dev server, the worker binary underneath: its last step
// failing, it restores what the teardown removed with a child restore (one connection per token,
// new IDs reported), then re-enables the agent and keeps the deployment.
func TestIntegration_SagaFailureRestoresAndReEnables(t *testing.T) {
	s := newStack(t, "agent-saga", connectionIDs(40)...)
	entries := snapshotOf(s.em, "agent-saga")
	platform := teardownsaga.NewStandInPlatform("dep-1")
	platform.FailDeleteDeployment(errors.New("deployment is locked"))
	sagaQueue := s.taskQueue + "-saga"
	w := worker.New(s.client, sagaQueue, worker.Options{})
	w.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
	platform.Register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "saga-agent-saga", TaskQueue: sagaQueue, WorkflowExecutionTimeout: 5 * time.Minute},
		teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "agent-saga", DeploymentID: "dep-1", TeardownTaskQueue: s.taskQueue})
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	wantSagaRestored(t, s, platform, "agent-saga", entries, sagaFailure(t, err))
}

// sagaFailure is the SagaResult of a saga that failed with ErrSagaFailed (err is its run's).
func sagaFailure(t *testing.T, err error) teardownsaga.SagaResult {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed {
		t.Fatalf("got %v, want the saga failed", err)
	}
	var res teardownsaga.SagaResult
	if derr := appErr.Details(&res); derr != nil {
		t.Fatal(derr)
	}
	return res
}

// wantSagaRestored checks a saga that failed at its last step: every connection of entries was
// removed and restored under a new ID the agent has, one per token, with the agent enabled again
// and the deployment kept.
func wantSagaRestored(t *testing.T, s *stack, platform *teardownsaga.StandInPlatform, agentID string, entries []ac.ConnectionSnapshot, res teardownsaga.SagaResult) {
	t.Helper()
	n := len(entries)
	if res.FailedStep != teardownsaga.StepDeleteDeployment || res.ConnectionsRemoved != n || res.ConnectionsRestored != n ||
		res.ConnectionsNotRestored != 0 || len(res.RestoredConnectionIDs) != n || len(res.CompensationFailures) != 0 {
		t.Fatalf("got %+v, want %d removed and %d restored at delete_deployment", res, n, n)
	}
	for _, e := range entries {
		id := res.RestoredConnectionIDs[e.ConnectionID]
		if id == "" || id == e.ConnectionID || !s.em.HasConnection(agentID, id) {
			t.Errorf("got new ID %q for %s, want a new connection the agent has", id, e.ConnectionID)
		}
	}
	wantOnePerToken(t, s.em, agentID, entries)
	if !platform.AgentEnabled(agentID) || !platform.DeploymentExists("dep-1") {
		t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
	}
}
