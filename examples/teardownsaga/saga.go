// Package teardownsaga is an example for calling services, not part of the worker: the saga that a
// service owning agent deployments would write around the teardown workflow. It disables the
// agent, removes every connection of the agent through RemoveAgentConnectionsWorkflow as a child
// workflow, then deletes the deployment. When a step fails it undoes its own earlier steps in
// reverse order, and never the removals: this API cannot restore a removed connection, so the
// saga reports how many were removed instead.
//
// It imports only the contract package (github.com/agentops/agentconnections) from this module.
// Its own activities (DisableAgent, EnableAgent, DeleteDeployment) stand for the calling service's
// systems; StandInPlatform implements them in memory so the example runs anywhere.
package teardownsaga

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
)

// Activity names the saga calls. A calling service registers its real implementations under them.
const (
	// DisableAgentActivity stops the agent taking work (step 1).
	DisableAgentActivity = "DisableAgent"
	// EnableAgentActivity undoes DisableAgentActivity (the compensation of step 1). It must be
	// idempotent: it runs even when DisableAgent failed, since a timed-out DisableAgent may still
	// have disabled the agent.
	EnableAgentActivity = "EnableAgent"
	// DeleteDeploymentActivity deletes the agent's deployment (step 3). Nothing undoes it, so it
	// comes last.
	DeleteDeploymentActivity = "DeleteDeployment"
)

// Steps of the saga, as SagaResult.FailedStep names them.
const (
	StepDisableAgent      = "disable_agent"
	StepRemoveConnections = "remove_connections"
	StepDeleteDeployment  = "delete_deployment"
)

// Failure types of the saga.
const (
	// ErrSagaFailed is the type of the ApplicationError a failed saga returns. Its cause is what
	// failed; its details decode into a SagaResult (appErr.Details(&res)), because a workflow that
	// fails records no result of its own, and the caller must still learn what was removed.
	ErrSagaFailed = "AgentTeardownSagaFailed"
	// ErrConnectionsNotRemoved is the cause when the teardown returned with any connection not
	// removed or already absent (failed, remained, reappeared, skipped), or was cancelled.
	ErrConnectionsNotRemoved = "ConnectionsNotRemoved"
	// ErrTeardownNotOfTheAgent is the cause when the teardown's result is that of a run given
	// connection IDs (connections_given): the Nexus variant attached to a teardown someone started
	// for chosen connections, which removed and verified only those, so the agent may still have
	// others. The saga fails and compensates rather than delete the deployment.
	ErrTeardownNotOfTheAgent = "TeardownNotOfTheWholeAgent"
	// ErrTeardownTimedOut is the cause when the Nexus variant's teardown did not end within
	// SagaInput.TeardownTimeout (or its endpoint does not exist): the saga cancelled it.
	ErrTeardownTimedOut = "TeardownTimedOut"
)

// DefaultTeardownTimeout is SagaInput.TeardownTimeout's default.
const DefaultTeardownTimeout = 24 * time.Hour

// operationTimeoutMargin is how much longer than TeardownTimeout the Nexus operation's own
// ScheduleToCloseTimeout is: the saga's deadline comes first and cancels the teardown (waiting for
// it to stop); the operation's timeout is the backstop should that cancellation not end.
const operationTimeoutMargin = time.Minute

// maxNotRemoved bounds SagaResult.NotRemoved, so a teardown that failed for every connection of a
// large agent does not push the saga's result past Temporal's payload limit.
const maxNotRemoved = 20

// SagaInput is the input of AgentTeardownSaga.
type SagaInput struct {
	AgentID      string `json:"agent_id"`
	DeploymentID string `json:"deployment_id"`
	// TeardownTaskQueue is the task queue of the agent-connections worker; empty means
	// ac.DefaultTaskQueue. The saga's own activities run on the saga's task queue.
	TeardownTaskQueue string `json:"teardown_task_queue,omitempty"`
	// NexusEndpoint, when set, makes the saga reach the teardown through this Nexus endpoint
	// (operation ac.RemoveAgentConnectionsOperation of service ac.NexusService) instead of as a
	// child workflow: the variant for a saga that runs in a namespace of its own. The endpoint
	// targets the agent-connections worker; TeardownTaskQueue is then unused.
	NexusEndpoint string `json:"nexus_endpoint,omitempty"`
	// TeardownTimeout bounds the Nexus variant: when this long after the saga started the teardown
	// has not ended, the saga cancels it (waiting for it to stop), fails at StepRemoveConnections
	// and compensates. It also ends a saga whose endpoint does not exist: the server then fails
	// the saga's workflow task again and again, the operation is never scheduled and its own
	// timeout never starts, but the deadline (a timer started with step 1) still fires. Zero
	// means DefaultTeardownTimeout.
	TeardownTimeout ac.Duration `json:"teardown_timeout,omitempty"`
}

// SagaResult is what the saga did. A failed or cancelled saga carries it as its error's details.
type SagaResult struct {
	AgentID string `json:"agent_id"`
	// FailedStep is the step that failed (Step* constants); empty when the saga completed.
	FailedStep string `json:"failed_step,omitempty"`
	// TeardownFinished is true once the teardown child returned a result. When the saga failed at
	// StepRemoveConnections with it false, the teardown itself failed or was stopped: some
	// connections may have been removed all the same, and the counts below do not show them.
	TeardownFinished bool `json:"teardown_finished"`
	// ConnectionsRemoved counts the connections the teardown removed. It is reported even when
	// the saga fails, because those removals stand: the control plane API cannot restore a
	// connection, so no compensation undoes them. A service that needs them back recreates them.
	ConnectionsRemoved int `json:"connections_removed"`
	// ConnectionsAlreadyAbsent counts the connections that were gone before the teardown got to them.
	ConnectionsAlreadyAbsent int `json:"connections_already_absent"`
	// TeardownVerified is true when the teardown listed the agent's connections again after
	// removing them: only then does a complete teardown also mean none came back.
	TeardownVerified bool `json:"teardown_verified"`
	// NotRemoved are the connections the teardown left behind (at most maxNotRemoved of them;
	// the teardown's own result has them all).
	NotRemoved []ac.ConnectionOutcome `json:"not_removed,omitempty"`
	// DeploymentDeleted is true once DeleteDeployment succeeded.
	DeploymentDeleted bool `json:"deployment_deleted"`
	// Compensated names the compensations that ran and succeeded, in the order they ran.
	Compensated []string `json:"compensated,omitempty"`
	// CompensationFailures are the compensations that failed even after their retries; the
	// calling service must see to them by hand.
	CompensationFailures []string `json:"compensation_failures,omitempty"`
}

// AgentInput is the input of DisableAgent and EnableAgent.
type AgentInput struct {
	AgentID string `json:"agent_id"`
}

// DeploymentInput is the input of DeleteDeployment.
type DeploymentInput struct {
	AgentID      string `json:"agent_id"`
	DeploymentID string `json:"deployment_id"`
}

// stepOptions are the options of the saga's forward steps: bounded, so a system that stays down
// fails the saga (and its compensation runs) instead of holding the agent disabled for ever.
var stepOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    30 * time.Second,
		MaximumAttempts:    5,
	},
}

// compensationOptions retry far longer than the forward steps: a compensation that gives up leaves
// the agent disabled with its deployment still there, which only a person can sort out.
var compensationOptions = workflow.ActivityOptions{
	StartToCloseTimeout:    time.Minute,
	ScheduleToCloseTimeout: time.Hour,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
	},
}

// compensation undoes one completed step.
type compensation struct {
	name string
	run  func(ctx workflow.Context) error
}

// AgentTeardownSaga disables the agent, removes all its connections (the teardown child
// workflow), and deletes its deployment. It fails, after compensating its own steps, when any
// step fails or when the teardown leaves any connection not removed or already absent: deleting
// the deployment with connections still pointing at the agent is what the saga exists to avoid.
func AgentTeardownSaga(ctx workflow.Context, in SagaInput) (SagaResult, error) {
	res := SagaResult{AgentID: in.AgentID}
	// The agent ID goes into the child's workflow ID: only an ID the contract accepts makes an
	// unambiguous one.
	if err := ac.ValidateID("agent_id", in.AgentID); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	if in.DeploymentID == "" {
		return res, temporal.NewNonRetryableApplicationError("deployment_id is empty", ac.ErrInvalidRequest, nil)
	}
	ctx = workflow.WithActivityOptions(ctx, stepOptions)
	// The Nexus variant's deadline starts now, in a workflow task that completes with step 1's
	// command, so it fires even when every task that schedules the operation fails.
	var deadline workflow.Future
	if in.NexusEndpoint != "" {
		var stop workflow.CancelFunc
		deadline, stop = startDeadline(ctx, teardownTimeout(in))
		defer stop()
	}
	var compensations []compensation
	fail := func(step string, err error) (SagaResult, error) {
		res.FailedStep = step
		compensate(ctx, compensations, &res)
		return res, sagaError(ctx, res, err)
	}

	// Step 1. The compensation is added before the step runs: a DisableAgent that timed out may
	// have disabled the agent anyway, and EnableAgent is idempotent.
	compensations = append(compensations, compensation{EnableAgentActivity, func(ctx workflow.Context) error {
		return workflow.ExecuteActivity(ctx, EnableAgentActivity, AgentInput{AgentID: in.AgentID}).Get(ctx, nil)
	}})
	if err := workflow.ExecuteActivity(ctx, DisableAgentActivity, AgentInput{AgentID: in.AgentID}).Get(ctx, nil); err != nil {
		return fail(StepDisableAgent, err)
	}

	// Step 2. No compensation here yet; RestoreAgentConnectionsWorkflow could re-create the removed
	// connections from their OAuth tokens.
	teardown, err := removeConnections(ctx, in, deadline)
	if err != nil {
		// A missing agent (AgentNotFound) or a cancelled teardown ends the saga here, before the
		// irreversible step; what a cancelled teardown removed is reported.
		res.ConnectionsRemoved, res.ConnectionsAlreadyAbsent = teardown.Removed, teardown.AlreadyAbsent
		return fail(StepRemoveConnections, err)
	}
	res.TeardownFinished = true
	res.ConnectionsRemoved, res.ConnectionsAlreadyAbsent = teardown.Removed, teardown.AlreadyAbsent
	res.TeardownVerified = teardown.Verified
	for _, o := range teardown.Connections {
		if o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent && len(res.NotRemoved) < maxNotRemoved {
			res.NotRemoved = append(res.NotRemoved, o)
		}
	}
	if teardown.ConnectionsGiven {
		return fail(StepRemoveConnections, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the teardown of agent %s that answered was given %d connection IDs: it did not remove every connection of the agent",
				in.AgentID, teardown.Total), ErrTeardownNotOfTheAgent, nil))
	}
	if notRemoved := teardown.Total - teardown.Removed - teardown.AlreadyAbsent; notRemoved != 0 || teardown.Cancelled {
		return fail(StepRemoveConnections, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d of %d connections of agent %s not removed (%d failed, %d remained, %d reappeared, %d skipped, cancelled %t)",
				notRemoved, teardown.Total, in.AgentID, teardown.Failed, teardown.Remained, teardown.Reappeared, teardown.Skipped, teardown.Cancelled),
			ErrConnectionsNotRemoved, nil))
	}

	// Step 3, the point of no return: nothing after it could be undone, so nothing comes after it.
	if err := workflow.ExecuteActivity(ctx, DeleteDeploymentActivity,
		DeploymentInput{AgentID: in.AgentID, DeploymentID: in.DeploymentID}).Get(ctx, nil); err != nil {
		return fail(StepDeleteDeployment, err)
	}
	res.DeploymentDeleted = true
	return res, nil
}

// removeConnections runs the teardown of the agent as a child workflow and returns its result.
// A teardown of the same agent already running (an operator's `starter --all`, say) makes the
// start fail: the saga then fails and compensates rather than wait on a run it does not own.
func removeConnections(ctx workflow.Context, in SagaInput, deadline workflow.Future) (ac.RemoveAgentConnectionsResult, error) {
	if in.NexusEndpoint != "" {
		return removeConnectionsThroughNexus(ctx, in, deadline)
	}
	queue := in.TeardownTaskQueue
	if queue == "" {
		queue = ac.DefaultTaskQueue
	}
	ctx = workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: ac.RemoveAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:  queue,
		// A cancelled saga waits for the teardown to stop before it re-enables the agent, so no
		// removal is still going on behind an agent that is enabled again.
		WaitForCancellation: true,
	})
	var r ac.RemoveAgentConnectionsResult
	err := workflow.ExecuteChildWorkflow(ctx, ac.RemoveAgentConnectionsWorkflowType,
		ac.RemoveAgentConnectionsInput{AgentID: in.AgentID}).Get(ctx, &r)
	if err != nil {
		// A cancelled teardown stops as its cancel update does and carries its partial result.
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) && canceled.HasDetails() {
			_ = canceled.Details(&r)
		}
		return r, fmt.Errorf("teardown of agent %s: %w", in.AgentID, err)
	}
	return r, nil
}

// removeConnectionsThroughNexus runs the teardown of the agent through the Nexus endpoint. Unlike
// the child workflow, the operation attaches to a teardown of the same agent that is already
// running and returns that teardown's result: the saga checks connections_given before it goes
// on. Cancelling the saga cancels the operation, and so the teardown; the default cancellation
// type waits for the teardown to stop, as the child's WaitForCancellation does, and its canceled
// error carries the partial result. The deadline cancels the operation the same way.
func removeConnectionsThroughNexus(ctx workflow.Context, in SagaInput, deadline workflow.Future) (ac.RemoveAgentConnectionsResult, error) {
	c := workflow.NewNexusClient(in.NexusEndpoint, ac.NexusService)
	opCtx, cancelOp := workflow.WithCancel(ctx)
	defer cancelOp()
	op := c.ExecuteOperation(opCtx, ac.RemoveAgentConnectionsOperation, ac.RemoveAgentConnectionsInput{AgentID: in.AgentID},
		workflow.NexusOperationOptions{ScheduleToCloseTimeout: teardownTimeout(in) + operationTimeoutMargin})
	timedOut := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(op, func(workflow.Future) {})
	sel.AddFuture(deadline, func(workflow.Future) {
		timedOut = true
		cancelOp()
	})
	sel.Select(ctx)
	var r ac.RemoveAgentConnectionsResult
	err := op.Get(ctx, &r)
	if err != nil {
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) && canceled.HasDetails() {
			_ = canceled.Details(&r)
		}
		if timedOut {
			// A workflow task boundary before the compensations: when the deadline drops an
			// operation the server never accepted, the Go SDK's replay mispredicts the event IDs
			// of the activities scheduled in that same task (a nondeterminism error).
			_ = workflow.Sleep(ctx, time.Millisecond)
			// Not wrapped: a CanceledError in the chain would end the saga Canceled, as if it had
			// been cancelled itself.
			return r, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"teardown of agent %s through Nexus endpoint %s did not end within %s of the saga's start (does the endpoint exist?): %v",
				in.AgentID, in.NexusEndpoint, teardownTimeout(in), err), ErrTeardownTimedOut, nil)
		}
		return r, fmt.Errorf("teardown of agent %s through Nexus endpoint %s: %w", in.AgentID, in.NexusEndpoint, err)
	}
	return r, nil
}

// teardownTimeout is in.TeardownTimeout or its default.
func teardownTimeout(in SagaInput) time.Duration {
	if in.TeardownTimeout > 0 {
		return in.TeardownTimeout.D()
	}
	return DefaultTeardownTimeout
}

// startDeadline starts a timer of d that the saga's cancellation does not cancel (a cancelled
// saga cancels the operation itself); stop cancels it.
func startDeadline(ctx workflow.Context, d time.Duration) (workflow.Future, workflow.CancelFunc) {
	dctx, stop := workflow.NewDisconnectedContext(ctx)
	return workflow.NewTimer(dctx, d), stop
}

// compensate runs the compensations in reverse order. It uses a disconnected context: when the
// saga was cancelled, its own context is cancelled too, and would cancel every compensation
// before it started. A compensation that fails is recorded and the others still run.
func compensate(ctx workflow.Context, compensations []compensation, res *SagaResult) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	dctx = workflow.WithActivityOptions(dctx, compensationOptions)
	for i := len(compensations) - 1; i >= 0; i-- {
		c := compensations[i]
		if err := c.run(dctx); err != nil {
			workflow.GetLogger(ctx).Error("compensation failed", "compensation", c.name, "agent_id", res.AgentID, "error", err)
			res.CompensationFailures = append(res.CompensationFailures, fmt.Sprintf("%s: %v", c.name, err))
			continue
		}
		res.Compensated = append(res.Compensated, c.name)
	}
}

// sagaError is what a failed saga returns: a cancellation when the saga was cancelled (so its
// status says so), otherwise an ErrSagaFailed ApplicationError with cause. Both carry the result.
func sagaError(ctx workflow.Context, res SagaResult, cause error) error {
	if errors.Is(ctx.Err(), workflow.ErrCanceled) {
		return temporal.NewCanceledError(res)
	}
	msg := fmt.Sprintf("agent %s teardown saga failed at %s; %d connections removed stay removed", res.AgentID, res.FailedStep, res.ConnectionsRemoved)
	if len(res.CompensationFailures) > 0 {
		msg += fmt.Sprintf("; %d compensations failed", len(res.CompensationFailures))
	}
	return temporal.NewApplicationErrorWithOptions(msg, ErrSagaFailed, temporal.ApplicationErrorOptions{
		NonRetryable: true,
		Cause:        cause,
		Details:      []any{res},
	})
}
