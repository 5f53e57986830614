package workflows

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/controlplane"
)

const restoreTestKey = "restore-test-secret-key"

// newRestoreEnv is a workflow environment running the real RestoreConnections activity against
// an emulator that has agent a1 with the seeded connections (token "tok-<id>" each).
func newRestoreEnv(t *testing.T, seed ...string) (*testsuite.TestWorkflowEnvironment, *emulator.Server) {
	t.Helper()
	em := emulator.New(emulator.Options{APIKey: restoreTestKey, Seed: map[string][]string{"a1": seed}})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close)
	cp, err := controlplane.New(controlplane.Config{BaseURL: srv.URL, Credentials: controlplane.StaticCredentials{APIKey: restoreTestKey},
		RequestTimeout: 300 * time.Millisecond, HTTPRetry: controlplane.HTTPRetry{WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(RestoreAgentConnectionsWorkflow)
	env.RegisterActivity(acts)
	return env, em
}

func snapshots(prefix string, n int) []ac.ConnectionSnapshot {
	out := make([]ac.ConnectionSnapshot, n)
	for i := range out {
		out[i] = ac.ConnectionSnapshot{ConnectionID: fmt.Sprintf("%s%04d", prefix, i), OAuthTokenID: fmt.Sprintf("tok-%s%04d", prefix, i),
			ProviderID: "github", Scopes: []string{"repo"}}
	}
	return out
}

func restoreResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) ac.RestoreAgentConnectionsResult {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not end")
	}
	var res ac.RestoreAgentConnectionsResult
	if err := env.GetWorkflowError(); err != nil {
		var canceled *temporal.CanceledError
		if !errors.As(err, &canceled) || canceled.Details(&res) != nil {
			t.Fatalf("restore: %v", err)
		}
		return res
	}
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Restored+res.AlreadyPresent+res.Failed+res.Skipped != res.Total {
		t.Errorf("counts %+v do not add up to total %d", res, res.Total)
	}
	return res
}

// summary is the result without its entries, for messages.
func summary(res ac.RestoreAgentConnectionsResult) ac.RestoreAgentConnectionsResult {
	res.Connections = nil
	return res
}

// wantOnePerToken checks the emulator holds exactly one connection for each token.
func wantOnePerToken(t *testing.T, em *emulator.Server, entries []ac.ConnectionSnapshot) {
	t.Helper()
	per := em.ConnectionsPerToken("a1")
	for _, e := range entries {
		if per[e.OAuthTokenID] != 1 {
			t.Errorf("got %d connections for %s, want exactly 1", per[e.OAuthTokenID], e.OAuthTokenID)
		}
	}
}

func TestRestore_RestoredAlreadyPresentRevokedAndDuplicates(t *testing.T) {
	env, em := newRestoreEnv(t, "keep")
	em.RevokeTokens("tok-r0001")
	entries := append(snapshots("r", 250), ac.ConnectionSnapshot{ConnectionID: "keep", OAuthTokenID: "tok-keep"}, snapshots("r", 1)[0])
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: entries, Concurrency: 20})
	res := restoreResult(t, env)
	if res.Total != 251 || res.Restored != 249 || res.AlreadyPresent != 1 || res.Failed != 1 || len(res.Connections) != 251 || res.ReportPages != 1 {
		t.Fatalf("got %+v, want 249 restored, 1 already present, 1 failed of 251 distinct tokens", summary(res))
	}
	ids := res.NewConnectionIDs()
	for _, o := range res.Connections {
		switch o.ConnectionID {
		case "r0001":
			if o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrValidation || o.NewConnectionID != "" {
				t.Errorf("got %+v, want the revoked token failed ValidationError", o)
			}
		case "keep":
			if o.Outcome != ac.OutcomeAlreadyPresent || ids["keep"] != "keep" || o.Attempts != 0 {
				t.Errorf("got %+v, want already_present as itself with no POST", o)
			}
		default:
			if o.Outcome != ac.OutcomeRestored || !em.HasConnection("a1", o.NewConnectionID) || o.Attempts != 1 {
				t.Errorf("got %+v, want restored as a connection the agent has, after one POST", o)
			}
		}
	}
	wantOnePerToken(t, em, append(entries[:1], entries[2:]...))
}

// POSTs whose answers are lost after they created (503, reset, a hang past the timeout) or before
// (503 unserved): every entry ends restored, with one connection per token.
func TestRestore_LostAnswersLeaveOneConnectionPerToken(t *testing.T) {
	env, em := newRestoreEnv(t)
	em.InjectNext(emulator.Fault{Served: true, Status: http.StatusServiceUnavailable, Method: "POST", Count: 15})
	em.InjectNext(emulator.Fault{Served: true, Reset: true, Method: "POST", Count: 10})
	em.InjectNext(emulator.Fault{Served: true, Hang: true, Method: "POST", Count: 3})
	em.InjectNext(emulator.Fault{Status: http.StatusBadGateway, Method: "POST", Count: 10})
	entries := snapshots("l", 60)
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: entries, Concurrency: 10})
	res := restoreResult(t, env)
	if res.Restored != 60 || res.Failed != 0 {
		t.Fatalf("got %+v, want all 60 restored", summary(res))
	}
	if st := em.Stats(); st.Injected != 38 {
		t.Errorf("got %d injected faults, want all 38 taken", st.Injected)
	}
	wantOnePerToken(t, em, entries)
	if n := len(em.TokenConnections("a1")); n != 60 {
		t.Errorf("got %d connections, want 60", n)
	}
}

func TestRestore_InvalidInput(t *testing.T) {
	env, _ := newRestoreEnv(t)
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1",
		Connections: []ac.ConnectionSnapshot{{ConnectionID: "c1"}}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ac.ErrInvalidRequest {
		t.Errorf("got %v, want InvalidRequest", err)
	}
}

func TestRestore_RefusedKeyStartsNothingMore(t *testing.T) {
	env, em := newRestoreEnv(t)
	em.InjectNext(emulator.Fault{Status: http.StatusUnauthorized, Method: "POST"})
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: snapshots("u", 30), Concurrency: 1})
	res := restoreResult(t, env)
	if res.StopReason != stopRestoreRefused || res.Failed != 1 || res.Restored != 0 || res.Skipped != 29 {
		t.Errorf("got %+v, want stopped after the refused POST with the rest skipped", summary(res))
	}
	if n := len(em.TokenConnections("a1")); n != 0 {
		t.Errorf("got %d connections, want none", n)
	}
}

// fakeRestoreBatch restores every entry after a while, counting what it was sent.
func fakeRestoreBatch(sent map[string]int) func(context.Context, activities.RestoreConnectionsInput) (activities.RestoreConnectionsResult, error) {
	return func(_ context.Context, in activities.RestoreConnectionsInput) (activities.RestoreConnectionsResult, error) {
		var res activities.RestoreConnectionsResult
		for _, it := range in.Items {
			sent[it.Entry.OAuthTokenID]++
			res.Done = append(res.Done, ac.RestoreOutcome{ConnectionID: it.Entry.ConnectionID, OAuthTokenID: it.Entry.OAuthTokenID,
				Outcome: ac.OutcomeRestored, NewConnectionID: "new-" + it.Entry.ConnectionID, Attempts: 1})
		}
		return res, nil
	}
}

func TestRestore_TemporalCancelEndsCanceledWithTheResult(t *testing.T) {
	env, _ := newRestoreEnv(t)
	sent := map[string]int{}
	env.OnActivity(ac.RestoreConnectionsActivityType, mock.Anything, mock.Anything).Return(fakeRestoreBatch(sent)).After(10 * time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 15*time.Second)
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: snapshots("x", 200), Concurrency: 10})
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
	res := restoreResult(t, env)
	// The first batch restored 50; the second was cut off mid-way (its POSTs may have created
	// connections: Interrupted); the rest was never sent.
	if !res.Cancelled || res.StopReason != stopCancelled || res.Restored != 50 || res.Failed != 50 || res.Skipped != 100 || res.Total != 200 {
		t.Errorf("got %+v, want cancelled with 50 restored, 50 interrupted and 100 skipped", summary(res))
	}
	for _, o := range res.Connections {
		if o.Outcome == ac.OutcomeFailed && o.FailureType != ac.ErrInterrupted {
			t.Errorf("got %+v, want Interrupted", o)
		}
	}
	for _, e := range snapshots("x", 200)[100:] {
		if sent[e.OAuthTokenID] != 0 {
			t.Errorf("got %s sent after the cancel, want nothing started after it", e.ConnectionID)
		}
	}
}

func TestRestore_CancelUpdateAndProgressQuery(t *testing.T) {
	env, _ := newRestoreEnv(t)
	sent := map[string]int{}
	env.OnActivity(ac.RestoreConnectionsActivityType, mock.Anything, mock.Anything).Return(fakeRestoreBatch(sent)).After(10 * time.Second)
	var mid ac.TeardownProgress
	var digest string
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ac.ProgressQuery)
		if err != nil || v.Get(&mid) != nil {
			t.Errorf("progress query: %v", err)
		}
		if v, err := env.QueryWorkflow(ac.InputDigestQuery); err != nil || v.Get(&digest) != nil {
			t.Errorf("input digest query: %v", err)
		}
		env.UpdateWorkflow(ac.CancelUpdate, "cancel-1", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("cancel rejected: %v", err) }, OnComplete: func(any, error) {},
		})
	}, 15*time.Second)
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: snapshots("x", 120), Concurrency: 10})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want the result", err)
	}
	res := restoreResult(t, env)
	if mid.Total != 120 || mid.Done != 50 || mid.Remaining != 70 || !mid.Listed {
		t.Errorf("got progress %+v mid-way, want 50 of 120 done", mid)
	}
	if want := ac.RestoreInputDigest(snapshots("x", 120)); digest != want || res.InputDigest != want {
		t.Errorf("got input digest %q from the query and %q in the result, want %q", digest, res.InputDigest, want)
	}
	if !res.Cancelled || res.Restored != 50 || res.Failed != 50 || res.Skipped != 20 {
		t.Errorf("got %+v, want cancelled with 50 restored, 50 interrupted and 20 skipped", summary(res))
	}
	v, err := env.QueryWorkflow(ac.ReportQuery, 0)
	var page ac.RestoreReportPage
	if err != nil || v.Get(&page) != nil || page.Pages != 1 || len(page.Connections) != 120 {
		t.Errorf("got report page %+v (%v), want one page of 120", page, err)
	}
}

// A batch lost as a whole (its worker gone after it heartbeated) keeps what it finished; the rest
// go to another round marked maybe sent, so the next batch checks for them before any POST.
func TestRestore_LostBatchKeepsWhatItFinishedAndMarksTheRestMaybeSent(t *testing.T) {
	env, _ := newRestoreEnv(t)
	var second []activities.RestoreItem
	calls := 0
	env.OnActivity(ac.RestoreConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.RestoreConnectionsInput) (activities.RestoreConnectionsResult, error) {
			calls++
			if in.Items[0].Entry.OAuthTokenID == "tok-z0000" { // every attempt of the first batch
				return activities.RestoreConnectionsResult{}, temporal.NewHeartbeatTimeoutError(activities.RestoreConnectionsProgress{
					Requests: map[string]int{"tok-z0000": 1, "tok-z0001": 1},
					Done:     []ac.RestoreOutcome{{ConnectionID: "z0000", OAuthTokenID: "tok-z0000", Outcome: ac.OutcomeRestored, NewConnectionID: "n0", Attempts: 1}},
				})
			}
			second = in.Items
			return fakeRestoreBatch(map[string]int{})(ctx, in)
		})
	env.ExecuteWorkflow(ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: snapshots("z", 3), Concurrency: 1})
	res := restoreResult(t, env)
	if res.Restored != 3 || len(second) != 2 || calls < 3 {
		t.Fatalf("got %+v and a second batch of %d, want 3 restored and z0001, z0002 sent again", summary(res), len(second))
	}
	for _, it := range second {
		if !it.MaybeSent || (it.Entry.OAuthTokenID == "tok-z0001" && it.PriorRequests != 1) {
			t.Errorf("got %+v in the second batch, want it maybe sent with its count", it)
		}
	}
	if ids := res.NewConnectionIDs(); ids["z0000"] != "n0" {
		t.Errorf("got %v, want z0000 kept from the lost batch's heartbeat", ids)
	}
}
