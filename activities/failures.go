package activities

import (
	"errors"

	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// applicationError is the one place a failure of these activities becomes what the contract
// asks for: an ApplicationError of the *controlplane.Error's type, not retryable unless the type
// is transient, with its Retry-After as the next retry's delay and FailureDetails (status, request
// count) attached. Any other error, the context's own above all, is returned as it is, so
// Temporal sees a cancellation or timeout for what it is; nil stays nil.
func applicationError(err error) error {
	var e *controlplane.Error
	if !errors.As(err, &e) {
		return err
	}
	return temporal.NewApplicationErrorWithOptions(e.Message, e.Type, temporal.ApplicationErrorOptions{
		NonRetryable:   !e.Retryable,
		NextRetryDelay: e.RetryAfter,
		Details:        []any{ac.FailureDetails{StatusCode: e.Status, Requests: e.Requests}},
	})
}

// invalid is the failure of input refused before anything was sent: InvalidRequest, not retried.
func invalid(err error) error {
	return applicationError(&controlplane.Error{Type: ac.ErrInvalidRequest, Message: err.Error()})
}

// unavailable is the failure of an activity that could not ask Temporal what it needed:
// Unavailable, retried.
func unavailable(msg string) error {
	return applicationError(&controlplane.Error{Type: ac.ErrUnavailable, Retryable: true, Message: msg})
}
