package agentconnections

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Names of the restore (RestoreAgentConnectionsWorkflow): it re-creates connections a teardown
// removed, from the snapshot entries the teardown reported. Its queries and update are the
// teardown's: ProgressQuery, ReportQuery (answering RestoreReportPage) and CancelUpdate.
const (
	// RestoreAgentConnectionsWorkflowType is the workflow type that restores connections of one agent.
	RestoreAgentConnectionsWorkflowType = "RestoreAgentConnectionsWorkflow"
	// RestoreConnectionsActivityType re-creates a batch of one agent's connections (POST), with
	// bounded parallelism, never two for one oauth_token_id.
	RestoreConnectionsActivityType = "RestoreConnections"
	// InputDigestQuery returns the running restore's RestoreInputDigest, so that a caller that
	// attached to a restore already running under the agent's ID can tell whether it restores the
	// same tokens.
	InputDigestQuery = "input_digest"
)

// RestoreInputDigest identifies the tokens a restore of entries re-creates: the SHA-256, in hex,
// of its distinct OAuth token IDs, sorted, each followed by a NUL byte. Two inputs with the same
// tokens have the same digest, in any order and with any duplicates.
func RestoreInputDigest(entries []ConnectionSnapshot) string {
	tokens := make([]string, 0, len(entries))
	for _, e := range entries {
		tokens = append(tokens, e.OAuthTokenID)
	}
	slices.Sort(tokens)
	h := sha256.New()
	for _, t := range slices.Compact(tokens) {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RestoreAgentConnectionsWorkflowID is the workflow ID of the restore of one agent: one restore
// per agent runs at a time.
func RestoreAgentConnectionsWorkflowID(agentID string) string {
	return "restore-agent-connections/" + agentID
}

// Outcomes a restore reports per connection, besides OutcomeFailed and OutcomeSkipped.
const (
	// OutcomeRestored means this restore created the connection (201), or a request of this
	// restore whose answer was lost did: NewConnectionID is the new connection.
	OutcomeRestored = "restored"
	// OutcomeAlreadyPresent means a connection with the entry's oauth_token_id was on the agent
	// before this restore sent anything for it; NewConnectionID is that connection.
	OutcomeAlreadyPresent = "already_present"
)

// Restore bounds.
const (
	// MaxRestoreInputBytes bounds the connections a restore is given, in JSON bytes (the sum of
	// ConnectionSnapshot.JSONSize of each), so the input stays under Temporal's 512 KB payload
	// warning. About 2,500 entries of UUIDs with two scopes fit.
	MaxRestoreInputBytes = 384 << 10
	// MaxSnapshotScopes bounds the scopes of one snapshot entry.
	MaxSnapshotScopes = 64
	// MaxSnapshotBytes bounds what a snapshot adds to a teardown's report entry, in JSON bytes
	// (SnapshotBytes): its token, provider and scopes with their field names. A teardown keeps a
	// listed token only when it passes ValidateID, a provider only when it fits, and scopes in the
	// listed order while they fit (at most MaxSnapshotScopes); the restore needs only the token.
	MaxSnapshotBytes = 1 << 10
)

// ConnectionSnapshot is what restoring a removed connection needs: the connection's ID when it was
// removed, and the OAuth token it was created from (a reference, not a secret), with the provider
// and scopes for the record. A teardown reports one per removed connection; a restore takes them
// as they are.
type ConnectionSnapshot struct {
	ConnectionID string   `json:"connection_id"`
	OAuthTokenID string   `json:"oauth_token_id"`
	ProviderID   string   `json:"provider_id,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// SnapshotBytes is how many JSON bytes the token, provider and scopes add to an entry, field
// names, quotes and commas included.
func (s ConnectionSnapshot) SnapshotBytes() int {
	n := 0
	if s.OAuthTokenID != "" {
		n += len(`,"oauth_token_id":`) + JSONBytes(s.OAuthTokenID)
	}
	if s.ProviderID != "" {
		n += len(`,"provider_id":`) + JSONBytes(s.ProviderID)
	}
	if len(s.Scopes) > 0 {
		n += len(`,"scopes":[]`) + len(s.Scopes) - 1 // the commas between scopes
		for _, sc := range s.Scopes {
			n += JSONBytes(sc)
		}
	}
	return n
}

// BoundSnapshot is a listed connection's snapshot as a teardown keeps it: ok is false when the
// token is missing, refused by ValidateID or alone over MaxSnapshotBytes (nothing is kept); a
// provider that does not fit is left out, and scopes are kept in order while they fit, at most
// MaxSnapshotScopes.
func BoundSnapshot(s ConnectionSnapshot) (ConnectionSnapshot, bool) {
	out := ConnectionSnapshot{ConnectionID: s.ConnectionID, OAuthTokenID: s.OAuthTokenID}
	if s.OAuthTokenID == "" || ValidateID("oauth_token_id", s.OAuthTokenID) != nil || out.SnapshotBytes() > MaxSnapshotBytes {
		return ConnectionSnapshot{ConnectionID: s.ConnectionID}, false
	}
	if with := (ConnectionSnapshot{OAuthTokenID: s.OAuthTokenID, ProviderID: s.ProviderID}); with.SnapshotBytes() <= MaxSnapshotBytes {
		out.ProviderID = s.ProviderID
	}
	for _, sc := range s.Scopes {
		next := out
		next.Scopes = append(slices.Clone(out.Scopes), sc)
		if len(next.Scopes) > MaxSnapshotScopes || next.SnapshotBytes() > MaxSnapshotBytes {
			break
		}
		out = next
	}
	return out, true
}

// JSONSize is about how many bytes the entry takes as JSON (field names and punctuation included).
func (s ConnectionSnapshot) JSONSize() int {
	n := 64 + JSONBytes(s.ConnectionID) + JSONBytes(s.OAuthTokenID) + JSONBytes(s.ProviderID)
	for _, sc := range s.Scopes {
		n += JSONBytes(sc) + 1
	}
	return n
}

// RestoreAgentConnectionsInput is the input of RestoreAgentConnectionsWorkflow.
//
//	{"agent_id": "a1", "connections": [{"connection_id": "c1", "oauth_token_id": "t1", "provider_id": "github", "scopes": ["repo"]}]}
type RestoreAgentConnectionsInput struct {
	AgentID string `json:"agent_id"`
	// Connections are the entries to restore; entries with an oauth_token_id already given are
	// dropped (one connection per token).
	Connections []ConnectionSnapshot `json:"connections"`
	// Concurrency bounds the POST requests in flight (default DefaultTeardownConcurrency, at most
	// MaxTeardownConcurrency).
	Concurrency int `json:"concurrency,omitempty"`
}

// ConcurrencyOrDefault returns Concurrency, or DefaultTeardownConcurrency when it is zero.
func (in RestoreAgentConnectionsInput) ConcurrencyOrDefault() int {
	if in.Concurrency == 0 {
		return DefaultTeardownConcurrency
	}
	return in.Concurrency
}

// Validate checks the agent ID, each entry's connection_id and oauth_token_id (ValidateID), the
// scopes, and the bounds.
func (in RestoreAgentConnectionsInput) Validate() error {
	if err := ValidateID("agent_id", in.AgentID); err != nil {
		return err
	}
	if in.Concurrency < 0 || in.Concurrency > MaxTeardownConcurrency {
		return fmt.Errorf("concurrency is %d, it must be between 1 and %d", in.Concurrency, MaxTeardownConcurrency)
	}
	if len(in.Connections) > MaxTeardownConnections {
		return fmt.Errorf("%d connections given, the limit is %d", len(in.Connections), MaxTeardownConnections)
	}
	total := 0
	for i, c := range in.Connections {
		if err := ValidateID(fmt.Sprintf("connections[%d].connection_id", i), c.ConnectionID); err != nil {
			return err
		}
		if err := ValidateID(fmt.Sprintf("connections[%d].oauth_token_id", i), c.OAuthTokenID); err != nil {
			return err
		}
		if len(c.Scopes) > MaxSnapshotScopes {
			return fmt.Errorf("connections[%d] has %d scopes, the limit is %d", i, len(c.Scopes), MaxSnapshotScopes)
		}
		total += c.JSONSize()
	}
	if total > MaxRestoreInputBytes {
		return fmt.Errorf("connections take about %d bytes as JSON, the limit is %d; restore them in several calls", total, MaxRestoreInputBytes)
	}
	return nil
}

// RestoreOutcome is what happened to one snapshot entry in a restore.
type RestoreOutcome struct {
	// ConnectionID is the entry's (removed) connection ID, OAuthTokenID its token.
	ConnectionID string `json:"connection_id"`
	OAuthTokenID string `json:"oauth_token_id"`
	// Outcome is OutcomeRestored, OutcomeAlreadyPresent, OutcomeFailed or OutcomeSkipped.
	Outcome string `json:"outcome"`
	// NewConnectionID is the connection that now holds the token (restored, already_present).
	NewConnectionID string `json:"new_connection_id,omitempty"`
	// Attempts counts the POST requests sent for this entry (the lists that checked for it are not
	// counted).
	Attempts    int    `json:"attempts"`
	FailureType string `json:"failure_type,omitempty"`
	Message     string `json:"message,omitempty"`
}

// RestoreAgentConnectionsResult is the result of RestoreAgentConnectionsWorkflow, shaped as the
// teardown's: counts per outcome (they add up to Total), the stop, and a bounded, paged report.
type RestoreAgentConnectionsResult struct {
	AgentID        string `json:"agent_id"`
	Total          int    `json:"total"`
	Restored       int    `json:"restored"`
	AlreadyPresent int    `json:"already_present"`
	Failed         int    `json:"failed"`
	Skipped        int    `json:"skipped"`
	Cancelled      bool   `json:"cancelled,omitempty"`
	StopReason     string `json:"stop_reason,omitempty"`
	Runs           int    `json:"runs"`
	// InputDigest is RestoreInputDigest of the restore's input (empty from workers older than it).
	InputDigest string `json:"input_digest,omitempty"`
	// Connections has one entry per distinct token, sorted by ConnectionID, as many as fit in
	// MaxReportBytes.
	Connections     []RestoreOutcome `json:"connections"`
	ReportTruncated bool             `json:"report_truncated,omitempty"`
	ReportPages     int              `json:"report_pages"`
}

// RestoreReportPage is one page of a restore's report, as ReportQuery returns it on a restore.
type RestoreReportPage struct {
	Page        int              `json:"page"`
	Pages       int              `json:"pages"`
	Connections []RestoreOutcome `json:"connections"`
}

// NewConnectionIDs maps each entry's old connection ID to its new one, for the entries that hold
// a connection now (restored or already_present).
func (r RestoreAgentConnectionsResult) NewConnectionIDs() map[string]string {
	m := make(map[string]string, len(r.Connections))
	for _, o := range r.Connections {
		if o.NewConnectionID != "" {
			m[o.ConnectionID] = o.NewConnectionID
		}
	}
	return m
}
