package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// removeProgress is the heartbeat detail of RemoveConnection: the requests this removal has sent
// in Temporal attempts 1 to Attempt, all of them included. It holds no credential.
type removeProgress struct {
	Requests int `json:"requests"`
	// Attempt is the last Temporal attempt whose requests Requests counts; 0 when there is none
	// (or the detail was written before the field existed: see priorRequests).
	Attempt int `json:"attempt,omitempty"`
}

// priorRequests is the request count of the Temporal attempts before attempt, from the last
// recorded detail (the zero removeProgress when there is none): the recorded count, plus one
// request for each earlier attempt that left no count of its own. An attempt records no count
// before its first request, so an attempt that died in it (a killed worker, a timeout) left
// none and sent at most that one request; one that died before sending is counted as one too.
//
// A detail with requests but no attempt was written by a worker older than the field, which
// heartbeated every request before it left: its count is taken as it is.
func priorRequests(attempt int32, recorded removeProgress) int {
	if recorded.Attempt == 0 && recorded.Requests > 0 {
		return recorded.Requests
	}
	return recorded.Requests + max(int(attempt)-1-recorded.Attempt, 0)
}

// recordedProgress is the heartbeat detail an earlier attempt left, the zero removeProgress when
// there is none. A broken detail only loses the count, never the removal: it reads as none.
func recordedProgress(ctx context.Context) removeProgress {
	if !activity.HasHeartbeatDetails(ctx) {
		return removeProgress{}
	}
	var p removeProgress
	if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
		activity.GetLogger(ctx).Warn("could not read the previous attempt's request count", "error", err.Error())
		return removeProgress{}
	}
	return p
}

// RemoveConnection sends DELETE /v2/auth/agents/{agent_id}/connections/{connection_id} through
// the control plane client, which maps the answer as the status table in docs/contract.md says.
// The request count (the result's attempts) and the rule "a 404 after an earlier request is
// already_absent" hold across in-process retries, Temporal attempts and worker restarts: the count
// is heartbeated before each request of an attempt but the first, and before an error Temporal may
// retry is returned; the next attempt counts an earlier attempt that left no count as one
// request (priorRequests). No heartbeat, and so no Temporal RPC, precedes the first request.
func (a *Activities) RemoveConnection(ctx context.Context, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	info := activity.GetInfo(ctx)
	hb := &removeHeartbeat{ctx: ctx, prior: priorRequests(info.Attempt, recordedProgress(ctx)), attempt: int(info.Attempt)}
	stop := keepHeartbeating(info.HeartbeatTimeout, hb.tick)
	defer stop()

	res, err := a.cp.Delete(ctx, controlplane.DeleteRequest{
		AgentID:       in.AgentID,
		ConnectionID:  in.ConnectionID,
		MissingOK:     in.MissingOK,
		PriorRequests: hb.prior,
		// An earlier attempt may have sent a request the count misses (a heartbeat still inside
		// the SDK's throttle window when its worker died).
		MaybeSent: info.Attempt > 1,
		OnSent:    hb.sent,
		Logger:    callLogger(ctx),
	})
	if err != nil && mayRetry(err) {
		hb.last(res.Requests - hb.prior)
	}
	a.recordRemoval(res.Outcome, err)
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID, Outcome: res.Outcome, Attempts: res.Requests}
	return result, applicationError(err)
}

// mayRetry reports whether Temporal may run another attempt after err: every error but a
// *controlplane.Error that is not retryable (the context's own end included: a worker shutting
// down leaves an attempt that times out and is retried).
func mayRetry(err error) bool {
	var e *controlplane.Error
	return !errors.As(err, &e) || e.Retryable
}

// removeHeartbeat records RemoveConnection's request count. The mutex orders the records as the
// count grows: the SDK keeps the last detail recorded within its throttle window, so a tick that
// read an older count must not record it after a newer one.
type removeHeartbeat struct {
	ctx     context.Context
	prior   int // requests of the earlier attempts
	attempt int // this Temporal attempt

	mu    sync.Mutex
	n     int  // requests this attempt has sent
	final bool // no request of this attempt follows
}

// progress is the detail to record now; h.mu is held.
func (h *removeHeartbeat) progress() removeProgress {
	if h.n == 0 && !h.final {
		// The first request may leave right after this is recorded, with no record of its own:
		// claim only the earlier attempts, so that the next attempt counts this one as one.
		return removeProgress{Requests: h.prior, Attempt: h.attempt - 1}
	}
	return removeProgress{Requests: h.prior + h.n, Attempt: h.attempt}
}

// sent is the DeleteRequest's OnSent: the count goes into a heartbeat before each request but the
// first. The first heartbeat of an attempt is sent to Temporal at once; later ones within the
// SDK's throttle interval (MaxHeartbeatThrottleInterval, one second in the worker) are kept and
// sent at its end, or when the attempt fails.
func (h *removeHeartbeat) sent(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n = n
	if n > 1 {
		activity.RecordHeartbeat(h.ctx, h.progress())
	}
}

// tick is keepHeartbeating's beat.
func (h *removeHeartbeat) tick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	activity.RecordHeartbeat(h.ctx, h.progress())
}

// last records the attempt's final count (n requests sent in it) before an error Temporal may
// retry is returned, so the next attempt reads it. The SDK sends it at once when no heartbeat of
// this attempt is inside the throttle window (the common case: an attempt of one request), and
// otherwise flushes it when the failed attempt closes, before the failure is reported. It is
// recorded through a context that is never cancelled, so an attempt whose context ended (a worker
// stopping) still sends it when it goes at once; a held one is flushed through the SDK's own.
func (h *removeHeartbeat) last(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n, h.final = n, true
	activity.RecordHeartbeat(context.WithoutCancel(h.ctx), h.progress())
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
