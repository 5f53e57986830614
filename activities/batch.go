package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// itemState is where one connection of a batch stands.
type itemState int

const (
	itemPending itemState = iota
	itemDone
	itemTransient
	itemDeferred
	itemBusy
)

// batchItem is one distinct connection of a batch. id and prior never change once the batch
// runs; the rest is guarded by batch.mu.
type batchItem struct {
	id        string
	prior     int  // PriorRequests: requests of earlier teardown rounds
	maybeSent bool // MaybeSent: an earlier batch may have sent a request prior does not count
	// before counts the requests earlier attempts of this activity sent (from the heartbeat),
	// sent those of this attempt.
	before, sent int
	resumed      bool // finished by an earlier attempt
	state        itemState
	runID        string // itemDeferred: the standalone removal's run
	done         ac.ConnectionOutcome
	transient    TransientFailure
}

func (it *batchItem) attempts() int { return it.prior + it.before + it.sent }

// batch runs one RemoveConnections call.
type batch struct {
	a              *Activities
	ctx            context.Context
	logger         log.Logger
	agentID        string
	since          time.Time
	missingOK      bool
	earlierAttempt bool
	items          []*batchItem // distinct connections, in input order
	queue          []*batchItem // the ones to remove, in input order

	mu          sync.Mutex
	next        int // index into queue of the next item to start
	rateLimited bool
	refused     bool // a 401/403 came: the key is refused, nothing more is sent
	retryAfter  time.Duration

	// hbMu makes "take a snapshot, record it" one step, so the last heartbeat recorded is always
	// the newest progress.
	hbMu sync.Mutex
}

// RemoveConnections removes a batch of one agent's connections with at most Parallelism DELETE
// requests in flight (at least 1, at most MaxTeardownConcurrency), never two for the same
// connection: duplicate items are merged, keeping the first (with the largest PriorRequests).
// Every distinct connection ends in exactly one list of the result, in input order:
//
//   - Done: 204 removed; 404 already_absent with MissingOK or after any earlier request for it
//     (PriorRequests, an in-process retry, an earlier attempt of this activity); otherwise failed
//     with the failure type and a message clipped to MaxOutcomeMessageBytes. An invalid ID is
//     failed/InvalidRequest with no request.
//   - Transient: RateLimited, ServerError, Unavailable, with RetryAfter from Retry-After. A 429
//     stops the batch: nothing new starts, and the connections not yet started are Transient
//     RateLimited with the same RetryAfter, NotSent. A 401 or 403 stops it the same way and sets
//     Refused: no other connection is sent the refused key.
//   - Deferred / Busy: with a Coordinator, a standalone RemoveConnectionWorkflow of the
//     connection is sending its own DELETE (Deferred: wait for it with AwaitStandaloneRemoval) or
//     still deciding whether the teardown owns the connection (Busy: try again shortly). A
//     standalone removal waiting for the teardown does not stop the DELETE. When the coordinator
//     cannot answer, the connection is Transient/Unavailable and nothing is sent.
//
// Attempts counts every request for the connection, PriorRequests included. Each request is
// counted and heartbeated (RemoveConnectionsProgress) before it leaves, and each finished
// connection is heartbeated, so a retried attempt skips finished connections and keeps the
// counts. A retried attempt also reads a 404 as already_absent, because the SDK throttles
// heartbeats and the last count may not have reached the server.
//
// When the activity context ends (the teardown cancelled the batch, or the worker stops), nothing
// new starts, the requests already sent run to their answer (their outcome is known, so nothing
// is sent twice), and the batch returns its result as usual: the connections it did not get to
// are Transient and NotSent. An invalid agent ID fails the whole batch (InvalidRequest, not
// retried).
func (a *Activities) RemoveConnections(ctx context.Context, in RemoveConnectionsInput) (RemoveConnectionsResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	start := time.Now()
	if err := ac.ValidateID("agent_id", in.AgentID); err != nil {
		logger.Warn("refused connection batch before any request", "error", err.Error())
		return RemoveConnectionsResult{Done: []ac.ConnectionOutcome{}}, invalid(err)
	}

	var progress RemoveConnectionsProgress
	if activity.HasHeartbeatDetails(ctx) {
		// A broken detail loses the progress, never a removal: every connection is tried again,
		// and a 404 on this retried attempt reads as already_absent.
		if err := activity.GetHeartbeatDetails(ctx, &progress); err != nil {
			logger.Warn("could not read the previous attempt's batch progress", "error", err.Error())
			progress = RemoveConnectionsProgress{}
		}
	}

	b := &batch{a: a, ctx: ctx, logger: callLogger(ctx), agentID: in.AgentID, since: in.Since, missingOK: in.MissingOK, earlierAttempt: info.Attempt > 1}
	b.plan(in.Items, progress)

	parallelism := min(max(in.Parallelism, 1), ac.MaxTeardownConcurrency, max(len(b.queue), 1))
	stop := keepHeartbeating(info.HeartbeatTimeout, b.heartbeat)
	var wg sync.WaitGroup
	for range parallelism {
		wg.Go(b.work)
	}
	wg.Wait()
	stop()

	res, counts := b.result()
	fields := []any{
		"agent_id", in.AgentID, "attempt", info.Attempt, "items", len(in.Items), "connections", len(b.items),
		"parallelism", parallelism, "resumed", counts.resumed, "requests", counts.requests,
		"removed", counts.removed, "already_absent", counts.absent, "failed", counts.failed,
		"transient", len(res.Transient), "deferred", len(res.Deferred), "busy", len(res.Busy),
		"rate_limited", b.rateLimited, "latency_ms", time.Since(start).Milliseconds(),
	}
	if err := ctx.Err(); err != nil {
		logger.Info("connection batch stopped early: activity context done", append(fields, "error", err.Error())...)
	} else {
		logger.Info("connection batch finished", fields...)
	}
	return res, nil
}

// plan merges duplicate items, applies the previous attempt's progress and fails invalid IDs.
func (b *batch) plan(items []BatchItem, progress RemoveConnectionsProgress) {
	finished := make(map[string]ac.ConnectionOutcome, len(progress.Done))
	for _, o := range progress.Done {
		finished[o.ConnectionID] = o
	}
	byID := make(map[string]*batchItem, len(items))
	for _, in := range items {
		if it, dup := byID[in.ConnectionID]; dup {
			it.prior = max(it.prior, in.PriorRequests)
			it.maybeSent = it.maybeSent || in.MaybeSent
			continue
		}
		it := &batchItem{id: in.ConnectionID, prior: max(in.PriorRequests, 0), maybeSent: in.MaybeSent}
		byID[in.ConnectionID] = it
		b.items = append(b.items, it)
	}
	for _, it := range b.items {
		it.before = max(progress.Requests[it.id], 0)
		if o, ok := finished[it.id]; ok {
			it.state, it.done, it.resumed = itemDone, o, true
			continue
		}
		if err := ac.ValidateID("connection_id", it.id); err != nil {
			it.state = itemDone
			it.done = ac.ConnectionOutcome{
				ConnectionID: it.id, Outcome: ac.OutcomeFailed, Attempts: it.attempts(),
				FailureType: ac.ErrInvalidRequest, Message: outcomeMessage(err.Error()),
			}
			b.a.meter().Removal(ac.OutcomeFailed, ac.ErrInvalidRequest)
			continue
		}
		b.queue = append(b.queue, it)
	}
}

// work removes queued connections until none is left or the batch stops.
func (b *batch) work() {
	for {
		it, ok := b.take()
		if !ok {
			return
		}
		b.process(it)
	}
}

// take hands out the next connection to remove, or false once the queue is empty, a 429 came, or
// the activity context ended.
func (b *batch) take() (*batchItem, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.halted() || b.next >= len(b.queue) {
		return nil, false
	}
	it := b.queue[b.next]
	b.next++
	return it, true
}

// mayStart reports whether a request may still leave: not after a 429, a refused key or the
// context's end.
func (b *batch) mayStart() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.halted()
}

// leftToStandalone asks the coordinator whether a standalone removal of the connection is
// running, and records what that means for the connection; true when this batch must not send
// it anything now (deferred, busy, the check failed, or the context ended).
func (b *batch) leftToStandalone(it *batchItem) bool {
	coord := b.a.coord
	if coord == nil {
		return false
	}
	state, runID, running, err := coord.RemovalState(b.ctx, b.agentID, it.id, b.since)
	b.logger.Debug("checked for a standalone removal", "agent_id", b.agentID, "connection_id", it.id,
		"running", running, "state", state)
	switch {
	case err != nil && b.ctx.Err() != nil:
		// stays pending; the batch ends with the context
	case err != nil:
		b.logger.Warn("could not check for a standalone removal; not sending",
			"agent_id", b.agentID, "connection_id", it.id, "error", err.Error())
		b.finish(it, itemTransient, func() {
			it.transient = TransientFailure{
				ConnectionID: it.id, FailureType: ac.ErrUnavailable, Attempts: it.attempts(),
				Message: outcomeMessage("could not check for a standalone removal of this connection: " + err.Error()),
			}
		})
	case running && state == ac.RemovalRemoving:
		b.finish(it, itemDeferred, func() { it.runID = runID })
	case running && state != ac.RemovalWaitingForTeardown:
		b.finish(it, itemBusy, nil)
	default:
		return false
	}
	return true
}

// halted is true once nothing more may start. Call it with b.mu held.
func (b *batch) halted() bool {
	return b.rateLimited || b.refused || b.ctx.Err() != nil
}

// process removes one connection: unless a standalone removal has it, one DELETE (with the
// in-process retries), its answer recorded.
func (b *batch) process(it *batchItem) {
	if b.leftToStandalone(it) || !b.mayStart() {
		return // stays pending: Transient after a 429, or the context's error
	}

	b.mu.Lock()
	prior := it.prior + it.before
	b.mu.Unlock()
	res, err := b.a.cp.Delete(b.ctx, controlplane.DeleteRequest{
		AgentID:       b.agentID,
		ConnectionID:  it.id,
		MissingOK:     b.missingOK,
		PriorRequests: prior,
		MaybeSent:     b.earlierAttempt || it.maybeSent,
		OnSent: func(n int) {
			b.mu.Lock()
			it.sent = n
			b.mu.Unlock()
			b.heartbeat()
		},
		// A cancelled batch waits for the requests it sent, so their outcome is known.
		Detach: true,
		Logger: b.logger,
		Quiet:  true,
	})
	var e *controlplane.Error
	switch {
	case res.Outcome != "":
		b.finish(it, itemDone, func() {
			it.done = ac.ConnectionOutcome{ConnectionID: it.id, Outcome: res.Outcome, Attempts: res.Requests,
				EarlierRequest: res.AfterEarlierRequest}
		})
	case !errors.As(err, &e):
		return // the context ended: stays pending; its requests are counted
	case e.Retryable:
		b.finish(it, itemTransient, func() {
			it.transient = TransientFailure{
				ConnectionID: it.id, FailureType: e.Type, Message: outcomeMessage(e.Message),
				Attempts: e.Requests, RetryAfter: ac.Duration(e.RetryAfter),
			}
			if e.Type == ac.ErrRateLimited {
				b.rateLimited = true
				b.retryAfter = max(b.retryAfter, e.RetryAfter)
			}
		})
	default:
		b.finish(it, itemDone, func() {
			it.done = ac.ConnectionOutcome{
				ConnectionID: it.id, Outcome: ac.OutcomeFailed, Attempts: e.Requests,
				FailureType: e.Type, Message: outcomeMessage(e.Message), EarlierRequest: res.AfterEarlierRequest,
			}
			if e.Type == ac.ErrUnauthorized {
				b.refused = true
			}
		})
	}
}

// finish moves a connection to its final state (set runs under the lock), reports a finished or
// transient outcome to the metrics, and heartbeats the progress when a finished outcome was added.
func (b *batch) finish(it *batchItem, state itemState, set func()) {
	b.mu.Lock()
	it.state = state
	if set != nil {
		set()
	}
	var outcome, failureType string
	switch state {
	case itemDone:
		outcome, failureType = it.done.Outcome, it.done.FailureType
	case itemTransient:
		outcome, failureType = OutcomeTransient, it.transient.FailureType
	}
	b.mu.Unlock()
	if outcome != "" {
		b.a.meter().Removal(outcome, failureType)
	}
	if state == itemDone {
		b.heartbeat()
	}
}

// heartbeat records the current progress.
func (b *batch) heartbeat() {
	b.hbMu.Lock()
	defer b.hbMu.Unlock()
	activity.RecordHeartbeat(b.ctx, b.snapshot())
}

// snapshot is the progress so far: request counts and finished outcomes.
func (b *batch) snapshot() RemoveConnectionsProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := RemoveConnectionsProgress{Requests: make(map[string]int)}
	for _, it := range b.items {
		if n := it.before + it.sent; n > 0 {
			p.Requests[it.id] = n
		}
		if it.state == itemDone {
			p.Done = append(p.Done, it.done)
		}
	}
	return p
}

type batchCounts struct {
	resumed, requests, removed, absent, failed int
}

// result lists every connection once, in input order. Connections never started (after a 429)
// are Transient RateLimited with the batch's Retry-After.
func (b *batch) result() (RemoveConnectionsResult, batchCounts) {
	b.mu.Lock()
	defer b.mu.Unlock()
	res := RemoveConnectionsResult{Done: make([]ac.ConnectionOutcome, 0, len(b.items)), Refused: b.refused, Retried: b.earlierAttempt}
	var c batchCounts
	for _, it := range b.items {
		c.requests += it.sent
		switch it.state {
		case itemDone:
			res.Done = append(res.Done, it.done)
			switch {
			case it.resumed:
				c.resumed++
			case it.done.Outcome == ac.OutcomeRemoved:
				c.removed++
			case it.done.Outcome == ac.OutcomeAlreadyAbsent:
				c.absent++
			default:
				c.failed++
			}
		case itemTransient:
			res.Transient = append(res.Transient, it.transient)
		case itemDeferred:
			res.Deferred = append(res.Deferred, DeferredRemoval{ConnectionID: it.id, RunID: it.runID})
		case itemBusy:
			res.Busy = append(res.Busy, it.id)
		case itemPending:
			// No answer in this attempt: never started, or (rarely) stopped between an in-process
			// retry's wait and its request. Only the first is "not sent".
			t := TransientFailure{ConnectionID: it.id, FailureType: ac.ErrUnavailable, Attempts: it.attempts(),
				Message: "not sent: the batch stopped before it", NotSent: it.sent == 0}
			if it.sent > 0 {
				t.Message = "the batch stopped before an in-process retry; the earlier request got no final answer"
			}
			switch {
			case b.refused:
				t.FailureType = ac.ErrUnauthorized
				t.Message = "not sent: the control plane refused the key (401/403) in this batch"
			case b.rateLimited:
				t.FailureType, t.RetryAfter = ac.ErrRateLimited, ac.Duration(b.retryAfter)
				t.Message = fmt.Sprintf("not sent: the control plane answered 429 to this batch%s", controlplane.DelayNote(b.retryAfter))
			}
			res.Transient = append(res.Transient, t)
		}
	}
	return res, c
}
