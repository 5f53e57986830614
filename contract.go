// Package agentconnections is the public contract of the RemoveConnection worker: the workflow and
// activity type names, the default task queue, the input and result types, the failure types and
// the workflow-ID helper. Calling services import it to start or compose removals; it depends on
// nothing heavier than the Temporal SDK.
package agentconnections

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Names fixed by the contract. Changing one breaks running callers.
const (
	// RemoveConnectionWorkflowType is the workflow type that removes one connection.
	RemoveConnectionWorkflowType = "RemoveConnectionWorkflow"
	// RemoveConnectionActivityType is the activity type that sends the DELETE request.
	RemoveConnectionActivityType = "RemoveConnection"
	// RemoveAgentConnectionsWorkflowType is the teardown workflow type (every connection of one agent).
	RemoveAgentConnectionsWorkflowType = "RemoveAgentConnectionsWorkflow"
	// ListConnectionsActivityType is the activity type that lists an agent's connections.
	ListConnectionsActivityType = "ListConnections"
	// DefaultTaskQueue is the task queue the worker polls unless TEMPORAL_TASK_QUEUE says otherwise.
	DefaultTaskQueue = "agent-connections"
	// TaskQueueEnv names the environment variable that overrides DefaultTaskQueue.
	TaskQueueEnv = "TEMPORAL_TASK_QUEUE"
)

// Outcomes of a successful removal.
const (
	// OutcomeRemoved means the control plane answered 204.
	OutcomeRemoved = "removed"
	// OutcomeAlreadyAbsent means the connection was not there (404 with missing_ok, or a 404 after an
	// earlier request of the same removal, which may itself have removed it).
	OutcomeAlreadyAbsent = "already_absent"
)

// Failure types, as returned by ApplicationError.Type().
const (
	// ErrInvalidRequest: an ID or other input was refused before any request was sent.
	ErrInvalidRequest = "InvalidRequest"
	// ErrNotFound: 404 on the first request of a removal with missing_ok false.
	ErrNotFound = "NotFound"
	// ErrValidation: 422 from the control plane.
	ErrValidation = "ValidationError"
	// ErrBadRequest: 400 from the control plane.
	ErrBadRequest = "BadRequest"
	// ErrUnauthorized: 401 or 403 from the control plane.
	ErrUnauthorized = "Unauthorized"
	// ErrUnexpectedStatus: any status the contract does not list.
	ErrUnexpectedStatus = "UnexpectedStatus"
	// ErrRateLimited: 429 (retried, honouring Retry-After).
	ErrRateLimited = "RateLimited"
	// ErrServerError: 5xx (retried, honouring Retry-After).
	ErrServerError = "ServerError"
	// ErrUnavailable: the control plane could not be reached, timed out, or answered 408 (retried).
	ErrUnavailable = "Unavailable"
	// ErrAgentNotFound: the control plane answered 404 to the list of an agent's connections. The
	// agent does not exist there, or LANGSMITH_CONTROL_PLANE_URL lacks the install's path prefix.
	ErrAgentNotFound = "AgentNotFound"
)

// NonRetryableErrorTypes lists the failure types that no retry can fix. The workflow puts them in
// its retry policy's NonRetryableErrorTypes, so even a custom policy cannot retry them.
func NonRetryableErrorTypes() []string {
	return []string{ErrInvalidRequest, ErrNotFound, ErrValidation, ErrBadRequest, ErrUnauthorized, ErrUnexpectedStatus, ErrAgentNotFound}
}

// RetryableErrorTypes lists the failure types that are transient and retried by default.
func RetryableErrorTypes() []string {
	return []string{ErrRateLimited, ErrServerError, ErrUnavailable}
}

// RemoveConnectionWorkflowID is the workflow ID a starter uses for one removal, so that at most one
// removal of a given connection runs at a time. Validate the IDs first: the ID is only unambiguous
// for IDs that pass ValidateID.
func RemoveConnectionWorkflowID(agentID, connectionID string) string {
	return "remove-connection/" + agentID + "/" + connectionID
}

// MaxIDBytes is the longest agent or connection ID accepted.
const MaxIDBytes = 256

// ErrInvalidID is wrapped by every error ValidateID returns.
var ErrInvalidID = errors.New("invalid id")

// ValidateID checks an agent or connection ID before it goes into a URL path. It refuses IDs that
// are empty, longer than MaxIDBytes, "." or "..", or that contain '/', '\', whitespace, control
// characters, '?', '#' or '%': many servers decode an escaped slash before routing, so such an ID
// could reach another route, and that route's 404 would read as "already absent". It also refuses
// bytes that are not UTF-8, which JSON (and so workflow history) cannot carry faithfully. Every
// other ID is valid and is path-escaped when the URL is built. field names the
// ID in the error ("agent_id", "connection_id"); the error never repeats an over-long ID in full.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, field)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: %s is %d bytes long, the limit is %d", ErrInvalidID, field, len(id), MaxIDBytes)
	case id == "." || id == "..":
		return fmt.Errorf("%w: %s %q is a path segment, not an id", ErrInvalidID, field, id)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidID, field)
	}
	for i, r := range id {
		if r == '/' || r == '\\' || r == '?' || r == '#' || r == '%' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q contains %q at byte %d", ErrInvalidID, field, id, r, i)
		}
	}
	return nil
}

// RemoveConnectionInput is the input of RemoveConnectionWorkflow.
type RemoveConnectionInput struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	// MissingOK makes a 404 on the first request a success (already_absent). Absent means true.
	MissingOK *bool `json:"missing_ok,omitempty"`
	// Retry overrides the activity's default timeouts and retry policy; absent fields keep the defaults.
	Retry *RetryOverrides `json:"retry,omitempty"`
}

// MissingOKOrDefault returns MissingOK, or true when it is absent.
func (in RemoveConnectionInput) MissingOKOrDefault() bool {
	return in.MissingOK == nil || *in.MissingOK
}

// Validate checks both IDs with ValidateID and the retry overrides.
func (in RemoveConnectionInput) Validate() error {
	if err := ValidateID("agent_id", in.AgentID); err != nil {
		return err
	}
	if err := ValidateID("connection_id", in.ConnectionID); err != nil {
		return err
	}
	if in.Retry != nil {
		return in.Retry.Validate()
	}
	return nil
}

// RetryOverrides are optional per-call changes to the activity's timeouts and retry policy.
// Durations are Go duration strings ("30s", "2m"). Non-retryable failure types stay
// non-retryable whatever is set here.
type RetryOverrides struct {
	// StartToCloseTimeout bounds one Temporal attempt (all its in-process HTTP retries included).
	StartToCloseTimeout Duration `json:"start_to_close_timeout,omitempty"`
	// ScheduleToCloseTimeout bounds the whole removal, every attempt included.
	ScheduleToCloseTimeout Duration `json:"schedule_to_close_timeout,omitempty"`
	// InitialInterval is the wait before the first Temporal retry.
	InitialInterval Duration `json:"initial_interval,omitempty"`
	// MaximumInterval caps the wait between Temporal retries.
	MaximumInterval Duration `json:"maximum_interval,omitempty"`
	// BackoffCoefficient multiplies the wait after each retry (at least 1).
	BackoffCoefficient float64 `json:"backoff_coefficient,omitempty"`
	// MaximumAttempts bounds the Temporal attempts (0 keeps the default; the contract wants a bound,
	// so unlimited retries are not offered).
	MaximumAttempts int32 `json:"maximum_attempts,omitempty"`
}

// Validate refuses negative durations and counts and a backoff coefficient below 1.
func (r RetryOverrides) Validate() error {
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"start_to_close_timeout", r.StartToCloseTimeout},
		{"schedule_to_close_timeout", r.ScheduleToCloseTimeout},
		{"initial_interval", r.InitialInterval},
		{"maximum_interval", r.MaximumInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("retry.%s is negative (%s)", d.name, d.v)
		}
	}
	if r.BackoffCoefficient != 0 && r.BackoffCoefficient < 1 {
		return fmt.Errorf("retry.backoff_coefficient is %v, it must be at least 1", r.BackoffCoefficient)
	}
	if r.MaximumAttempts < 0 {
		return fmt.Errorf("retry.maximum_attempts is %d, it must be positive", r.MaximumAttempts)
	}
	if r.InitialInterval > 0 && r.MaximumInterval > 0 && r.MaximumInterval < r.InitialInterval {
		return fmt.Errorf("retry.maximum_interval (%s) is shorter than retry.initial_interval (%s)", r.MaximumInterval, r.InitialInterval)
	}
	return nil
}

// RemoveConnectionResult is the result of RemoveConnectionWorkflow and of the RemoveConnection activity.
type RemoveConnectionResult struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	// Outcome is OutcomeRemoved or OutcomeAlreadyAbsent.
	Outcome string `json:"outcome"`
	// Attempts counts the HTTP requests sent for this removal, across Temporal attempts and
	// in-process retries.
	Attempts int `json:"attempts"`
}

// RemoveConnectionActivityInput is the input of the RemoveConnection activity.
type RemoveConnectionActivityInput struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	MissingOK    bool   `json:"missing_ok"`
}

// String keeps IDs readable in logs; the input holds no credential.
func (in RemoveConnectionActivityInput) String() string {
	return fmt.Sprintf("agent_id=%s connection_id=%s missing_ok=%t", in.AgentID, in.ConnectionID, in.MissingOK)
}

// FailureDetails travels as the details of every ApplicationError the RemoveConnection activity
// returns (errors.As to *temporal.ApplicationError, then Details(&d)).
type FailureDetails struct {
	// StatusCode is the control plane's last answer, 0 when none came (network failure, refused ID).
	StatusCode int `json:"status_code,omitempty"`
	// Requests counts the HTTP requests sent for this removal so far, across attempts.
	Requests int `json:"requests"`
}
