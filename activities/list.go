package activities

import (
	"context"
	"slices"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
)

// ListConnections lists the agent's connections (controlplane.Client.List: GET
// /v2/auth/agents/{agent_id}/connections) and returns one page of the distinct connection IDs,
// sorted: those after in.After, as many as fit in in.MaxBytes. The API does not page, so each page
// lists the agent again; sorted pages still return every connection that stays listed exactly
// once. The agent ID is checked as RemoveConnection checks it, and failures are classified by the
// same status table, except that a 404 fails with type AgentNotFound and a 200 whose body cannot
// be trusted with type UnexpectedStatus, neither retried (see List for why).
func (a *Activities) ListConnections(ctx context.Context, in ListConnectionsInput) (ListConnectionsResult, error) {
	result := ListConnectionsResult{ConnectionIDs: []string{}}
	if in.After != "" {
		if err := ac.ValidateID("after", in.After); err != nil {
			return result, invalid(err)
		}
	}
	stop := keepHeartbeating(activity.GetInfo(ctx).HeartbeatTimeout, func() { activity.RecordHeartbeat(ctx) })
	defer stop()

	logger := callLogger(ctx)
	ids, err := a.cp.List(ctx, in.AgentID, logger)
	if err != nil {
		return result, applicationError(err)
	}
	result = listPage(ids, in.After, in.MaxBytes)
	logger.Debug("connection list page", "agent_id", in.AgentID, "page", len(result.ConnectionIDs), "more", result.More)
	return result, nil
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
