package workflows

import (
	"encoding/json"
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
	// this teardown owns its connection. Each wait counts as a round, so it is bounded.
	busyRetryDelay = time.Second
	// notSentDelay is the least wait before a connection a batch did not send goes out again.
	notSentDelay = time.Second
	// maxRetryDelay caps the wait before a connection's next round.
	maxRetryDelay = time.Minute
	// History events, as counted for the continue-as-new bound.
	eventsPerRunStart = 5
	eventsPerActivity = 6
	eventsPerTimer    = 5
	// carryInlineBytes is the largest carried state that travels in the continue-as-new input;
	// a larger one is served page by page (carryPageBytes a page) by the run that carried it.
	carryInlineBytes = 256 << 10
	carryPageBytes   = 256 << 10
)

// Why a teardown stopped early (RemoveAgentConnectionsResult.StopReason).
const (
	stopCancelled = "cancelled"
	stopRefused   = "the control plane refused the key (401/403); the teardown started nothing more"
	stopFailed    = "a connection failed and continue_on_error is false"
)

// teardown is one run of RemoveAgentConnectionsWorkflow: the carried state plus what is in flight.
type teardown struct {
	// ctx is disconnected from the workflow's cancellation, so the teardown can still wait for
	// its batches and return its report after a cancel; cancelReq is the workflow's own context,
	// watched for that cancel.
	ctx             workflow.Context
	cancelReq       workflow.Context
	in              TeardownInput
	st              *carriedState
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

	// work runs batches and awaits; stopWork cancels them (a batch then lets its requests in
	// flight finish and returns what it did).
	work     workflow.Context
	stopWork workflow.CancelFunc
	// cancelSeen is set once Temporal's cancellation (not the update) reached the workflow.
	cancelSeen bool
	// progressed is set once this run finished a batch or an await: a run never continues as
	// new before it has made progress.
	progressed bool
	// baseEvents and baseBytes are the history's length and size when the run's own work began
	// (after loading a paged state), so the bounds below apply to the work, not the loading.
	baseEvents, baseBytes int
	// carried is the encoded state handed to the next run, served page by page when paged.
	carried []byte
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
// MaxHistoryEvents. The progress query reports counts while it runs; the report query pages the
// per-connection report.
//
// Both ways to stop it stop it the same way: nothing new starts, the batches in flight are asked
// to stop and their requests already sent finish with a known outcome, and every connection not
// tried is reported skipped. The cancel update then returns the result with Cancelled set;
// Temporal's cancellation (CLI, a parent, an external request) ends the workflow Canceled with
// that result as the canceled error's details. A 401 or 403 stops it the same way. A 404 on the
// agent's list fails it with type AgentNotFound.
func RemoveAgentConnectionsWorkflow(ctx workflow.Context, in TeardownInput) (ac.RemoveAgentConnectionsResult, error) {
	if err := validateTeardownInput(ctx, in); err != nil {
		return ac.RemoveAgentConnectionsResult{AgentID: in.AgentID}, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	t := newTeardown(ctx, in)
	if err := t.registerHandlers(); err != nil {
		return ac.RemoveAgentConnectionsResult{AgentID: in.AgentID}, err
	}
	if err := t.loadPagedState(); err != nil {
		return t.result(false), err
	}
	t.baseEvents = workflow.GetInfo(ctx).GetCurrentHistoryLength()
	t.baseBytes = workflow.GetInfo(ctx).GetCurrentHistorySize()
	logger := workflow.GetLogger(ctx)

	if !t.st.Listed {
		ids, err := t.firstList()
		if err != nil {
			return t.result(false), listFailure(err)
		}
		t.st.Pending = dedupe(ids)
		t.st.Given = len(in.ConnectionIDs) > 0
		t.st.Listed = true
		t.adopt()
		logger.Info("teardown listed connections", "agent_id", in.AgentID, "count", len(t.st.Pending))
	}

	carryOn := t.run()
	if carryOn && t.cancelReq.Err() != nil {
		// A cancel that meets a continue-as-new is not lost: stop here instead of carrying on.
		t.cancelSeen = true
		t.stop(stopCancelled, "teardown cancelled by Temporal as it was about to continue as new")
		carryOn = t.run()
	}
	if carryOn {
		return ac.RemoveAgentConnectionsResult{}, t.continueAsNew()
	}

	verified := false
	if !t.st.Cancelled && !t.st.Stopped {
		verified = t.verify()
	}
	res := t.result(verified)
	logger.Info("teardown finished", "agent_id", in.AgentID, "total", res.Total, "removed", res.Removed,
		"already_absent", res.AlreadyAbsent, "failed", res.Failed, "remained", res.Remained,
		"reappeared", res.Reappeared, "skipped", res.Skipped, "cancelled", res.Cancelled, "stop_reason", res.StopReason)
	// Let a cancel update that arrived in this task return before the run ends.
	_ = workflow.Await(t.ctx, func() bool { return workflow.AllHandlersFinished(t.ctx) })
	if t.cancelSeen || t.cancelReq.Err() != nil {
		// Cancelled by Temporal, even if only while it verified: the run ends Canceled.
		res.Cancelled = true
		if res.StopReason == "" {
			res.StopReason = stopCancelled
		}
		return res, temporal.NewCanceledError(res)
	}
	return res, nil
}

// validateTeardownInput checks the caller's fields, and that a caller did not hand in a state
// (only a continue-as-new from this workflow carries one).
func validateTeardownInput(ctx workflow.Context, in TeardownInput) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if in.State != nil && workflow.GetInfo(ctx).ContinuedExecutionRunID == "" {
		return errors.New("state is set by the teardown itself when it continues as new; leave it out")
	}
	return nil
}

func newTeardown(ctx workflow.Context, in TeardownInput) *teardown {
	st := in.State
	if st == nil {
		st = &carriedState{}
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = workflow.GetInfo(ctx).WorkflowStartTime
	}
	maxHistory := in.MaxHistoryEvents
	if maxHistory <= 0 {
		maxHistory = ac.DefaultTeardownMaxHistoryEvents
	}
	detached, _ := workflow.NewDisconnectedContext(ctx)
	work, stopWork := workflow.WithCancel(detached)
	t := &teardown{
		ctx:             detached,
		cancelReq:       ctx,
		in:              in,
		st:              st,
		missingOK:       in.MissingOKOrDefault(),
		continueOnError: in.ContinueOnErrorOrDefault(),
		capacity:        in.ConcurrencyOrDefault(),
		maxHistory:      maxHistory,
		targets:         map[string]bool{},
		finished:        map[string]int{},
		results:         workflow.NewChannel(detached),
		events:          eventsPerRunStart,
		wake:            workflow.NewBufferedChannel(detached, 1),
		timerDone:       workflow.NewChannel(detached),
		work:            work,
		stopWork:        stopWork,
	}
	t.initMaps()
	t.adopt()
	return t
}

func (t *teardown) initMaps() {
	if t.st.Attempts == nil {
		t.st.Attempts = map[string]int{}
	}
	if t.st.Rounds == nil {
		t.st.Rounds = map[string]int{}
	}
	if t.st.LastFailure == nil {
		t.st.LastFailure = map[string]string{}
	}
	if t.st.Snapshots == nil {
		t.st.Snapshots = map[string]ac.ConnectionSnapshot{}
	}
}

// snapshotListChange versions the list a teardown given connection IDs sends first (for their
// snapshots): runs that started before it send no list.
const snapshotListChange = "teardown-given-ids-snapshot-list"

// firstList is the connections to remove, with their snapshots in st.Snapshots: the agent's
// list, or the given IDs, whose snapshots come from a list all the same (on version 1).
func (t *teardown) firstList() ([]string, error) {
	given := t.in.ConnectionIDs
	if len(given) > 0 && workflow.GetVersion(t.ctx, snapshotListChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return given, nil
	}
	listed, err := t.list(true)
	if err != nil || len(given) == 0 {
		return listed, err
	}
	keep := make(map[string]bool, len(given))
	for _, id := range given {
		keep[id] = true
	}
	for id := range t.st.Snapshots {
		if !keep[id] {
			delete(t.st.Snapshots, id)
		}
	}
	return given, nil
}

// adopt indexes the carried state: what is finished, what is owned, what is ready.
func (t *teardown) adopt() {
	for i, o := range t.st.Outcomes {
		t.finished[o.ConnectionID] = i
		t.targets[o.ConnectionID] = true
	}
	// A carried state lists its pending connections as items: expand them into the maps, and
	// keep each one's wait for its next round.
	readyAt := map[string]time.Time{}
	for _, it := range t.st.Items {
		t.st.Pending = append(t.st.Pending, it.ID)
		setIf(t.st.Attempts, it.ID, it.Attempts)
		setIf(t.st.Rounds, it.ID, it.Rounds)
		setIf(t.st.LastFailure, it.ID, it.Last)
		if it.OAuthTokenID != "" {
			t.st.Snapshots[it.ID] = ac.ConnectionSnapshot{ConnectionID: it.ID, OAuthTokenID: it.OAuthTokenID, ProviderID: it.ProviderID, Scopes: it.Scopes}
		}
		if it.ReadyAt != nil {
			readyAt[it.ID] = *it.ReadyAt
		}
	}
	t.st.Items = nil
	t.queue, t.delayed = t.queue[:0], t.delayed[:0]
	for _, id := range t.st.Pending {
		if _, done := t.finished[id]; done {
			continue
		}
		t.targets[id] = true
		if at, ok := readyAt[id]; ok {
			t.delayed = append(t.delayed, delayedItem{id: id, readyAt: at})
			continue
		}
		t.queue = append(t.queue, id)
	}
}

// setIf sets m[k] to v unless v is the zero value.
func setIf[V comparable](m map[string]V, k string, v V) {
	var zero V
	if v != zero {
		m[k] = v
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
	if err := workflow.SetQueryHandler(t.ctx, ac.ReportQuery, func(page int) (ac.ReportPage, error) {
		return reportPage(t.sortedOutcomes(), page)
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(t.ctx, activities.CarriedStatePageQuery, func(page int) ([]byte, error) {
		if t.carried == nil {
			return nil, errors.New("this run has not continued as new")
		}
		return pageOf(t.carried, page)
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandler(t.ctx, ac.CancelUpdate, func(ctx workflow.Context) (ac.TeardownProgress, error) {
		t.stop(stopCancelled, "teardown cancel accepted: removals in flight finish, none start")
		return t.progress(), nil
	})
}

// stop makes the teardown stop the one way it stops: nothing new starts, running batches are
// asked to stop (their requests in flight finish), and the main loop wakes to drain.
func (t *teardown) stop(reason, logMsg string) {
	if t.st.Cancelled || t.st.Stopped {
		return
	}
	if reason == stopCancelled {
		t.st.Cancelled = true
	} else {
		t.st.Stopped = true
	}
	t.st.StopReason = reason
	workflow.GetLogger(t.ctx).Info(logMsg, "agent_id", t.in.AgentID, "stop_reason", reason)
	t.stopWork()
	t.wake.SendAsync(true) // the buffer holds one wake-up; more are not needed
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
		if !t.cancelSeen && t.cancelReq.Err() != nil {
			// Cancelled while the run was not waiting (listing, loading, in the task that
			// handled a batch): stop before starting anything more.
			t.cancelSeen = true
			t.stop(stopCancelled, "teardown cancelled by Temporal: removals in flight finish, none start")
		}
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

// historyFull reports whether this run should continue as new once its work in flight is done:
// its own events reached MaxHistoryEvents, or its own work added MaxTeardownHistoryBytes to the
// history, or Temporal suggests it. Never before the run made progress, so every run moves the
// teardown on. (Temporal's suggestion counts the loaded state too; a run that loaded a large
// state still works until its own bounds or progress say so.)
func (t *teardown) historyFull() bool {
	if !t.progressed {
		return false
	}
	info := workflow.GetInfo(t.ctx)
	own := info.GetCurrentHistoryLength()-t.baseEvents >= t.maxHistory || t.events >= t.maxHistory ||
		info.GetCurrentHistorySize()-t.baseBytes >= ac.MaxTeardownHistoryBytes
	return own || (info.GetContinueAsNewSuggested() && t.baseBytes < ac.MaxTeardownHistoryBytes/2)
}

// startBatch takes connections off the queue into one RemoveConnections activity.
func (t *teardown) startBatch() {
	par := min(t.capacity, maxBatchParallelism, len(t.queue))
	size := min(len(t.queue), par*batchSlots, maxBatchSize)
	items := make([]activities.BatchItem, 0, size)
	for _, id := range t.queue[:size] {
		_, maybe := t.st.LastFailure[id]
		items = append(items, activities.BatchItem{ConnectionID: id, PriorRequests: t.st.Attempts[id],
			MaybeSent: maybe && t.st.LastFailure[id] == batchLost})
	}
	t.queue = t.queue[size:]
	t.capacity -= par
	t.inFlight += size
	t.batches++
	t.events += eventsPerActivity
	actx := workflow.WithActivityOptions(t.work, batchActivityOptions())
	in := activities.RemoveConnectionsInput{AgentID: t.in.AgentID, Items: items, MissingOK: t.missingOK, Parallelism: par, Since: t.st.StartedAt}
	workflow.Go(t.ctx, func(ctx workflow.Context) {
		var res activities.RemoveConnectionsResult
		err := workflow.ExecuteActivity(actx, acts.RemoveConnections, in).Get(ctx, &res)
		t.results.Send(ctx, batchDone{items: items, par: par, result: res, err: err})
	})
}

// Markers in LastFailure besides failure types: a connection that may have been sent a request
// nobody counted (its batch failed as a whole, or the standalone removal it waited for ended
// without a result); one a standalone removal was removing when the teardown stopped.
const (
	batchLost          = "batch_lost"
	standaloneRemoving = "standalone_removing"
)

// wait blocks until a batch or an await finishes, a retry timer fires, the cancel update wakes
// the loop, or Temporal cancels the workflow. When draining (stopping or about to continue as
// new) no timer is set.
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
	if !t.cancelSeen {
		sel.AddReceive(t.cancelReq.Done(), func(workflow.ReceiveChannel, bool) {
			t.cancelSeen = true
			t.stop(stopCancelled, "teardown cancelled by Temporal: removals in flight finish, none start")
		})
	}
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
	timer := workflow.NewTimer(t.work, wait)
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
	t.progressed = true
	if e.err != nil {
		t.batchLost(e)
		return
	}
	if e.result.Refused {
		// Before the refused connection's own failure, so the result names the real reason.
		t.stop(stopRefused, "teardown stops: the control plane refused the key")
	}
	for _, o := range e.result.Done {
		t.finish(o)
	}
	for _, tf := range e.result.Transient {
		if tf.NotSent {
			t.notSent(tf)
			continue
		}
		t.retryLater(tf.ConnectionID, tf.FailureType, tf.Message, tf.Attempts, tf.RetryAfter.D())
	}
	for _, id := range e.result.Busy {
		t.retryLater(id, ac.ErrUnavailable, "a standalone removal of this connection was still deciding whether this teardown owns it",
			t.st.Attempts[id], busyRetryDelay)
	}
	for _, d := range e.result.Deferred {
		t.awaitStandalone(d)
	}
	if e.result.Retried {
		// An earlier attempt of this batch was lost after its last heartbeat: what it sent then
		// (or learnt, such as a standalone removal it deferred to) is counted nowhere.
		t.markMaybeSent(e.items)
	}
}

// markMaybeSent marks the connections of items not finished as maybe sent, so a later 404 reads
// as already absent and a stop reports them interrupted, never skipped.
func (t *teardown) markMaybeSent(items []activities.BatchItem) {
	for _, it := range items {
		if _, done := t.finished[it.ConnectionID]; !done {
			t.st.LastFailure[it.ConnectionID] = batchLost
		}
	}
}

// batchLost handles a batch that failed as a whole (its retries ran out, it timed out, its
// workers stopped): the last progress it heartbeated says what it finished and how many requests
// it sent, so nothing finished is sent again; the rest goes to another round, marked as maybe
// sent (a request its last heartbeat did not count may have removed it).
func (t *teardown) batchLost(e batchDone) {
	errType, msg := failureOf(e.err)
	var progress activities.RemoveConnectionsProgress
	var timeoutErr *temporal.TimeoutError
	if errors.As(e.err, &timeoutErr) && timeoutErr.HasLastHeartbeatDetails() {
		if err := timeoutErr.LastHeartbeatDetails(&progress); err != nil {
			progress = activities.RemoveConnectionsProgress{}
		}
	}
	workflow.GetLogger(t.ctx).Warn("removal batch failed as a whole", "agent_id", t.in.AgentID, "size", len(e.items),
		"finished_before", len(progress.Done), "error", msg)
	done := map[string]bool{}
	for _, o := range progress.Done {
		done[o.ConnectionID] = true
		t.finish(o)
	}
	for _, it := range e.items {
		if done[it.ConnectionID] {
			continue
		}
		attempts := it.PriorRequests + progress.Requests[it.ConnectionID]
		t.retryLater(it.ConnectionID, errType, msg, attempts, 0)
	}
	t.markMaybeSent(e.items)
}

// notSent puts back a connection a batch did not send (a 429, a refused key or a stop came
// first) without counting a round: it failed nothing.
func (t *teardown) notSent(tf activities.TransientFailure) {
	t.st.Attempts[tf.ConnectionID] = tf.Attempts
	t.delay(tf.ConnectionID, max(notSentDelay, min(tf.RetryAfter.D(), maxRetryDelay)))
}

// awaitStandalone waits for the standalone RemoveConnectionWorkflow run that is removing the
// connection, and takes its outcome instead of sending a second DELETE.
func (t *teardown) awaitStandalone(d activities.DeferredRemoval) {
	t.awaiting++
	t.events += eventsPerActivity
	actx := workflow.WithActivityOptions(t.work, awaitActivityOptions())
	in := activities.ConnectionAwait{AgentID: t.in.AgentID, ConnectionID: d.ConnectionID, RunID: d.RunID, MissingOK: t.missingOK}
	workflow.Go(t.ctx, func(ctx workflow.Context) {
		var o ac.ConnectionOutcome
		err := workflow.ExecuteActivity(actx, acts.AwaitStandaloneRemoval, in).Get(ctx, &o)
		t.results.Send(ctx, awaitDone{id: d.ConnectionID, outcome: o, err: err})
	})
}

func (t *teardown) awaitFinished(e awaitDone) {
	t.awaiting--
	t.progressed = true
	var canceled *temporal.CanceledError
	switch {
	case e.err != nil && errors.As(e.err, &canceled):
		// The teardown stopped while a standalone removal was removing it: this teardown sent
		// nothing (unless a lost batch attempt may have), and the standalone removal reports its
		// own outcome.
		if t.st.LastFailure[e.id] != batchLost {
			t.st.LastFailure[e.id] = standaloneRemoving
		}
		t.delay(e.id, 0)
	case e.err != nil:
		errType, msg := failureOf(e.err)
		t.retryLater(e.id, errType, msg, t.st.Attempts[e.id], 0)
	case e.outcome.Outcome == "":
		// The standalone removal is gone without an outcome: remove the connection ourselves. Its
		// own DELETE may have removed it, so a 404 now reads as already absent.
		t.st.LastFailure[e.id] = batchLost
		t.queue = append(t.queue, e.id)
	default:
		e.outcome.ConnectionID = e.id
		// A request of this teardown may have removed it before the standalone removal found
		// it absent: the restore must still take it back.
		if e.outcome.Outcome == ac.OutcomeAlreadyAbsent && (t.st.Attempts[e.id] > 0 || t.st.LastFailure[e.id] == batchLost) {
			e.outcome.EarlierRequest = true
		}
		t.finish(e.outcome)
	}
}

// retryLater sends a connection to another round after a transient failure, or fails it for good
// once it has had MaxTeardownRounds.
func (t *teardown) retryLater(id, errType, msg string, attempts int, retryAfter time.Duration) {
	if _, done := t.finished[id]; done {
		return
	}
	// A "maybe sent" mark stays until a request of this teardown is counted: a round that sent
	// nothing (busy, a failed check) must not make a later 404 read as NotFound.
	if t.st.LastFailure[id] != batchLost || attempts > t.st.Attempts[id] {
		t.st.LastFailure[id] = errType
	}
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
	if snap, ok := t.st.Snapshots[o.ConnectionID]; ok {
		o = o.WithSnapshot(snap)
		delete(t.st.Snapshots, o.ConnectionID)
	}
	t.finished[o.ConnectionID] = len(t.st.Outcomes)
	t.st.Outcomes = append(t.st.Outcomes, o)
	delete(t.st.Attempts, o.ConnectionID)
	delete(t.st.Rounds, o.ConnectionID)
	delete(t.st.LastFailure, o.ConnectionID)
	if o.Outcome == ac.OutcomeFailed && !t.continueOnError {
		t.stop(stopFailed, "teardown stops: a connection failed and continue_on_error is false")
	}
}

// skipRest records every connection the teardown did not finish because it stopped. One never
// sent a request is skipped; one that was (an earlier round failed transiently) is failed with its
// last failure type, since its request may or may not have removed it.
func (t *teardown) skipRest() {
	reason := t.st.StopReason
	if reason == "" {
		reason = stopCancelled
	}
	rest := append(slices.Clone(t.queue), idsOf(t.delayed)...)
	t.queue, t.delayed = nil, nil
	for _, id := range rest {
		attempts, last := t.st.Attempts[id], t.st.LastFailure[id]
		switch {
		case attempts == 0 && last == standaloneRemoving:
			t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeSkipped,
				Message: "the teardown stopped (" + reason + ") while a standalone removal was removing it; that removal reports its outcome"})
		case attempts == 0 && last != batchLost:
			t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeSkipped,
				Message: "not sent a DELETE: the teardown stopped first (" + reason + ")"})
		default:
			// A request left (or may have, from a lost batch) without a final answer.
			if last == batchLost || last == standaloneRemoving || last == "" {
				last = "no answer"
			}
			t.finish(ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeFailed, Attempts: attempts, FailureType: ac.ErrInterrupted,
				Message: fmt.Sprintf("the teardown stopped (%s) before a final answer (last: %s); a request it sent may have removed it", reason, last)})
		}
	}
}

// continueAsNew hands the progress to the next run. A state too large for the input stays here:
// the input names this run, and the next run reads the state back page by page.
func (t *teardown) continueAsNew() error {
	// Let a cancel update that arrived in this task finish before the run ends.
	_ = workflow.Await(t.ctx, func() bool { return workflow.AllHandlersFinished(t.ctx) })
	st := t.carry()
	next := t.in
	next.ConnectionIDs = nil // the state holds them; keep the input small
	next.State = st
	encoded, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode the carried teardown state: %w", err)
	}
	if len(encoded) > carryInlineBytes {
		if t.carried, err = gzipped(encoded); err != nil {
			return fmt.Errorf("compress the carried teardown state: %w", err)
		}
		pages := (len(t.carried) + carryPageBytes - 1) / carryPageBytes
		next.State = &carriedState{Paged: &pagedState{
			RunID: workflow.GetInfo(t.ctx).WorkflowExecution.RunID, Pages: pages, Bytes: len(t.carried),
		}}
	}
	workflow.GetLogger(t.ctx).Info("teardown continues as new", "agent_id", t.in.AgentID, "run", st.Runs+1,
		"finished", len(st.Outcomes), "pending", len(st.Items), "state_bytes", len(encoded), "paged_bytes", len(t.carried))
	return workflow.NewContinueAsNewError(t.ctx, RemoveAgentConnectionsWorkflow, next)
}

// loadPagedState reads a paged carried state back from the run that carried it.
func (t *teardown) loadPagedState() error {
	paged := t.st.Paged
	if paged == nil {
		return nil
	}
	actx := workflow.WithActivityOptions(t.ctx, listActivityOptions())
	encoded := make([]byte, 0, paged.Bytes)
	for page := range paged.Pages {
		var b []byte
		in := activities.CarriedStateInput{WorkflowID: workflow.GetInfo(t.ctx).WorkflowExecution.ID, RunID: paged.RunID, Page: page}
		if err := workflow.ExecuteActivity(actx, acts.LoadCarriedState, in).Get(t.ctx, &b); err != nil {
			return fmt.Errorf("read page %d of the carried teardown state: %w", page, err)
		}
		encoded = append(encoded, b...)
	}
	st, err := decodeCarried(encoded)
	if err != nil {
		return temporal.NewNonRetryableApplicationError("the carried teardown state is unreadable: "+err.Error(), ac.ErrInvalidRequest, nil)
	}
	// A cancel update accepted while the pages loaded stopped the placeholder state: keep it.
	if t.st.Cancelled || t.st.Stopped {
		st.Cancelled, st.Stopped, st.StopReason = t.st.Cancelled, t.st.Stopped, t.st.StopReason
	}
	t.st = st
	t.initMaps()
	t.adopt()
	return nil
}

// pageOf is page n of b, in carryPageBytes pages.
func pageOf(b []byte, n int) ([]byte, error) {
	pages := (len(b) + carryPageBytes - 1) / carryPageBytes
	if n < 0 || n >= pages {
		return nil, fmt.Errorf("page %d asked, there are %d", n, pages)
	}
	return b[n*carryPageBytes : min((n+1)*carryPageBytes, len(b))], nil
}

// carry is the state for the next run: everything not finished is pending again, in order.
func (t *teardown) carry() *carriedState {
	st := *t.st
	st.Paged = nil
	st.Items = make([]pendingItem, 0, len(t.queue)+len(t.delayed))
	for _, id := range t.queue {
		st.Items = append(st.Items, t.pendingItem(id, time.Time{}))
	}
	for _, d := range t.delayed {
		st.Items = append(st.Items, t.pendingItem(d.id, d.readyAt))
	}
	// The items hold all of these, once per connection.
	st.Pending, st.Attempts, st.Rounds, st.LastFailure, st.Snapshots = nil, nil, nil, nil, nil
	st.Runs++
	return &st
}

func (t *teardown) pendingItem(id string, readyAt time.Time) pendingItem {
	snap := t.st.Snapshots[id]
	it := pendingItem{ID: id, Attempts: t.st.Attempts[id], Rounds: t.st.Rounds[id], Last: t.st.LastFailure[id],
		OAuthTokenID: snap.OAuthTokenID, ProviderID: snap.ProviderID, Scopes: snap.Scopes}
	if !readyAt.IsZero() {
		it.ReadyAt = &readyAt
	}
	return it
}

// list lists the agent page by page, so no list result nears the payload limit. With snapshot,
// the listed connections' snapshots go into st.Snapshots.
func (t *teardown) list(snapshot bool) ([]string, error) {
	actx := workflow.WithActivityOptions(t.ctx, listActivityOptions())
	var ids []string
	after := ""
	for {
		var res activities.ListConnectionsResult
		in := activities.ListConnectionsInput{AgentID: t.in.AgentID, After: after, Snapshot: snapshot}
		if err := workflow.ExecuteActivity(actx, acts.ListConnections, in).Get(t.ctx, &res); err != nil {
			return nil, err
		}
		t.events += eventsPerActivity
		ids = append(ids, res.ConnectionIDs...)
		for _, s := range res.Snapshots {
			t.st.Snapshots[s.ConnectionID] = s
		}
		if !res.More || len(res.ConnectionIDs) == 0 {
			return ids, nil
		}
		after = res.ConnectionIDs[len(res.ConnectionIDs)-1]
	}
}

// listFailure is the workflow's error when the first list failed: the activity's
// ApplicationError lifted to the top (AgentNotFound, Unauthorized, ...), type and message intact.
func listFailure(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return temporal.NewNonRetryableApplicationError(appErr.Message(), appErr.Type(), nil)
	}
	return err
}

// verify lists the agent again: a connection this teardown removed that is still listed has
// remained; one it never saw has reappeared (only when it listed the agent itself: with given IDs
// the others are not its business). It reports whether the check ran.
func (t *teardown) verify() bool {
	ids, err := t.list(false)
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

// sortedOutcomes is every finished connection's outcome, sorted by ID.
func (t *teardown) sortedOutcomes() []ac.ConnectionOutcome {
	out := slices.Clone(t.st.Outcomes)
	slices.SortFunc(out, func(a, b ac.ConnectionOutcome) int { return strings.Compare(a.ConnectionID, b.ConnectionID) })
	return out
}

func (t *teardown) result(verified bool) ac.RemoveAgentConnectionsResult {
	all := t.sortedOutcomes()
	pages := reportPages(all)
	res := ac.RemoveAgentConnectionsResult{
		AgentID:    t.in.AgentID,
		Cancelled:  t.st.Cancelled,
		StopReason: t.st.StopReason,
		Verified:   verified,
		Runs:       t.st.Runs + 1,
		Total:      len(all),
		// Given IDs make the run cover only those: an attached caller must be able to tell.
		ConnectionsGiven: t.st.Given,
		ReportPages:      len(pages),
		Connections:      []ac.ConnectionOutcome{},
	}
	if len(pages) > 0 {
		res.Connections = all[pages[0][0]:pages[0][1]]
	}
	res.ReportTruncated = len(res.Connections) < len(all)
	for _, o := range all {
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

// reportEntryOverhead is what an entry costs in JSON besides its strings: field names, quotes,
// the attempts count, with room to spare.
const reportEntryOverhead = 128

// reportPages splits sorted outcomes into [start, end) ranges of at most ac.MaxReportBytes of
// JSON each (every page holds at least one entry).
func reportPages(all []ac.ConnectionOutcome) [][2]int {
	return pageBounds(all, func(o ac.ConnectionOutcome) int {
		snap, _ := o.Snapshot()
		return ac.JSONBytes(o.ConnectionID) + len(o.Outcome) + len(o.FailureType) + ac.JSONBytes(o.Message) + snap.SnapshotBytes() + reportEntryOverhead
	})
}

// pageBounds splits entries into [start, end) ranges of at most ac.MaxReportBytes by bytesOf
// (every page holds at least one entry): the report pages of a teardown and of a restore.
func pageBounds[T any](all []T, bytesOf func(T) int) [][2]int {
	var pages [][2]int
	start, size := 0, 0
	for i, e := range all {
		n := bytesOf(e)
		if i > start && size+n > ac.MaxReportBytes {
			pages = append(pages, [2]int{start, i})
			start, size = i, 0
		}
		size += n
	}
	if start < len(all) {
		pages = append(pages, [2]int{start, len(all)})
	}
	return pages
}

// reportPage is page n of the sorted outcomes.
func reportPage(all []ac.ConnectionOutcome, n int) (ac.ReportPage, error) {
	pages := reportPages(all)
	if n < 0 || (n >= len(pages) && !(n == 0 && len(pages) == 0)) {
		return ac.ReportPage{}, fmt.Errorf("report page %d asked, there are %d", n, len(pages))
	}
	p := ac.ReportPage{Page: n, Pages: len(pages), Connections: []ac.ConnectionOutcome{}}
	if len(pages) > 0 {
		p.Connections = all[pages[n][0]:pages[n][1]]
	}
	return p, nil
}

func batchActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		// A full batch at the slowest: 100 connections, 10 at a time, 30 s each plus retries.
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    DefaultHeartbeatTimeout,
		// A stopped teardown waits for the batch to end its requests in flight and report them.
		WaitForCancellation: true,
		RetryPolicy:         defaultRetryPolicy(5),
	}
}

func listActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: DefaultStartToCloseTimeout,
		RetryPolicy:         defaultRetryPolicy(DefaultMaximumAttempts),
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
