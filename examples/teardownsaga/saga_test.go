package teardownsaga_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/examples/teardownsaga"
)

// fakeTeardown stands in for RemoveAgentConnectionsWorkflow (tested in workflows/) under its
// registered name, and returns a canned result. It records the inputs it was started with.
type fakeTeardown struct {
	mu     sync.Mutex
	result ac.RemoveAgentConnectionsResult
	delay  time.Duration // on the test environment's clock
	// stopped makes it end Canceled with result as the details, as a cancelled teardown does.
	stopped bool
	inputs  []ac.RemoveAgentConnectionsInput
	ids     []string // workflow IDs it ran under
}

func (f *fakeTeardown) run(ctx workflow.Context, in ac.RemoveAgentConnectionsInput) (ac.RemoveAgentConnectionsResult, error) {
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.ids = append(f.ids, workflow.GetInfo(ctx).WorkflowExecution.ID)
	res := f.result
	f.mu.Unlock()
	if f.delay > 0 {
		if err := workflow.Sleep(ctx, f.delay); err != nil {
			return ac.RemoveAgentConnectionsResult{}, err
		}
	}
	if f.stopped {
		res.Cancelled = true
		return res, temporal.NewCanceledError(res)
	}
	return res, nil
}

// fakeRestore stands in for RestoreAgentConnectionsWorkflow: each entry is restored as "new-" and
// its old ID, except the tokens in failed. It records its inputs and workflow IDs.
type fakeRestore struct {
	mu     sync.Mutex
	failed map[string]bool // oauth_token_id -> fails (a revoked token)
	// stopAfter, when above 0, makes it end Canceled after that many entries, with the partial
	// result as the details, as a restore cancelled while it runs does.
	stopAfter int
	// otherTokens makes its result name other tokens (input_digest), as a restore someone else
	// started would.
	otherTokens bool
	inputs      []ac.RestoreAgentConnectionsInput
	ids         []string
}

func (f *fakeRestore) run(ctx workflow.Context, in ac.RestoreAgentConnectionsInput) (ac.RestoreAgentConnectionsResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, in)
	f.ids = append(f.ids, workflow.GetInfo(ctx).WorkflowExecution.ID)
	res := ac.RestoreAgentConnectionsResult{AgentID: in.AgentID, Total: len(in.Connections), Runs: 1, ReportPages: 1,
		InputDigest: ac.RestoreInputDigest(in.Connections)}
	if f.otherTokens {
		res.InputDigest = ac.RestoreInputDigest([]ac.ConnectionSnapshot{{OAuthTokenID: "someone-elses"}})
	}
	for i, e := range in.Connections {
		if f.stopAfter > 0 && i == f.stopAfter {
			res.Skipped = len(in.Connections) - i
			res.Cancelled = true
			return res, temporal.NewCanceledError(res)
		}
		o := ac.RestoreOutcome{ConnectionID: e.ConnectionID, OAuthTokenID: e.OAuthTokenID, Outcome: ac.OutcomeRestored, NewConnectionID: "new-" + e.ConnectionID, Attempts: 1}
		if f.failed[e.OAuthTokenID] {
			o = ac.RestoreOutcome{ConnectionID: e.ConnectionID, OAuthTokenID: e.OAuthTokenID, Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrValidation, Message: "revoked"}
			res.Failed++
		} else {
			res.Restored++
		}
		res.Connections = append(res.Connections, o)
	}
	return res, nil
}

func quietLogger() tlog.Logger { return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

// removedAll is a teardown in which every connection went.
func removedAll(agentID string) ac.RemoveAgentConnectionsResult {
	return ac.RemoveAgentConnectionsResult{AgentID: agentID, Total: 3, Removed: 2, AlreadyAbsent: 1, Verified: true, Connections: []ac.ConnectionOutcome{
		{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1, OAuthTokenID: "tok-c1", ProviderID: "github", Scopes: []string{"repo"}},
		{ConnectionID: "c2", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1, OAuthTokenID: "tok-c2"},
		{ConnectionID: "c3", Outcome: ac.OutcomeRemoved, Attempts: 2, OAuthTokenID: "tok-c3"},
	}}
}

// sagaRun is one saga run in Temporal's test environment, with what it touched.
type sagaRun struct {
	env        *testsuite.TestWorkflowEnvironment
	platform   *teardownsaga.StandInPlatform
	teardown   *fakeTeardown
	restore    *fakeRestore
	activities []string // every activity started, by name
	children   []string // every child workflow started, by type
}

func newSagaRun(t *testing.T, teardown *fakeTeardown) *sagaRun {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(quietLogger())
	r := &sagaRun{env: suite.NewTestWorkflowEnvironment(), platform: teardownsaga.NewStandInPlatform("dep-1"), teardown: teardown, restore: &fakeRestore{}}
	r.env.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
	r.env.RegisterWorkflowWithOptions(teardown.run, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	r.env.RegisterWorkflowWithOptions(r.restore.run, workflow.RegisterOptions{Name: ac.RestoreAgentConnectionsWorkflowType})
	r.platform.Register(r.env)
	// Everything the saga starts is recorded, so a test can say nothing else ran.
	r.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		r.activities = append(r.activities, info.ActivityType.Name)
	})
	r.env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		r.children = append(r.children, info.WorkflowType.Name)
	})
	return r
}

func (r *sagaRun) execute(in teardownsaga.SagaInput) {
	r.env.ExecuteWorkflow(teardownsaga.AgentTeardownSaga, in)
}

// failure returns the saga's error and the SagaResult in its details.
func (r *sagaRun) failure(t *testing.T) (*temporal.ApplicationError, teardownsaga.SagaResult) {
	t.Helper()
	if !r.env.IsWorkflowCompleted() {
		t.Fatal("saga did not complete")
	}
	var appErr *temporal.ApplicationError
	if err := r.env.GetWorkflowError(); !errors.As(err, &appErr) {
		t.Fatalf("got error %v, want an ApplicationError", err)
	}
	var res teardownsaga.SagaResult
	if err := appErr.Details(&res); err != nil {
		t.Fatalf("details of %v: %v", appErr, err)
	}
	return appErr, res
}

func TestSaga_HappyPath(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1", TeardownTaskQueue: "eu-connections"})
	if err := r.env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want success", err)
	}
	var res teardownsaga.SagaResult
	if err := r.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.FailedStep != "" || !res.TeardownFinished || !res.TeardownVerified || res.ConnectionsRemoved != 2 || res.ConnectionsAlreadyAbsent != 1 ||
		!res.DeploymentDeleted || len(res.Compensated) != 0 || len(res.NotRemoved) != 0 {
		t.Errorf("got %+v, want 2 removed, 1 already absent, verified, the deployment deleted, nothing compensated", res)
	}
	wantCalls := []string{"DisableAgent a1", "DeleteDeployment dep-1"}
	if got := r.platform.Calls(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls: got %q, want %q", got, wantCalls)
	}
	if r.platform.AgentEnabled("a1") || r.platform.DeploymentExists("dep-1") {
		t.Error("got the agent enabled or the deployment still there, want it disabled and deleted")
	}
	if !slices.Equal(r.teardown.ids, []string{"remove-agent-connections/a1"}) {
		t.Errorf("teardown workflow IDs: got %q, want the contract's ID once", r.teardown.ids)
	}
	if len(r.teardown.inputs) != 1 || r.teardown.inputs[0].AgentID != "a1" || len(r.teardown.inputs[0].ConnectionIDs) != 0 {
		t.Errorf("teardown inputs: got %+v, want one for agent a1 with every connection", r.teardown.inputs)
	}
}

func TestSaga_TeardownLeavesAConnection_FailsRestoresAndReEnables(t *testing.T) {
	tests := []struct {
		name    string
		outcome ac.ConnectionOutcome
		count   func(*ac.RemoveAgentConnectionsResult)
	}{
		{"failed", ac.ConnectionOutcome{ConnectionID: "c9", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrValidation, Message: "locked"},
			func(r *ac.RemoveAgentConnectionsResult) { r.Failed++ }},
		{"remained", ac.ConnectionOutcome{ConnectionID: "c9", Outcome: ac.OutcomeRemained},
			func(r *ac.RemoveAgentConnectionsResult) { r.Remained++ }},
		{"reappeared", ac.ConnectionOutcome{ConnectionID: "c9", Outcome: ac.OutcomeReappeared},
			func(r *ac.RemoveAgentConnectionsResult) { r.Reappeared++ }},
		{"skipped", ac.ConnectionOutcome{ConnectionID: "c9", Outcome: ac.OutcomeSkipped},
			func(r *ac.RemoveAgentConnectionsResult) { r.Skipped++ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := removedAll("a1")
			result.Total++
			tt.count(&result)
			result.Connections = append(result.Connections, tt.outcome)
			r := newSagaRun(t, &fakeTeardown{result: result})
			r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

			appErr, res := r.failure(t)
			if appErr.Type() != teardownsaga.ErrSagaFailed {
				t.Errorf("error type: got %q, want %q", appErr.Type(), teardownsaga.ErrSagaFailed)
			}
			var cause *temporal.ApplicationError
			if !errors.As(appErr.Unwrap(), &cause) || cause.Type() != teardownsaga.ErrConnectionsNotRemoved {
				t.Errorf("cause: got %v, want a %s", appErr.Unwrap(), teardownsaga.ErrConnectionsNotRemoved)
			}
			if !strings.Contains(appErr.Error(), "2 connections removed, 2 restored, 0 not restored") {
				t.Errorf("message: got %q, want it to say the removals were restored", appErr.Error())
			}
			if res.FailedStep != teardownsaga.StepRemoveConnections || !res.TeardownFinished || res.ConnectionsRemoved != 2 ||
				res.DeploymentDeleted || len(res.NotRemoved) != 1 || !reflect.DeepEqual(res.NotRemoved[0], tt.outcome) {
				t.Errorf("got %+v, want failed at remove_connections, 2 removed reported, c9 not removed, the deployment kept", res)
			}
			if want := []string{teardownsaga.RestoreCompensation, teardownsaga.EnableAgentActivity}; !slices.Equal(res.Compensated, want) || len(res.CompensationFailures) != 0 {
				t.Errorf("compensated: got %q (failures %q), want %q", res.Compensated, res.CompensationFailures, want)
			}
			if want := map[string]string{"c1": "new-c1", "c3": "new-c3"}; res.ConnectionsRestored != 2 || !reflect.DeepEqual(res.RestoredConnectionIDs, want) {
				t.Errorf("got %d restored %v, want %v", res.ConnectionsRestored, res.RestoredConnectionIDs, want)
			}
			// DeleteDeployment never ran.
			if want := []string{"DisableAgent", "EnableAgent"}; !slices.Equal(r.activities, want) {
				t.Errorf("activities: got %q, want %q", r.activities, want)
			}
			if want := []string{ac.RemoveAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsWorkflowType}; !slices.Equal(r.children, want) {
				t.Errorf("child workflows: got %q, want %q", r.children, want)
			}
			if !r.platform.AgentEnabled("a1") || !r.platform.DeploymentExists("dep-1") {
				t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
			}
		})
	}
}

func TestSaga_DeleteDeploymentFails_RestoresTheRemovedThenReEnables(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
	r.platform.FailDeleteDeployment(errors.New("deployment is locked"))
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1", TeardownTaskQueue: "eu-connections"})

	appErr, res := r.failure(t)
	if appErr.Type() != teardownsaga.ErrSagaFailed || !strings.Contains(appErr.Error(), "deployment is locked") {
		t.Errorf("got %q of type %q, want %s naming the platform's failure", appErr.Error(), appErr.Type(), teardownsaga.ErrSagaFailed)
	}
	if res.FailedStep != teardownsaga.StepDeleteDeployment || res.ConnectionsRemoved != 2 || res.ConnectionsAlreadyAbsent != 1 || res.DeploymentDeleted {
		t.Errorf("got %+v, want failed at delete_deployment with the 2 removals reported", res)
	}
	// The restore runs first, then EnableAgent: the agent takes work again with its connections.
	if want := []string{teardownsaga.RestoreCompensation, teardownsaga.EnableAgentActivity}; !slices.Equal(res.Compensated, want) {
		t.Errorf("compensated: got %q, want %q", res.Compensated, want)
	}
	if want := []string{"DisableAgent", "DeleteDeployment", "EnableAgent"}; !slices.Equal(r.activities, want) {
		t.Errorf("activities: got %q, want %q", r.activities, want)
	}
	if want := []string{ac.RemoveAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsWorkflowType}; !slices.Equal(r.children, want) {
		t.Errorf("child workflows: got %q, want %q", r.children, want)
	}
	// The restore gets the removed entries with their snapshots, under the contract's ID.
	wantIn := ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: []ac.ConnectionSnapshot{
		{ConnectionID: "c1", OAuthTokenID: "tok-c1", ProviderID: "github", Scopes: []string{"repo"}},
		{ConnectionID: "c3", OAuthTokenID: "tok-c3"},
	}}
	if len(r.restore.inputs) != 1 || !reflect.DeepEqual(r.restore.inputs[0], wantIn) || !slices.Equal(r.restore.ids, []string{"restore-agent-connections/a1"}) {
		t.Errorf("restore: got %+v under %q, want %+v under restore-agent-connections/a1", r.restore.inputs, r.restore.ids, wantIn)
	}
	if want := map[string]string{"c1": "new-c1", "c3": "new-c3"}; res.ConnectionsRestored != 2 || res.ConnectionsNotRestored != 0 || !reflect.DeepEqual(res.RestoredConnectionIDs, want) {
		t.Errorf("got %d restored, %d not, IDs %v; want 2 restored as %v", res.ConnectionsRestored, res.ConnectionsNotRestored, res.RestoredConnectionIDs, want)
	}
	if !r.platform.AgentEnabled("a1") || !r.platform.DeploymentExists("dep-1") {
		t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
	}
}

func TestSaga_DisableAgentFails_TeardownNeverStarts(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
	r.env.OnActivity(teardownsaga.DisableAgentActivity, mock.Anything, mock.Anything).
		Return(temporal.NewNonRetryableApplicationError("registry refused", "Refused", nil))
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	_, res := r.failure(t)
	if res.FailedStep != teardownsaga.StepDisableAgent || res.TeardownFinished || res.ConnectionsRemoved != 0 {
		t.Errorf("got %+v, want failed at disable_agent before any removal", res)
	}
	// EnableAgent runs even so: a DisableAgent that failed may still have disabled the agent.
	if !slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) {
		t.Errorf("compensated: got %q, want EnableAgent", res.Compensated)
	}
	if len(r.children) != 0 {
		t.Errorf("child workflows: got %q, want none", r.children)
	}
}

func TestSaga_Cancelled_CompensationStillRuns(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1"), delay: time.Hour})
	r.env.RegisterDelayedCallback(r.env.CancelWorkflow, time.Minute)
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	if !r.env.IsWorkflowCompleted() {
		t.Fatal("saga did not complete")
	}
	var canceled *temporal.CanceledError
	if err := r.env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("got %v, want a cancellation", err)
	}
	var res teardownsaga.SagaResult
	if err := canceled.Details(&res); err != nil {
		t.Fatalf("details: %v", err)
	}
	if res.FailedStep != teardownsaga.StepRemoveConnections || res.TeardownFinished ||
		!slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) {
		t.Errorf("got %+v, want stopped at remove_connections and EnableAgent run despite the cancellation", res)
	}
	if !r.platform.AgentEnabled("a1") || !r.platform.DeploymentExists("dep-1") {
		t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
	}
}

func TestSaga_RefusesBadInputBeforeAnyStep(t *testing.T) {
	for _, in := range []teardownsaga.SagaInput{
		{AgentID: "a/1", DeploymentID: "dep-1"},
		{AgentID: "a1"},
	} {
		r := newSagaRun(t, &fakeTeardown{})
		r.execute(in)
		var appErr *temporal.ApplicationError
		if err := r.env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ac.ErrInvalidRequest {
			t.Errorf("%+v: got %v, want an %s", in, err, ac.ErrInvalidRequest)
		}
		if len(r.activities) != 0 || len(r.children) != 0 {
			t.Errorf("%+v: got activities %q and children %q, want nothing started", in, r.activities, r.children)
		}
	}
}

// A restore that fails for a token, and removed connections the teardown's result does not hold
// (a truncated report), fail the restore compensation with ConnectionsNotRestored; EnableAgent
// still runs.
func TestSaga_RestoreFallsShort_CompensationFailureNamesWhatIsNotBack(t *testing.T) {
	result := removedAll("a1")
	result.Total, result.Removed, result.ReportTruncated, result.ReportPages = 5, 4, true, 2
	r := newSagaRun(t, &fakeTeardown{result: result})
	r.restore.failed = map[string]bool{"tok-c3": true}
	r.platform.FailDeleteDeployment(errors.New("deployment is locked"))
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	_, res := r.failure(t)
	if res.ConnectionsRestored != 1 || res.ConnectionsNotRestored != 3 || !reflect.DeepEqual(res.RestoredConnectionIDs, map[string]string{"c1": "new-c1"}) {
		t.Errorf("got %d restored (%v), %d not; want c1 restored, 3 not (c3 failed, 2 beyond the report)", res.ConnectionsRestored, res.RestoredConnectionIDs, res.ConnectionsNotRestored)
	}
	if len(res.CompensationFailures) != 1 || !strings.HasPrefix(res.CompensationFailures[0], teardownsaga.RestoreCompensation+": ") ||
		!strings.Contains(res.CompensationFailures[0], "1 failed, 0 skipped by the restore; 2 removed but not in the teardown's result") {
		t.Errorf("compensation failures: got %q, want the restore's, naming what is not back", res.CompensationFailures)
	}
	if !slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) || !r.platform.AgentEnabled("a1") {
		t.Errorf("compensated: got %q, want EnableAgent run all the same", res.Compensated)
	}
}

// A saga that passed the teardown on a build without the restore replays as DefaultVersion of
// RestoreChangeID: it restores nothing and only re-enables the agent, as that build did.
func TestSaga_BeforeTheRestoreVersion_RestoresNothing(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
	r.env.OnGetVersion(teardownsaga.RestoreChangeID, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	r.platform.FailDeleteDeployment(errors.New("deployment is locked"))
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	appErr, res := r.failure(t)
	if !slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) || len(r.restore.inputs) != 0 || res.ConnectionsRestored != 0 {
		t.Errorf("got compensated %q and %d restores, want EnableAgent only", res.Compensated, len(r.restore.inputs))
	}
	if !strings.Contains(appErr.Error(), "2 connections removed stay removed") {
		t.Errorf("message: got %q, want it to say the removals stand", appErr.Error())
	}
}

// A teardown that stopped with an error (here Canceled, as a teardown cancelled under the saga or
// past the Nexus deadline ends) carries what it removed before it stopped: the saga fails at the
// teardown and restores those, then re-enables the agent. Before
// RestoreAfterStoppedTeardownChangeID it only re-enabled the agent.
func TestSaga_TeardownStopped_RestoresWhatItRemoved(t *testing.T) {
	partial := ac.RemoveAgentConnectionsResult{AgentID: "a1", Total: 4, Removed: 1, AlreadyAbsent: 1, Failed: 1, Skipped: 1, Connections: []ac.ConnectionOutcome{
		{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1, OAuthTokenID: "tok-c1"},
		{ConnectionID: "c2", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2, EarlierRequest: true, OAuthTokenID: "tok-c2"},
		{ConnectionID: "c3", Outcome: ac.OutcomeFailed, FailureType: ac.ErrInterrupted, Attempts: 1, OAuthTokenID: "tok-c3"},
		{ConnectionID: "c4", Outcome: ac.OutcomeSkipped, OAuthTokenID: "tok-c4"},
	}}
	for _, tt := range []struct {
		name    string
		version workflow.Version
		given   bool
		want    []string // compensations run
		restore []string // connection IDs given to the restore
	}{
		{"restores", 1, false, []string{teardownsaga.RestoreCompensation, teardownsaga.EnableAgentActivity}, []string{"c1", "c2", "c3"}},
		{"before the change", workflow.DefaultVersion, false, []string{teardownsaga.EnableAgentActivity}, nil},
		{"someone else's teardown of chosen connections", 1, true, []string{teardownsaga.EnableAgentActivity}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			result := partial
			result.ConnectionsGiven = tt.given
			r := newSagaRun(t, &fakeTeardown{result: result, stopped: true})
			r.env.OnGetVersion(teardownsaga.RestoreAfterStoppedTeardownChangeID, workflow.DefaultVersion, 1).Return(tt.version)
			r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

			_, res := r.failure(t)
			if res.FailedStep != teardownsaga.StepRemoveConnections || res.TeardownFinished || res.ConnectionsRemoved != 1 || res.DeploymentDeleted {
				t.Errorf("got %+v, want failed at remove_connections with 1 removal reported and the deployment kept", res)
			}
			if !slices.Equal(res.Compensated, tt.want) || len(res.CompensationFailures) != 0 {
				t.Errorf("compensated: got %q (failures %q), want %q", res.Compensated, res.CompensationFailures, tt.want)
			}
			var restored []string
			for _, in := range r.restore.inputs {
				for _, e := range in.Connections {
					restored = append(restored, e.ConnectionID)
				}
			}
			if !slices.Equal(restored, tt.restore) {
				t.Errorf("restore entries: got %q, want %q", restored, tt.restore)
			}
			if len(tt.restore) > 0 && (res.ConnectionsRestored != 3 || res.RestoredConnectionIDs["c2"] != "new-c2") {
				t.Errorf("got %d restored %v, want c1, c2 and c3 back", res.ConnectionsRestored, res.RestoredConnectionIDs)
			}
			if !r.platform.AgentEnabled("a1") || !r.platform.DeploymentExists("dep-1") {
				t.Error("got the agent disabled or the deployment gone, want it enabled again and the deployment kept")
			}
		})
	}
}

// A restore cancelled while it runs ends Canceled with its partial result: the saga still counts
// what came back, with the new IDs, and what did not.
func TestSaga_RestoreCancelled_KeepsWhatCameBack(t *testing.T) {
	r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
	r.restore.stopAfter = 1
	r.platform.FailDeleteDeployment(errors.New("deployment is locked"))
	r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})

	_, res := r.failure(t)
	if res.ConnectionsRestored != 1 || res.ConnectionsNotRestored != 1 || !reflect.DeepEqual(res.RestoredConnectionIDs, map[string]string{"c1": "new-c1"}) {
		t.Errorf("got %d restored (%v), %d not; want c1 back and c3 not", res.ConnectionsRestored, res.RestoredConnectionIDs, res.ConnectionsNotRestored)
	}
	if len(res.CompensationFailures) != 1 || !strings.HasPrefix(res.CompensationFailures[0], teardownsaga.RestoreCompensation+": ") {
		t.Errorf("compensation failures: got %q, want the restore's", res.CompensationFailures)
	}
	if !slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) || !r.platform.AgentEnabled("a1") {
		t.Errorf("compensated: got %q, want EnableAgent run all the same", res.Compensated)
	}
}

// The restore compensation takes the entries a request of the teardown may have removed (here one
// already absent after an earlier request, and one given up on after 5xx answers); a compensation
// that began before RestoreMayHaveBeenRemovedChangeID replays with the removed ones only.
func TestSaga_RestoresWhatTheTeardownMayHaveRemoved(t *testing.T) {
	result := removedAll("a1")
	result.Total += 2
	result.AlreadyAbsent++
	result.Failed++
	result.Connections = append(result.Connections,
		ac.ConnectionOutcome{ConnectionID: "c4", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2, EarlierRequest: true, OAuthTokenID: "tok-c4"},
		ac.ConnectionOutcome{ConnectionID: "c5", Outcome: ac.OutcomeFailed, FailureType: ac.ErrServerError, Attempts: 8, OAuthTokenID: "tok-c5"})
	for _, tt := range []struct {
		name    string
		version workflow.Version
		want    []string
	}{
		{"wider", 1, []string{"c1", "c3", "c4", "c5"}},
		{"before the change", workflow.DefaultVersion, []string{"c1", "c3"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newSagaRun(t, &fakeTeardown{result: result})
			r.env.OnGetVersion(teardownsaga.RestoreMayHaveBeenRemovedChangeID, workflow.DefaultVersion, 1).Return(tt.version)
			r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})
			_, res := r.failure(t)
			var got []string
			for _, in := range r.restore.inputs {
				for _, e := range in.Connections {
					got = append(got, e.ConnectionID)
				}
			}
			if !slices.Equal(got, tt.want) || res.ConnectionsRestored != len(tt.want) {
				t.Errorf("restore entries: got %q (%d restored), want %q", got, res.ConnectionsRestored, tt.want)
			}
		})
	}
}

// A restore result that names other tokens (the Nexus operation attached to a restore someone else
// started) is not counted as the saga's: the compensation fails with RestoreNotOfTheseConnections,
// nothing counted back, also when that restore ended cancelled with a partial result.
func TestSaga_RestoreOfOtherTokensIsNotCounted(t *testing.T) {
	for _, stopAfter := range []int{0, 1} {
		r := newSagaRun(t, &fakeTeardown{result: removedAll("a1")})
		r.restore.otherTokens, r.restore.stopAfter = true, stopAfter
		r.platform.FailDeleteDeployment(errors.New("deployment is locked"))
		r.execute(teardownsaga.SagaInput{AgentID: "a1", DeploymentID: "dep-1"})
		_, res := r.failure(t)
		if res.ConnectionsRestored != 0 || res.ConnectionsNotRestored != 2 || len(res.RestoredConnectionIDs) != 0 {
			t.Errorf("stop after %d: got %d restored (%v), %d not; want none counted back, 2 not", stopAfter, res.ConnectionsRestored, res.RestoredConnectionIDs, res.ConnectionsNotRestored)
		}
		if len(res.CompensationFailures) != 1 || !strings.Contains(res.CompensationFailures[0], teardownsaga.ErrRestoreNotOurs) {
			t.Errorf("stop after %d: compensation failures %q, want the restore's, typed %s", stopAfter, res.CompensationFailures, teardownsaga.ErrRestoreNotOurs)
		}
		if !r.platform.AgentEnabled("a1") {
			t.Errorf("stop after %d: got the agent disabled, want EnableAgent run all the same", stopAfter)
		}
	}
}
