package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
)

// ListConnections sends GET /v2/auth/agents/{agent_id}/connections and returns one page of the
// distinct connection IDs, sorted: those after in.After, as many as fit in in.MaxBytes. The API
// does not page, so each page lists the agent again; sorted pages still return every connection
// that stays listed exactly once. The agent ID is checked as RemoveConnection checks it, and
// failures are classified by the same status table.
//
// A 404 fails with type AgentNotFound, not retried: the agent does not exist, or the control-plane
// URL lacks the install's path prefix. Reading it as "no connections" would let a caller take a
// teardown that removed nothing for a finished one.
//
// A 200 whose body cannot be trusted (not JSON, no "data" list, an entry without a string "id",
// an id that ValidateID refuses, more than MaxTeardownConnections IDs, or a body over
// DefaultListBodyLimit) fails with type UnexpectedStatus, not retried: retrying would get the
// same body, and removing from a list we cannot read is worse than stopping.
func (a *Activities) ListConnections(ctx context.Context, in ListConnectionsInput) (ListConnectionsResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	result := ListConnectionsResult{ConnectionIDs: []string{}}
	if in.After != "" {
		if err := ac.ValidateID("after", in.After); err != nil {
			return result, failure(err.Error(), ac.ErrInvalidRequest, false, 0, 0, 0)
		}
	}

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
		result = listPage(ids, in.After, in.MaxBytes)
		logger.Info("connections listed", append(fields, "connections", len(ids), "page", len(result.ConnectionIDs), "more", result.More)...)
		return result, nil
	case http.StatusNotFound:
		body, truncated, _ := a.readRedacted(resp.Body, DefaultBodyLimit)
		msg := fmt.Sprintf("control plane answered 404 Not Found to GET %s after %d request(s): agent %q not found; "+
			"if it exists, check that LANGSMITH_CONTROL_PLANE_URL carries the install's path prefix: %s",
			RouteConnections, requests, in.AgentID, a.redact(describeErrorBody(body, truncated)))
		logger.Warn("agent not found", append(fields, "latency_ms", time.Since(start).Milliseconds(), "failure_type", ac.ErrAgentNotFound)...)
		return result, failure(msg, ac.ErrAgentNotFound, false, resp.StatusCode, requests, 0)
	}

	f := a.classify(resp, requests)
	logger.Warn("connection list failed", append(fields, "latency_ms", time.Since(start).Milliseconds(), "failure_type", f.errType, "retryable", f.retryable)...)
	return result, failure(f.message, f.errType, f.retryable, resp.StatusCode, requests, f.nextDelay)
}

// listPage is the page of ids (distinct) sorted after `after`, at most maxBytes of IDs but never
// empty while any remain.
func listPage(ids []string, after string, maxBytes int) ListConnectionsResult {
	if maxBytes <= 0 {
		maxBytes = DefaultListPageBytes
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	start, _ := slices.BinarySearch(sorted, after)
	if start < len(sorted) && after != "" && sorted[start] == after {
		start++
	}
	res := ListConnectionsResult{ConnectionIDs: []string{}, Listed: len(ids)}
	size := 0
	for _, id := range sorted[start:] {
		if len(res.ConnectionIDs) > 0 && size+ac.JSONBytes(id) > maxBytes {
			res.More = true
			break
		}
		size += ac.JSONBytes(id)
		res.ConnectionIDs = append(res.ConnectionIDs, id)
	}
	return res
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
	body, truncated, err := a.readRedacted(resp.Body, limit)
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
