package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	ac "github.com/agentops/agentconnections"
)

// List sends GET /v2/auth/agents/{agent_id}/connections and returns the agent's distinct
// connection IDs, in the order listed. The agent ID is checked as Delete checks it, and failures
// are classified by the same status table, except:
//
// A 404 is an *Error of type AgentNotFound, not retryable: the agent does not exist, or the
// base URL lacks the install's path prefix. Reading it as "no connections" would let a caller
// take a teardown that removed nothing for a finished one.
//
// A 200 whose body cannot be trusted (not JSON, no "data" list, an entry without a string "id",
// an id that ValidateID refuses, more than MaxTeardownConnections IDs, or a body over
// DefaultListBodyLimit) is an *Error of type UnexpectedStatus, not retryable: retrying would get
// the same body, and removing from a list we cannot read is worse than stopping. A body cut off
// by the network (the connection reset or closed mid-body) is Unavailable and retryable: the
// next try reads a whole one.
func (c *Client) List(ctx context.Context, agentID string, logger Logger) ([]string, error) {
	conns, err := c.Connections(ctx, agentID, logger)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(conns))
	for i, conn := range conns {
		ids[i] = conn.ID
	}
	return ids, nil
}

// Connection is one entry of an agent's list: what a teardown's snapshot and a restore need. The
// token ID is a reference to the OAuth token, not a secret.
type Connection struct {
	ID           string
	OAuthTokenID string
	ProviderID   string
	Scopes       []string
}

// Connections is List with each connection's token, provider and scopes, in the order listed
// (distinct IDs). It fails as List fails.
func (c *Client) Connections(ctx context.Context, agentID string, logger Logger) ([]Connection, error) {
	logger = loggerOrNop(logger)
	if err := ac.ValidateID("agent_id", agentID); err != nil {
		return nil, refused(logger, "connection list", err, 0)
	}

	tracker := &requestTracker{}
	start := time.Now()
	resp, err := c.send(ctx, tracker, http.MethodGet, c.connectionsURL(agentID), &requestInfo{route: RouteConnections, agentID: agentID})
	requests := tracker.total()
	fields := []any{"agent_id", agentID, "requests", requests}
	if err != nil {
		fields = append(fields, "latency_ms", time.Since(start).Milliseconds())
		return nil, unanswered(ctx, err, requests, logger, "connection list", fields)
	}
	defer drainAndClose(resp)
	fields = append(fields, "status", resp.StatusCode)

	switch resp.StatusCode {
	case http.StatusOK:
		conns, err := c.readConnectionList(resp)
		fields = append(fields, "latency_ms", time.Since(start).Milliseconds())
		if err != nil {
			e := &Error{
				Status: resp.StatusCode, Type: ac.ErrUnexpectedStatus, Requests: requests,
				Message: c.Redact(fmt.Sprintf("control plane answered 200 after %d request(s), but the list response body %v", requests, err)),
			}
			if errors.Is(err, errBodyCutOff) {
				e.Type, e.Retryable = ac.ErrUnavailable, true
			}
			logger.Warn("connection list unreadable", append(fields, "failure_type", e.Type, "retryable", e.Retryable)...)
			return nil, e
		}
		logger.Info("connections listed", append(fields, "connections", len(conns))...)
		return conns, nil
	case http.StatusNotFound:
		body, truncated, _ := c.readRedacted(resp.Body, DefaultBodyLimit)
		logger.Warn("agent not found", append(fields, "latency_ms", time.Since(start).Milliseconds(), "failure_type", ac.ErrAgentNotFound)...)
		return nil, &Error{
			Status: resp.StatusCode, Type: ac.ErrAgentNotFound, Requests: requests,
			Message: fmt.Sprintf("control plane answered 404 Not Found to GET %s after %d request(s): agent %q not found; "+
				"if it exists, check that LANGSMITH_CONTROL_PLANE_URL carries the install's path prefix: %s",
				RouteConnections, requests, agentID, c.Redact(describeErrorBody(body, truncated))),
		}
	}

	e := c.classify(resp, requests)
	logger.Warn("connection list failed", append(fields, "latency_ms", time.Since(start).Milliseconds(), "failure_type", e.Type, "retryable", e.Retryable)...)
	return nil, e
}

// listBody is the part of AgentConnectionListResponse a teardown needs.
type listBody struct {
	Data *[]listEntry `json:"data"`
}

type listEntry struct {
	ID           *string       `json:"id"`
	OAuthTokenID looseString   `json:"oauth_token_id"`
	ProviderID   looseString   `json:"provider_id"`
	Scopes       []looseString `json:"scopes"`
}

// looseString is a string field that any other JSON value leaves empty: a list whose entries
// carry an odd token, provider or scope is still a list of IDs a teardown can remove.
type looseString string

func (s *looseString) UnmarshalJSON(b []byte) error {
	var v string
	if json.Unmarshal(b, &v) == nil {
		*s = looseString(v)
	}
	return nil
}

// errBodyCutOff marks a list body the network cut off before its end.
var errBodyCutOff = errors.New("connection closed mid-body")

// readConnectionList reads a List Connections body, bounded, into its distinct connections.
// The error completes the sentence "the list response body ...".
func (c *Client) readConnectionList(resp *http.Response) ([]Connection, error) {
	limit := c.listBodyLimit
	body, truncated, err := c.readRedacted(resp.Body, limit)
	switch {
	case err != nil:
		return nil, fmt.Errorf("was cut off (%w): %w", errBodyCutOff, err)
	case truncated:
		return nil, fmt.Errorf("is over the %d-byte limit", limit)
	}
	return parseConnections(body)
}

// parseConnectionList checks and de-duplicates the IDs of a List Connections body.
func parseConnectionList(body []byte) ([]string, error) {
	conns, err := parseConnections(body)
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.ID
	}
	return ids, err
}

// parseConnections checks and de-duplicates the entries of a List Connections body.
func parseConnections(body []byte) ([]Connection, error) {
	var parsed listBody
	if err := json.Unmarshal(body, &parsed); err != nil {
		return nil, fmt.Errorf("is not the expected JSON (%v): %s", err, excerpt(bytes.TrimSpace(body)))
	}
	if parsed.Data == nil {
		return nil, fmt.Errorf("has no \"data\" list: %s", excerpt(bytes.TrimSpace(body)))
	}
	entries := *parsed.Data
	conns := make([]Connection, 0, len(entries))
	seen := make(map[string]struct{}, len(entries))
	for i, e := range entries {
		if e.ID == nil {
			return nil, fmt.Errorf("has an entry without an id at data[%d]", i)
		}
		if err := ac.ValidateID(fmt.Sprintf("data[%d].id", i), *e.ID); err != nil {
			return nil, fmt.Errorf("has an id the worker cannot remove safely: %w", err)
		}
		if _, dup := seen[*e.ID]; dup {
			continue
		}
		seen[*e.ID] = struct{}{}
		conn := Connection{ID: *e.ID, OAuthTokenID: string(e.OAuthTokenID), ProviderID: string(e.ProviderID)}
		for _, sc := range e.Scopes {
			conn.Scopes = append(conn.Scopes, string(sc))
		}
		conns = append(conns, conn)
	}
	if len(conns) > ac.MaxTeardownConnections {
		return nil, fmt.Errorf("lists %d connections, more than a teardown takes (%d)", len(conns), ac.MaxTeardownConnections)
	}
	return conns, nil
}
