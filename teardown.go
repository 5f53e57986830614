package agentconnections

import (
	"fmt"
	"slices"
)

// Teardown defaults and bounds.
const (
	// DefaultTeardownConcurrency is how many DELETE requests a teardown keeps in flight at most.
	DefaultTeardownConcurrency = 10
	// MaxTeardownConcurrency bounds Concurrency.
	MaxTeardownConcurrency = 200
	// MaxTeardownConnections bounds the connections of one teardown (given or listed).
	MaxTeardownConnections = 10_000
	// MaxGivenConnectionBytes bounds the connection_ids a caller gives, in JSON bytes (the sum
	// of JSONBytes of each): the input travels whole in the start request, so it stays under
	// Temporal's 512 KB payload warning. 10,000 UUIDs take 380,000. Let the teardown list the
	// agent for more.
	MaxGivenConnectionBytes = 384 << 10
	// DefaultTeardownMaxHistoryEvents is the history length at which a teardown run continues as
	// new. Temporal warns at 10,240 events and fails a run at 51,200; a batch costs about six.
	DefaultTeardownMaxHistoryEvents = 5_000
	// MinTeardownMaxHistoryEvents is the smallest MaxHistoryEvents accepted: a run's start, its
	// list and a few batches must fit, so every run makes progress before it continues as new.
	MinTeardownMaxHistoryEvents = 100
	// MaxTeardownHistoryBytes is the history size at which a teardown run continues as new,
	// below Temporal's 10 MB warning and far below its 50 MB limit.
	MaxTeardownHistoryBytes = 8 << 20
	// MaxReportBytes bounds the per-connection entries a teardown's result carries, and each page
	// of the report query, so both stay under Temporal's 512 KB payload warning whatever the IDs
	// and messages. A result that holds fewer entries than Total says so (ReportTruncated) and the
	// report query pages the rest.
	MaxReportBytes = 256 << 10
	// MaxTeardownRounds bounds how often one connection is tried again after a transient failure.
	MaxTeardownRounds = 8
	// MaxOutcomeMessageBytes bounds the failure message kept per connection, so the result of a
	// large teardown stays well under Temporal's payload limit.
	MaxOutcomeMessageBytes = 256
)

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
	// progress (default DefaultTeardownMaxHistoryEvents; 0 or at least MinTeardownMaxHistoryEvents).
	MaxHistoryEvents int `json:"max_history_events,omitempty"`
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
	if in.MaxHistoryEvents != 0 && in.MaxHistoryEvents < MinTeardownMaxHistoryEvents {
		return fmt.Errorf("max_history_events is %d, it must be 0 (the default, %d) or at least %d",
			in.MaxHistoryEvents, DefaultTeardownMaxHistoryEvents, MinTeardownMaxHistoryEvents)
	}
	if len(in.ConnectionIDs) > MaxTeardownConnections {
		return fmt.Errorf("%d connection_ids given, the limit is %d", len(in.ConnectionIDs), MaxTeardownConnections)
	}
	total := 0
	for i, id := range in.ConnectionIDs {
		if err := ValidateID(fmt.Sprintf("connection_ids[%d]", i), id); err != nil {
			return err
		}
		total += JSONBytes(id)
	}
	if total > MaxGivenConnectionBytes {
		return fmt.Errorf("connection_ids take %d bytes as JSON, the limit is %d; leave connection_ids out to remove every connection of the agent",
			total, MaxGivenConnectionBytes)
	}
	return nil
}

// Outcomes a teardown reports per connection, besides OutcomeRemoved and OutcomeAlreadyAbsent.
const (
	// OutcomeFailed means the removal failed for good; FailureType and Message say why.
	OutcomeFailed = "failed"
	// OutcomeRemained means the connection was still listed after the teardown removed it (the
	// re-list check).
	OutcomeRemained = "remained"
	// OutcomeReappeared means the re-list found a connection the teardown had not seen before.
	OutcomeReappeared = "reappeared"
	// OutcomeSkipped means the teardown was cancelled or stopped before it sent this connection
	// a DELETE; Message says why. A skipped connection was never sent a request.
	OutcomeSkipped = "skipped"
)

// ConnectionOutcome is what happened to one connection in a teardown. OAuthTokenID, ProviderID
// and Scopes are the connection's snapshot, as the teardown listed it (absent when it was not
// listed): the entry is then a ConnectionSnapshot as JSON, so a restore takes it as it is.
type ConnectionOutcome struct {
	ConnectionID string `json:"connection_id"`
	Outcome      string `json:"outcome"`
	// Attempts counts the HTTP requests sent for this connection (0 when another removal did it).
	Attempts    int    `json:"attempts"`
	FailureType string `json:"failure_type,omitempty"`
	Message     string `json:"message,omitempty"`
	// EarlierRequest is set on an already_absent or failed entry whose last request followed an
	// earlier request of this teardown for it: that request may have removed the connection.
	EarlierRequest bool `json:"earlier_request,omitempty"`
	// The snapshot: what restoring the connection needs (no secret: the token ID is a reference).
	OAuthTokenID string   `json:"oauth_token_id,omitempty"`
	ProviderID   string   `json:"provider_id,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// Snapshot is the entry's snapshot, and whether it has one (an oauth_token_id).
func (o ConnectionOutcome) Snapshot() (ConnectionSnapshot, bool) {
	s := ConnectionSnapshot{ConnectionID: o.ConnectionID, OAuthTokenID: o.OAuthTokenID, ProviderID: o.ProviderID, Scopes: o.Scopes}
	return s, o.OAuthTokenID != ""
}

// WithSnapshot is o carrying s's token, provider and scopes.
func (o ConnectionOutcome) WithSnapshot(s ConnectionSnapshot) ConnectionOutcome {
	o.OAuthTokenID, o.ProviderID, o.Scopes = s.OAuthTokenID, s.ProviderID, s.Scopes
	return o
}

// MayHaveBeenRemoved reports whether the teardown removed the entry's connection or may have: it
// removed it (removed); a request of it may have (already_absent or failed with EarlierRequest,
// whatever the last answer: a 401 after a timed-out DELETE says nothing of that DELETE; failed
// Interrupted; failed, after requests, with a transient type it gave up on: a timeout or a 5xx
// may have been applied). Whether a snapshot can restore it is Undoable's question.
func (o ConnectionOutcome) MayHaveBeenRemoved() bool {
	switch o.Outcome {
	case OutcomeRemoved:
		return true
	case OutcomeAlreadyAbsent:
		return o.EarlierRequest
	case OutcomeFailed:
		return o.EarlierRequest || o.FailureType == ErrInterrupted || (o.Attempts > 0 && slices.Contains(RetryableErrorTypes(), o.FailureType))
	}
	return false
}

// Undoable reports whether a restore should re-create the entry's connection: the teardown may
// have removed it (MayHaveBeenRemoved) and the entry has a snapshot. A restore of a connection
// that is still there finds its token listed and reports it already_present.
func (o ConnectionOutcome) Undoable() bool {
	return o.OAuthTokenID != "" && o.MayHaveBeenRemoved()
}

// RestoreEntries are the snapshots of the undoable entries (Undoable), in order: the input of a
// restore that undoes a teardown whose report held these entries.
func RestoreEntries(outcomes []ConnectionOutcome) []ConnectionSnapshot {
	out := []ConnectionSnapshot{}
	for _, o := range outcomes {
		if o.Undoable() {
			s, _ := o.Snapshot()
			out = append(out, s)
		}
	}
	return out
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
	// StopReason says why the teardown stopped before it tried every connection: cancelled, the
	// control plane refused the key, or a failure with continue_on_error false. Empty when it
	// did not stop early.
	StopReason string `json:"stop_reason,omitempty"`
	// Verified is true when the teardown listed the agent's connections again after removing and
	// the counts above include what that check found.
	Verified bool `json:"verified"`
	// Runs counts the workflow runs (continue-as-new starts a new one).
	Runs int `json:"runs"`
	// ConnectionsGiven is true when the run was given connection_ids: it removed (and verified)
	// only those, not every connection of the agent. A caller that attached to a run it did not
	// start (through Nexus, say) and needs the whole agent gone must check it.
	ConnectionsGiven bool `json:"connections_given,omitempty"`
	// Connections has one entry per connection, sorted by ID, as many as fit in MaxReportBytes.
	Connections []ConnectionOutcome `json:"connections"`
	// ReportTruncated is set when Connections holds fewer entries than Total; ReportQuery on the
	// workflow pages through all of them (ReportPages pages).
	ReportTruncated bool `json:"report_truncated,omitempty"`
	// ReportPages is how many pages ReportQuery answers.
	ReportPages int `json:"report_pages"`
}

// ReportPage is one page of a teardown's per-connection report, as ReportQuery returns it.
type ReportPage struct {
	// Page is the page number asked for; Pages how many there are.
	Page  int `json:"page"`
	Pages int `json:"pages"`
	// Connections are this page's entries, in the order of the result's (sorted by ID).
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

// ConnectionClaim is what the connection_status query answers: whether the teardown owns the
// connection (it is in its set and not finished), and the outcome once it is finished.
type ConnectionClaim struct {
	Claimed bool               `json:"claimed"`
	Outcome *ConnectionOutcome `json:"outcome,omitempty"`
}
