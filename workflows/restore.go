package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// stopRestoreRefused is a restore's StopReason after a 401 or 403.
const stopRestoreRefused = "the control plane refused the key (401/403); the restore started nothing more"

// restore is one run of RestoreAgentConnectionsWorkflow. It has the teardown's shape: batches of
// RestoreConnections (the teardown's batch sizes and options) until their parallelism adds up to
// the concurrency, rounds with backoff for transient failures, the progress and report queries,
// the cancel update and Temporal's cancel as the one stop. Its input is bounded
// (MaxRestoreInputBytes), so one run holds it all: it never continues as new.
type restore struct {
	ctx, cancelReq workflow.Context
	in             ac.RestoreAgentConnectionsInput
	entries        map[string]ac.ConnectionSnapshot // by token
	order          []string                         // tokens, in input order, each once
	attempts       map[string]int
	rounds         map[string]int
	maybeSent      map[string]bool // a POST for it may have created a connection
	lastFailure    map[string]string
	outcomes       []ac.RestoreOutcome
	finished       map[string]bool
	queue          []string
	delayed        []delayedItem
	capacity       int
	inFlight       int
	batches        int
	results, wake  workflow.Channel
	timerDone      workflow.Channel
	timerAt        time.Time
	work           workflow.Context
	stopWork       workflow.CancelFunc
	stopped        bool
	cancelled      bool
	cancelSeen     bool
	stopReason     string
}

type restoreBatchDone struct {
	items  []activities.RestoreItem
	par    int
	result activities.RestoreConnectionsResult
	err    error
}

// RestoreAgentConnectionsWorkflow re-creates an agent's connections from snapshot entries (a
// teardown's report gives them), one connection per OAuth token: restored (a new connection ID),
// already_present, or failed with the failure type. A transient failure is tried again in a later
// round; before any POST for a token whose earlier POST got no final answer, the agent is listed
// and a connection with the token is taken instead. It stops as the teardown stops: the cancel
// update returns the result with Cancelled set, Temporal's cancel ends it Canceled with the result
// as details, and a 401/403 starts nothing more. Entries not tried are skipped; entries whose POST
// may have created a connection are failed Interrupted.
func RestoreAgentConnectionsWorkflow(ctx workflow.Context, in ac.RestoreAgentConnectionsInput) (ac.RestoreAgentConnectionsResult, error) {
	if err := in.Validate(); err != nil {
		return ac.RestoreAgentConnectionsResult{AgentID: in.AgentID, Connections: []ac.RestoreOutcome{}},
			temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	r := newRestore(ctx, in)
	if err := r.registerHandlers(); err != nil {
		return r.result(), err
	}
	r.run()
	res := r.result()
	workflow.GetLogger(ctx).Info("restore finished", "agent_id", in.AgentID, "total", res.Total, "restored", res.Restored,
		"already_present", res.AlreadyPresent, "failed", res.Failed, "skipped", res.Skipped, "stop_reason", res.StopReason)
	_ = workflow.Await(r.ctx, func() bool { return workflow.AllHandlersFinished(r.ctx) })
	if r.cancelSeen || r.cancelReq.Err() != nil {
		res.Cancelled = true
		if res.StopReason == "" {
			res.StopReason = stopCancelled
		}
		return res, temporal.NewCanceledError(res)
	}
	return res, nil
}

func newRestore(ctx workflow.Context, in ac.RestoreAgentConnectionsInput) *restore {
	detached, _ := workflow.NewDisconnectedContext(ctx)
	work, stopWork := workflow.WithCancel(detached)
	r := &restore{
		ctx: detached, cancelReq: ctx, in: in,
		entries: map[string]ac.ConnectionSnapshot{}, attempts: map[string]int{}, rounds: map[string]int{},
		maybeSent: map[string]bool{}, lastFailure: map[string]string{}, finished: map[string]bool{},
		capacity: in.ConcurrencyOrDefault(),
		results:  workflow.NewChannel(detached), wake: workflow.NewBufferedChannel(detached, 1),
		timerDone: workflow.NewChannel(detached), work: work, stopWork: stopWork,
	}
	for _, e := range in.Connections {
		if _, dup := r.entries[e.OAuthTokenID]; dup {
			continue // one connection per token
		}
		r.entries[e.OAuthTokenID] = e
		r.order = append(r.order, e.OAuthTokenID)
	}
	r.queue = slices.Clone(r.order)
	return r
}

func (r *restore) registerHandlers() error {
	if err := workflow.SetQueryHandler(r.ctx, ac.ProgressQuery, func() (ac.TeardownProgress, error) {
		return r.progress(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(r.ctx, ac.ReportQuery, func(page int) (ac.RestoreReportPage, error) {
		return restoreReportPage(r.sortedOutcomes(), page)
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(r.ctx, ac.InputDigestQuery, func() (string, error) {
		return ac.RestoreInputDigest(r.in.Connections), nil
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandler(r.ctx, ac.CancelUpdate, func(ctx workflow.Context) (ac.TeardownProgress, error) {
		r.stop(stopCancelled, "restore cancel accepted: requests in flight finish, none start")
		return r.progress(), nil
	})
}

func (r *restore) stop(reason, logMsg string) {
	if r.stopped {
		return
	}
	r.stopped, r.stopReason = true, reason
	r.cancelled = reason == stopCancelled
	workflow.GetLogger(r.ctx).Info(logMsg, "agent_id", r.in.AgentID, "stop_reason", reason)
	r.stopWork()
	r.wake.SendAsync(true)
}

func (r *restore) progress() ac.TeardownProgress {
	p := ac.TeardownProgress{AgentID: r.in.AgentID, Listed: true, Total: len(r.order), InFlight: r.inFlight, Cancelled: r.cancelled, Runs: 1}
	for _, o := range r.outcomes {
		switch o.Outcome {
		case ac.OutcomeRestored, ac.OutcomeAlreadyPresent:
			p.Done++
		case ac.OutcomeFailed:
			p.Failed++
		}
	}
	p.Remaining = p.Total - len(r.outcomes)
	return p
}

// run restores until nothing is left or the restore stopped.
func (r *restore) run() {
	for {
		if !r.cancelSeen && r.cancelReq.Err() != nil {
			r.cancelSeen = true
			r.stop(stopCancelled, "restore cancelled by Temporal: requests in flight finish, none start")
		}
		if !r.stopped {
			r.promoteDelayed()
			for r.capacity > 0 && len(r.queue) > 0 {
				r.startBatch()
			}
		}
		if r.batches == 0 {
			if r.stopped {
				r.skipRest()
				return
			}
			if len(r.queue) == 0 && len(r.delayed) == 0 {
				return
			}
		}
		r.wait()
	}
}

func (r *restore) startBatch() {
	par := min(r.capacity, maxBatchParallelism, len(r.queue))
	size := min(len(r.queue), par*batchSlots, maxBatchSize)
	items := make([]activities.RestoreItem, 0, size)
	for _, tok := range r.queue[:size] {
		items = append(items, activities.RestoreItem{Entry: r.entries[tok], PriorRequests: r.attempts[tok], MaybeSent: r.maybeSent[tok]})
	}
	r.queue = r.queue[size:]
	r.capacity -= par
	r.inFlight += size
	r.batches++
	actx := workflow.WithActivityOptions(r.work, batchActivityOptions())
	in := activities.RestoreConnectionsInput{AgentID: r.in.AgentID, Items: items, Parallelism: par}
	workflow.Go(r.ctx, func(ctx workflow.Context) {
		var res activities.RestoreConnectionsResult
		err := workflow.ExecuteActivity(actx, acts.RestoreConnections, in).Get(ctx, &res)
		r.results.Send(ctx, restoreBatchDone{items: items, par: par, result: res, err: err})
	})
}

func (r *restore) wait() {
	sel := workflow.NewSelector(r.ctx)
	sel.AddReceive(r.results, func(c workflow.ReceiveChannel, _ bool) {
		var ev restoreBatchDone
		c.Receive(r.ctx, &ev)
		r.batchFinished(ev)
	})
	sel.AddReceive(r.wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(r.ctx, nil) })
	sel.AddReceive(r.timerDone, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(r.ctx, nil)
		r.timerAt = time.Time{}
	})
	if !r.cancelSeen {
		sel.AddReceive(r.cancelReq.Done(), func(workflow.ReceiveChannel, bool) {
			r.cancelSeen = true
			r.stop(stopCancelled, "restore cancelled by Temporal: requests in flight finish, none start")
		})
	}
	if !r.stopped && r.capacity > 0 && len(r.queue) == 0 && len(r.delayed) > 0 {
		r.armTimer()
	}
	sel.Select(r.ctx)
}

func (r *restore) armTimer() {
	next := r.delayed[0].readyAt
	for _, d := range r.delayed[1:] {
		if d.readyAt.Before(next) {
			next = d.readyAt
		}
	}
	if !r.timerAt.IsZero() && !r.timerAt.After(next) {
		return
	}
	r.timerAt = next
	timer := workflow.NewTimer(r.work, max(next.Sub(workflow.Now(r.ctx)), time.Millisecond))
	workflow.Go(r.ctx, func(ctx workflow.Context) {
		_ = timer.Get(ctx, nil)
		r.timerDone.Send(ctx, nil)
	})
}

func (r *restore) promoteDelayed() {
	now := workflow.Now(r.ctx)
	kept := r.delayed[:0]
	for _, d := range r.delayed {
		if d.readyAt.After(now) {
			kept = append(kept, d)
		} else {
			r.queue = append(r.queue, d.id)
		}
	}
	r.delayed = kept
}

func (r *restore) batchFinished(e restoreBatchDone) {
	r.batches--
	r.capacity += e.par
	r.inFlight -= len(e.items)
	if e.err != nil {
		r.batchLost(e)
		return
	}
	if e.result.Refused {
		r.stop(stopRestoreRefused, "restore stops: the control plane refused the key")
	}
	for _, o := range e.result.Done {
		r.finish(o)
	}
	for _, tf := range e.result.Transient {
		r.maybeSent[tf.OAuthTokenID] = r.maybeSent[tf.OAuthTokenID] || tf.Unknown
		if tf.NotSent {
			r.attempts[tf.OAuthTokenID] = tf.Attempts
			r.delay(tf.OAuthTokenID, max(notSentDelay, min(tf.RetryAfter.D(), maxRetryDelay)))
			continue
		}
		r.retryLater(tf.OAuthTokenID, tf.FailureType, tf.Message, tf.Attempts, tf.RetryAfter.D())
	}
}

// batchLost takes what a batch that failed as a whole heartbeated: its finished entries stay
// finished; the rest go to another round, maybe sent (a POST no count holds may have left).
func (r *restore) batchLost(e restoreBatchDone) {
	errType, msg := failureOf(e.err)
	var progress activities.RestoreConnectionsProgress
	var timeoutErr *temporal.TimeoutError
	if errors.As(e.err, &timeoutErr) && timeoutErr.HasLastHeartbeatDetails() {
		if err := timeoutErr.LastHeartbeatDetails(&progress); err != nil {
			progress = activities.RestoreConnectionsProgress{}
		}
	}
	workflow.GetLogger(r.ctx).Warn("restore batch failed as a whole", "agent_id", r.in.AgentID, "size", len(e.items), "error", msg)
	for _, o := range progress.Done {
		r.finish(o)
	}
	for _, it := range e.items {
		tok := it.Entry.OAuthTokenID
		r.maybeSent[tok] = true
		r.retryLater(tok, errType, msg, it.PriorRequests+progress.Requests[tok], 0)
	}
}

func (r *restore) retryLater(tok, errType, msg string, attempts int, retryAfter time.Duration) {
	if r.finished[tok] {
		return
	}
	r.lastFailure[tok] = errType
	r.attempts[tok] = attempts
	r.rounds[tok]++
	round := r.rounds[tok]
	if round >= ac.MaxTeardownRounds {
		e := r.entries[tok]
		o := ac.RestoreOutcome{ConnectionID: e.ConnectionID, OAuthTokenID: tok, Outcome: ac.OutcomeFailed, Attempts: attempts,
			FailureType: errType, Message: fmt.Sprintf("gave up after %d rounds: %s", round, msg)}
		if r.maybeSent[tok] {
			// The last POST's answer was lost too: it may have created the connection, as for a
			// restore that stopped (restore simulation seeds 1856 and 1888).
			o.FailureType = ac.ErrInterrupted
			o.Message = fmt.Sprintf("gave up after %d rounds with no final answer (last: %s: %s); a POST it sent may have created the connection",
				round, errType, msg)
		}
		r.finish(o)
		return
	}
	backoff := min(time.Second<<(round-1), maxRetryDelay)
	r.delay(tok, max(backoff, min(retryAfter, maxRetryDelay)))
}

func (r *restore) delay(tok string, d time.Duration) {
	r.delayed = append(r.delayed, delayedItem{id: tok, readyAt: workflow.Now(r.ctx).Add(d)})
}

func (r *restore) finish(o ac.RestoreOutcome) {
	if r.finished[o.OAuthTokenID] {
		return
	}
	o.Message = clipMessage(o.Message)
	r.finished[o.OAuthTokenID] = true
	r.outcomes = append(r.outcomes, o)
}

// skipRest reports every entry not finished when the restore stopped: skipped when no POST was
// sent for it, failed Interrupted when one may have created its connection.
func (r *restore) skipRest() {
	rest := append(slices.Clone(r.queue), idsOf(r.delayed)...)
	r.queue, r.delayed = nil, nil
	for _, tok := range rest {
		e := r.entries[tok]
		o := ac.RestoreOutcome{ConnectionID: e.ConnectionID, OAuthTokenID: tok, Outcome: ac.OutcomeSkipped, Attempts: r.attempts[tok],
			Message: "not sent a POST: the restore stopped first (" + r.stopReason + ")"}
		if r.attempts[tok] > 0 || r.maybeSent[tok] {
			o.Outcome, o.FailureType = ac.OutcomeFailed, ac.ErrInterrupted
			o.Message = fmt.Sprintf("the restore stopped (%s) before a final answer (last: %s); a POST it sent may have created the connection",
				r.stopReason, r.lastFailure[tok])
		}
		r.finish(o)
	}
}

func (r *restore) sortedOutcomes() []ac.RestoreOutcome {
	out := slices.Clone(r.outcomes)
	slices.SortFunc(out, func(a, b ac.RestoreOutcome) int {
		if c := strings.Compare(a.ConnectionID, b.ConnectionID); c != 0 {
			return c
		}
		return strings.Compare(a.OAuthTokenID, b.OAuthTokenID)
	})
	return out
}

func (r *restore) result() ac.RestoreAgentConnectionsResult {
	all := r.sortedOutcomes()
	pages := restoreReportPages(all)
	res := ac.RestoreAgentConnectionsResult{AgentID: r.in.AgentID, Cancelled: r.cancelled, StopReason: r.stopReason, Runs: 1,
		Total: len(all), ReportPages: len(pages), Connections: []ac.RestoreOutcome{}, InputDigest: ac.RestoreInputDigest(r.in.Connections)}
	if len(pages) > 0 {
		res.Connections = all[pages[0][0]:pages[0][1]]
	}
	res.ReportTruncated = len(res.Connections) < len(all)
	for _, o := range all {
		switch o.Outcome {
		case ac.OutcomeRestored:
			res.Restored++
		case ac.OutcomeAlreadyPresent:
			res.AlreadyPresent++
		case ac.OutcomeFailed:
			res.Failed++
		case ac.OutcomeSkipped:
			res.Skipped++
		}
	}
	return res
}

// restoreReportPages splits sorted outcomes into pages of at most ac.MaxReportBytes of JSON.
func restoreReportPages(all []ac.RestoreOutcome) [][2]int {
	return pageBounds(all, func(o ac.RestoreOutcome) int {
		return ac.JSONBytes(o.ConnectionID) + ac.JSONBytes(o.OAuthTokenID) + ac.JSONBytes(o.NewConnectionID) +
			len(o.Outcome) + len(o.FailureType) + ac.JSONBytes(o.Message) + reportEntryOverhead
	})
}

func restoreReportPage(all []ac.RestoreOutcome, n int) (ac.RestoreReportPage, error) {
	pages := restoreReportPages(all)
	if n < 0 || (n >= len(pages) && !(n == 0 && len(pages) == 0)) {
		return ac.RestoreReportPage{}, fmt.Errorf("report page %d asked, there are %d", n, len(pages))
	}
	p := ac.RestoreReportPage{Page: n, Pages: len(pages), Connections: []ac.RestoreOutcome{}}
	if len(pages) > 0 {
		p.Connections = all[pages[n][0]:pages[n][1]]
	}
	return p, nil
}
