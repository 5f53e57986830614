package agentconnections

import "fmt"

// Outcomes of a successful removal.
const (
	// OutcomeRemoved means the control plane answered 204.
	OutcomeRemoved = "removed"
	// OutcomeAlreadyAbsent means the connection was not there (404 with missing_ok, or a 404 after an
	// earlier request of the same removal, which may itself have removed it).
	OutcomeAlreadyAbsent = "already_absent"
)

// RemoveConnectionInput is the input of RemoveConnectionWorkflow.
type RemoveConnectionInput struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	// MissingOK makes a 404 on the first request a success (already_absent). Absent means true.
	MissingOK *bool `json:"missing_ok,omitempty"`
	// Retry overrides the activity's default timeouts and retry policy; absent fields keep the defaults.
	Retry *RetryOverrides `json:"retry,omitempty"`
	// Snapshot makes the removal list the agent first and return the connection's snapshot
	// (oauth_token_id, provider_id, scopes) with its result, for a restore to re-create it.
	Snapshot bool `json:"snapshot,omitempty"`
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
	// The connection's snapshot, with snapshot: true in the input and the connection listed (as a
	// teardown's report entry carries it).
	OAuthTokenID string   `json:"oauth_token_id,omitempty"`
	ProviderID   string   `json:"provider_id,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// Snapshot is the removed connection's snapshot, and whether the result has one.
func (r RemoveConnectionResult) Snapshot() (ConnectionSnapshot, bool) {
	s := ConnectionSnapshot{ConnectionID: r.ConnectionID, OAuthTokenID: r.OAuthTokenID, ProviderID: r.ProviderID, Scopes: r.Scopes}
	return s, r.OAuthTokenID != ""
}

// States of a RemoveConnectionWorkflow, as the removal_state query returns them.
const (
	// RemovalChecking: it is asking whether a teardown of its agent owns the connection.
	RemovalChecking = "checking"
	// RemovalWaitingForTeardown: a teardown owns the connection; this removal takes its outcome.
	RemovalWaitingForTeardown = "waiting_for_teardown"
	// RemovalRemoving: this removal sends its own DELETE.
	RemovalRemoving = "removing"
)

// RemovalState is the answer of the removal_state query.
type RemovalState struct {
	State string `json:"state"`
}
