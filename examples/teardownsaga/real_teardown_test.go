package teardownsaga_test

import (
	"net/http/httptest"
	"testing"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/examples/teardownsaga"
	"github.com/agentops/agentconnections/workflows"
)

// The saga with the real teardown workflow and activities underneath, against the emulator: the
// composition a calling service gets when it deploys this worker.
func TestSaga_WithTheRealTeardown(t *testing.T) {
	for _, tt := range []struct {
		name        string
		invalid     []string
		wantFailure bool
	}{
		{name: "every connection removed", wantFailure: false},
		{name: "one connection refused", invalid: []string{"c2"}, wantFailure: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			em := emulator.New(emulator.Options{APIKey: "k", Seed: map[string][]string{"a1": {"c1", "c2", "c3"}}, InvalidConnectionIDs: tt.invalid})
			srv := httptest.NewServer(em)
			t.Cleanup(srv.Close)
			t.Cleanup(em.Close)
			acts, err := activities.New(activities.Config{BaseURL: srv.URL, Credentials: activities.StaticCredentials{APIKey: "k"}})
			if err != nil {
				t.Fatal(err)
			}
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(quietLogger())
			env := suite.NewTestWorkflowEnvironment()
			platform := teardownsaga.NewStandInPlatform("dep-1")
			env.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
			env.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
			env.RegisterActivity(acts)
			platform.Register(env)
			env.ExecuteWorkflow(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})
			if !env.IsWorkflowCompleted() {
				t.Fatal("saga did not complete")
			}
			err = env.GetWorkflowError()
			if (err != nil) != tt.wantFailure {
				t.Fatalf("got error %v, want failure %t", err, tt.wantFailure)
			}
			left := em.Connections("a1")
			if len(left) != len(tt.invalid) {
				t.Errorf("got connections %v left, want %v", left, tt.invalid)
			}
			if platform.DeploymentExists("dep-1") != tt.wantFailure {
				t.Errorf("got deployment exists %t, want %t", platform.DeploymentExists("dep-1"), tt.wantFailure)
			}
			if platform.AgentEnabled("a1") != tt.wantFailure {
				t.Errorf("got agent enabled %t, want %t (re-enabled only by compensation)", platform.AgentEnabled("a1"), tt.wantFailure)
			}
		})
	}
}
