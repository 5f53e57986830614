// Package teardownsaga is an example for calling services, not part of the worker: the saga that a
// service owning agent deployments would write around the teardown workflow. It disables the
// agent, removes every connection of the agent through RemoveAgentConnectionsWorkflow as a child
// workflow, then deletes the deployment. When a step fails it undoes the earlier steps in reverse
// order: once the teardown has returned its result, that includes the removals, which
// RestoreAgentConnectionsWorkflow (a child workflow, or the restore operation of the Nexus
// variant) re-creates from the teardown's snapshot, one connection per OAuth token, before the
// agent is enabled again. The saga's result maps each removed connection ID to its new one.
//
// It imports only the contract package (github.com/agentops/agentconnections) from this module.
// Its own activities (DisableAgent, EnableAgent, DeleteDeployment) stand for the calling service's
// systems; StandInPlatform implements them in memory so the example runs anywhere.
package teardownsaga

import (
	"errors"
	"fmt"
	"slices"
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

// RestoreCompensation is the name, in SagaResult.Compensated and CompensationFailures, of the
// compensation of step 2: the restore of the connections the teardown removed.
const RestoreCompensation = ac.RestoreAgentConnectionsWorkflowType

// RestoreChangeID is the workflow.GetVersion change ID of the restore compensation. A saga that
// had passed the teardown on a build without it replays as version DefaultVersion and restores
// nothing; every saga that gets there on this build records version 1 and restores.
const RestoreChangeID = "restore-removed-connections"

// RestoreAfterStoppedTeardownChangeID is the workflow.GetVersion change ID of the restore
// compensation of a teardown that ended with an error (cancelled with the saga, or past the Nexus
// variant's deadline) after removing some connections. A saga whose teardown stopped on a build
// without it replays as DefaultVersion and restores nothing, as that build did.
const RestoreAfterStoppedTeardownChangeID = "restore-after-stopped-teardown"

// RestoreMayHaveBeenRemovedChangeID is the workflow.GetVersion change ID of the wider restore:
// besides the removed and interrupted entries, those a request of the teardown may have removed
// (ac.ConnectionOutcome.MayHaveBeenRemoved). A compensation that began on a build before it
// replays with the narrower set.
const RestoreMayHaveBeenRemovedChangeID = "restore-may-have-been-removed"

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
	// ErrConnectionsNotRestored is the error of the restore compensation (in
	// CompensationFailures) when some removed connections are not back: the restore failed or
	// skipped entries, or the teardown's report held fewer removed entries with a snapshot than it
	// removed (a report truncated past MaxReportBytes).
	ErrConnectionsNotRestored = "ConnectionsNotRestored"
	// ErrRestoreNotOurs is the type of the restore compensation's failure when the Nexus variant's
	// restore operation attached to a restore of the agent already running with other tokens
	// (its input_digest differs): its result says nothing about the saga's entries.
	ErrRestoreNotOurs = "RestoreNotOfTheseConnections"
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

// MaxRestoredConnectionIDs bounds SagaResult.RestoredConnectionIDs (about 80 bytes each with
// UUIDs), so the saga's result stays under Temporal's payload warning; the restore's own result
// and report query have every entry.
const MaxRestoredConnectionIDs = 2_000

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
	// ConnectionsRemoved counts the connections the teardown removed, also when the saga fails.
	// Once the teardown returned its result, a failed saga restores them (ConnectionsRestored); a
	// teardown that failed, was cancelled or timed out returned none, and what it removed stays
	// removed: its report (the report query, in the worker's namespace) lists it for a restore.
	ConnectionsRemoved int `json:"connections_removed"`
	// ConnectionsAlreadyAbsent counts the connections that were gone before the teardown got to them.
	ConnectionsAlreadyAbsent int `json:"connections_already_absent"`
	// TeardownVerified is true when the teardown listed the agent's connections again after
	// removing them: only then does a complete teardown also mean none came back.
	TeardownVerified bool `json:"teardown_verified"`
	// NotRemoved are the connections the teardown left behind (at most maxNotRemoved of them;
	// the teardown's own result has them all).
	NotRemoved []ac.ConnectionOutcome `json:"not_removed,omitempty"`
	// ConnectionsRestored counts the removed connections the restore compensation put back
	// (restored, or already present with the same OAuth token).
	ConnectionsRestored int `json:"connections_restored,omitempty"`
	// ConnectionsNotRestored counts the removed connections the restore compensation did not put
	// back: failed or skipped by the restore (a revoked token, say), or missing from the
	// teardown's result (a truncated report, or no snapshot).
	ConnectionsNotRestored int `json:"connections_not_restored,omitempty"`
	// RestoredConnectionIDs maps each restored connection's old ID to its new one (at most
	// MaxRestoredConnectionIDs of them, in the order of the restore's report).
	RestoredConnectionIDs map[string]string `json:"restored_connection_ids,omitempty"`
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

	// Step 2. A missing agent (AgentNotFound), a cancelled or timed-out teardown ends the saga
	// here, before the irreversible step; what a cancelled teardown removed is reported and
	// restored.
	teardown, err := removeConnections(ctx, in, deadline)
	res.ConnectionsRemoved, res.ConnectionsAlreadyAbsent = teardown.Removed, teardown.AlreadyAbsent
	if err != nil {
		// A teardown that stopped (cancelled with the saga, or past the Nexus variant's deadline)
		// carries what it removed before it stopped: those come back too. Someone else's teardown
		// of chosen connections is not the saga's to undo.
		if mayHaveRemoved(teardown) && !teardown.ConnectionsGiven &&
			workflow.GetVersion(ctx, RestoreAfterStoppedTeardownChangeID, workflow.DefaultVersion, 1) == 1 {
			compensations = append(compensations, compensation{RestoreCompensation, func(ctx workflow.Context) error {
				return restoreRemoved(ctx, in, teardown, &res)
			}})
		}
		return fail(StepRemoveConnections, err)
	}
	res.TeardownFinished = true
	res.TeardownVerified = teardown.Verified
	if teardown.ConnectionsGiven {
		// Someone else's teardown of chosen connections: not the saga's to undo.
		return fail(StepRemoveConnections, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the teardown of agent %s that answered was given %d connection IDs: it did not remove every connection of the agent",
				in.AgentID, teardown.Total), ErrTeardownNotOfTheAgent, nil))
	}
	// The compensation of step 2, from the teardown's snapshot. Gated, so that a saga that passed
	// here on an earlier build replays without it (see RestoreChangeID).
	if workflow.GetVersion(ctx, RestoreChangeID, workflow.DefaultVersion, 1) == 1 {
		compensations = append(compensations, compensation{RestoreCompensation, func(ctx workflow.Context) error {
			return restoreRemoved(ctx, in, teardown, &res)
		}})
	}
	if err := completeTeardown(in, teardown, &res); err != nil {
		return fail(StepRemoveConnections, err)
	}

	// Step 3, the point of no return: nothing after it could be undone, so nothing comes after it.
	if err := workflow.ExecuteActivity(ctx, DeleteDeploymentActivity,
		DeploymentInput{AgentID: in.AgentID, DeploymentID: in.DeploymentID}).Get(ctx, nil); err != nil {
		return fail(StepDeleteDeployment, err)
	}
	res.DeploymentDeleted = true
	return res, nil
}

// mayHaveRemoved reports whether a teardown's (partial) result says it removed, or may have
// removed, any connection.
func mayHaveRemoved(r ac.RemoveAgentConnectionsResult) bool {
	return r.Removed > 0 || slices.ContainsFunc(r.Connections, ac.ConnectionOutcome.Undoable)
}

// completeTeardown fails when the teardown left any connection not removed or already absent, or
// was cancelled, and lists those connections (at most maxNotRemoved) in res.NotRemoved.
func completeTeardown(in SagaInput, teardown ac.RemoveAgentConnectionsResult, res *SagaResult) error {
	for _, o := range teardown.Connections {
		if o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent && len(res.NotRemoved) < maxNotRemoved {
			res.NotRemoved = append(res.NotRemoved, o)
		}
	}
	if notRemoved := teardown.Total - teardown.Removed - teardown.AlreadyAbsent; notRemoved != 0 || teardown.Cancelled {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%d of %d connections of agent %s not removed (%d failed, %d remained, %d reappeared, %d skipped, cancelled %t)",
				notRemoved, teardown.Total, in.AgentID, teardown.Failed, teardown.Remained, teardown.Reappeared, teardown.Skipped, teardown.Cancelled),
			ErrConnectionsNotRemoved, nil)
	}
	return nil
}

// removeConnections runs the teardown of the agent as a child workflow and returns its result.
// A teardown of the same agent already running (an operator's `starter --all`, say) makes the
// start fail: the saga then fails and compensates rather than wait on a run it does not own.
func removeConnections(ctx workflow.Context, in SagaInput, deadline workflow.Future) (ac.RemoveAgentConnectionsResult, error) {
	if in.NexusEndpoint != "" {
		return removeConnectionsThroughNexus(ctx, in, deadline)
	}
	ctx = workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: ac.RemoveAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:  teardownTaskQueue(in),
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

// restoreRemoved is the compensation of step 2: it restores, with RestoreAgentConnectionsWorkflow,
// the connections the teardown removed (ac.RestoreEntries of its result), and records in res how
// many came back and their new IDs. It fails with ErrConnectionsNotRestored when any removed
// connection is not back.
//
// It restores only the entries the teardown's result holds. A result whose report was truncated
// (past MaxReportBytes) holds fewer: the rest are in the teardown's report query, which only a
// client of the worker's namespace can ask, and the Nexus variant's namespace is not that one.
// Rather than need a client in its activities for one variant only, the saga counts them in
// ConnectionsNotRestored and fails this compensation, naming them, for the service to restore by
// hand from that report.
func restoreRemoved(ctx workflow.Context, in SagaInput, teardown ac.RemoveAgentConnectionsResult, res *SagaResult) error {
	entries := ac.RestoreEntries(teardown.Connections)
	if workflow.GetVersion(ctx, RestoreMayHaveBeenRemovedChangeID, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		entries = removedOrInterrupted(teardown.Connections)
	}
	missing := teardown.Removed
	for _, e := range teardown.Connections {
		if e.Outcome == ac.OutcomeRemoved && e.Undoable() {
			missing--
		}
	}
	var r ac.RestoreAgentConnectionsResult
	if len(entries) > 0 {
		var err error
		rin := ac.RestoreAgentConnectionsInput{AgentID: in.AgentID, Connections: entries}
		r, err = restoreConnections(ctx, in, rin)
		// A restore cancelled while it ran carries what it restored until then.
		var canceled *temporal.CanceledError
		if err != nil && errors.As(err, &canceled) && canceled.HasDetails() {
			r = ac.RestoreAgentConnectionsResult{}
			_ = canceled.Details(&r)
		}
		// The Nexus operation may have attached to a restore of other tokens: its result, or its
		// partial result, says nothing of these.
		if nerr := sameRestoreInput(in, rin, r); nerr != nil {
			r, err = ac.RestoreAgentConnectionsResult{}, nerr
		}
		if err != nil {
			recordRestored(r, res)
			// The restore takes one entry per token, as its counts do.
			res.ConnectionsNotRestored = distinctTokens(entries) - res.ConnectionsRestored + missing
			return err
		}
	}
	recordRestored(r, res)
	res.ConnectionsNotRestored = r.Failed + r.Skipped + missing
	if res.ConnectionsNotRestored > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"%d connections of agent %s not restored (%d failed, %d skipped by the restore; %d removed but not in the teardown's result with a snapshot: see its report query)",
			res.ConnectionsNotRestored, in.AgentID, r.Failed, r.Skipped, missing), ErrConnectionsNotRestored, nil)
	}
	return nil
}

// distinctTokens counts the OAuth tokens of entries, each once.
func distinctTokens(entries []ac.ConnectionSnapshot) int {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.OAuthTokenID] = true
	}
	return len(seen)
}

// removedOrInterrupted is the restore set of builds before RestoreMayHaveBeenRemovedChangeID: the
// removed and the interrupted entries with a snapshot.
func removedOrInterrupted(outcomes []ac.ConnectionOutcome) []ac.ConnectionSnapshot {
	out := []ac.ConnectionSnapshot{}
	for _, o := range outcomes {
		if s, ok := o.Snapshot(); ok && (o.Outcome == ac.OutcomeRemoved || (o.Outcome == ac.OutcomeFailed && o.FailureType == ac.ErrInterrupted)) {
			out = append(out, s)
		}
	}
	return out
}

// recordRestored puts in res how many of the restore's entries are back, and their new IDs.
func recordRestored(r ac.RestoreAgentConnectionsResult, res *SagaResult) {
	res.ConnectionsRestored = r.Restored + r.AlreadyPresent
	for _, o := range r.Connections {
		if o.NewConnectionID != "" && len(res.RestoredConnectionIDs) < MaxRestoredConnectionIDs {
			if res.RestoredConnectionIDs == nil {
				res.RestoredConnectionIDs = map[string]string{}
			}
			res.RestoredConnectionIDs[o.ConnectionID] = o.NewConnectionID
		}
	}
}

// restoreConnections runs the restore as a child workflow under the contract's workflow ID, or,
// in the Nexus variant, through the endpoint's restore operation. A restore of the same agent
// already running makes the child's start fail (the compensation fails, recorded); the operation
// attaches to it instead.
func restoreConnections(ctx workflow.Context, in SagaInput, rin ac.RestoreAgentConnectionsInput) (ac.RestoreAgentConnectionsResult, error) {
	var r ac.RestoreAgentConnectionsResult
	if in.NexusEndpoint != "" {
		c := workflow.NewNexusClient(in.NexusEndpoint, ac.NexusService)
		err := c.ExecuteOperation(ctx, ac.RestoreAgentConnectionsOperation, rin,
			workflow.NexusOperationOptions{ScheduleToCloseTimeout: teardownTimeout(in) + operationTimeoutMargin}).Get(ctx, &r)
		return r, err
	}
	ctx = workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:          ac.RestoreAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:           teardownTaskQueue(in),
		WaitForCancellation: true,
	})
	err := workflow.ExecuteChildWorkflow(ctx, ac.RestoreAgentConnectionsWorkflowType, rin).Get(ctx, &r)
	return r, err
}

// sameRestoreInput fails with ErrRestoreNotOurs when r is the result of a restore of other
// tokens than rin's (the operation attached to a restore someone else started). A worker older
// than input_digest leaves it empty: that result is taken as it is.
func sameRestoreInput(in SagaInput, rin ac.RestoreAgentConnectionsInput, r ac.RestoreAgentConnectionsResult) error {
	if r.InputDigest == "" || r.InputDigest == ac.RestoreInputDigest(rin.Connections) {
		return nil
	}
	via := "as a child workflow"
	if in.NexusEndpoint != "" {
		via = "through Nexus endpoint " + in.NexusEndpoint
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"the restore of agent %s that answered %s was given other connections (a restore of the agent was already running); none of the %d to restore is known to be back",
		rin.AgentID, via, len(rin.Connections)), ErrRestoreNotOurs, nil)
}

// teardownTaskQueue is in.TeardownTaskQueue or ac.DefaultTaskQueue.
func teardownTaskQueue(in SagaInput) string {
	if in.TeardownTaskQueue != "" {
		return in.TeardownTaskQueue
	}
	return ac.DefaultTaskQueue
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
	if slices.Contains(res.Compensated, RestoreCompensation) || res.ConnectionsRestored > 0 || res.ConnectionsNotRestored > 0 {
		msg = fmt.Sprintf("agent %s teardown saga failed at %s; %d connections removed, %d restored, %d not restored",
			res.AgentID, res.FailedStep, res.ConnectionsRemoved, res.ConnectionsRestored, res.ConnectionsNotRestored)
	}
	if len(res.CompensationFailures) > 0 {
		msg += fmt.Sprintf("; %d compensations failed", len(res.CompensationFailures))
	}
	return temporal.NewApplicationErrorWithOptions(msg, ErrSagaFailed, temporal.ApplicationErrorOptions{
		NonRetryable: true,
		Cause:        cause,
		Details:      []any{res},
	})
}
