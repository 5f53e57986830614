package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// Shape of a teardown. Removals run in batches: one RemoveConnections activity removes up to
// maxBatchSize connections with up to maxBatchParallelism requests in flight, heartbeating its
// progress so a retry resumes. Several batches run at once until their parallelism adds up to the
// teardown's concurrency. One activity per connection would cost a Temporal round trip and about
// six history events per connection; a batch amortises both over dozens.
const (
	maxBatchParallelism = 10
	batchSlots          = 5 // a batch holds this many connections per unit of parallelism
	maxBatchSize        = 100
	// busyRetryDelay is how long to wait for a standalone removal that is still deciding whether
	// this teardown owns its connection.
	busyRetryDelay = time.Second
	// maxRetryDelay caps the wait before a connection's next round.
	maxRetryDelay = time.Minute
	// History events, as counted for the continue-as-new bound.
	eventsPerRunStart = 5
	eventsPerActivity = 6
	eventsPerTimer    = 5
)

// teardown is one run of RemoveAgentConnectionsWorkflow: the carried state plus what is in flight.
type teardown struct {
	ctx             workflow.Context
	in              ac.RemoveAgentConnectionsInput
	st              *ac.TeardownState
	missingOK       bool
	continueOnError bool
	capacity        int // DELETE requests that may still be started
	maxHistory      int

	targets  map[string]bool // every connection this teardown owns
	finished map[string]int  // index into st.Outcomes
	queue    []string        // ready to go into a batch
	delayed  []delayedItem   // waiting for their next round
	inFlight int             // connections in running batches
	awaiting int             // connections a standalone removal is handling
	batches  int             // batches running
	// events counts the history events this run is known to add (about six per activity: its
	// own three and a workflow task's three). Temporal's own count also ticks in, but not in
	// every test environment, so the bound holds on either.
	events int

	results   workflow.Channel // batch and await results
	wake      workflow.Channel // the cancel update wakes the main loop through it
	timerAt   time.Time        // when the outstanding retry timer fires (zero: none)
	timerDone workflow.Channel
}

type delayedItem struct {
	id      string
	readyAt time.Time
}

type batchDone struct {
	items  []activities.BatchItem
	par    int
	result activities.RemoveConnectionsResult
	err    error
}

type awaitDone struct {
	id      string
	outcome ac.ConnectionOutcome
	err     error
}

// RemoveAgentConnectionsWorkflow removes every connection of one agent (or exactly the listed
// ones) with bounded concurrency, reports an outcome per connection, lists the agent again to find
// connections that remained or reappeared, and continues as new before its history grows past
// MaxHistoryEvents. The progress query reports counts while it runs; the cancel update stops it
// cleanly (removals in flight finish, none start).
func RemoveAgentConnectionsWorkflow(ctx workflow.Context, in ac.RemoveAgentConnectionsInput) (ac.RemoveAgentConnectionsResult, error) {
	if err := in.Validate(); err != nil {
		return ac.RemoveAgentConnectionsResult{AgentID: in.AgentID}, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	t := newTeardown(ctx, in)
	if err := t.registerHandlers(); err != nil {
		return ac.RemoveAgentConnectionsResult{AgentID: in.AgentID}, err
	}
	logger := workflow.GetLogger(ctx)

	if !t.st.Listed {
		ids := in.ConnectionIDs
		if len(ids) == 0 {
			listed, err := t.list()
			if err != nil {
				return t.result(false), err
			}
			ids = listed
		}
		t.st.Pending = dedupe(ids)
		t.st.Given = len(in.ConnectionIDs) > 0
		t.st.Listed = true
		t.adopt()
		logger.Info("teardown listed connections", "agent_id", in.AgentID, "count", len(t.st.Pending))
	}

	if carryOn := t.run(); carryOn {
		// Let a cancel update that arrived in this task finish before the run ends.
		if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
			return t.result(false), err
		}
		next := in
		next.ConnectionIDs = nil // the state holds them; keep the input small
		next.State = t.carry()
		logger.Info("teardown continues as new", "agent_id", in.AgentID, "run", t.st.Runs+1,
			"finished", len(t.st.Outcomes), "pending", len(next.State.Pending))
		return ac.RemoveAgentConnectionsResult{}, workflow.NewContinueAsNewError(ctx, RemoveAgentConnectionsWorkflow, next)
	}

	verified := false
	if !t.st.Cancelled && !t.st.Stopped {
		verified = t.verify()
	}
	res := t.result(verified)
	logger.Info("teardown finished", "agent_id", in.AgentID, "total", res.Total, "removed", res.Removed,
		"already_absent", res.AlreadyAbsent, "failed", res.Failed, "remained", res.Remained,
		"reappeared", res.Reappeared, "skipped", res.Skipped, "cancelled", res.Cancelled)
	return res, nil
}

func newTeardown(ctx workflow.Context, in ac.RemoveAgentConnectionsInput) *teardown {
	st := in.State
	if st == nil {
		st = &ac.TeardownState{}
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = workflow.GetInfo(ctx).WorkflowStartTime
	}
	if st.Attempts == nil {
		st.Attempts = map[string]int{}
	}
	if st.Rounds == nil {
		st.Rounds = map[string]int{}
	}
	maxHistory := in.MaxHistoryEvents
	if maxHistory <= 0 {
		maxHistory = ac.DefaultTeardownMaxHistoryEvents
	}
	t := &teardown{
		ctx:             ctx,
		in:              in,
		st:              st,
		missingOK:       in.MissingOKOrDefault(),
		continueOnError: in.ContinueOnErrorOrDefault(),
		capacity:        in.ConcurrencyOrDefault(),
		maxHistory:      maxHistory,
		targets:         map[string]bool{},
		finished:        map[string]int{},
		results:         workflow.NewChannel(ctx),
		events:          eventsPerRunStart,
		wake:            workflow.NewBufferedChannel(ctx, 1),
		timerDone:       workflow.NewChannel(ctx),
	}
	t.adopt()
	return t
}

// adopt indexes the carried state: what is finished, what is owned, what is ready.
func (t *teardown) adopt() {
	for i, o := range t.st.Outcomes {
		t.finished[o.ConnectionID] = i
		t.targets[o.ConnectionID] = true
	}
	t.queue = t.queue[:0]
	for _, id := range t.st.Pending {
		if _, done := t.finished[id]; !done {
			t.targets[id] = true
			t.queue = append(t.queue, id)
		}
	}
}

func (t *teardown) registerHandlers() error {
	if err := workflow.SetQueryHandler(t.ctx, ac.ProgressQuery, func() (ac.TeardownProgress, error) {
		return t.progress(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(t.ctx, ac.ConnectionStatusQuery, func(id string) (ac.ConnectionClaim, error) {
		if i, ok := t.finished[id]; ok {
			o := t.st.Outcomes[i]
			return ac.ConnectionClaim{Claimed: true, Outcome: &o}, nil
		}
		return ac.ConnectionClaim{Claimed: t.targets[id]}, nil
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandler(t.ctx, ac.CancelUpdate, func(ctx workflow.Context) (ac.TeardownProgress, error) {
		if !t.st.Cancelled {
			t.st.Cancelled = true
			workflow.GetLogger(ctx).Info("teardown cancel accepted: removals in flight finish, none start", "agent_id", t.in.AgentID)
			t.wake.SendAsync(true) // the buffer holds one wake-up; more are not needed
		}
		return t.progress(), nil
	})
}

func (t *teardown) progress() ac.TeardownProgress {
	p := ac.TeardownProgress{
		AgentID:   t.in.AgentID,
		Listed:    t.st.Listed,
		Total:     len(t.targets),
		InFlight:  t.inFlight,
		Cancelled: t.st.Cancelled,
		Runs:      t.st.Runs + 1,
	}
	for _, o := range t.st.Outcomes {
		switch o.Outcome {
		case ac.OutcomeRemoved, ac.OutcomeAlreadyAbsent:
			p.Done++
		case ac.OutcomeFailed:
			p.Failed++
		}
	}
	p.Remaining = p.Total - len(t.st.Outcomes)
	return p
}

// run removes until nothing is left, or the teardown is cancelled or stopped, or the history is
// long enough to continue as new (it returns true then, with nothing in flight).
func (t *teardown) run() (continueAsNew bool) {
	for {
		stopping := t.st.Cancelled || t.st.Stopped
		carryOn := !stopping && t.historyFull()
		if !stopping && !carryOn {
			t.promoteDelayed()
			for t.capacity > 0 && len(t.queue) > 0 {
				t.startBatch()
			}
		}
		if t.batches == 0 && t.awaiting == 0 {
			switch {
			case stopping:
				t.skipRest()
				return false
			case carryOn:
				return true
			case len(t.queue) == 0 && len(t.delayed) == 0:
				return false
			}
		}
		t.wait(stopping || carryOn)
	}
}

func (t *teardown) historyFull() bool {
	info := workflow.GetInfo(t.ctx)
	return info.GetCurrentHistoryLength() >= t.maxHistory || t.events >= t.maxHistory || info.GetContinueAsNewSuggested()
}

// startBatch takes connections off the queue into one RemoveConnections activity.
func (t *teardown) startBatch() {
	par := min(t.capacity, maxBatchParallelism, len(t.queue))
	size := min(len(t.queue), par*batchSlots, maxBatchSize)
	items := make([]activities.BatchItem, 0, size)
	for _, id := range t.queue[:size] {
		items = append(items, activities.BatchItem{ConnectionID: id, PriorRequests: t.st.Attempts[id]})
	}
	t.queue = t.queue[size:]
	t.capacity -= par
	t.inFlight += size
	t.batches++
	t.events += eventsPerActivity
	actx := workflow.WithActivityOptions(t.ctx, batchActivityOptions())
	in := activities.RemoveConnectionsInput{AgentID: t.in.AgentID, Items: items, MissingOK: t.missingOK, Parallelism: par, Since: t.st.StartedAt}
	workflow.Go(t.ctx, func(ctx workflow.Context) {
		var res activities.RemoveConnectionsResult
		err := workflow.ExecuteActivity(actx, acts.RemoveConnections, in).Get(ctx, &res)
		t.results.Send(ctx, batchDone{items: items, par: par, result: res, err: err})
	})
}

// wait blocks until a batch or an await finishes, a retry timer fires, or the cancel update wakes
// the loop. When draining (stopping or about to continue as new) no timer is set.
func (t *teardown) wait(draining bool) {
	sel := workflow.NewSelector(t.ctx)
	sel.AddReceive(t.results, func(c workflow.ReceiveChannel, _ bool) {
		var ev any
		c.Receive(t.ctx, &ev)
		t.handle(ev)
	})
	sel.AddReceive(t.wake, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(t.ctx, nil)
	})
	sel.AddReceive(t.timerDone, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(t.ctx, nil)
		t.timerAt = time.Time{}
	})
	if !draining && t.capacity > 0 && len(t.queue) == 0 && len(t.delayed) > 0 {
		t.armTimer()
	}
	sel.Select(t.ctx)
}

// armTimer makes sure one timer fires when the earliest delayed connection is ready.
func (t *teardown) armTimer() {
	next := t.delayed[0].readyAt
	for _, d := range t.delayed[1:] {
		if d.readyAt.Before(next) {
			next = d.readyAt
		}
	}
	if !t.timerAt.IsZero() && !t.timerAt.After(next) {
		return // the outstanding timer fires first
	}
	t.timerAt = next
	t.events += eventsPerTimer
	wait := max(next.Sub(workflow.Now(t.ctx)), time.Millisecond)
	timer := workflow.NewTimer(t.ctx, wait)
	workflow.Go(t.ctx, func(ctx workflow.Context) {
		_ = timer.Get(ctx, nil)
		t.timerDone.Send(ctx, nil)
	})
}

// handle takes one event off the channel. Events arrive as the concrete types sent above.
func (t *teardown) handle(ev any) {
	switch e := ev.(type) {
	case batchDone:
		t.batchFinished(e)
	case awaitDone:
		t.awaitFinished(e)
	}
}

func (t *teardown) batchFinished(e batchDone) {
	t.batches--
	t.capacity += e.par
	t.inFlight -= len(e.items)
	if e.err != nil {
		// The batch gave up as a whole (its retries ran out): every connection it did not report
		// goes to another round.
		errType, msg := failureOf(e.err)
		workflow.GetLogger(t.ctx).Warn("removal batch failed", "agent_id", t.in.AgentID, "size", len(e.items), "error", msg)
		for _, it := range e.items {
			t.retryLater(it.ConnectionID, errType, msg, t.st.Attempts[it.ConnectionID], 0)
		}
		return
	}
	for _, o := range e.result.Done {
		t.finish(o)
	}
	for _, tf := range e.result.Transient {
		t.retryLater(tf.ConnectionID, tf.FailureType, tf.Message, tf.Attempts, tf.RetryAfter.D())
	}
	for _, id := range e.result.Busy {
		t.delay(id, busyRetryDelay)
	}
	for _, id := range e.result.Deferred {
		t.awaitStandalone(id)
	}
}

// awaitStandalone waits for the standalone RemoveConnectionWorkflow that is removing id, and takes
// its outcome instead of sending a second DELETE.
func (t *teardown) awaitStandalone(id string) {
	t.awaiting++
	t.events += eventsPerActivity
	actx := workflow.WithActivityOptions(t.ctx, awaitActivityOptions())
	workflow.Go(t.ctx, func(ctx workflow.Context) {
		var o ac.ConnectionOutcome
		err := workflow.ExecuteActivity(actx, acts.AwaitStandaloneRemoval, activities.ConnectionRef{AgentID: t.in.AgentID, ConnectionID: id}).Get(ctx, &o)
		t.results.Send(ctx, awaitDone{id: id, outcome: o, err: err})
	})
}

func (t *teardown) awaitFinished(e awaitDone) {
	t.awaiting--
	switch {
	case e.err != nil:
		errType, msg := failureOf(e.err)
		t.retryLater(e.id, errType, msg, t.st.Attempts[e.id], 0)
	case e.outcome.Outcome == "":
		// The standalone removal is gone without an outcome: remove the connection ourselves.
		t.queue = append(t.queue, e.id)
	default:
		e.outcome.ConnectionID = e.id
		t.finish(e.outcome)
	}
}

// retryLater sends a connection to another round after a transient failure, or fails it for good
// once it has had MaxTeardownRounds.
func (t *teardown) retryLater(id, errType, msg string, attempts int, retryAfter time.Duration) {
	t.st.Attempts[id] = attempts
	t.st.Rounds[id]++
	round := t.st.Rounds[id]
	if round >= ac.MaxTeardownRounds {
		t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeFailed, Attempts: attempts, FailureType: errType,
			Message: fmt.Sprintf("gave up after %d rounds: %s", round, msg)})
		return
	}
	backoff := min(time.Second<<(round-1), maxRetryDelay)
	t.delay(id, max(backoff, min(retryAfter, maxRetryDelay)))
}

func (t *teardown) delay(id string, d time.Duration) {
	t.delayed = append(t.delayed, delayedItem{id: id, readyAt: workflow.Now(t.ctx).Add(d)})
}

// promoteDelayed moves the connections whose wait is over back onto the queue, in order.
func (t *teardown) promoteDelayed() {
	now := workflow.Now(t.ctx)
	kept := t.delayed[:0]
	for _, d := range t.delayed {
		if d.readyAt.After(now) {
			kept = append(kept, d)
		} else {
			t.queue = append(t.queue, d.id)
		}
	}
	t.delayed = kept
}

// finish records a connection's final outcome.
func (t *teardown) finish(o ac.ConnectionOutcome) {
	if _, done := t.finished[o.ConnectionID]; done {
		return
	}
	o.Message = clipMessage(o.Message)
	t.finished[o.ConnectionID] = len(t.st.Outcomes)
	t.st.Outcomes = append(t.st.Outcomes, o)
	delete(t.st.Attempts, o.ConnectionID)
	delete(t.st.Rounds, o.ConnectionID)
	if o.Outcome == ac.OutcomeFailed && !t.continueOnError && !t.st.Stopped {
		t.st.Stopped = true
		workflow.GetLogger(t.ctx).Warn("teardown stops: a connection failed and continue_on_error is false",
			"agent_id", t.in.AgentID, "connection_id", o.ConnectionID, "failure_type", o.FailureType)
	}
}

// skipRest records every connection not started because the teardown was cancelled or stopped.
func (t *teardown) skipRest() {
	reason := "teardown cancelled before this connection was removed"
	if !t.st.Cancelled {
		reason = "teardown stopped after a failure (continue_on_error is false)"
	}
	rest := append(slices.Clone(t.queue), idsOf(t.delayed)...)
	t.queue, t.delayed = nil, nil
	for _, id := range rest {
		t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeSkipped, Attempts: t.st.Attempts[id], Message: reason})
	}
}

// carry is the state for the next run: everything not finished is pending again, in order.
func (t *teardown) carry() *ac.TeardownState {
	st := *t.st
	st.Pending = append(slices.Clone(t.queue), idsOf(t.delayed)...)
	st.Runs++
	return &st
}

func (t *teardown) list() ([]string, error) {
	actx := workflow.WithActivityOptions(t.ctx, listActivityOptions())
	var res activities.ListConnectionsResult
	err := workflow.ExecuteActivity(actx, acts.ListConnections, activities.ListConnectionsInput{AgentID: t.in.AgentID}).Get(t.ctx, &res)
	return res.ConnectionIDs, err
}

// verify lists the agent again: a connection this teardown removed that is still listed has
// remained; one it never saw has reappeared (only when it listed the agent itself: with given IDs
// the others are not its business). It reports whether the check ran.
func (t *teardown) verify() bool {
	ids, err := t.list()
	if err != nil {
		workflow.GetLogger(t.ctx).Warn("teardown could not list the agent again to verify", "agent_id", t.in.AgentID, "error", err.Error())
		return false
	}
	for _, id := range ids {
		if i, ok := t.finished[id]; ok {
			o := &t.st.Outcomes[i]
			if o.Outcome == ac.OutcomeRemoved || o.Outcome == ac.OutcomeAlreadyAbsent {
				o.Outcome = ac.OutcomeRemained
				o.Message = "still listed after it was removed"
			}
			continue
		}
		if !t.st.Given {
			t.targets[id] = true
			t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeReappeared, Message: "listed after the teardown; not removed"})
		}
	}
	return true
}

func (t *teardown) result(verified bool) ac.RemoveAgentConnectionsResult {
	res := ac.RemoveAgentConnectionsResult{
		AgentID:     t.in.AgentID,
		Cancelled:   t.st.Cancelled,
		Verified:    verified,
		Runs:        t.st.Runs + 1,
		Connections: slices.Clone(t.st.Outcomes),
	}
	slices.SortFunc(res.Connections, func(a, b ac.ConnectionOutcome) int {
		switch {
		case a.ConnectionID < b.ConnectionID:
			return -1
		case a.ConnectionID > b.ConnectionID:
			return 1
		}
		return 0
	})
	res.Total = len(res.Connections)
	for _, o := range res.Connections {
		switch o.Outcome {
		case ac.OutcomeRemoved:
			res.Removed++
		case ac.OutcomeAlreadyAbsent:
			res.AlreadyAbsent++
		case ac.OutcomeFailed:
			res.Failed++
		case ac.OutcomeRemained:
			res.Remained++
		case ac.OutcomeReappeared:
			res.Reappeared++
		case ac.OutcomeSkipped:
			res.Skipped++
		}
	}
	return res
}

func batchActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		// A full batch at the slowest: 100 connections, 10 at a time, 30 s each plus retries.
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    DefaultHeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        DefaultInitialInterval,
			BackoffCoefficient:     DefaultBackoffCoefficient,
			MaximumInterval:        DefaultMaximumInterval,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: ac.NonRetryableErrorTypes(),
		},
	}
}

func listActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: DefaultStartToCloseTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        DefaultInitialInterval,
			BackoffCoefficient:     DefaultBackoffCoefficient,
			MaximumInterval:        DefaultMaximumInterval,
			MaximumAttempts:        DefaultMaximumAttempts,
			NonRetryableErrorTypes: ac.NonRetryableErrorTypes(),
		},
	}
}

func awaitActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: DefaultScheduleToCloseTimeout,
		HeartbeatTimeout:    DefaultHeartbeatTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: ac.NonRetryableErrorTypes()},
	}
}

// failureOf is the failure type and message of an activity error.
func failureOf(err error) (string, string) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type(), appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return ac.ErrUnavailable, timeoutErr.Error()
	}
	return ac.ErrUnavailable, err.Error()
}

func clipMessage(s string) string {
	if len(s) <= ac.MaxOutcomeMessageBytes {
		return s
	}
	cut := ac.MaxOutcomeMessageBytes
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func idsOf(items []delayedItem) []string {
	ids := make([]string, 0, len(items))
	for _, d := range items {
		ids = append(ids, d.id)
	}
	return ids
}
