package workflows

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

func newTeardownEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(RemoveAgentConnectionsWorkflow)
	env.RegisterActivity(&activities.Activities{})
	return env
}

// listsNothing answers every list of the agent with no connections (a teardown given IDs lists
// them first for their snapshots; these entries then carry none).
func listsNothing(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{ConnectionIDs: []string{}}, nil)
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// fakeControlPlane stands in for the batch activity: it records every removal and answers with
// what answer() says for a connection (default: removed).
type fakeControlPlane struct {
	mu          sync.Mutex
	removed     map[string]int // connection → times removed
	prior       map[string][]int
	inFlight    int // sum of parallelism of running batches
	maxInFlight int
	maxBatch    int
	overlapping int // most batches running at once
	running     int
	answer      func(id string, call int) (outcome ac.ConnectionOutcome, transient *activities.TransientFailure)
	calls       map[string]int
}

func newFakeControlPlane() *fakeControlPlane {
	return &fakeControlPlane{removed: map[string]int{}, prior: map[string][]int{}, calls: map[string]int{}}
}

func (f *fakeControlPlane) batch(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
	f.mu.Lock()
	f.inFlight += in.Parallelism
	f.running++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.overlapping = max(f.overlapping, f.running)
	f.maxBatch = max(f.maxBatch, len(in.Items))
	f.mu.Unlock()
	// Let other batches start while this one "works", so overlap is observable.
	time.Sleep(5 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight -= in.Parallelism
	f.running--
	var res activities.RemoveConnectionsResult
	for _, it := range in.Items {
		f.calls[it.ConnectionID]++
		f.prior[it.ConnectionID] = append(f.prior[it.ConnectionID], it.PriorRequests)
		o := ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: it.PriorRequests + 1}
		var tf *activities.TransientFailure
		if f.answer != nil {
			o, tf = f.answer(it.ConnectionID, f.calls[it.ConnectionID])
			o.ConnectionID = it.ConnectionID
			if tf != nil {
				tf.ConnectionID = it.ConnectionID
				tf.Attempts = it.PriorRequests + 1
			} else if o.Attempts == 0 {
				o.Attempts = it.PriorRequests + 1
			}
		}
		if tf != nil {
			res.Transient = append(res.Transient, *tf)
			continue
		}
		if o.Outcome == ac.OutcomeRemoved {
			f.removed[it.ConnectionID]++
		}
		res.Done = append(res.Done, o)
	}
	return res, nil
}

func teardownResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) ac.RemoveAgentConnectionsResult {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want a result", err)
	}
	var res ac.RemoveAgentConnectionsResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

// countsAddUp checks that the per-outcome counts add up to the connections listed.
func countsAddUp(t *testing.T, res ac.RemoveAgentConnectionsResult) {
	t.Helper()
	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	if sum != res.Total || res.Total != len(res.Connections) {
		t.Errorf("got counts summing to %d, total %d, %d connections; want all equal", sum, res.Total, len(res.Connections))
	}
}

func TestTeardown_ListsRemovesAndVerifies(t *testing.T) {
	env := newTeardownEnv(t)
	all := ids("c", 25)
	lists := 0
	var asked []bool
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
			lists++
			asked = append(asked, in.Snapshot)
			if lists == 1 {
				// Every connection but the last has a snapshot.
				return activities.ListConnectionsResult{ConnectionIDs: all, Snapshots: testSnapshots(all[:24])}, nil
			}
			return activities.ListConnectionsResult{}, nil
		})
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1"})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Total != 25 || res.Removed != 25 || !res.Verified {
		t.Errorf("got total %d removed %d verified %t, want 25, 25, true", res.Total, res.Removed, res.Verified)
	}
	if lists != 2 || !slices.Equal(asked, []bool{true, false}) {
		t.Errorf("got %d list calls asking snapshots %v, want 2 (list with snapshots, then verify without)", lists, asked)
	}
	for _, id := range all {
		if cp.removed[id] != 1 {
			t.Errorf("got %s removed %d times, want once", id, cp.removed[id])
		}
	}
	checkSnapshots(t, res.Connections, testSnapshots(all[:24]))
	if got := ac.RestoreEntries(res.Connections); !reflect.DeepEqual(got, testSnapshots(all[:24])) {
		t.Errorf("got restore entries %+v, want the 24 snapshots listed", got)
	}
}

// testSnapshots is a snapshot per ID, as a list would give them.
func testSnapshots(ids []string) []ac.ConnectionSnapshot {
	out := make([]ac.ConnectionSnapshot, len(ids))
	for i, id := range ids {
		out[i] = ac.ConnectionSnapshot{ConnectionID: id, OAuthTokenID: "tok-" + id, ProviderID: "github", Scopes: []string{"repo", id}}
	}
	return out
}

// checkSnapshots checks that the entries of the connections in want carry their snapshot, and the
// others none.
func checkSnapshots(t *testing.T, entries []ac.ConnectionOutcome, want []ac.ConnectionSnapshot) {
	t.Helper()
	byID := map[string]ac.ConnectionSnapshot{}
	for _, s := range want {
		byID[s.ConnectionID] = s
	}
	for _, o := range entries {
		got, has := o.Snapshot()
		w, ok := byID[o.ConnectionID]
		if has != ok || (ok && !reflect.DeepEqual(got, w)) || (!ok && (o.ProviderID != "" || o.Scopes != nil)) {
			t.Errorf("%s: got snapshot %+v (%t), want %+v (%t)", o.ConnectionID, got, has, w, ok)
		}
	}
}

// Given IDs, the teardown lists the agent first for their snapshots: a given connection listed
// carries its snapshot, one not listed none, and a listed connection not given is not reported.
func TestTeardown_GivenIDsListFirstForTheirSnapshots(t *testing.T) {
	env := newTeardownEnv(t)
	var asked []bool
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
			asked = append(asked, in.Snapshot)
			if len(asked) > 1 {
				return activities.ListConnectionsResult{ConnectionIDs: []string{"other"}}, nil
			}
			listed := []string{"c1", "c2", "other"}
			return activities.ListConnectionsResult{ConnectionIDs: listed, Snapshots: testSnapshots(listed)}, nil
		})
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"c1", "c2", "gone"}})
	res := teardownResult(t, env)
	if res.Total != 3 || res.Removed != 3 || len(res.Connections) != 3 {
		t.Fatalf("got %+v, want the 3 given removed", res)
	}
	if !slices.Equal(asked, []bool{true, false}) {
		t.Errorf("got lists asking snapshots %v, want [true false]: a list before removing, then the verifying one", asked)
	}
	checkSnapshots(t, res.Connections, testSnapshots([]string{"c1", "c2"}))
	if cp.removed["other"] != 0 {
		t.Error("got the listed connection that was not given removed, want it left alone")
	}
}

// A teardown given IDs whose first list answers 404 fails AgentNotFound before any DELETE, as one
// that lists does.
func TestTeardown_GivenIDsMissingAgentFailsAgentNotFound(t *testing.T) {
	env := newTeardownEnv(t)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		activities.ListConnectionsResult{}, temporal.NewNonRetryableApplicationError("control plane answered 404", ac.ErrAgentNotFound, nil))
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"c1"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ac.ErrAgentNotFound {
		t.Fatalf("got %v, want AgentNotFound", err)
	}
	if len(cp.calls) != 0 {
		t.Errorf("got %d connections sent a DELETE, want none", len(cp.calls))
	}
}

func TestTeardown_ConcurrencyBoundNeverExceeded(t *testing.T) {
	for _, concurrency := range []int{1, 7, 25, 100} {
		t.Run(fmt.Sprint(concurrency), func(t *testing.T) {
			env := newTeardownEnv(t)
			cp := newFakeControlPlane()
			env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
			env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{}, nil)
			env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 600), Concurrency: concurrency})
			res := teardownResult(t, env)
			if res.Removed != 600 {
				t.Errorf("got %d removed, want 600", res.Removed)
			}
			if cp.maxInFlight > concurrency {
				t.Errorf("got up to %d requests allowed in flight, want at most %d", cp.maxInFlight, concurrency)
			}
			if cp.maxBatch > maxBatchSize {
				t.Errorf("got a batch of %d, want at most %d", cp.maxBatch, maxBatchSize)
			}
			if concurrency >= 2*maxBatchParallelism && cp.overlapping < 2 {
				t.Errorf("got at most %d batch running at once, want several at concurrency %d", cp.overlapping, concurrency)
			}
		})
	}
}

func TestTeardown_PartialFailuresAndTransientRetries(t *testing.T) {
	env := newTeardownEnv(t)
	cp := newFakeControlPlane()
	cp.answer = func(id string, call int) (ac.ConnectionOutcome, *activities.TransientFailure) {
		switch id {
		case "c0001":
			return ac.ConnectionOutcome{Outcome: ac.OutcomeFailed, FailureType: ac.ErrValidation, Message: "path.connection_id: locked"}, nil
		case "c0002": // 503 twice, then removed
			if call <= 2 {
				return ac.ConnectionOutcome{}, &activities.TransientFailure{FailureType: ac.ErrServerError, Message: "503"}
			}
		case "c0003": // always rate limited: gives up after MaxTeardownRounds
			return ac.ConnectionOutcome{}, &activities.TransientFailure{FailureType: ac.ErrRateLimited, Message: "429", RetryAfter: ac.Duration(30 * time.Second)}
		case "c0004":
			return ac.ConnectionOutcome{Outcome: ac.OutcomeAlreadyAbsent}, nil
		}
		return ac.ConnectionOutcome{Outcome: ac.OutcomeRemoved}, nil
	}
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{}, nil)
	start := env.Now()
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 10)})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Removed != 7 || res.AlreadyAbsent != 1 || res.Failed != 2 {
		t.Errorf("got removed %d absent %d failed %d, want 7, 1, 2", res.Removed, res.AlreadyAbsent, res.Failed)
	}
	byID := map[string]ac.ConnectionOutcome{}
	for _, o := range res.Connections {
		byID[o.ConnectionID] = o
	}
	if o := byID["c0001"]; o.FailureType != ac.ErrValidation || o.Message == "" {
		t.Errorf("got %+v for the 422, want ValidationError with its message", o)
	}
	if o := byID["c0002"]; o.Outcome != ac.OutcomeRemoved || o.Attempts != 3 {
		t.Errorf("got %+v, want removed after 3 requests", o)
	}
	if got := fmt.Sprint(cp.prior["c0002"]); got != "[0 1 2]" {
		t.Errorf("got prior requests %s for c0002, want [0 1 2]", got)
	}
	if o := byID["c0003"]; o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrRateLimited || cp.calls["c0003"] != ac.MaxTeardownRounds {
		t.Errorf("got %+v after %d calls, want RateLimited failure after %d rounds", o, cp.calls["c0003"], ac.MaxTeardownRounds)
	}
	// Each of c0003's rounds honoured its 30 s Retry-After on the workflow clock.
	if elapsed := env.Now().Sub(start); elapsed < time.Duration(ac.MaxTeardownRounds-1)*30*time.Second {
		t.Errorf("got %s of workflow time, want at least %d Retry-After waits of 30s", elapsed, ac.MaxTeardownRounds-1)
	}
}

func TestTeardown_StopsOnFirstFailureWithoutContinueOnError(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	cp := newFakeControlPlane()
	cp.answer = func(id string, _ int) (ac.ConnectionOutcome, *activities.TransientFailure) {
		if id == "c0000" {
			return ac.ConnectionOutcome{Outcome: ac.OutcomeFailed, FailureType: ac.ErrUnauthorized, Message: "401"}, nil
		}
		return ac.ConnectionOutcome{Outcome: ac.OutcomeRemoved}, nil
	}
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
	stop := false
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 300), Concurrency: 1, ContinueOnError: &stop})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	// Concurrency 1 makes batches of 5: the first fails on c0000, the rest is skipped.
	if res.Failed != 1 || res.Removed != 4 || res.Skipped != 295 || res.Verified {
		t.Errorf("got failed %d removed %d skipped %d verified %t, want 1, 4, 295, false", res.Failed, res.Removed, res.Skipped, res.Verified)
	}
}

func TestTeardown_CancelLetsInFlightFinishAndStartsNothing(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch).After(10 * time.Second)
	var accepted, completed bool
	var progress ac.TeardownProgress
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(ac.CancelUpdate, "cancel-1", &testsuite.TestUpdateCallback{
			OnAccept: func() { accepted = true },
			OnReject: func(err error) { t.Errorf("cancel rejected: %v", err) },
			OnComplete: func(v any, err error) {
				completed = err == nil
				if p, ok := v.(ac.TeardownProgress); ok {
					progress = p
				}
			},
		})
	}, 15*time.Second)
	// Concurrency 10: one batch of 50 at a time, 10 s each; the cancel lands in the second.
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 200), Concurrency: 10})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if !accepted || !completed || !progress.Cancelled {
		t.Errorf("got accepted %t completed %t progress %+v, want the update accepted and reporting cancelled", accepted, completed, progress)
	}
	// The first batch finished; the second was cancelled in flight. The test environment drops a
	// cancelled activity's result (a real server delivers it: see integration), so its 50 are
	// reported failed, possibly removed, never skipped; the other 100 were never sent.
	if !res.Cancelled || res.StopReason != "cancelled" || res.Removed != 50 || res.Failed != 50 || res.Skipped != 100 {
		t.Errorf("got %+v, want cancelled, 50 removed, 50 failed in flight, 100 skipped", res)
	}
	for _, id := range ids("c", 200)[100:] {
		if cp.calls[id] != 0 {
			t.Errorf("got %s sent after the cancel, want nothing started after it", id)
		}
	}
}

func TestTeardown_ProgressAndConnectionStatusQueries(t *testing.T) {
	env := newTeardownEnv(t)
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch).After(10 * time.Second)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{}, nil)
	var mid ac.TeardownProgress
	var doneClaim, pendingClaim, strangerClaim ac.ConnectionClaim
	env.RegisterDelayedCallback(func() {
		query := func(name string, out any, args ...any) {
			v, err := env.QueryWorkflow(name, args...)
			if err != nil {
				t.Errorf("query %s: %v", name, err)
				return
			}
			if err := v.Get(out); err != nil {
				t.Error(err)
			}
		}
		query(ac.ProgressQuery, &mid)
		query(ac.ConnectionStatusQuery, &doneClaim, "c0000")
		query(ac.ConnectionStatusQuery, &pendingClaim, "c0099")
		query(ac.ConnectionStatusQuery, &strangerClaim, "other")
	}, 15*time.Second)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 100), Concurrency: 10})
	teardownResult(t, env)
	want := ac.TeardownProgress{AgentID: "a1", Listed: true, Total: 100, Done: 50, Remaining: 50, InFlight: 50, Runs: 1}
	if mid != want {
		t.Errorf("got progress %+v, want %+v", mid, want)
	}
	if !doneClaim.Claimed || doneClaim.Outcome == nil || doneClaim.Outcome.Outcome != ac.OutcomeRemoved {
		t.Errorf("got %+v for a removed connection, want claimed with outcome removed", doneClaim)
	}
	if !pendingClaim.Claimed || pendingClaim.Outcome != nil {
		t.Errorf("got %+v for a pending connection, want claimed without outcome", pendingClaim)
	}
	if strangerClaim.Claimed {
		t.Errorf("got %+v for a connection not in the teardown, want unclaimed", strangerClaim)
	}
}

func TestTeardown_ReListReportsRemainedAndReappeared(t *testing.T) {
	env := newTeardownEnv(t)
	lists := 0
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
			lists++
			if lists == 1 {
				return activities.ListConnectionsResult{ConnectionIDs: []string{"c1", "c2", "c3"}}, nil
			}
			return activities.ListConnectionsResult{ConnectionIDs: []string{"c2", "new"}}, nil
		})
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(newFakeControlPlane().batch)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1"})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Removed != 2 || res.Remained != 1 || res.Reappeared != 1 || !res.Verified {
		t.Errorf("got removed %d remained %d reappeared %d verified %t, want 2, 1, 1, true", res.Removed, res.Remained, res.Reappeared, res.Verified)
	}
}

func TestTeardown_GivenIDsIgnoreOthersOnReList(t *testing.T) {
	env := newTeardownEnv(t)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{ConnectionIDs: []string{"not-mine"}}, nil)
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(newFakeControlPlane().batch)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"c1", "c1", "c2"}})
	res := teardownResult(t, env)
	if res.Total != 2 || res.Removed != 2 || res.Reappeared != 0 {
		t.Errorf("got total %d removed %d reappeared %d, want 2, 2, 0 (duplicates dropped, others ignored)", res.Total, res.Removed, res.Reappeared)
	}
}

func TestTeardown_DeferredAndBusyConnections(t *testing.T) {
	env := newTeardownEnv(t)
	calls := 0
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
			calls++
			var res activities.RemoveConnectionsResult
			for _, it := range in.Items {
				switch {
				case it.ConnectionID == "standalone":
					res.Deferred = append(res.Deferred, activities.DeferredRemoval{ConnectionID: it.ConnectionID, RunID: "run-1"})
				case it.ConnectionID == "deciding" && calls == 1:
					res.Busy = append(res.Busy, it.ConnectionID)
				default:
					res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1})
				}
			}
			return res, nil
		})
	env.OnActivity("AwaitStandaloneRemoval", mock.Anything, activities.ConnectionAwait{AgentID: "a1", ConnectionID: "standalone", RunID: "run-1", MissingOK: true}).
		Return(ac.ConnectionOutcome{ConnectionID: "standalone", Outcome: ac.OutcomeAlreadyAbsent}, nil).Once()
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{}, nil)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"plain", "standalone", "deciding"}})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Removed != 2 || res.AlreadyAbsent != 1 {
		t.Errorf("got %+v, want plain and deciding removed, standalone already absent via its own removal", res)
	}
	for _, o := range res.Connections {
		if o.ConnectionID == "standalone" && o.Attempts != 0 {
			t.Errorf("got %d attempts for the standalone's connection, want 0 (the teardown sent nothing)", o.Attempts)
		}
	}
	if calls != 2 {
		t.Errorf("got %d batches, want 2 (the busy one tried again)", calls)
	}
	env.AssertExpectations(t)
}

// A connection whose DELETE got no answer (a timeout, or a batch lost as a whole), then finished
// by a standalone removal that found it absent, may have been removed by this teardown's own
// request: its entry carries earlier_request, so a restore takes it back. One the teardown never
// sent anything stays already_absent without it.
func TestTeardown_StandaloneFoundAbsentAfterOurRequestIsUndoable(t *testing.T) {
	for _, tt := range []struct {
		name  string
		first string // what the first batch does: "timeout", "lost", or "defer"
		want  bool
	}{
		{"after a timed-out DELETE", "timeout", true},
		{"after a lost batch", "lost", true},
		{"never sent", "defer", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newTeardownEnv(t)
			calls := 0
			env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
					calls++
					var res activities.RemoveConnectionsResult
					switch {
					case calls == 1 && tt.first == "lost":
						return res, temporal.NewNonRetryableApplicationError("worker gone", ac.ErrUnavailable, nil)
					case calls == 1 && tt.first == "timeout":
						res.Transient = append(res.Transient, activities.TransientFailure{ConnectionID: "c1", FailureType: ac.ErrUnavailable, Message: "timed out", Attempts: 1})
					default:
						res.Deferred = append(res.Deferred, activities.DeferredRemoval{ConnectionID: "c1", RunID: "run-1"})
					}
					return res, nil
				})
			env.OnActivity("AwaitStandaloneRemoval", mock.Anything, activities.ConnectionAwait{AgentID: "a1", ConnectionID: "c1", RunID: "run-1", MissingOK: true}).
				Return(ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeAlreadyAbsent}, nil).Once()
			env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{
				ConnectionIDs: []string{"c1"}, Snapshots: []ac.ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "tok-c1"}},
			}, nil).Once()
			env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{ConnectionIDs: []string{}}, nil)
			env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1"})
			res := teardownResult(t, env)
			countsAddUp(t, res)
			if len(res.Connections) != 1 {
				t.Fatalf("got %+v, want one entry", res.Connections)
			}
			if o := res.Connections[0]; o.Outcome != ac.OutcomeAlreadyAbsent || o.EarlierRequest != tt.want || o.Undoable() != tt.want {
				t.Errorf("got %+v (undoable %t), want already_absent with earlier_request and undoable %t", o, o.Undoable(), tt.want)
			}
		})
	}
}

func TestTeardown_ContinuesAsNewCarryingProgress(t *testing.T) {
	cp := newFakeControlPlane()
	in := TeardownInput{RemoveAgentConnectionsInput: ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 1000), Concurrency: 20, MaxHistoryEvents: ac.MinTeardownMaxHistoryEvents}}
	finishedBefore := 0
	runs := 0
	var res ac.RemoveAgentConnectionsResult
	for {
		runs++
		if runs > 50 {
			t.Fatal("got more than 50 runs, want the teardown to finish")
		}
		env := newTeardownEnv(t)
		if runs > 1 {
			env.SetContinuedExecutionRunID(fmt.Sprintf("run-%d", runs-1))
		}
		env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch)
		env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{}, nil)
		env.ExecuteWorkflow(RemoveAgentConnectionsWorkflow, in)
		var canErr *workflow.ContinueAsNewError
		if err := env.GetWorkflowError(); errors.As(err, &canErr) {
			var next TeardownInput
			if err := converter.GetDefaultDataConverter().FromPayloads(canErr.Input, &next); err != nil {
				t.Fatal(err)
			}
			if next.State == nil || next.State.Runs != runs || len(next.ConnectionIDs) != 0 {
				t.Fatalf("got carried state %+v with %d ids, want run count %d and ids only in the state", next.State, len(next.ConnectionIDs), runs)
			}
			if got := len(next.State.Outcomes) + len(next.State.Items); got != 1000 {
				t.Fatalf("got %d outcomes+pending carried, want 1000", got)
			}
			if len(next.State.Outcomes) <= finishedBefore {
				t.Fatalf("run %d finished nothing (%d outcomes before and after), want progress in every run", runs, finishedBefore)
			}
			finishedBefore = len(next.State.Outcomes)
			in = next
			continue
		}
		res = teardownResult(t, env)
		break
	}
	if runs < 2 {
		t.Errorf("got %d run, want the teardown to continue as new", runs)
	}
	if res.Removed != 1000 || res.Runs != runs {
		t.Errorf("got removed %d in %d runs (result says %d), want 1000 in %d", res.Removed, runs, res.Runs, runs)
	}
	for _, id := range ids("c", 1000) {
		if cp.removed[id] != 1 {
			t.Fatalf("got %s removed %d times, want once", id, cp.removed[id])
		}
	}
}

func TestTeardown_InvalidInput(t *testing.T) {
	for _, in := range []ac.RemoveAgentConnectionsInput{
		{AgentID: ""},
		{AgentID: "a1", ConnectionIDs: []string{"ok", "bad/id"}},
		{AgentID: "a1", Concurrency: ac.MaxTeardownConcurrency + 1},
		{AgentID: "a1", MaxHistoryEvents: 1},
		{AgentID: "a1", MaxHistoryEvents: ac.MinTeardownMaxHistoryEvents - 1},
		{AgentID: "a1", MaxHistoryEvents: -1},
		{AgentID: "a1", ConnectionIDs: ids(strings.Repeat("x", 250), 2000)}, // 508 KB of IDs
	} {
		env := newTeardownEnv(t)
		env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, in)
		var appErr *temporal.ApplicationError
		if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ac.ErrInvalidRequest {
			t.Errorf("%+v: got %v, want %s", in, err, ac.ErrInvalidRequest)
		}
	}
	// A state is the teardown's own: a first run handed one (by a caller that knows the JSON)
	// refuses it.
	env := newTeardownEnv(t)
	env.ExecuteWorkflow(RemoveAgentConnectionsWorkflow, TeardownInput{
		RemoveAgentConnectionsInput: ac.RemoveAgentConnectionsInput{AgentID: "a1"},
		State:                       &carriedState{Listed: true, Pending: []string{"c1"}},
	})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ac.ErrInvalidRequest {
		t.Errorf("a caller's state: got %v, want %s", err, ac.ErrInvalidRequest)
	}
}
