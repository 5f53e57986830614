package activities

import (
	"context"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// removeProgress is the heartbeat detail of RemoveConnection: how many requests this removal has
// sent, across Temporal attempts. It holds no credential.
type removeProgress struct {
	Requests int `json:"requests"`
}

// RemoveConnection sends DELETE /v2/auth/agents/{agent_id}/connections/{connection_id} through
// the control plane client, which maps the answer as the status table in docs/contract.md says.
// Each request is counted and heartbeated before it leaves, so the count (the result's attempts)
// and the rule "a 404 after an earlier request is already_absent" hold across in-process retries,
// Temporal attempts and worker restarts.
func (a *Activities) RemoveConnection(ctx context.Context, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	info := activity.GetInfo(ctx)
	var prior removeProgress
	if activity.HasHeartbeatDetails(ctx) {
		// A broken detail only loses the count, never the removal: start from zero.
		if err := activity.GetHeartbeatDetails(ctx, &prior); err != nil {
			activity.GetLogger(ctx).Warn("could not read the previous attempt's request count", "error", err.Error())
			prior = removeProgress{}
		}
	}
	var sent atomic.Int64
	stop := keepHeartbeating(info.HeartbeatTimeout, func() {
		activity.RecordHeartbeat(ctx, removeProgress{Requests: prior.Requests + int(sent.Load())})
	})
	defer stop()

	res, err := a.cp.Delete(ctx, controlplane.DeleteRequest{
		AgentID:       in.AgentID,
		ConnectionID:  in.ConnectionID,
		MissingOK:     in.MissingOK,
		PriorRequests: prior.Requests,
		// Heartbeats are throttled: an earlier attempt may have sent a request the count misses.
		MaybeSent: info.Attempt > 1,
		OnSent: func(n int) {
			sent.Store(int64(n))
			activity.RecordHeartbeat(ctx, removeProgress{Requests: prior.Requests + n})
		},
		Logger: callLogger(ctx),
	})
	a.recordRemoval(res.Outcome, err)
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID, Outcome: res.Outcome, Attempts: res.Requests}
	return result, applicationError(err)
}

// keepHeartbeating calls beat (which records a heartbeat with the current progress) until stop
// is called, so a slow or hanging request does not trip the heartbeat timeout and a dead worker
// is noticed within it. It goes on after the activity context ends: a cancelled batch's requests
// in flight still finish, and the attempt must stay alive for them. The SDK throttles
// heartbeats, so ticking at a third of the timeout costs little.
func keepHeartbeating(timeout time.Duration, beat func()) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	interval := max(timeout/3, 100*time.Millisecond)
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				beat()
			}
		}
	}()
	return func() { close(done) }
}
