package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// Temporal's own cancellation (CLI, a parent, an external request) stops the teardown as the
// cancel update does, and the workflow ends Canceled with its result in the error's details.
func TestTeardown_TemporalCancelEndsCanceledWithTheResult(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	cp := newFakeControlPlane()
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(cp.batch).After(10 * time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 15*time.Second)
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 200), Concurrency: 10})

	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not end")
	}
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("got %v, want the workflow Canceled", err)
	}
	if !canceled.HasDetails() {
		t.Fatal("got a canceled error without details, want the teardown's result in them")
	}
	var res ac.RemoveAgentConnectionsResult
	if err := canceled.Details(&res); err != nil {
		t.Fatal(err)
	}
	countsAddUp(t, res)
	if !res.Cancelled || res.StopReason != "cancelled" || res.Removed != 50 || res.Skipped != 100 || res.Total != 200 {
		t.Errorf("got %+v, want cancelled with 50 removed and 100 skipped of 200", res)
	}
	for _, id := range ids("c", 200)[100:] {
		if cp.calls[id] != 0 {
			t.Errorf("got %s sent after the cancel, want nothing started after it", id)
		}
	}
}

// A batch that fails as a whole (its attempts ran out on heartbeat timeouts) still said in its
// last heartbeat what it finished: those are reported from it and never sent again; the rest go
// to another round, where a 404 reads as already absent (a request may have left uncounted).
func TestTeardown_LostBatchKeepsWhatItFinished(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	var mu sync.Mutex
	sent := map[string]int{}
	var second []activities.BatchItem
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if in.Items[0].ConnectionID == "c0000" {
				// The first batch removed c0000..c0002, sent c0003 (no answer came), then its
				// worker vanished: every attempt times out with the same last heartbeat.
				for _, it := range in.Items[:4] {
					sent[it.ConnectionID] = 1
				}
				return activities.RemoveConnectionsResult{}, temporal.NewHeartbeatTimeoutError(activities.RemoveConnectionsProgress{
					Requests: map[string]int{"c0000": 1, "c0001": 1, "c0002": 1, "c0003": 1},
					Done: []ac.ConnectionOutcome{
						{ConnectionID: "c0000", Outcome: ac.OutcomeRemoved, Attempts: 1},
						{ConnectionID: "c0001", Outcome: ac.OutcomeRemoved, Attempts: 1},
						{ConnectionID: "c0002", Outcome: ac.OutcomeRemoved, Attempts: 1},
					},
				})
			}
			second = append(second, in.Items...)
			var res activities.RemoveConnectionsResult
			for _, it := range in.Items {
				sent[it.ConnectionID]++
				res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: it.PriorRequests + 1})
			}
			return res, nil
		})
	strict := false
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 5), Concurrency: 1, MissingOK: &strict})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Removed != 5 {
		t.Errorf("got %+v, want all 5 removed", res)
	}
	for _, id := range []string{"c0000", "c0001", "c0002"} {
		if sent[id] != 1 {
			t.Errorf("got %s sent %d times, want once: its removal was in the lost batch's last heartbeat", id, sent[id])
		}
	}
	want := []activities.BatchItem{{ConnectionID: "c0003", PriorRequests: 1, MaybeSent: true}, {ConnectionID: "c0004", MaybeSent: true}}
	if !slices.Equal(second, want) {
		t.Errorf("got the next round %+v, want %+v", second, want)
	}
}

// A refused key (401/403) starts nothing more: the rest is skipped, and the result says why.
func TestTeardown_RefusedKeyStopsTheTeardown(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	batches := 0
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
			batches++
			var res activities.RemoveConnectionsResult
			for _, it := range in.Items {
				switch {
				case res.Refused:
					res.Transient = append(res.Transient, activities.TransientFailure{ConnectionID: it.ConnectionID, FailureType: ac.ErrUnauthorized, NotSent: true})
				case it.ConnectionID == "c0003":
					res.Refused = true
					res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeFailed, FailureType: ac.ErrUnauthorized, Attempts: 1, Message: "403"})
				default:
					res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1})
				}
			}
			return res, nil
		})
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: ids("c", 300), Concurrency: 1})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	if res.Removed != 3 || res.Failed != 1 || res.Skipped != 296 || res.Verified || !strings.Contains(res.StopReason, "refused the key") {
		t.Errorf("got removed %d failed %d skipped %d verified %t stop %q, want 3, 1, 296, false, refused",
			res.Removed, res.Failed, res.Skipped, res.Verified, res.StopReason)
	}
	if batches != 1 {
		t.Errorf("got %d batches, want 1: nothing starts after the refusal", batches)
	}
}

// A 404 on the agent's list is a missing agent (or a wrong URL prefix), not an empty one.
func TestTeardown_MissingAgentFailsAgentNotFound(t *testing.T) {
	env := newTeardownEnv(t)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(activities.ListConnectionsResult{},
		temporal.NewNonRetryableApplicationError("control plane answered 404 Not Found to GET /v2/auth/agents/{agent_id}/connections", ac.ErrAgentNotFound, nil))
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1"})
	var appErr *temporal.ApplicationError
	err := env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != ac.ErrAgentNotFound || !appErr.NonRetryable() {
		t.Fatalf("got %v, want a non-retryable %s", err, ac.ErrAgentNotFound)
	}
	if !strings.Contains(appErr.Message(), "/v2/auth/agents/{agent_id}/connections") {
		t.Errorf("got message %q, want the URL template in it", appErr.Message())
	}
}

// A standalone removal that keeps deciding cannot hold a connection forever, and a connection a
// batch did not send (a 429 on another one came first) does not use up its rounds.
func TestTeardown_BusyIsBoundedAndNotSentIsNotARound(t *testing.T) {
	env := newTeardownEnv(t)
	listsNothing(env) // given IDs: the first list is for their snapshots
	calls := map[string]int{}
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
			var res activities.RemoveConnectionsResult
			for _, it := range in.Items {
				calls[it.ConnectionID]++
				switch {
				case it.ConnectionID == "busy":
					res.Busy = append(res.Busy, it.ConnectionID)
				case it.ConnectionID == "paced" && calls["paced"] <= 3*ac.MaxTeardownRounds:
					res.Transient = append(res.Transient, activities.TransientFailure{ConnectionID: it.ConnectionID, FailureType: ac.ErrRateLimited,
						RetryAfter: ac.Duration(2 * time.Second), NotSent: true})
				default:
					res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1})
				}
			}
			return res, nil
		})
	env.ExecuteWorkflow(ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"busy", "paced"}})
	res := teardownResult(t, env)
	countsAddUp(t, res)
	byID := map[string]ac.ConnectionOutcome{}
	for _, o := range res.Connections {
		byID[o.ConnectionID] = o
	}
	if o := byID["busy"]; o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrUnavailable || calls["busy"] != ac.MaxTeardownRounds {
		t.Errorf("got busy %+v after %d tries, want failed Unavailable after %d", o, calls["busy"], ac.MaxTeardownRounds)
	}
	if o := byID["paced"]; o.Outcome != ac.OutcomeRemoved {
		t.Errorf("got paced %+v, want removed once the pause was over", o)
	}
}

// sizeRecorder is a DataConverter that records the largest payload it encodes and whether any
// payload holds a given secret.
type sizeRecorder struct {
	converter.DataConverter
	mu      sync.Mutex
	largest int
	secret  string
	leaked  bool
}

func (r *sizeRecorder) ToPayload(v any) (*commonpb.Payload, error) {
	p, err := r.DataConverter.ToPayload(v)
	if p != nil {
		r.record(p)
	}
	return p, err
}

func (r *sizeRecorder) ToPayloads(vs ...any) (*commonpb.Payloads, error) {
	ps, err := r.DataConverter.ToPayloads(vs...)
	for _, p := range ps.GetPayloads() {
		r.record(p)
	}
	return ps, err
}

func (r *sizeRecorder) record(p *commonpb.Payload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.largest = max(r.largest, len(p.GetData()))
	if r.secret != "" && strings.Contains(string(p.GetData()), r.secret) {
		r.leaked = true
	}
}

// pagedList answers ListConnections from ids as the real activity pages them.
func pagedList(all []string) func(context.Context, activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
	sorted := slices.Sorted(slices.Values(all))
	return func(_ context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
		i, _ := slices.BinarySearch(sorted, in.After)
		if i < len(sorted) && sorted[i] == in.After {
			i++
		}
		res := activities.ListConnectionsResult{ConnectionIDs: []string{}, Listed: len(sorted)}
		size := 0
		for _, id := range sorted[i:] {
			if len(res.ConnectionIDs) > 0 && size+len(id) > activities.DefaultListPageBytes {
				res.More = true
				break
			}
			size += len(id)
			res.ConnectionIDs = append(res.ConnectionIDs, id)
		}
		return res, nil
	}
}

// The worst case the contract allows: 10,000 connections with 256-byte IDs, every one failing
// with a long message of its own, and runs short enough to continue as new twice. Every payload
// stays under Temporal's 512 KB warning, the carried state is paged when it must be, and the
// whole report comes back through the result and the report query.
func TestTeardown_WorstCasePayloadsFit(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections: skipped with -short")
	}
	const n = ac.MaxTeardownConnections
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf("conn-%05d-", i) + strings.Repeat("x", ac.MaxIDBytes-11)
	}
	snaps := worstCaseSnapshots(all)
	fail := func(_ context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
		var res activities.RemoveConnectionsResult
		for _, it := range in.Items {
			res.Done = append(res.Done, ac.ConnectionOutcome{ConnectionID: it.ConnectionID, Outcome: ac.OutcomeFailed, FailureType: ac.ErrValidation, Attempts: 1,
				Message: clipMessage("control plane answered 422: " + it.ConnectionID + strings.Repeat(" detail", 40))})
		}
		return res, nil
	}
	var prev *testsuite.TestWorkflowEnvironment
	in := TeardownInput{RemoveAgentConnectionsInput: ac.RemoveAgentConnectionsInput{AgentID: "a1", Concurrency: 50, MaxHistoryEvents: 600}}
	rec := &sizeRecorder{DataConverter: converter.GetDefaultDataConverter()}
	var res ac.RemoveAgentConnectionsResult
	paged, largestEntry := 0, 0
	for run := 1; ; run++ {
		if run > 20 {
			t.Fatal("got more than 20 runs, want the teardown to finish")
		}
		env := newTeardownEnv(t)
		env.SetDataConverter(rec)
		// Carrying 10,000 long entries means encoding and decoding a few MB of JSON in one
		// workflow task: tens of milliseconds on its own, but the race detector slows
		// encoding/json about tenfold, past the SDK's one-second deadlock detector on a loaded
		// machine. The detector guards against blocking code; this is bounded work.
		env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 30 * time.Second})
		if run > 1 {
			env.SetContinuedExecutionRunID(fmt.Sprintf("run-%d", run-1))
		}
		env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(pagedSnapshotList(all, snaps))
		env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(fail)
		from := prev
		env.OnActivity("LoadCarriedState", mock.Anything, mock.Anything).Return(
			func(_ context.Context, q activities.CarriedStateInput) ([]byte, error) {
				v, err := from.QueryWorkflow(activities.CarriedStatePageQuery, q.Page)
				if err != nil {
					return nil, err
				}
				var b []byte
				return b, v.Get(&b)
			})
		env.ExecuteWorkflow(RemoveAgentConnectionsWorkflow, in)
		var canErr *workflow.ContinueAsNewError
		if err := env.GetWorkflowError(); errors.As(err, &canErr) {
			in = TeardownInput{}
			if err := converter.GetDefaultDataConverter().FromPayloads(canErr.Input, &in); err != nil {
				t.Fatal(err)
			}
			if in.State.Paged != nil {
				paged++
			}
			prev = env
			continue
		}
		res = teardownResult(t, env)
		// Page the whole report back from the final run.
		got := map[string]ac.ConnectionOutcome{}
		for page := 0; page < res.ReportPages; page++ {
			v, err := env.QueryWorkflow(ac.ReportQuery, page)
			if err != nil {
				t.Fatal(err)
			}
			var rp ac.ReportPage
			if err := v.Get(&rp); err != nil {
				t.Fatal(err)
			}
			for _, o := range rp.Connections {
				got[o.ConnectionID] = o
			}
		}
		if len(got) != n {
			t.Errorf("got %d distinct entries over %d report pages, want %d", len(got), res.ReportPages, n)
		}
		for id, o := range got {
			if s, ok := o.Snapshot(); !ok || !reflect.DeepEqual(s, snaps[id]) {
				t.Fatalf("%.20s: got snapshot %+v, want %+v carried through every run and page", id, s, snaps[id])
			}
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			largestEntry = max(largestEntry, len(b))
		}
		break
	}
	if res.Total != n || res.Failed != n || !res.ReportTruncated || len(res.Connections) == 0 {
		t.Errorf("got total %d failed %d truncated %t with %d entries, want %d failed and a truncated result", res.Total, res.Failed, res.ReportTruncated, len(res.Connections), n)
	}
	if paged == 0 || res.Runs < 2 {
		t.Errorf("got %d runs, %d with a paged state, want the worst case to continue as new through a paged state", res.Runs, paged)
	}
	if rec.largest > 512<<10 {
		t.Errorf("got a %d-byte payload, want every payload under 512 KB", rec.largest)
	}
	t.Logf("worst case: %d connections of %d-byte IDs with snapshots of %d bytes, %d runs (%d paged), largest payload %d bytes, %d report pages, largest report entry %d bytes",
		n, ac.MaxIDBytes, snaps[all[0]].SnapshotBytes(), res.Runs, paged, rec.largest, res.ReportPages, largestEntry)
}

// worstCaseSnapshots gives each connection the largest snapshot a teardown keeps: a 256-byte
// token, a provider, and scopes up to MaxSnapshotBytes.
func worstCaseSnapshots(all []string) map[string]ac.ConnectionSnapshot {
	out := make(map[string]ac.ConnectionSnapshot, len(all))
	for i, id := range all {
		scopes := make([]string, ac.MaxSnapshotScopes)
		for j := range scopes {
			scopes[j] = fmt.Sprintf("scope-%02d-<&>", j)
		}
		tok := fmt.Sprintf("tok-%05d-", i) + strings.Repeat("t", ac.MaxIDBytes-10)
		s, ok := ac.BoundSnapshot(ac.ConnectionSnapshot{ConnectionID: id, OAuthTokenID: tok, ProviderID: "provider-" + strings.Repeat("p", 40), Scopes: scopes})
		if !ok || s.SnapshotBytes() < ac.MaxSnapshotBytes-40 {
			panic(fmt.Sprintf("worst-case snapshot of %d bytes, want about %d", s.SnapshotBytes(), ac.MaxSnapshotBytes))
		}
		out[id] = s
	}
	return out
}

// pagedSnapshotList lists all with their snapshots as ListConnections pages them: sorted, after
// in.After, at most DefaultListPageBytes of IDs and snapshots a page; snapshots only when asked.
func pagedSnapshotList(all []string, snaps map[string]ac.ConnectionSnapshot) func(context.Context, activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
	sorted := slices.Sorted(slices.Values(all))
	return func(_ context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
		i, _ := slices.BinarySearch(sorted, in.After)
		if i < len(sorted) && sorted[i] == in.After {
			i++
		}
		res := activities.ListConnectionsResult{ConnectionIDs: []string{}, Listed: len(sorted)}
		size := 0
		for _, id := range sorted[i:] {
			n := ac.JSONBytes(id)
			if in.Snapshot {
				n += snaps[id].JSONSize()
			}
			if len(res.ConnectionIDs) > 0 && size+n > activities.DefaultListPageBytes {
				res.More = true
				break
			}
			size += n
			res.ConnectionIDs = append(res.ConnectionIDs, id)
			if in.Snapshot {
				res.Snapshots = append(res.Snapshots, snaps[id])
			}
		}
		return res, nil
	}
}
