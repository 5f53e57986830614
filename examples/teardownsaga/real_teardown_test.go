package teardownsaga_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/examples/teardownsaga"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/workflows"
)

// The saga with the real teardown workflow and activities underneath, against the emulator: the
// composition a calling service gets when it deploys this worker.
func TestSaga_WithTheRealTeardown(t *testing.T) {
	for _, tt := range []struct {
		name        string
		agent       string // the agent the saga tears down (the emulator knows a1)
		invalid     []string
		wantFailure bool
		wantType    string // the failure type found in the saga's error chain
	}{
		{name: "every connection removed", wantFailure: false},
		{name: "one connection refused", invalid: []string{"c2"}, wantFailure: true},
		// A missing agent (or a URL without the install's prefix) is not an empty one: the saga
		// stops before deleting the deployment.
		{name: "agent not found", agent: "a-missing", wantFailure: true, wantType: ac.ErrAgentNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			agent := tt.agent
			if agent == "" {
				agent = "a1"
			}
			em := emulator.New(emulator.Options{APIKey: "k", Seed: map[string][]string{"a1": {"c1", "c2", "c3"}}, InvalidConnectionIDs: tt.invalid})
			srv := httptest.NewServer(em)
			t.Cleanup(srv.Close)
			t.Cleanup(em.Close)
			cp, err := controlplane.New(controlplane.Config{BaseURL: srv.URL, Credentials: controlplane.StaticCredentials{APIKey: "k"}})
			if err != nil {
				t.Fatal(err)
			}
			acts, err := activities.New(activities.Config{ControlPlane: cp})
			if err != nil {
				t.Fatal(err)
			}
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(quietLogger())
			env := suite.NewTestWorkflowEnvironment()
			platform := teardownsaga.NewStandInPlatform("dep-1")
			env.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
			env.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
			env.RegisterWorkflowWithOptions(workflows.RestoreAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RestoreAgentConnectionsWorkflowType})
			env.RegisterActivity(acts)
			platform.Register(env)
			env.ExecuteWorkflow(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: agent, DeploymentID: "dep-1"})
			if !env.IsWorkflowCompleted() {
				t.Fatal("saga did not complete")
			}
			err = env.GetWorkflowError()
			if (err != nil) != tt.wantFailure {
				t.Fatalf("got error %v, want failure %t", err, tt.wantFailure)
			}
			if tt.wantType != "" && !hasFailureType(err, tt.wantType) {
				t.Errorf("got error %v, want %s in its chain", err, tt.wantType)
			}
			wantLeft := len(tt.invalid)
			if agent != "a1" {
				wantLeft = 3 // the saga never touched a1
			}
			if left := em.Connections("a1"); len(left) != wantLeft {
				t.Errorf("got connections %v left, want %d (saga: %v)", left, wantLeft, err)
			}
			if platform.DeploymentExists("dep-1") != tt.wantFailure {
				t.Errorf("got deployment exists %t, want %t", platform.DeploymentExists("dep-1"), tt.wantFailure)
			}
			if platform.AgentEnabled(agent) != tt.wantFailure {
				t.Errorf("got agent enabled %t, want %t (re-enabled only by compensation)", platform.AgentEnabled(agent), tt.wantFailure)
			}
		})
	}
}

// hasFailureType reports whether an ApplicationError of that type is in err's chain.
func hasFailureType(err error, failureType string) bool {
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return false
		}
		if appErr.Type() == failureType {
			return true
		}
		err = appErr.Unwrap()
	}
	return false
}

// Cancelling the saga cancels its child teardown, which stops the one way a teardown stops and
// reports what it removed; the saga then compensates (restores what the teardown removed, then
// re-enables the agent) and never deletes the deployment.
func TestSaga_CancelledStopsTheRealTeardownThenCompensates(t *testing.T) {
	ids := make([]string, 60)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	// A key no connection's data contains: the client removes the key from every body it reads.
	const key = "saga-test-key-0123456789"
	em := emulator.New(emulator.Options{APIKey: key, Seed: map[string][]string{"a1": ids}})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close)
	cp, err := controlplane.New(controlplane.Config{BaseURL: srv.URL, Credentials: controlplane.StaticCredentials{APIKey: key}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(quietLogger())
	env := suite.NewTestWorkflowEnvironment()
	platform := teardownsaga.NewStandInPlatform("dep-1")
	env.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
	env.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	env.RegisterWorkflowWithOptions(workflows.RestoreAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RestoreAgentConnectionsWorkflowType})
	env.RegisterActivity(acts)
	platform.Register(env)
	before := em.TokenConnections("a1")
	// The first batch removes connections; the saga is cancelled while the second is in flight.
	batches := 0
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == ac.RemoveConnectionsActivityType {
			batches++
			if batches == 2 {
				env.CancelWorkflow()
			}
		}
	})
	env.ExecuteWorkflow(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})
	if !env.IsWorkflowCompleted() {
		t.Fatal("saga did not complete")
	}
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("got %v, want the saga Canceled", err)
	}
	var res teardownsaga.SagaResult
	if err := canceled.Details(&res); err != nil {
		t.Fatal(err)
	}
	want := []string{teardownsaga.RestoreCompensation, teardownsaga.EnableAgentActivity}
	if res.FailedStep != teardownsaga.StepRemoveConnections || res.ConnectionsRemoved == 0 || !slices.Equal(res.Compensated, want) {
		t.Errorf("got %+v, want stopped in the teardown with its removals reported, restored, and the agent re-enabled", res)
	}
	// Restored: the removed ones, and those the stop interrupted (a DELETE in flight may have
	// removed them); a connection the DELETE left is already present.
	if res.ConnectionsRestored < res.ConnectionsRemoved || res.ConnectionsNotRestored != 0 || len(res.RestoredConnectionIDs) != res.ConnectionsRestored {
		t.Errorf("got %d restored (%d IDs), %d not, of %d removed; want every removed one back", res.ConnectionsRestored, len(res.RestoredConnectionIDs), res.ConnectionsNotRestored, res.ConnectionsRemoved)
	}
	if !platform.DeploymentExists("dep-1") || !platform.AgentEnabled("a1") {
		t.Error("got the deployment deleted or the agent disabled, want the irreversible step never run and the agent enabled again")
	}
	if batches != 2 {
		t.Errorf("got %d batches, want the teardown stopped in its second", batches)
	}
	// Every connection the agent had is back: one per token.
	per := em.ConnectionsPerToken("a1")
	for _, c := range before {
		if per[c.OAuthTokenID] != 1 {
			t.Errorf("got %d connections for token %s, want 1", per[c.OAuthTokenID], c.OAuthTokenID)
		}
	}
	if n := len(em.Connections("a1")); n != len(before) {
		t.Errorf("got %d connections at the end, want the %d the agent had", n, len(before))
	}
}
