package agentconnections

import (
	"fmt"
	"time"
)

// Names of the teardown (RemoveAgentConnectionsWorkflow) and of what runs around it.
const (
	// RemoveConnectionsActivityType removes a batch of one agent's connections, with bounded
	// parallelism and heartbeated progress, so a retry resumes where the last attempt stopped.
	RemoveConnectionsActivityType = "RemoveConnections"
	// ProgressQuery returns a TeardownProgress while the teardown runs.
	ProgressQuery = "progress"
	// ConnectionStatusQuery takes a connection ID and returns a ConnectionClaim: whether this
	// teardown owns the connection and, once it is done with it, its outcome.
	ConnectionStatusQuery = "connection_status"
	// CancelUpdate stops a teardown cleanly: removals in flight finish, none start, and the
	// workflow returns its result with Cancelled set. The update returns the progress at that moment.
	CancelUpdate = "cancel"
	// RemovalStateQuery returns the RemovalState of a RemoveConnectionWorkflow.
	RemovalStateQuery = "removal_state"
)

// Teardown defaults and bounds.
const (
	// DefaultTeardownConcurrency is how many DELETE requests a teardown keeps in flight at most.
	DefaultTeardownConcurrency = 10
	// MaxTeardownConcurrency bounds Concurrency.
	MaxTeardownConcurrency = 200
	// MaxTeardownConnections bounds the connections of one teardown (given or listed), so its
	// input, carried state and result stay under Temporal's 2 MB payload limit.
	MaxTeardownConnections = 10_000
	// DefaultTeardownMaxHistoryEvents is the history length at which a teardown run continues as
	// new. Temporal warns at 10,240 events and fails a run at 51,200; a batch costs about six.
	DefaultTeardownMaxHistoryEvents = 5_000
	// MaxTeardownRounds bounds how often one connection is tried again after a transient failure.
	MaxTeardownRounds = 8
	// MaxOutcomeMessageBytes bounds the failure message kept per connection, so the result of a
	// large teardown stays well under Temporal's payload limit.
	MaxOutcomeMessageBytes = 256
)

// RemoveAgentConnectionsWorkflowID is the workflow ID of the teardown of one agent: one teardown
// per agent runs at a time, and standalone removals find it by this ID.
func RemoveAgentConnectionsWorkflowID(agentID string) string {
	return "remove-agent-connections/" + agentID
}

// RemoveAgentConnectionsInput is the input of RemoveAgentConnectionsWorkflow.
type RemoveAgentConnectionsInput struct {
	AgentID string `json:"agent_id"`
	// ConnectionIDs, when set, are exactly the connections to remove; otherwise the teardown lists
	// the agent's connections and removes them all.
	ConnectionIDs []string `json:"connection_ids,omitempty"`
	// Concurrency bounds the DELETE requests in flight (default DefaultTeardownConcurrency, at
	// most MaxTeardownConcurrency).
	Concurrency int `json:"concurrency,omitempty"`
	// MissingOK makes a 404 on a connection's first request a success (already_absent). Absent means true.
	MissingOK *bool `json:"missing_ok,omitempty"`
	// ContinueOnError keeps removing the other connections after one fails for good. Absent means true.
	ContinueOnError *bool `json:"continue_on_error,omitempty"`
	// MaxHistoryEvents is the history length at which a run continues as new, carrying its
	// progress (default DefaultTeardownMaxHistoryEvents).
	MaxHistoryEvents int `json:"max_history_events,omitempty"`
	// State carries progress across continue-as-new. Callers leave it empty.
	State *TeardownState `json:"state,omitempty"`
}

// MissingOKOrDefault returns MissingOK, or true when it is absent.
func (in RemoveAgentConnectionsInput) MissingOKOrDefault() bool {
	return in.MissingOK == nil || *in.MissingOK
}

// ContinueOnErrorOrDefault returns ContinueOnError, or true when it is absent.
func (in RemoveAgentConnectionsInput) ContinueOnErrorOrDefault() bool {
	return in.ContinueOnError == nil || *in.ContinueOnError
}

// ConcurrencyOrDefault returns Concurrency, or DefaultTeardownConcurrency when it is zero.
func (in RemoveAgentConnectionsInput) ConcurrencyOrDefault() int {
	if in.Concurrency == 0 {
		return DefaultTeardownConcurrency
	}
	return in.Concurrency
}

// Validate checks the agent ID, every listed connection ID, and the bounds.
func (in RemoveAgentConnectionsInput) Validate() error {
	if err := ValidateID("agent_id", in.AgentID); err != nil {
		return err
	}
	if in.Concurrency < 0 || in.Concurrency > MaxTeardownConcurrency {
		return fmt.Errorf("concurrency is %d, it must be between 1 and %d", in.Concurrency, MaxTeardownConcurrency)
	}
	if len(in.ConnectionIDs) > MaxTeardownConnections {
		return fmt.Errorf("%d connection_ids given, the limit is %d", len(in.ConnectionIDs), MaxTeardownConnections)
	}
	for i, id := range in.ConnectionIDs {
		if err := ValidateID(fmt.Sprintf("connection_ids[%d]", i), id); err != nil {
			return err
		}
	}
	return nil
}

// Outcomes a teardown reports per connection, besides OutcomeRemoved and OutcomeAlreadyAbsent.
const (
	// OutcomeFailed means the removal failed for good; FailureType and Message say why.
	OutcomeFailed = "failed"
	// OutcomeRemained means the connection was still listed after the teardown removed it
	// (the re-list check), or it was never attempted because the teardown stopped early.
	OutcomeRemained = "remained"
	// OutcomeReappeared means the re-list found a connection the teardown had not seen before.
	OutcomeReappeared = "reappeared"
	// OutcomeSkipped means the teardown was cancelled or stopped on an error before it got to it.
	OutcomeSkipped = "skipped"
)

// ConnectionOutcome is what happened to one connection in a teardown.
type ConnectionOutcome struct {
	ConnectionID string `json:"connection_id"`
	Outcome      string `json:"outcome"`
	// Attempts counts the HTTP requests sent for this connection (0 when another removal did it).
	Attempts    int    `json:"attempts"`
	FailureType string `json:"failure_type,omitempty"`
	Message     string `json:"message,omitempty"`
}

// RemoveAgentConnectionsResult is the result of RemoveAgentConnectionsWorkflow.
type RemoveAgentConnectionsResult struct {
	AgentID string `json:"agent_id"`
	// Counts per outcome; they add up to len(Connections).
	Total         int  `json:"total"`
	Removed       int  `json:"removed"`
	AlreadyAbsent int  `json:"already_absent"`
	Failed        int  `json:"failed"`
	Remained      int  `json:"remained"`
	Reappeared    int  `json:"reappeared"`
	Skipped       int  `json:"skipped"`
	Cancelled     bool `json:"cancelled,omitempty"`
	// Verified is true when the teardown listed the agent's connections again after removing and
	// the counts above include what that check found.
	Verified bool `json:"verified"`
	// Runs counts the workflow runs (continue-as-new starts a new one).
	Runs int `json:"runs"`
	// Connections has one entry per connection, sorted by ID.
	Connections []ConnectionOutcome `json:"connections"`
}

// TeardownProgress is what the progress query returns.
type TeardownProgress struct {
	AgentID   string `json:"agent_id"`
	Listed    bool   `json:"listed"` // false until the connection list is known
	Total     int    `json:"total"`
	Done      int    `json:"done"` // removed or already absent
	Failed    int    `json:"failed"`
	Remaining int    `json:"remaining"`
	InFlight  int    `json:"in_flight"`
	Cancelled bool   `json:"cancelled,omitempty"`
	// Runs counts the workflow runs so far (continue-as-new starts a new one).
	Runs int `json:"runs"`
}

// TeardownState is the progress a teardown carries into its next run on continue-as-new.
type TeardownState struct {
	// Listed is true once the connections are known (given or listed).
	Listed bool `json:"listed"`
	// Given is true when the caller named the connections (the re-list then reports only those).
	Given bool `json:"given,omitempty"`
	// Pending are the connections not yet finished, in order.
	Pending []string `json:"pending"`
	// Attempts counts the requests already sent for pending connections (by ID).
	Attempts map[string]int `json:"attempts,omitempty"`
	// Rounds counts the transient failures of pending connections so far (by ID).
	Rounds map[string]int `json:"rounds,omitempty"`
	// Outcomes are the finished connections.
	Outcomes []ConnectionOutcome `json:"outcomes"`
	// Runs counts the runs before this one.
	Runs int `json:"runs"`
	// StartedAt is when the first run started.
	StartedAt time.Time `json:"started_at"`
	// Cancelled is set once a cancel was accepted.
	Cancelled bool `json:"cancelled,omitempty"`
	// Stopped is set when ContinueOnError is false and a connection failed.
	Stopped bool `json:"stopped,omitempty"`
}

// ConnectionClaim is what the connection_status query answers: whether the teardown owns the
// connection (it is in its set and not finished), and the outcome once it is finished.
type ConnectionClaim struct {
	Claimed bool               `json:"claimed"`
	Outcome *ConnectionOutcome `json:"outcome,omitempty"`
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
