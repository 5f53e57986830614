// Package workflows holds the worker's Temporal workflows. RemoveConnectionWorkflow removes one
// agent connection by running the RemoveConnection activity under default timeouts and a bounded
// retry policy (docs/contract.md, Retries), with optional per-call overrides from its input.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// Defaults of the RemoveConnection activity's options. The retry table in docs/contract.md mirrors
// them.
const (
	// DefaultStartToCloseTimeout bounds one attempt: a request (30s by default) plus the short
	// in-process retries.
	DefaultStartToCloseTimeout = 2 * time.Minute
	// DefaultScheduleToCloseTimeout bounds the whole removal, all attempts and waits included.
	DefaultScheduleToCloseTimeout = 30 * time.Minute
	// DefaultHeartbeatTimeout is how soon a removal whose worker died is handed to another worker.
	DefaultHeartbeatTimeout = 30 * time.Second
	// DefaultInitialInterval is the wait before the first Temporal retry.
	DefaultInitialInterval = 1 * time.Second
	// DefaultBackoffCoefficient grows the wait between retries.
	DefaultBackoffCoefficient = 2.0
	// DefaultMaximumInterval caps the wait between retries.
	DefaultMaximumInterval = 1 * time.Minute
	// DefaultMaximumAttempts bounds the Temporal attempts.
	DefaultMaximumAttempts = 10
)

// acts is the nil receiver activities are called through; the worker registers the real one.
var acts *activities.Activities

// RemoveConnectionWorkflow removes one connection. It validates its input (a refused ID fails at
// once with type InvalidRequest, before any activity runs), then makes sure it does not race a
// teardown of the same agent: when a running RemoveAgentConnectionsWorkflow owns the connection,
// it takes that teardown's outcome instead of sending a second DELETE. Otherwise it runs the
// RemoveConnection activity and returns its result; a failed removal returns the activity's
// ApplicationError, type intact. The removal_state query says which of these it is doing. With
// snapshot set it lists the agent first (a failed list fails it with the list's type) and returns
// the connection's snapshot with its result.
func RemoveConnectionWorkflow(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	var snap ac.ConnectionSnapshot
	if in.Snapshot && in.Validate() == nil {
		s, err := listSnapshot(ctx, in)
		if err != nil {
			return ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID}, err
		}
		snap = s
	}
	res, err := removeConnection(ctx, in)
	if err == nil {
		res.OAuthTokenID, res.ProviderID, res.Scopes = snap.OAuthTokenID, snap.ProviderID, snap.Scopes
	}
	return res, err
}

// listSnapshot lists the agent for the connection's snapshot (empty when it is not listed or has
// no usable token).
func listSnapshot(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.ConnectionSnapshot, error) {
	actx := workflow.WithActivityOptions(ctx, listActivityOptions())
	var res activities.ListConnectionsResult
	list := activities.ListConnectionsInput{AgentID: in.AgentID, Snapshot: true, Only: []string{in.ConnectionID}}
	if err := workflow.ExecuteActivity(actx, acts.ListConnections, list).Get(ctx, &res); err != nil {
		return ac.ConnectionSnapshot{}, listFailure(err)
	}
	for _, s := range res.Snapshots {
		if s.ConnectionID == in.ConnectionID {
			return s, nil
		}
	}
	return ac.ConnectionSnapshot{}, nil
}

func removeConnection(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID}
	if err := in.Validate(); err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	logger := workflow.GetLogger(ctx)
	state := ac.RemovalChecking
	if err := workflow.SetQueryHandler(ctx, ac.RemovalStateQuery, func() (ac.RemovalState, error) {
		return ac.RemovalState{State: state}, nil
	}); err != nil {
		return result, err
	}

	missingOK := in.MissingOKOrDefault()
	ref := activities.ConnectionRef{AgentID: in.AgentID, ConnectionID: in.ConnectionID}
	var claim ac.ConnectionClaim
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 5},
	})
	if err := workflow.ExecuteLocalActivity(lctx, acts.CheckTeardownClaim, ref).Get(ctx, &claim); err != nil {
		// The teardown checks this workflow's state before each DELETE and defers to a removal
		// that is "removing", so going ahead cannot race it from here on.
		logger.Warn("could not check for a teardown of this agent; removing directly", "agent_id", in.AgentID, "error", err.Error())
		claim = ac.ConnectionClaim{}
	}
	if claim.Claimed {
		state = ac.RemovalWaitingForTeardown
		if claim.Outcome == nil {
			actx := workflow.WithActivityOptions(ctx, awaitActivityOptions())
			if err := workflow.ExecuteActivity(actx, acts.AwaitTeardownOutcome, ref).Get(ctx, &claim); err != nil {
				return result, err
			}
		}
		if o := claim.Outcome; o != nil {
			res, done, err := takeTeardownOutcome(*o, missingOK)
			if done {
				logger.Info("connection handled by the agent's teardown", "agent_id", in.AgentID, "connection_id", in.ConnectionID,
					"teardown_outcome", o.Outcome, "outcome", res)
				result.Outcome = res
				return result, err
			}
			// Skipped, remained or reappeared: remove it here. A request the teardown sent may
			// have removed it, and then a 404 means already absent.
			missingOK = missingOK || o.Attempts > 0
		} else {
			// The teardown ended (or was cancelled) without an outcome for it: do it here. It may
			// still have sent a DELETE before it stopped, so a 404 now means already absent.
			missingOK = true
		}
	}

	state = ac.RemovalRemoving
	ctx = workflow.WithActivityOptions(ctx, RemoveConnectionActivityOptions(in.Retry))
	err := workflow.ExecuteActivity(ctx, acts.RemoveConnection, activities.RemoveConnectionInput{
		AgentID:      in.AgentID,
		ConnectionID: in.ConnectionID,
		MissingOK:    missingOK,
	}).Get(ctx, &result)
	if err != nil {
		logger.Warn("connection removal failed",
			"agent_id", in.AgentID, "connection_id", in.ConnectionID, "error", err.Error())
		return result, err
	}
	return result, nil
}

// takeTeardownOutcome turns the teardown's outcome for the connection into this removal's, by
// this removal's own missing_ok: a connection the teardown found absent on its first request (or
// failed NotFound) is NotFound for a removal that does not accept that, and already_absent for
// one that does. done is false when the teardown did not settle the connection (skipped,
// remained, reappeared, or interrupted by a stop): the removal then sends its own DELETE.
func takeTeardownOutcome(o ac.ConnectionOutcome, missingOK bool) (outcome string, done bool, err error) {
	notFound := func() error {
		return temporal.NewNonRetryableApplicationError(
			"the agent's teardown found this connection absent on its first request (missing_ok is false)", ac.ErrNotFound, nil)
	}
	switch {
	case o.Outcome == ac.OutcomeRemoved:
		return ac.OutcomeRemoved, true, nil
	case o.Outcome == ac.OutcomeAlreadyAbsent && !missingOK && o.Attempts == 1:
		return "", true, notFound()
	case o.Outcome == ac.OutcomeAlreadyAbsent:
		return ac.OutcomeAlreadyAbsent, true, nil
	case o.Outcome == ac.OutcomeFailed && o.FailureType == ac.ErrNotFound && missingOK:
		return ac.OutcomeAlreadyAbsent, true, nil
	case o.Outcome == ac.OutcomeFailed && o.FailureType == ac.ErrNotFound:
		return "", true, notFound()
	case o.Outcome == ac.OutcomeFailed && o.FailureType == ac.ErrInterrupted:
		// The teardown stopped without a final answer: not settled, so remove it here.
		return "", false, nil
	case o.Outcome == ac.OutcomeFailed:
		return "", true, temporal.NewNonRetryableApplicationError("the agent's teardown failed to remove this connection: "+o.Message, o.FailureType, nil)
	}
	return "", false, nil
}

// defaultRetryPolicy is the documented retry schedule with maxAttempts attempts; the
// non-retryable failure types are always listed, so no override can retry them.
func defaultRetryPolicy(maxAttempts int32) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        DefaultInitialInterval,
		BackoffCoefficient:     DefaultBackoffCoefficient,
		MaximumInterval:        DefaultMaximumInterval,
		MaximumAttempts:        maxAttempts,
		NonRetryableErrorTypes: ac.NonRetryableErrorTypes(),
	}
}

// RemoveConnectionActivityOptions are the activity options RemoveConnectionWorkflow uses: the
// defaults above with any override applied. The non-retryable failure types are always listed, so
// no override can retry them.
func RemoveConnectionActivityOptions(o *ac.RetryOverrides) workflow.ActivityOptions {
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    DefaultStartToCloseTimeout,
		ScheduleToCloseTimeout: DefaultScheduleToCloseTimeout,
		HeartbeatTimeout:       DefaultHeartbeatTimeout,
		RetryPolicy:            defaultRetryPolicy(DefaultMaximumAttempts),
	}
	if o == nil {
		return opts
	}
	if o.StartToCloseTimeout > 0 {
		opts.StartToCloseTimeout = o.StartToCloseTimeout.D()
	}
	if o.ScheduleToCloseTimeout > 0 {
		opts.ScheduleToCloseTimeout = o.ScheduleToCloseTimeout.D()
	}
	if o.InitialInterval > 0 {
		opts.RetryPolicy.InitialInterval = o.InitialInterval.D()
	}
	if o.MaximumInterval > 0 {
		opts.RetryPolicy.MaximumInterval = o.MaximumInterval.D()
	}
	if opts.RetryPolicy.MaximumInterval < opts.RetryPolicy.InitialInterval {
		opts.RetryPolicy.MaximumInterval = opts.RetryPolicy.InitialInterval
	}
	if o.BackoffCoefficient >= 1 {
		opts.RetryPolicy.BackoffCoefficient = o.BackoffCoefficient
	}
	if o.MaximumAttempts > 0 {
		opts.RetryPolicy.MaximumAttempts = o.MaximumAttempts
	}
	return opts
}
