package workflows

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(RemoveConnectionWorkflow)
	env.RegisterActivity(&activities.Activities{})
	return env
}

func boolPtr(b bool) *bool { return &b }

// workflowError returns the ApplicationError a finished workflow failed with.
func workflowError(t *testing.T, env *testsuite.TestWorkflowEnvironment) *temporal.ApplicationError {
	t.Helper()
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("got %v, want an ApplicationError", err)
	}
	return appErr
}

func TestRemoveConnectionWorkflow_Success(t *testing.T) {
	env := newEnv(t)
	var got activities.RemoveConnectionInput
	env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
			got = in
			return ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1}, nil
		}).Once()
	env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want success", err)
	}
	var res ac.RemoveConnectionResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	want := ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}
	if !got.MissingOK {
		t.Error("got missing_ok false at the activity, want the default true")
	}
	env.AssertExpectations(t)
}

func TestRemoveConnectionWorkflow_MissingOKFalsePassesThrough(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, activities.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: false}).
		Return(ac.RemoveConnectionResult{Outcome: ac.OutcomeRemoved, Attempts: 1}, nil).Once()
	env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: boolPtr(false)})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want success", err)
	}
	env.AssertExpectations(t)
}

func TestRemoveConnectionWorkflow_NonRetryableTypesStopAtOneAttempt(t *testing.T) {
	for _, typ := range ac.NonRetryableErrorTypes() {
		t.Run(typ, func(t *testing.T) {
			env := newEnv(t)
			calls := 0
			// Returned as retryable on purpose: the policy's NonRetryableErrorTypes must stop it.
			env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
				func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
					calls++
					return ac.RemoveConnectionResult{}, temporal.NewApplicationError("refused", typ)
				})
			env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
			appErr := workflowError(t, env)
			if appErr.Type() != typ {
				t.Errorf("got type %q, want %q", appErr.Type(), typ)
			}
			if calls != 1 {
				t.Errorf("got %d attempts, want 1", calls)
			}
		})
	}
}

func TestRemoveConnectionWorkflow_RetryableTypesRetriedUpToTheBound(t *testing.T) {
	for _, typ := range ac.RetryableErrorTypes() {
		t.Run(typ, func(t *testing.T) {
			env := newEnv(t)
			calls := 0
			env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
				func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
					calls++
					return ac.RemoveConnectionResult{}, temporal.NewApplicationError("transient", typ)
				})
			env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
			appErr := workflowError(t, env)
			if appErr.Type() != typ {
				t.Errorf("got type %q, want %q", appErr.Type(), typ)
			}
			if calls != DefaultMaximumAttempts {
				t.Errorf("got %d attempts, want %d", calls, DefaultMaximumAttempts)
			}
		})
	}
}

func TestRemoveConnectionWorkflow_TransientThenSuccess(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
			calls++
			if calls < 3 {
				return ac.RemoveConnectionResult{}, temporal.NewApplicationError("503", ac.ErrServerError)
			}
			return ac.RemoveConnectionResult{Outcome: ac.OutcomeRemoved, Attempts: 3}, nil
		})
	env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got %v, want success", err)
	}
	if calls != 3 {
		t.Errorf("got %d attempts, want 3", calls)
	}
}

func TestRemoveConnectionWorkflow_OverridesApply(t *testing.T) {
	env := newEnv(t)
	calls := 0
	var info activity.Info
	env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
			calls++
			info = activity.GetInfo(ctx)
			return ac.RemoveConnectionResult{}, temporal.NewApplicationError("503", ac.ErrServerError)
		})
	env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{
		AgentID: "a1", ConnectionID: "c1",
		Retry: &ac.RetryOverrides{MaximumAttempts: 3, StartToCloseTimeout: ac.Duration(45 * time.Second)},
	})
	if appErr := workflowError(t, env); appErr.Type() != ac.ErrServerError {
		t.Errorf("got type %q, want %q", appErr.Type(), ac.ErrServerError)
	}
	if calls != 3 {
		t.Errorf("got %d attempts, want the overridden 3", calls)
	}
	if info.StartToCloseTimeout != 45*time.Second {
		t.Errorf("got start-to-close %s, want 45s", info.StartToCloseTimeout)
	}
	if info.HeartbeatTimeout != DefaultHeartbeatTimeout {
		t.Errorf("got heartbeat timeout %s, want the default %s", info.HeartbeatTimeout, DefaultHeartbeatTimeout)
	}
}

func TestRemoveConnectionActivityOptions(t *testing.T) {
	opts := RemoveConnectionActivityOptions(nil)
	if opts.RetryPolicy.MaximumAttempts != DefaultMaximumAttempts || opts.StartToCloseTimeout != DefaultStartToCloseTimeout || opts.HeartbeatTimeout == 0 {
		t.Errorf("got %+v, want the documented defaults", opts)
	}
	opts = RemoveConnectionActivityOptions(&ac.RetryOverrides{
		InitialInterval: ac.Duration(5 * time.Second), MaximumInterval: ac.Duration(time.Second),
		BackoffCoefficient: 3, ScheduleToCloseTimeout: ac.Duration(time.Hour),
	})
	p := opts.RetryPolicy
	if p.InitialInterval != 5*time.Second || p.MaximumInterval != 5*time.Second || p.BackoffCoefficient != 3 || opts.ScheduleToCloseTimeout != time.Hour {
		t.Errorf("got %+v / %s, want overrides applied and max interval raised to the initial one", p, opts.ScheduleToCloseTimeout)
	}
	if len(p.NonRetryableErrorTypes) != len(ac.NonRetryableErrorTypes()) {
		t.Errorf("got non-retryable types %v, want %v", p.NonRetryableErrorTypes, ac.NonRetryableErrorTypes())
	}
}

func TestRemoveConnectionWorkflow_InvalidInputFailsWithoutActivity(t *testing.T) {
	inputs := []ac.RemoveConnectionInput{
		{AgentID: "", ConnectionID: "c1"},
		{AgentID: "a1", ConnectionID: "../x"},
		{AgentID: "a1", ConnectionID: "c1", Retry: &ac.RetryOverrides{MaximumAttempts: -1}},
	}
	for _, in := range inputs {
		env := newEnv(t)
		called := false
		env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
			func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
				called = true
				return ac.RemoveConnectionResult{}, nil
			}).Maybe()
		env.ExecuteWorkflow(RemoveConnectionWorkflow, in)
		appErr := workflowError(t, env)
		if appErr.Type() != ac.ErrInvalidRequest || !appErr.NonRetryable() {
			t.Errorf("%+v: got type %q non-retryable %t, want %q non-retryable", in, appErr.Type(), appErr.NonRetryable(), ac.ErrInvalidRequest)
		}
		if called {
			t.Errorf("%+v: got the activity called, want no call", in)
		}
	}
}

func TestRemoveConnectionWorkflow_TakesTheTeardownsOutcome(t *testing.T) {
	removed := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}
	skipped := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeSkipped}
	failed := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrValidation, Message: "locked"}
	absentFirst := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1}
	absentLater := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2}
	notFound := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrNotFound, Attempts: 1}
	interrupted := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrInterrupted, Attempts: 1}
	strict := false
	tests := []struct {
		name          string
		missingOK     *bool
		claim         ac.ConnectionClaim
		awaited       *ac.ConnectionClaim // AwaitTeardownOutcome's answer, when it is called
		wantOutcome   string
		wantType      string
		wantOwnDelete bool
	}{
		// Each caller's missing_ok decides what an absent connection means to it.
		{name: "teardown found it absent at once: NotFound for missing_ok false", missingOK: &strict,
			claim: ac.ConnectionClaim{Claimed: true, Outcome: &absentFirst}, wantType: ac.ErrNotFound},
		{name: "teardown found it absent at once: already_absent for missing_ok true",
			claim: ac.ConnectionClaim{Claimed: true, Outcome: &absentFirst}, wantOutcome: ac.OutcomeAlreadyAbsent},
		{name: "teardown found it absent after its own request: already_absent even for missing_ok false", missingOK: &strict,
			claim: ac.ConnectionClaim{Claimed: true, Outcome: &absentLater}, wantOutcome: ac.OutcomeAlreadyAbsent},
		{name: "teardown failed it NotFound: already_absent for missing_ok true",
			claim: ac.ConnectionClaim{Claimed: true, Outcome: &notFound}, wantOutcome: ac.OutcomeAlreadyAbsent},
		{name: "teardown failed it NotFound: NotFound for missing_ok false", missingOK: &strict,
			claim: ac.ConnectionClaim{Claimed: true, Outcome: &notFound}, wantType: ac.ErrNotFound},
		{name: "not claimed: removes itself", claim: ac.ConnectionClaim{}, wantOutcome: ac.OutcomeRemoved, wantOwnDelete: true},
		{name: "claimed and done: takes the outcome", claim: ac.ConnectionClaim{Claimed: true, Outcome: &removed}, wantOutcome: ac.OutcomeRemoved},
		{name: "claimed, waits, then done", claim: ac.ConnectionClaim{Claimed: true}, awaited: &ac.ConnectionClaim{Claimed: true, Outcome: &removed}, wantOutcome: ac.OutcomeRemoved},
		{name: "claimed, teardown ends without it: removes itself", claim: ac.ConnectionClaim{Claimed: true}, awaited: &ac.ConnectionClaim{}, wantOutcome: ac.OutcomeRemoved, wantOwnDelete: true},
		{name: "claimed, teardown skipped it: removes itself", claim: ac.ConnectionClaim{Claimed: true, Outcome: &skipped}, wantOutcome: ac.OutcomeRemoved, wantOwnDelete: true},
		{name: "claimed, teardown failed it: fails with its type", claim: ac.ConnectionClaim{Claimed: true, Outcome: &failed}, wantType: ac.ErrValidation},
		{name: "claimed, teardown stopped without an answer: removes itself", claim: ac.ConnectionClaim{Claimed: true, Outcome: &interrupted}, wantOutcome: ac.OutcomeRemoved, wantOwnDelete: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			env.OnActivity("CheckTeardownClaim", mock.Anything, mock.Anything).Return(tt.claim, nil).Once()
			if tt.awaited != nil {
				env.OnActivity("AwaitTeardownOutcome", mock.Anything, mock.Anything).Return(*tt.awaited, nil).Once()
			}
			deleted := false
			env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
				func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
					deleted = true
					return ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}, nil
				}).Maybe()
			var states []string
			env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) {
				v, err := env.QueryWorkflow(ac.RemovalStateQuery)
				if err != nil {
					t.Errorf("query: %v", err)
					return
				}
				var s ac.RemovalState
				_ = v.Get(&s)
				states = append(states, s.State)
			})
			env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: tt.missingOK})
			if deleted != tt.wantOwnDelete {
				t.Errorf("got own DELETE %t, want %t", deleted, tt.wantOwnDelete)
			}
			if tt.wantType != "" {
				if appErr := workflowError(t, env); appErr.Type() != tt.wantType {
					t.Errorf("got type %s, want %s", appErr.Type(), tt.wantType)
				}
				return
			}
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			var res ac.RemoveConnectionResult
			_ = env.GetWorkflowResult(&res)
			if res.Outcome != tt.wantOutcome {
				t.Errorf("got outcome %q, want %q", res.Outcome, tt.wantOutcome)
			}
			if tt.wantOwnDelete && (len(states) == 0 || states[len(states)-1] != ac.RemovalRemoving) {
				t.Errorf("got states %v when activities started, want removing before the DELETE", states)
			}
			if tt.awaited != nil && (len(states) == 0 || states[0] != ac.RemovalWaitingForTeardown) {
				t.Errorf("got states %v, want waiting_for_teardown while it waits", states)
			}
		})
	}
}

// With snapshot: true the removal lists the agent first (only its connection, with snapshots)
// and returns the snapshot with its result; without it, it lists nothing.
func TestRemoveConnectionWorkflow_SnapshotListsFirstAndReturnsIt(t *testing.T) {
	for _, withSnapshot := range []bool{true, false} {
		t.Run(fmt.Sprint(withSnapshot), func(t *testing.T) {
			env := newEnv(t)
			var steps []string
			var asked activities.ListConnectionsInput
			env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
					steps, asked = append(steps, "list"), in
					return activities.ListConnectionsResult{ConnectionIDs: []string{"c1"}, Snapshots: []ac.ConnectionSnapshot{
						{ConnectionID: "c1", OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo"}}}}, nil
				})
			env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
				func(_ context.Context, in activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
					steps = append(steps, "delete")
					return ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1}, nil
				})
			env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", Snapshot: withSnapshot})
			var res ac.RemoveConnectionResult
			if err := env.GetWorkflowResult(&res); err != nil {
				t.Fatal(err)
			}
			want := ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}
			wantSteps := []string{"delete"}
			if withSnapshot {
				want.OAuthTokenID, want.ProviderID, want.Scopes = "t1", "github", []string{"repo"}
				wantSteps = []string{"list", "delete"}
				if !asked.Snapshot || !slices.Equal(asked.Only, []string{"c1"}) {
					t.Errorf("got list input %+v, want snapshots of c1 only", asked)
				}
			}
			if !reflect.DeepEqual(res, want) || !slices.Equal(steps, wantSteps) {
				t.Errorf("got %+v after %v, want %+v after %v", res, steps, want, wantSteps)
			}
		})
	}
}

// A snapshot removal whose list fails for good fails with the list's type and sends no DELETE.
func TestRemoveConnectionWorkflow_SnapshotOfAMissingAgentFails(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		activities.ListConnectionsResult{}, temporal.NewNonRetryableApplicationError("control plane answered 404", ac.ErrAgentNotFound, nil))
	deletes := 0
	env.OnActivity(ac.RemoveConnectionActivityType, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
			deletes++
			return ac.RemoveConnectionResult{}, nil
		})
	env.ExecuteWorkflow(RemoveConnectionWorkflow, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", Snapshot: true})
	if got := workflowError(t, env); got.Type() != ac.ErrAgentNotFound || deletes != 0 {
		t.Errorf("got %s with %d DELETEs, want AgentNotFound and none", got.Type(), deletes)
	}
}
