package agentconnections

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
	// ErrInterrupted is a teardown's per-connection failure type, never an activity's: the
	// teardown stopped (cancelled, key refused, continue_on_error false) after it had sent this
	// connection a request that got no final answer, so it may or may not be removed. A
	// standalone removal waiting on the teardown removes such a connection itself.
	ErrInterrupted = "Interrupted"
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

// FailureDetails travels as the details of every ApplicationError the RemoveConnection activity
// returns (errors.As to *temporal.ApplicationError, then Details(&d)).
type FailureDetails struct {
	// StatusCode is the control plane's last answer, 0 when none came (network failure, refused ID).
	StatusCode int `json:"status_code,omitempty"`
	// Requests counts the HTTP requests sent for this removal so far, across attempts.
	Requests int `json:"requests"`
}
