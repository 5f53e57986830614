package teardownsaga_test

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/examples/teardownsaga"
)

// The saga runs here in Temporal's test environment, with the stand-in platform and a canned
// teardown in place of the agent-connections worker; the teardown leaves one connection behind,
// so the saga fails, re-enables the agent, keeps the deployment, and reports the removal that
// stands. In a calling service, its worker registers the saga and its real activities:
//
//	w := worker.New(c, "agent-lifecycle", worker.Options{})
//	w.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
//	w.RegisterActivityWithOptions(registry.DisableAgent, activity.RegisterOptions{Name: teardownsaga.DisableAgentActivity})
//	w.RegisterActivityWithOptions(registry.EnableAgent, activity.RegisterOptions{Name: teardownsaga.EnableAgentActivity})
//	w.RegisterActivityWithOptions(platform.DeleteDeployment, activity.RegisterOptions{Name: teardownsaga.DeleteDeploymentActivity})
//
// and the agent-connections worker, polling ac.DefaultTaskQueue, runs the teardown child.
func ExampleAgentTeardownSaga() {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(quietLogger())
	env := suite.NewTestWorkflowEnvironment()
	platform := teardownsaga.NewStandInPlatform("dep-1")
	platform.Register(env)
	env.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
	env.RegisterWorkflowWithOptions(func(_ workflow.Context, in ac.RemoveAgentConnectionsInput) (ac.RemoveAgentConnectionsResult, error) {
		return ac.RemoveAgentConnectionsResult{AgentID: in.AgentID, Total: 2, Removed: 1, Failed: 1, Connections: []ac.ConnectionOutcome{
			{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
			{ConnectionID: "c2", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrValidation, Message: "connection is locked"},
		}}, nil
	}, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})

	env.ExecuteWorkflow(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	// A failed saga records no result; its error's details carry the SagaResult.
	var appErr *temporal.ApplicationError
	if !errors.As(env.GetWorkflowError(), &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed {
		fmt.Println("unexpected:", env.GetWorkflowError())
		return
	}
	var res teardownsaga.SagaResult
	if err := appErr.Details(&res); err != nil {
		fmt.Println("unexpected:", err)
		return
	}
	fmt.Printf("failed at %s, compensated %v\n", res.FailedStep, res.Compensated)
	fmt.Printf("connections removed (they stay removed): %d\n", res.ConnectionsRemoved)
	for _, o := range res.NotRemoved {
		fmt.Printf("not removed: %s %s %s: %s\n", o.ConnectionID, o.Outcome, o.FailureType, o.Message)
	}
	fmt.Printf("agent enabled: %t, deployment kept: %t\n", platform.AgentEnabled("a1"), platform.DeploymentExists("dep-1"))
	fmt.Println(platform.Calls())
	// Output:
	// failed at remove_connections, compensated [EnableAgent]
	// connections removed (they stay removed): 1
	// not removed: c2 failed ValidationError: connection is locked
	// agent enabled: true, deployment kept: true
	// [DisableAgent a1 EnableAgent a1]
}
