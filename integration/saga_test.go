package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

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
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed {
		t.Fatalf("got %v, want the saga failed", err)
	}
	var res teardownsaga.SagaResult
	if derr := appErr.Details(&res); derr != nil {
		t.Fatal(derr)
	}
	if res.FailedStep != teardownsaga.StepDeleteDeployment || res.ConnectionsRemoved != 40 || res.ConnectionsRestored != 40 ||
		res.ConnectionsNotRestored != 0 || len(res.RestoredConnectionIDs) != 40 || len(res.CompensationFailures) != 0 {
		t.Fatalf("got %+v, want 40 removed and 40 restored at delete_deployment", res)
	}
	for _, e := range entries {
		n := res.RestoredConnectionIDs[e.ConnectionID]
		if n == "" || n == e.ConnectionID || !s.em.HasConnection("agent-saga", n) {
			t.Errorf("got new ID %q for %s, want a new connection the agent has", n, e.ConnectionID)
		}
	}
	wantOnePerToken(t, s.em, "agent-saga", entries)
	if !platform.AgentEnabled("agent-saga") || !platform.DeploymentExists("dep-1") {
		t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
	}
}
