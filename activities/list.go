package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
)

// ListConnections sends GET /v2/auth/agents/{agent_id}/connections and returns the connection IDs
// in the control plane's order, duplicates dropped (the first kept). The agent ID is checked as
// RemoveConnection checks it, and failures are classified by the same status table.
//
// A 404 returns an empty list with AgentNotFound set rather than a failure: a teardown asks "make
// sure this agent has no connections left", and an agent the control plane does not know has
// none. (The emulator answers an unknown agent with an empty 200.)
//
// A 200 whose body cannot be trusted (not JSON, no "data" list, an entry without a string "id",
// an id that ValidateID refuses, more than MaxTeardownConnections IDs, or a body over
// DefaultListBodyLimit) fails with type UnexpectedStatus, not retried: retrying would get the
// same body, and removing from a list we cannot read is worse than stopping.
func (a *Activities) ListConnections(ctx context.Context, in ListConnectionsInput) (ListConnectionsResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	result := ListConnectionsResult{ConnectionIDs: []string{}}

	if err := ac.ValidateID("agent_id", in.AgentID); err != nil {
		logger.Warn("refused connection list before any request", "error", err.Error())
		return result, failure(err.Error(), ac.ErrInvalidRequest, false, 0, 0, 0)
	}
	stop := keepHeartbeating(ctx, info.HeartbeatTimeout, func() { activity.RecordHeartbeat(ctx) })
	defer stop()

	tracker := &requestTracker{}
	start := time.Now()
	resp, err := a.send(ctx, tracker, http.MethodGet, a.connectionsURL(in.AgentID), &requestInfo{route: RouteConnections, agentID: in.AgentID})
	requests := tracker.total()
	fields := []any{"agent_id", in.AgentID, "attempt", info.Attempt, "requests", requests}
	if err != nil {
		fields = append(fields, "latency_ms", time.Since(start).Milliseconds())
		f, ctxErr := requestFailure(ctx, err)
		switch {
		case ctxErr != nil:
			logger.Info("connection list stopped: activity context done", append(fields, "error", ctxErr.Error())...)
			return result, ctxErr
		case f.errType == ac.ErrUnauthorized:
			logger.Error("connection list not sent: no credentials", append(fields, "error", err.Error())...)
		default:
			logger.Warn("control plane unreachable", append(fields, "error", err.Error())...)
		}
		return result, failure(f.message, f.errType, f.retryable, 0, requests, 0)
	}
	defer drainAndClose(resp)
	fields = append(fields, "status", resp.StatusCode)

	switch resp.StatusCode {
	case http.StatusOK:
		ids, err := a.readConnectionList(resp)
		fields = append(fields, "latency_ms", time.Since(start).Milliseconds())
		if err != nil {
			msg := a.redact(fmt.Sprintf("control plane answered 200 after %d request(s), but the list response body %v", requests, err))
			logger.Warn("connection list unreadable", append(fields, "failure_type", ac.ErrUnexpectedStatus)...)
			return result, failure(msg, ac.ErrUnexpectedStatus, false, resp.StatusCode, requests, 0)
		}
		result.ConnectionIDs = ids
		logger.Info("connections listed", append(fields, "connections", len(ids))...)
		return result, nil
	case http.StatusNotFound:
		body, truncated, _ := readBody(resp.Body, DefaultBodyLimit)
		result.AgentNotFound = true
		logger.Warn("agent not found: listing no connections (check LANGSMITH_CONTROL_PLANE_URL if the agent exists)",
			append(fields, "latency_ms", time.Since(start).Milliseconds(), "detail", a.redact(describeErrorBody(body, truncated)))...)
		return result, nil
	}

	f := a.classify(resp, requests)
	logger.Warn("connection list failed", append(fields, "latency_ms", time.Since(start).Milliseconds(), "failure_type", f.errType, "retryable", f.retryable)...)
	return result, failure(f.message, f.errType, f.retryable, resp.StatusCode, requests, f.nextDelay)
}

// listBody is the part of AgentConnectionListResponse the teardown needs.
type listBody struct {
	Data *[]listEntry `json:"data"`
}

type listEntry struct {
	ID *string `json:"id"`
}

// readConnectionList reads a List Connections body, bounded, into its distinct connection IDs.
// The error completes the sentence "the list response body ...".
func (a *Activities) readConnectionList(resp *http.Response) ([]string, error) {
	limit := a.listBodyLimit
	if limit <= 0 {
		limit = DefaultListBodyLimit
	}
	body, truncated, err := readBody(resp.Body, limit)
	switch {
	case err != nil:
		return nil, fmt.Errorf("was cut off: %w", err)
	case truncated:
		return nil, fmt.Errorf("is over the %d-byte limit", limit)
	}
	return parseConnectionList(body)
}

// parseConnectionList checks and de-duplicates the IDs of a List Connections body.
func parseConnectionList(body []byte) ([]string, error) {
	var parsed listBody
	if err := json.Unmarshal(body, &parsed); err != nil {
		return nil, fmt.Errorf("is not the expected JSON (%v): %s", err, excerpt(bytes.TrimSpace(body)))
	}
	if parsed.Data == nil {
		return nil, fmt.Errorf("has no \"data\" list: %s", excerpt(bytes.TrimSpace(body)))
	}
	entries := *parsed.Data
	ids := make([]string, 0, len(entries))
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
		ids = append(ids, *e.ID)
	}
	if len(ids) > ac.MaxTeardownConnections {
		return nil, fmt.Errorf("lists %d connections, more than a teardown takes (%d)", len(ids), ac.MaxTeardownConnections)
	}
	return ids, nil
}
