// Package workflows holds the worker's Temporal workflows. RemoveConnectionWorkflow removes one
// agent connection by running the RemoveConnection activity under documented default timeouts and
// a bounded retry policy, with optional per-call overrides from its input.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// Defaults of the RemoveConnection activity's options. The README's retry table mirrors them.
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
// once with type InvalidRequest, before any activity runs), runs the RemoveConnection activity and
// returns its result. A failed removal returns the activity's ApplicationError, type intact.
func RemoveConnectionWorkflow(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID}
	if err := in.Validate(); err != nil {
		return result, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	ctx = workflow.WithActivityOptions(ctx, RemoveConnectionActivityOptions(in.Retry))
	err := workflow.ExecuteActivity(ctx, acts.RemoveConnection, ac.RemoveConnectionActivityInput{
		AgentID:      in.AgentID,
		ConnectionID: in.ConnectionID,
		MissingOK:    in.MissingOKOrDefault(),
	}).Get(ctx, &result)
	if err != nil {
		workflow.GetLogger(ctx).Warn("connection removal failed",
			"agent_id", in.AgentID, "connection_id", in.ConnectionID, "error", err.Error())
		return result, err
	}
	return result, nil
}

// RemoveConnectionActivityOptions are the activity options RemoveConnectionWorkflow uses: the
// defaults above with any override applied. The non-retryable failure types are always listed, so
// no override can retry them.
func RemoveConnectionActivityOptions(o *ac.RetryOverrides) workflow.ActivityOptions {
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    DefaultStartToCloseTimeout,
		ScheduleToCloseTimeout: DefaultScheduleToCloseTimeout,
		HeartbeatTimeout:       DefaultHeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        DefaultInitialInterval,
			BackoffCoefficient:     DefaultBackoffCoefficient,
			MaximumInterval:        DefaultMaximumInterval,
			MaximumAttempts:        DefaultMaximumAttempts,
			NonRetryableErrorTypes: ac.NonRetryableErrorTypes(),
		},
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
