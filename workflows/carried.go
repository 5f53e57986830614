package workflows

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
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
	// Items are the connections not yet finished, in order, each with its counts and the time
	// its next round may start. This is how a state is carried: each ID once.
	Items []pendingItem `json:"items,omitempty"`
	// Pending, Attempts, Rounds and LastFailure are the same, as a run works with them: by ID.
	// A state carried by an earlier version of the teardown holds them instead of Items.
	Pending     []string          `json:"pending,omitempty"`
	Attempts    map[string]int    `json:"attempts,omitempty"`
	Rounds      map[string]int    `json:"rounds,omitempty"`
	LastFailure map[string]string `json:"last_failure,omitempty"`
	// Snapshots are the pending connections' snapshots as the list gave them, by ID (a run's
	// form; Items carry them). Finished ones are in their outcomes.
	Snapshots map[string]ac.ConnectionSnapshot `json:"snapshots,omitempty"`
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
}

// pendingItem is one unfinished connection in a carried state.
type pendingItem struct {
	ID       string     `json:"id"`
	Attempts int        `json:"attempts,omitempty"`
	Rounds   int        `json:"rounds,omitempty"`
	Last     string     `json:"last,omitempty"`
	ReadyAt  *time.Time `json:"ready_at,omitempty"`
	// The connection's snapshot, when the list gave one.
	OAuthTokenID string   `json:"oauth_token_id,omitempty"`
	ProviderID   string   `json:"provider_id,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// pagedState names the run that serves a carried state too large for the continue-as-new input:
// gzip-compressed JSON, in Pages pages of Bytes bytes in all.
type pagedState struct {
	RunID string `json:"run_id"`
	Pages int    `json:"pages"`
	Bytes int    `json:"bytes"`
}

// gzipped compresses a carried state before it is paged: IDs and messages repeat a lot.
func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeCarried reads a paged state back: gzip-compressed JSON, or plain JSON as an earlier
// version of the teardown paged it.
func decodeCarried(b []byte) (*carriedState, error) {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	var st carriedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
