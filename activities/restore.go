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

// RestoreItem is one snapshot entry of a RestoreConnections batch.
type RestoreItem struct {
	Entry ac.ConnectionSnapshot `json:"entry"`
	// PriorRequests counts the POSTs earlier rounds of the restore sent for the token.
	PriorRequests int `json:"prior_requests,omitempty"`
	// MaybeSent is set when an earlier POST for the token got no final answer (or an earlier batch
	// was lost): a connection with the token found now is this restore's, so it is restored.
	MaybeSent bool `json:"maybe_sent,omitempty"`
}

// RestoreConnectionsInput is the input of the RestoreConnections (batch) activity.
type RestoreConnectionsInput struct {
	AgentID string        `json:"agent_id"`
	Items   []RestoreItem `json:"items"`
	// Parallelism bounds the POST requests in flight (at least 1).
	Parallelism int `json:"parallelism"`
}

// RestoreTransient is an entry whose POST failed with a retryable type in this batch.
type RestoreTransient struct {
	OAuthTokenID string      `json:"oauth_token_id"`
	FailureType  string      `json:"failure_type"`
	Message      string      `json:"message"`
	Attempts     int         `json:"attempts"`
	RetryAfter   ac.Duration `json:"retry_after,omitempty"`
	// NotSent is set when this batch sent the entry nothing (a 429, a refused key or a stop came
	// first); Unknown when a POST for it got no final answer and may have created the connection.
	NotSent bool `json:"not_sent,omitempty"`
	Unknown bool `json:"unknown,omitempty"`
}

// RestoreConnectionsResult is what one restore batch did; every distinct token is in one list.
type RestoreConnectionsResult struct {
	Done      []ac.RestoreOutcome `json:"done"`
	Transient []RestoreTransient  `json:"transient,omitempty"`
	// Refused is set when the control plane answered 401 or 403: the batch started nothing more.
	Refused bool `json:"refused,omitempty"`
}

// RestoreConnectionsProgress is the heartbeat detail of RestoreConnections: POSTs sent per token
// across attempts, and the finished entries.
type RestoreConnectionsProgress struct {
	Requests map[string]int      `json:"requests,omitempty"`
	Done     []ac.RestoreOutcome `json:"done,omitempty"`
}

// restoreItem is one distinct token of a batch; the fields after entry are guarded by restore.mu.
type restoreItem struct {
	entry        ac.ConnectionSnapshot
	prior        int
	maybeSent    bool
	before, sent int
	done         *ac.RestoreOutcome
	transient    *RestoreTransient
}

func (it *restoreItem) attempts() int { return it.prior + it.before + it.sent }

// restoreBatch runs one RestoreConnections call.
type restoreBatch struct {
	a       *Activities
	ctx     context.Context
	logger  log.Logger
	agentID string
	present map[string]string // token -> connection listed at the batch's start
	items   []*restoreItem
	queue   []*restoreItem

	mu          sync.Mutex
	next        int
	refused     bool
	rateLimited bool
	retryAfter  time.Duration
	// tooLate is set once a POST was not sent because the attempt's deadline is nearer than the
	// request timeout: the batch starts nothing more and returns what it has.
	tooLate bool
	hbMu    sync.Mutex
}

// RestoreConnections re-creates a batch of one agent's connections from their OAuth tokens, with
// at most Parallelism POSTs in flight and never two connections for one token. It lists the agent
// first: an entry whose token is listed is done without a POST (already_present, or restored when
// an earlier POST of this restore may have created it). Every other entry gets one Create
// (controlplane.Client.Create), whose outcome is restored, failed for good, or transient (the
// next round retries it after checking for the token again). A 429 or a 401/403 stops the batch
// as the teardown's does. A failed list of the agent fails every entry with its type when it is
// not retryable (AgentNotFound, Unauthorized), and fails the activity, retried, otherwise.
func (a *Activities) RestoreConnections(ctx context.Context, in RestoreConnectionsInput) (RestoreConnectionsResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	if err := ac.ValidateID("agent_id", in.AgentID); err != nil {
		return RestoreConnectionsResult{Done: []ac.RestoreOutcome{}}, invalid(err)
	}
	var progress RestoreConnectionsProgress
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &progress); err != nil {
			logger.Warn("could not read the previous attempt's restore progress", "error", err.Error())
			progress = RestoreConnectionsProgress{}
		}
	}
	b := &restoreBatch{a: a, ctx: ctx, logger: callLogger(ctx), agentID: in.AgentID}
	b.plan(in.Items, progress, info.Attempt > 1)
	stop := keepHeartbeating(info.HeartbeatTimeout, b.heartbeat)
	defer stop()
	if len(b.queue) > 0 {
		if err := b.listPresent(); err != nil {
			return RestoreConnectionsResult{Done: []ac.RestoreOutcome{}}, err
		}
	}
	var wg sync.WaitGroup
	for range min(max(in.Parallelism, 1), ac.MaxTeardownConcurrency, max(len(b.queue), 1)) {
		wg.Go(b.work)
	}
	wg.Wait()
	res := b.result()
	logger.Info("restore batch finished", "agent_id", in.AgentID, "attempt", info.Attempt, "items", len(in.Items),
		"done", len(res.Done), "transient", len(res.Transient), "refused", res.Refused, "rate_limited", b.rateLimited)
	return res, nil
}

// plan merges items of one token and applies the previous attempt's progress.
func (b *restoreBatch) plan(items []RestoreItem, progress RestoreConnectionsProgress, earlierAttempt bool) {
	finished := map[string]ac.RestoreOutcome{}
	for _, o := range progress.Done {
		finished[o.OAuthTokenID] = o
	}
	byToken := map[string]*restoreItem{}
	for _, in := range items {
		if it, dup := byToken[in.Entry.OAuthTokenID]; dup {
			it.prior, it.maybeSent = max(it.prior, in.PriorRequests), it.maybeSent || in.MaybeSent
			continue
		}
		it := &restoreItem{entry: in.Entry, prior: max(in.PriorRequests, 0), maybeSent: in.MaybeSent || earlierAttempt}
		byToken[in.Entry.OAuthTokenID] = it
		b.items = append(b.items, it)
	}
	for _, it := range b.items {
		it.before = max(progress.Requests[it.entry.OAuthTokenID], 0)
		if o, ok := finished[it.entry.OAuthTokenID]; ok {
			it.done = &o
			continue
		}
		b.queue = append(b.queue, it)
	}
}

// listPresent lists the agent once and notes which tokens hold a connection. A failure that no
// retry fixes fails every queued entry with its type; another fails the activity (retried).
func (b *restoreBatch) listPresent() error {
	conns, err := b.a.cp.Connections(b.ctx, b.agentID, b.logger)
	var e *controlplane.Error
	switch {
	case err == nil:
		b.present = make(map[string]string, len(conns))
		for _, c := range conns {
			if _, seen := b.present[c.OAuthTokenID]; !seen && c.OAuthTokenID != "" {
				b.present[c.OAuthTokenID] = c.ID
			}
		}
		return nil
	case errors.As(err, &e) && !e.Retryable:
		for _, it := range b.queue {
			b.fail(it, e)
		}
		b.next = len(b.queue)
		return nil
	default:
		return applicationError(err)
	}
}

func (b *restoreBatch) work() {
	for {
		b.mu.Lock()
		if b.rateLimited || b.refused || b.tooLate || b.ctx.Err() != nil || b.next >= len(b.queue) {
			b.mu.Unlock()
			return
		}
		it := b.queue[b.next]
		b.next++
		b.mu.Unlock()
		b.process(it)
	}
}

// process restores one entry: taken from the list when its token is there, else one Create.
func (b *restoreBatch) process(it *restoreItem) {
	tok := it.entry.OAuthTokenID
	if id, ok := b.present[tok]; ok {
		outcome := ac.OutcomeAlreadyPresent
		if it.maybeSent || it.prior+it.before > 0 {
			outcome = ac.OutcomeRestored
		}
		b.finish(it, ac.RestoreOutcome{Outcome: outcome, NewConnectionID: id, Attempts: it.attempts()})
		return
	}
	prior := it.prior + it.before
	res, err := b.a.cp.Create(b.ctx, controlplane.CreateRequest{
		AgentID: b.agentID, OAuthTokenID: tok,
		OnSent: func(n int) {
			b.mu.Lock()
			it.sent = n
			b.mu.Unlock()
			b.heartbeat()
		},
		Detach: true, Logger: b.logger, Quiet: true,
	})
	var e *controlplane.Error
	switch {
	case err == nil:
		b.finish(it, ac.RestoreOutcome{Outcome: res.Outcome, NewConnectionID: res.ConnectionID, Attempts: prior + res.Requests})
	case errors.Is(err, controlplane.ErrTooLateToSend):
		// A POST sent now could still be in flight when Temporal retries this attempt past its
		// deadline, and the retry's list would miss what it creates: stays pending, not sent.
		b.mu.Lock()
		b.tooLate = true
		b.mu.Unlock()
	case !errors.As(err, &e):
		return // the context ended: stays pending
	case e.Retryable:
		b.mu.Lock()
		it.transient = &RestoreTransient{OAuthTokenID: tok, FailureType: e.Type, Message: outcomeMessage(e.Message),
			Attempts: prior + res.Requests, RetryAfter: ac.Duration(e.RetryAfter), Unknown: res.Unknown}
		if e.Type == ac.ErrRateLimited {
			b.rateLimited, b.retryAfter = true, max(b.retryAfter, e.RetryAfter)
		}
		b.mu.Unlock()
	default:
		e.Requests = prior + res.Requests
		b.fail(it, e)
	}
}

// fail finishes an entry as failed with e's type; a refused key stops the batch.
func (b *restoreBatch) fail(it *restoreItem, e *controlplane.Error) {
	b.finish(it, ac.RestoreOutcome{Outcome: ac.OutcomeFailed, Attempts: max(e.Requests, it.attempts()), FailureType: e.Type, Message: outcomeMessage(e.Message)})
	if e.Type == ac.ErrUnauthorized {
		b.mu.Lock()
		b.refused = true
		b.mu.Unlock()
	}
}

func (b *restoreBatch) finish(it *restoreItem, o ac.RestoreOutcome) {
	o.ConnectionID, o.OAuthTokenID = it.entry.ConnectionID, it.entry.OAuthTokenID
	b.mu.Lock()
	it.done = &o
	b.mu.Unlock()
	b.heartbeat()
}

func (b *restoreBatch) heartbeat() {
	b.hbMu.Lock()
	defer b.hbMu.Unlock()
	b.mu.Lock()
	p := RestoreConnectionsProgress{Requests: map[string]int{}}
	for _, it := range b.items {
		if n := it.before + it.sent; n > 0 {
			p.Requests[it.entry.OAuthTokenID] = n
		}
		if it.done != nil {
			p.Done = append(p.Done, *it.done)
		}
	}
	b.mu.Unlock()
	activity.RecordHeartbeat(b.ctx, p)
}

// result lists every token once, in input order. An entry never answered is transient: not
// sent, or unknown when a POST for it left.
func (b *restoreBatch) result() RestoreConnectionsResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	res := RestoreConnectionsResult{Done: make([]ac.RestoreOutcome, 0, len(b.items)), Refused: b.refused}
	for _, it := range b.items {
		switch {
		case it.done != nil:
			res.Done = append(res.Done, *it.done)
		case it.transient != nil:
			res.Transient = append(res.Transient, *it.transient)
		default:
			t := RestoreTransient{OAuthTokenID: it.entry.OAuthTokenID, FailureType: ac.ErrUnavailable, Attempts: it.attempts(),
				Message: "not sent: the batch stopped before it", NotSent: it.sent == 0, Unknown: it.sent > 0}
			if b.tooLate && it.sent == 0 {
				t.Message = "not sent: the batch's deadline was nearer than the request timeout"
			}
			switch {
			case b.refused:
				t.FailureType, t.Message = ac.ErrUnauthorized, "not sent: the control plane refused the key (401/403) in this batch"
			case b.rateLimited:
				t.FailureType, t.RetryAfter = ac.ErrRateLimited, ac.Duration(b.retryAfter)
				t.Message = fmt.Sprintf("not sent: the control plane answered 429 to this batch%s", controlplane.DelayNote(b.retryAfter))
			}
			res.Transient = append(res.Transient, t)
		}
	}
	return res
}
