package activities

import (
	"time"

	ac "github.com/agentops/agentconnections"
)

// ListConnectionsInput is the input of the ListConnections activity.
type ListConnectionsInput struct {
	AgentID string `json:"agent_id"`
}

// ListConnectionsResult lists an agent's connection IDs in the control plane's order.
type ListConnectionsResult struct {
	ConnectionIDs []string `json:"connection_ids"`
	// AgentNotFound is set when the control plane answered 404 for the agent: the list is then
	// empty (an unknown agent has no connections), but a 404 on every route can also mean a wrong
	// control-plane URL prefix, so the teardown should say so in its result or logs.
	AgentNotFound bool `json:"agent_not_found,omitempty"`
}

// BatchItem is one connection of a RemoveConnections batch.
type BatchItem struct {
	ConnectionID string `json:"connection_id"`
	// PriorRequests counts the requests earlier rounds of the teardown sent for it, so attempts
	// stay true and a 404 after an earlier request reads as already_absent.
	PriorRequests int `json:"prior_requests,omitempty"`
}

// RemoveConnectionsInput is the input of the RemoveConnections (batch) activity.
type RemoveConnectionsInput struct {
	AgentID   string      `json:"agent_id"`
	Items     []BatchItem `json:"items"`
	MissingOK bool        `json:"missing_ok"`
	// Parallelism bounds the DELETE requests this activity has in flight (at least 1).
	Parallelism int `json:"parallelism"`
	// Since is when the teardown started: a standalone removal of a connection that completed
	// after it is taken as that connection's outcome instead of a second DELETE.
	Since time.Time `json:"since,omitempty"`
}

// TransientFailure is a connection whose removal failed with a retryable type in this batch; the
// teardown tries it again in a later batch.
type TransientFailure struct {
	ConnectionID string `json:"connection_id"`
	FailureType  string `json:"failure_type"`
	Message      string `json:"message"`
	// Attempts counts every request sent for the connection so far, earlier rounds included.
	Attempts int `json:"attempts"`
	// RetryAfter is the delay the control plane asked for (0 when it did not).
	RetryAfter ac.Duration `json:"retry_after,omitempty"`
}

// RemoveConnectionsResult is what one batch did. Every input item appears in exactly one list.
type RemoveConnectionsResult struct {
	// Done are finished connections: removed, already_absent, or failed for good.
	Done []ac.ConnectionOutcome `json:"done"`
	// Transient failed with a retryable type and should be tried again later.
	Transient []TransientFailure `json:"transient,omitempty"`
	// Deferred have a standalone RemoveConnectionWorkflow sending its own DELETE right now; the
	// teardown waits for its result instead of sending a second request.
	Deferred []string `json:"deferred,omitempty"`
	// Busy have a standalone RemoveConnectionWorkflow still deciding whether the teardown owns
	// the connection; try them again shortly.
	Busy []string `json:"busy,omitempty"`
}

// ConnectionRef names one connection of one agent.
type ConnectionRef struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
}
