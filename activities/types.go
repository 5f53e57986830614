package activities

import (
	"fmt"
	"time"

	ac "github.com/agentops/agentconnections"
)

// The inputs and results of the activities that only this worker's workflows call. The root
// package holds the caller's contract; these are internal and may change with the workflows.

// RemoveConnectionInput is the input of the RemoveConnection activity.
type RemoveConnectionInput struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	MissingOK    bool   `json:"missing_ok"`
}

// String keeps IDs readable in logs; the input holds no credential.
func (in RemoveConnectionInput) String() string {
	return fmt.Sprintf("agent_id=%s connection_id=%s missing_ok=%t", in.AgentID, in.ConnectionID, in.MissingOK)
}

// ListConnectionsInput is the input of the ListConnections activity.
type ListConnectionsInput struct {
	AgentID string `json:"agent_id"`
	// After pages the list: only IDs sorted after it are returned ("" starts at the beginning).
	After string `json:"after,omitempty"`
	// MaxBytes bounds the IDs returned, in JSON bytes (0 means DefaultListPageBytes), so the
	// result stays far under Temporal's payload limit whatever the IDs; snapshots count too.
	MaxBytes int `json:"max_bytes,omitempty"`
	// Snapshot asks for each listed connection's snapshot (ac.BoundSnapshot of its token,
	// provider and scopes) besides its ID.
	Snapshot bool `json:"snapshot,omitempty"`
	// Only, when set, keeps only these connection IDs in the result.
	Only []string `json:"only,omitempty"`
}

// ListConnectionsResult is one page of an agent's connection IDs, sorted.
type ListConnectionsResult struct {
	ConnectionIDs []string `json:"connection_ids"`
	// More is set when IDs after the last one returned remain: ask again with After set to it.
	More bool `json:"more,omitempty"`
	// Listed counts every connection the control plane listed, on this page or not.
	Listed int `json:"listed"`
	// Snapshots are the snapshots of this page's connections that have one, with Snapshot set.
	Snapshots []ac.ConnectionSnapshot `json:"snapshots,omitempty"`
}

// DefaultListPageBytes bounds a ListConnections page in JSON bytes (ac.JSONBytes of each ID):
// about 1,500 IDs of the longest accepted size, far under Temporal's payload limit.
const DefaultListPageBytes = 384 << 10

// DeferredRemoval is a connection a standalone RemoveConnectionWorkflow run is removing.
type DeferredRemoval struct {
	ConnectionID string `json:"connection_id"`
	// RunID is the run that was described: the teardown waits for that run, not a later one.
	RunID string `json:"run_id,omitempty"`
}

// ConnectionAwait is the input of AwaitStandaloneRemoval.
type ConnectionAwait struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
	RunID        string `json:"run_id,omitempty"`
	// MissingOK is the teardown's: a standalone removal that found the connection absent on its
	// first request is failed/NotFound for a teardown that does not accept that.
	MissingOK bool `json:"missing_ok"`
}

// CarriedStateInput asks for one page of the state a teardown run carried into continue-as-new.
type CarriedStateInput struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	Page       int    `json:"page"`
}

// BatchItem is one connection of a RemoveConnections batch.
type BatchItem struct {
	ConnectionID string `json:"connection_id"`
	// PriorRequests counts the requests earlier rounds of the teardown sent for it, so attempts
	// stay true and a 404 after an earlier request reads as already_absent.
	PriorRequests int `json:"prior_requests,omitempty"`
	// MaybeSent is set when an earlier batch that held this connection failed as a whole: it may
	// have sent a request its last heartbeat did not count, so a 404 reads as already_absent.
	MaybeSent bool `json:"maybe_sent,omitempty"`
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
	// NotSent is set when this batch sent the connection no request (stopped by a 429, a refused
	// key or a cancel first): the teardown does not count it as a failed round.
	NotSent bool `json:"not_sent,omitempty"`
}

// RemoveConnectionsResult is what one batch did. Every input item appears in exactly one list.
type RemoveConnectionsResult struct {
	// Done are finished connections: removed, already_absent, or failed for good.
	Done []ac.ConnectionOutcome `json:"done"`
	// Transient failed with a retryable type and should be tried again later.
	Transient []TransientFailure `json:"transient,omitempty"`
	// Deferred have a standalone RemoveConnectionWorkflow sending its own DELETE right now; the
	// teardown waits for its result instead of sending a second request.
	Deferred []DeferredRemoval `json:"deferred,omitempty"`
	// Refused is set when the control plane answered 401 or 403: the batch started nothing more,
	// and the teardown stops.
	Refused bool `json:"refused,omitempty"`
	// Busy have a standalone RemoveConnectionWorkflow still deciding whether the teardown owns
	// the connection; try them again shortly.
	Busy []string `json:"busy,omitempty"`
	// Retried is set when an earlier attempt of this batch ran and was lost: it may have sent any
	// connection not in Done a request that no count holds, so a later 404 is no proof it was
	// absent.
	Retried bool `json:"retried,omitempty"`
}

// RemoveConnectionsProgress is the heartbeat detail of RemoveConnections: what a retried attempt
// needs to resume without sending a finished connection's DELETE again. It holds IDs, counts and
// the finished outcomes (messages already clipped), never a credential. A workflow can read the
// last one from a timed-out attempt with TimeoutError.LastHeartbeatDetails.
type RemoveConnectionsProgress struct {
	// Requests counts, per connection ID, the requests this activity sent across its attempts;
	// the items' PriorRequests are not included. IDs without requests are left out.
	Requests map[string]int `json:"requests,omitempty"`
	// Done are the connections this activity finished, as its result lists them.
	Done []ac.ConnectionOutcome `json:"done,omitempty"`
}

// ConnectionRef names one connection of one agent.
type ConnectionRef struct {
	AgentID      string `json:"agent_id"`
	ConnectionID string `json:"connection_id"`
}
