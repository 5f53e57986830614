package workflows

import (
	"time"

	ac "github.com/agentops/agentconnections"
)

// TeardownInput is what RemoveAgentConnectionsWorkflow takes: the caller's input, plus the state a
// run carries into the next on continue-as-new. Callers start the workflow by its type name with
// the contract's RemoveAgentConnectionsInput, which has no state field; the JSON is one object, so
// both decode into this.
type TeardownInput struct {
	ac.RemoveAgentConnectionsInput
	State *carriedState `json:"state,omitempty"`
}

// carriedState is the progress a teardown carries into its next run on continue-as-new. Only the
// teardown sets it; a first run given one fails with InvalidRequest. When the progress is too
// large for one payload, Paged is set instead and the next run reads it back from the run before
// it, page by page.
type carriedState struct {
	// Paged, when set, says the rest of this state is served by an earlier run.
	Paged *pagedState `json:"paged,omitempty"`
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
	// LastFailure is the failure type of each pending connection's last round (by ID).
	LastFailure map[string]string `json:"last_failure,omitempty"`
	// Outcomes are the finished connections.
	Outcomes []ac.ConnectionOutcome `json:"outcomes"`
	// Runs counts the runs before this one.
	Runs int `json:"runs"`
	// StartedAt is when the first run started.
	StartedAt time.Time `json:"started_at"`
	// Cancelled is set once a cancel was accepted.
	Cancelled bool `json:"cancelled,omitempty"`
	// Stopped is set when the teardown stops starting removals for another reason than a cancel.
	Stopped bool `json:"stopped,omitempty"`
	// StopReason says why it stopped (see ac.RemoveAgentConnectionsResult.StopReason).
	StopReason string `json:"stop_reason,omitempty"`
	// AgentNotFound is set when a list found no agent (only the verification list can leave the
	// teardown running after that).
	AgentNotFound bool `json:"agent_not_found,omitempty"`
}

// pagedState names the run that serves a carried carriedState too large for one payload.
type pagedState struct {
	RunID string `json:"run_id"`
	Pages int    `json:"pages"`
	Bytes int    `json:"bytes"`
}
