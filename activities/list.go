package activities

import (
	"context"
	"slices"
	"strings"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
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
	conns, err := a.cp.Connections(ctx, in.AgentID, logger)
	if err != nil {
		return result, applicationError(err)
	}
	result = listPage(listed(conns, in), in.After, in.MaxBytes)
	result.Listed = len(conns)
	logger.Debug("connection list page", "agent_id", in.AgentID, "page", len(result.ConnectionIDs), "more", result.More)
	return result, nil
}

// listedConnection is one listed connection as a page holds it: its ID, and its bounded
// snapshot when the page asks for snapshots and it has one.
type listedConnection struct {
	id   string
	snap *ac.ConnectionSnapshot
}

// listed is the list as in asks for it: only the connections in in.Only when set, each with its
// snapshot when in.Snapshot is set.
func listed(conns []controlplane.Connection, in ListConnectionsInput) []listedConnection {
	only := map[string]bool{}
	for _, id := range in.Only {
		only[id] = true
	}
	out := make([]listedConnection, 0, len(conns))
	for _, c := range conns {
		if len(in.Only) > 0 && !only[c.ID] {
			continue
		}
		l := listedConnection{id: c.ID}
		if in.Snapshot {
			s, ok := ac.BoundSnapshot(ac.ConnectionSnapshot{ConnectionID: c.ID, OAuthTokenID: c.OAuthTokenID, ProviderID: c.ProviderID, Scopes: c.Scopes})
			if ok {
				l.snap = &s
			}
		}
		out = append(out, l)
	}
	return out
}

// size is what the connection adds to a page, in JSON bytes: its ID, and its snapshot.
func (l listedConnection) size() int {
	if l.snap == nil {
		return ac.JSONBytes(l.id)
	}
	return ac.JSONBytes(l.id) + l.snap.JSONSize()
}

// listPage is the page of conns (distinct IDs) sorted after `after`, at most maxBytes of IDs and
// snapshots but never empty while any remain.
func listPage(conns []listedConnection, after string, maxBytes int) ListConnectionsResult {
	if maxBytes <= 0 {
		maxBytes = DefaultListPageBytes
	}
	sorted := slices.Clone(conns)
	slices.SortFunc(sorted, func(a, b listedConnection) int { return strings.Compare(a.id, b.id) })
	start, _ := slices.BinarySearchFunc(sorted, after, func(l listedConnection, id string) int { return strings.Compare(l.id, id) })
	if start < len(sorted) && after != "" && sorted[start].id == after {
		start++
	}
	res := ListConnectionsResult{ConnectionIDs: []string{}, Listed: len(conns)}
	size := 0
	for _, l := range sorted[start:] {
		if len(res.ConnectionIDs) > 0 && size+l.size() > maxBytes {
			res.More = true
			break
		}
		size += l.size()
		res.ConnectionIDs = append(res.ConnectionIDs, l.id)
		if l.snap != nil {
			res.Snapshots = append(res.Snapshots, *l.snap)
		}
	}
	return res
}
