package activities

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
)

var ref = ConnectionRef{AgentID: "agent-1", ConnectionID: "conn-1"}

func TestCheckTeardownClaim(t *testing.T) {
	removed := &ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeRemoved, Attempts: 1}
	tests := []struct {
		name   string
		coord  *fakeCoordinator
		want   ac.ConnectionClaim
		wantEr string
	}{
		{name: "no coordinator", want: ac.ConnectionClaim{}},
		{name: "no teardown running", coord: &fakeCoordinator{claims: []claimAnswer{{running: false}}}, want: ac.ConnectionClaim{}},
		{name: "teardown running, not claimed", coord: &fakeCoordinator{claims: []claimAnswer{{running: true}}}, want: ac.ConnectionClaim{}},
		{name: "teardown claims it", coord: &fakeCoordinator{claims: []claimAnswer{{running: true, claim: ac.ConnectionClaim{Claimed: true}}}}, want: ac.ConnectionClaim{Claimed: true}},
		{name: "teardown already finished it", coord: &fakeCoordinator{claims: []claimAnswer{{running: true, claim: ac.ConnectionClaim{Outcome: removed}}}}, want: ac.ConnectionClaim{Outcome: removed}},
		{name: "error is retryable", coord: &fakeCoordinator{claims: []claimAnswer{{err: errors.New("deadline exceeded")}}}, wantEr: ac.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []fixtureOption
			if tt.coord != nil {
				opts = append(opts, withCoordinator(tt.coord))
			}
			f := newFixture(t, status(204, ""), opts...)
			val, err := f.env.ExecuteLocalActivity(f.acts.CheckTeardownClaim, ref)
			if tt.wantEr != "" {
				appErr := appError(t, err)
				if appErr.Type() != tt.wantEr || appErr.NonRetryable() {
					t.Errorf("got type %q non-retryable %t, want retryable %q", appErr.Type(), appErr.NonRetryable(), tt.wantEr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want a claim", err)
			}
			var got ac.ConnectionClaim
			if err := val.Get(&got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v %+v", got.Claimed, got.Outcome) != fmt.Sprintf("%+v %+v", tt.want.Claimed, tt.want.Outcome) {
				t.Errorf("got %+v (outcome %+v), want %+v (outcome %+v)", got, got.Outcome, tt.want, tt.want.Outcome)
			}
			if n := f.requests.Load(); n != 0 {
				t.Errorf("got %d HTTP requests, want 0", n)
			}
		})
	}
}

func TestCheckTeardownClaim_RefusesInvalidIDs(t *testing.T) {
	f := newFixture(t, status(204, ""), withCoordinator(&fakeCoordinator{claims: []claimAnswer{{running: true}}}))
	_, err := f.env.ExecuteLocalActivity(f.acts.CheckTeardownClaim, ConnectionRef{AgentID: "a", ConnectionID: "c/d"})
	if appErr := appError(t, err); appErr.Type() != ac.ErrInvalidRequest || !appErr.NonRetryable() {
		t.Errorf("got type %q non-retryable %t, want non-retryable %q", appErr.Type(), appErr.NonRetryable(), ac.ErrInvalidRequest)
	}
}

func TestAwaitTeardownOutcome(t *testing.T) {
	claimed := claimAnswer{running: true, claim: ac.ConnectionClaim{Claimed: true}}
	absent := &ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2}
	tests := []struct {
		name      string
		claims    []claimAnswer
		finished  *ac.ConnectionOutcome
		wantClaim ac.ConnectionClaim
		wantCalls int
		wantType  string
	}{
		{name: "outcome after a few polls", claims: []claimAnswer{claimed, claimed, {running: true, claim: ac.ConnectionClaim{Outcome: absent}}}, wantClaim: ac.ConnectionClaim{Outcome: absent}, wantCalls: 3},
		{name: "teardown ended without an outcome", claims: []claimAnswer{claimed, {running: false}}, wantCalls: 2},
		{name: "teardown completed between polls: its result has the outcome", claims: []claimAnswer{claimed, {running: false}}, finished: absent, wantClaim: ac.ConnectionClaim{Claimed: true, Outcome: absent}, wantCalls: 2},
		{name: "teardown dropped the claim without an outcome", claims: []claimAnswer{claimed, claimed, {running: true}}, wantCalls: 3},
		{name: "no teardown at all", claims: []claimAnswer{{running: false}}, wantCalls: 1},
		{name: "error is retryable", claims: []claimAnswer{claimed, {err: errors.New("unavailable")}}, wantCalls: 2, wantType: ac.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			coord := &fakeCoordinator{claims: tt.claims, finished: tt.finished}
			f := newFixture(t, status(204, ""), withCoordinator(coord))
			f.acts.pollInterval = time.Millisecond
			var beats atomic.Int64
			f.env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })
			val, err := f.env.ExecuteActivity(f.acts.AwaitTeardownOutcome, ref)
			if coord.claimCalls != tt.wantCalls {
				t.Errorf("got %d polls, want %d", coord.claimCalls, tt.wantCalls)
			}
			if tt.wantType != "" {
				if appErr := appError(t, err); appErr.Type() != tt.wantType || appErr.NonRetryable() {
					t.Errorf("got type %q non-retryable %t, want retryable %q", appErr.Type(), appErr.NonRetryable(), tt.wantType)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want a claim", err)
			}
			var got ac.ConnectionClaim
			if err := val.Get(&got); err != nil {
				t.Fatal(err)
			}
			if got.Claimed != tt.wantClaim.Claimed || fmt.Sprint(got.Outcome) != fmt.Sprint(tt.wantClaim.Outcome) {
				t.Errorf("got %+v (outcome %+v), want %+v (outcome %+v)", got, got.Outcome, tt.wantClaim, tt.wantClaim.Outcome)
			}
			if tt.wantCalls > 1 && beats.Load() == 0 {
				t.Error("got no heartbeat while polling, want one per poll")
			}
		})
	}
}

func TestAwaitTeardownOutcome_NoCoordinator(t *testing.T) {
	f := newFixture(t, status(204, ""))
	val, err := f.env.ExecuteActivity(f.acts.AwaitTeardownOutcome, ref)
	if err != nil {
		t.Fatal(err)
	}
	var got ac.ConnectionClaim
	if err := val.Get(&got); err != nil {
		t.Fatal(err)
	}
	if got.Claimed || got.Outcome != nil {
		t.Errorf("got %+v, want {Claimed: false}", got)
	}
}

func TestAwaitStandaloneRemoval(t *testing.T) {
	longMsg := strings.Repeat("é", 500)
	tests := []struct {
		name        string
		await       func(ctx context.Context) (ac.RemoveConnectionResult, error)
		want        ac.ConnectionOutcome
		wantType    string // the activity's own failure type
		wantInMsg   string
		wantMaxMsg  int
		wantNoCalls bool
		strict      bool // the teardown's missing_ok is false
	}{
		{
			name: "removed",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{AgentID: "agent-1", ConnectionID: "conn-1", Outcome: ac.OutcomeRemoved, Attempts: 3}, nil
			},
			want: ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeRemoved},
		},
		{
			name: "already absent",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1}, nil
			},
			want: ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeAlreadyAbsent},
		},
		{
			name: "absent on its first request fails a strict teardown NotFound",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1}, nil
			},
			strict:    true,
			want:      ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrNotFound},
			wantInMsg: "missing_ok is false",
		},
		{
			name: "absent after an earlier request stays already_absent for a strict teardown",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2}, nil
			},
			strict: true,
			want:   ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeAlreadyAbsent},
		},
		{
			name: "a NotFound removal is already_absent for a teardown with missing_ok",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{}, fmt.Errorf("workflow failed: %w", temporal.NewNonRetryableApplicationError("404", ac.ErrNotFound, nil))
			},
			want: ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeAlreadyAbsent},
		},
		{
			name: "a NotFound removal stays failed for a strict teardown",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{}, fmt.Errorf("workflow failed: %w", temporal.NewNonRetryableApplicationError("404", ac.ErrNotFound, nil))
			},
			strict:    true,
			want:      ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrNotFound},
			wantInMsg: "standalone removal failed: 404",
		},
		{
			name: "failed keeps its type, message clipped",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{}, fmt.Errorf("workflow failed: %w", temporal.NewNonRetryableApplicationError("422 "+longMsg, ac.ErrValidation, nil))
			},
			want:       ac.ConnectionOutcome{ConnectionID: "conn-1", Outcome: ac.OutcomeFailed, FailureType: ac.ErrValidation},
			wantInMsg:  "standalone removal failed: 422 é",
			wantMaxMsg: ac.MaxOutcomeMessageBytes,
		},
		{
			name: "standalone gone: empty outcome",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{}, fmt.Errorf("%w: terminated", ErrRemovalNotRunning)
			},
			want: ac.ConnectionOutcome{ConnectionID: "conn-1"},
		},
		{
			name: "other error is retryable",
			await: func(context.Context) (ac.RemoveConnectionResult, error) {
				return ac.RemoveConnectionResult{}, errors.New("connection refused")
			},
			wantType: ac.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			coord := &fakeCoordinator{await: tt.await}
			f := newFixture(t, status(204, ""), withCoordinator(coord))
			in := ConnectionAwait{AgentID: ref.AgentID, ConnectionID: ref.ConnectionID, RunID: "run-7", MissingOK: !tt.strict}
			val, err := f.env.ExecuteActivity(f.acts.AwaitStandaloneRemoval, in)
			if tt.wantType != "" {
				if appErr := appError(t, err); appErr.Type() != tt.wantType || appErr.NonRetryable() {
					t.Errorf("got type %q non-retryable %t, want retryable %q", appErr.Type(), appErr.NonRetryable(), tt.wantType)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want an outcome", err)
			}
			var got ac.ConnectionOutcome
			if err := val.Get(&got); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got.Message, tt.wantInMsg) {
				t.Errorf("got message %q, want it to contain %q", got.Message, tt.wantInMsg)
			}
			if tt.wantMaxMsg > 0 && len(got.Message) > tt.wantMaxMsg {
				t.Errorf("got a %d-byte message, want at most %d", len(got.Message), tt.wantMaxMsg)
			}
			got.Message = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if n := f.requests.Load(); n != 0 {
				t.Errorf("got %d HTTP requests, want 0", n)
			}
			if coord.awaitedRun != "run-7" {
				t.Errorf("got AwaitRemoval for run %q, want the described run-7", coord.awaitedRun)
			}
		})
	}
}

func TestAwaitStandaloneRemoval_HeartbeatsWhileWaiting(t *testing.T) {
	coord := &fakeCoordinator{await: func(ctx context.Context) (ac.RemoveConnectionResult, error) {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ac.RemoveConnectionResult{}, ctx.Err()
		}
		return ac.RemoveConnectionResult{Outcome: ac.OutcomeRemoved}, nil
	}}
	f := newFixture(t, status(204, ""), withCoordinator(coord))
	f.acts.waitHeartbeat = 5 * time.Millisecond
	var beats atomic.Int64
	f.env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })
	if _, err := f.env.ExecuteActivity(f.acts.AwaitStandaloneRemoval, ConnectionAwait{AgentID: ref.AgentID, ConnectionID: ref.ConnectionID}); err != nil {
		t.Fatal(err)
	}
	// The SDK sends the first heartbeat at once and batches the rest; at least one must arrive.
	if beats.Load() == 0 {
		t.Error("got no heartbeat while waiting, want some")
	}
}

func TestAwaitStandaloneRemoval_NoCoordinatorIsEmpty(t *testing.T) {
	f := newFixture(t, status(204, ""))
	val, err := f.env.ExecuteActivity(f.acts.AwaitStandaloneRemoval, ConnectionAwait{AgentID: ref.AgentID, ConnectionID: ref.ConnectionID})
	if err != nil {
		t.Fatal(err)
	}
	var got ac.ConnectionOutcome
	if err := val.Get(&got); err != nil {
		t.Fatal(err)
	}
	if got.Outcome != "" || got.ConnectionID != "conn-1" {
		t.Errorf("got %+v, want an empty outcome for conn-1", got)
	}
}

func TestOutcomeMessage_Bounded(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", 1000), strings.Repeat("é", 1000), "bad \xff utf8"} {
		got := outcomeMessage(s)
		if len(got) > ac.MaxOutcomeMessageBytes {
			t.Errorf("got %d bytes for a %d-byte message, want at most %d", len(got), len(s), ac.MaxOutcomeMessageBytes)
		}
		if len(s) <= ac.MaxOutcomeMessageBytes && strings.ToValidUTF8(s, "\uFFFD") != got {
			t.Errorf("got %q, want %q kept", got, s)
		}
	}
}
