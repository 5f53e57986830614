// Package nexuscaller is an example for calling services, not part of the worker: workflows of
// another team, in a namespace of their own, that remove connections through a Nexus endpoint
// targeting the agent-connections worker. It imports only the contract package
// (github.com/agentops/agentconnections) from this module, and knows neither the worker's
// namespace, nor its task queue, nor its workflow IDs: the endpoint name is its whole address.
package nexuscaller

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
)

// Bounds of the operations. Each operation's ScheduleToCloseTimeout ends it (a timeout error at
// the caller) once the server has scheduled it, whatever the handler does: a handler that keeps
// failing retryably is retried until then.
const (
	// RemoveTimeout bounds RemoveConnection's operation (the removal itself gives up within 30 minutes).
	RemoveTimeout = time.Hour
	// TeardownTimeout bounds Teardown's operation; a teardown of 10,000 connections takes hours.
	TeardownTimeout = 24 * time.Hour
	// RestoreTimeout bounds Restore's operation, as long as a teardown's.
	RestoreTimeout = 24 * time.Hour
)

// RemoveInput is the input of RemoveConnection.
type RemoveInput struct {
	// Endpoint is the Nexus endpoint that targets the agent-connections worker.
	Endpoint string                   `json:"endpoint"`
	Removal  ac.RemoveConnectionInput `json:"removal"`
}

// RemoveOutcome is what RemoveConnection saw: the removal's result, or its typed failure.
type RemoveOutcome struct {
	Result  *ac.RemoveConnectionResult `json:"result,omitempty"`
	Failure *Failure                   `json:"failure,omitempty"`
}

// Failure is a failed operation as the caller reads it.
type Failure struct {
	// Operation is the Nexus operation that failed (from the NexusOperationError).
	Operation string `json:"operation"`
	// Type is the ApplicationError's Type(): one of the contract's failure types.
	Type    string `json:"type"`
	Message string `json:"message"`
	// Details are the ApplicationError's details, when it carries them (a failed DELETE does).
	Details *ac.FailureDetails `json:"details,omitempty"`
}

// RemoveConnection removes one connection through the endpoint and reports the result or the
// typed failure; any other error (a timeout, say) fails the workflow.
//
// An endpoint name the server does not know fails nothing on Temporal 1.29 by default: the server
// refuses the workflow task that schedules the operation, and the task is retried until the
// workflow's own timeout, so the operation's timeout never starts. The dynamic config setting
// component.nexusoperations.endpointNotFoundAlwaysNonRetryable (default false, so that a new
// endpoint has time to reach every host) makes the operation fail at once instead. A workflow
// that must end on its own starts a timer before the task that schedules the operation, as the
// saga example does.
func RemoveConnection(ctx workflow.Context, in RemoveInput) (RemoveOutcome, error) {
	c := workflow.NewNexusClient(in.Endpoint, ac.NexusService)
	var res ac.RemoveConnectionResult
	err := c.ExecuteOperation(ctx, ac.RemoveConnectionOperation, in.Removal,
		workflow.NexusOperationOptions{ScheduleToCloseTimeout: RemoveTimeout}).Get(ctx, &res)
	if err != nil {
		f, ok := TypedFailure(err)
		if !ok {
			return RemoveOutcome{}, err
		}
		return RemoveOutcome{Failure: &f}, nil
	}
	return RemoveOutcome{Result: &res}, nil
}

// TypedFailure reads a failed operation: a *temporal.NexusOperationError whose cause chain holds
// the worker's *temporal.ApplicationError, with the contract's failure type and, when it has them,
// FailureDetails. ok is false for any other error.
func TypedFailure(err error) (f Failure, ok bool) {
	var opErr *temporal.NexusOperationError
	var appErr *temporal.ApplicationError
	if !errors.As(err, &opErr) || !errors.As(err, &appErr) {
		return f, false
	}
	f = Failure{Operation: opErr.Operation, Type: appErr.Type(), Message: appErr.Message()}
	if appErr.HasDetails() {
		var d ac.FailureDetails
		if appErr.Details(&d) == nil {
			f.Details = &d
		}
	}
	return f, true
}

// TeardownInput is the input of Teardown.
type TeardownInput struct {
	Endpoint string                         `json:"endpoint"`
	Teardown ac.RemoveAgentConnectionsInput `json:"teardown"`
}

// Teardown removes every connection of an agent through the endpoint and returns the teardown's
// result. Cancelling Teardown cancels the operation, which cancels the teardown; Teardown waits
// for it to stop and then ends canceled itself, with the teardown's partial result (what it
// removed before it stopped) as its canceled error's details. A failed teardown (AgentNotFound,
// say) fails Teardown with the operation's error, whose cause chain holds the typed failure.
func Teardown(ctx workflow.Context, in TeardownInput) (ac.RemoveAgentConnectionsResult, error) {
	c := workflow.NewNexusClient(in.Endpoint, ac.NexusService)
	var res ac.RemoveAgentConnectionsResult
	// The default cancellation type waits for the teardown to end, so the partial result exists.
	err := c.ExecuteOperation(ctx, ac.RemoveAgentConnectionsOperation, in.Teardown,
		workflow.NexusOperationOptions{ScheduleToCloseTimeout: TeardownTimeout}).Get(ctx, &res)
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &canceled) && canceled.HasDetails():
		// The teardown's canceled error carries its RemoveAgentConnectionsResult.
		if derr := canceled.Details(&res); derr != nil {
			return res, err
		}
		return res, temporal.NewCanceledError(res)
	default:
		return res, err
	}
}

// RestoreInput is the input of Restore.
type RestoreInput struct {
	Endpoint string                          `json:"endpoint"`
	Restore  ac.RestoreAgentConnectionsInput `json:"restore"`
}

// Restore re-creates removed connections of an agent through the endpoint and returns the
// restore's result. An entry that failed (a revoked token: ValidationError with the 422's detail)
// is a failed entry of the result, not an error; a restore that failed as a whole (AgentNotFound,
// say) fails Restore with the operation's error, whose cause chain holds the typed failure.
func Restore(ctx workflow.Context, in RestoreInput) (ac.RestoreAgentConnectionsResult, error) {
	c := workflow.NewNexusClient(in.Endpoint, ac.NexusService)
	var res ac.RestoreAgentConnectionsResult
	err := c.ExecuteOperation(ctx, ac.RestoreAgentConnectionsOperation, in.Restore,
		workflow.NexusOperationOptions{ScheduleToCloseTimeout: RestoreTimeout}).Get(ctx, &res)
	return res, err
}
