package fleet

import (
	"errors"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
)

// leaseAt sends a lease update at workflow time `at` and checks the reply.
func leaseAt(t *testing.T, env *testsuite.TestWorkflowEnvironment, at time.Duration, r LeaseRequest, check func(LeaseReply, error)) {
	t.Helper()
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(LeaseUpdate, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { check(LeaseReply{}, err) },
			OnAccept: func() {},
			OnComplete: func(v any, err error) {
				reply, _ := v.(LeaseReply)
				check(reply, err)
			},
		}, r)
	}, at)
}

func newEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(BudgetWorkflow, registerOptions())
	return env
}

func TestBudgetWorkflow_CountsLiveLeasesAndLeaves(t *testing.T) {
	env := newEnv()
	const ttl = 15 * time.Second
	var got []int
	record := func(r LeaseReply, err error) {
		if err != nil {
			t.Errorf("lease: %v", err)
		}
		got = append(got, r.Members)
	}
	leaseAt(t, env, time.Second, LeaseRequest{Member: "a", TTL: ttl}, record)   // a
	leaseAt(t, env, 2*time.Second, LeaseRequest{Member: "b", TTL: ttl}, record) // a b
	leaseAt(t, env, 3*time.Second, LeaseRequest{Member: "c", TTL: ttl}, record) // a b c
	leaseAt(t, env, 4*time.Second, LeaseRequest{Member: "a", TTL: ttl}, record) // renewal: still 3
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(LeaveSignal, "c") }, 5*time.Second)
	leaseAt(t, env, 6*time.Second, LeaseRequest{Member: "a", TTL: ttl}, record) // c left: a b
	// b never renews: its lease (from 2 s) lapses at 17 s.
	leaseAt(t, env, 16*time.Second, LeaseRequest{Member: "a", TTL: ttl}, record) // a b
	leaseAt(t, env, 18*time.Second, LeaseRequest{Member: "a", TTL: ttl}, record) // a
	env.ExecuteWorkflow(WorkflowType, State{})
	want := []int{1, 2, 3, 3, 2, 2, 1}
	if len(got) != len(want) {
		t.Fatalf("got %d replies %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("members after each lease: got %v, want %v", got, want)
		}
	}
	// Every lease lapsed, no pause: the workflow completed by itself.
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Errorf("completed %v, error %v: want completed without error once idle", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
}

func TestBudgetWorkflow_PauseReachesEveryRenewal(t *testing.T) {
	env := newEnv()
	var paused []time.Duration
	record := func(r LeaseReply, err error) {
		if err != nil {
			t.Errorf("lease: %v", err)
		}
		paused = append(paused, r.Paused)
	}
	leaseAt(t, env, time.Second, LeaseRequest{Member: "a", TTL: 15 * time.Second}, record)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(PauseSignal, PauseRequest{For: 10 * time.Second}) }, 2*time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(PauseSignal, PauseRequest{For: time.Second}) }, 3*time.Second) // shorter: the longer holds
	leaseAt(t, env, 5*time.Second, LeaseRequest{Member: "b", TTL: 15 * time.Second}, record)
	leaseAt(t, env, 13*time.Second, LeaseRequest{Member: "b", TTL: 15 * time.Second}, record)
	env.ExecuteWorkflow(WorkflowType, State{})
	want := []time.Duration{0, 7 * time.Second, 0}
	if len(paused) != len(want) {
		t.Fatalf("got %v, want %v", paused, want)
	}
	for i := range want {
		if paused[i] != want[i] {
			t.Errorf("pause left at each lease: got %v, want %v", paused, want)
			break
		}
	}
}

func TestBudgetWorkflow_RefusesBadLeases(t *testing.T) {
	for name, r := range map[string]LeaseRequest{
		"no member":   {TTL: time.Second},
		"no TTL":      {Member: "a"},
		"TTL too big": {Member: "a", TTL: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			env := newEnv()
			var rejected error
			leaseAt(t, env, time.Second, r, func(_ LeaseReply, err error) { rejected = err })
			env.ExecuteWorkflow(WorkflowType, State{})
			if rejected == nil {
				t.Errorf("lease %+v accepted, want it refused", r)
			}
		})
	}
}

func TestBudgetWorkflow_ContinuesAsNewWithItsState(t *testing.T) {
	env := newEnv()
	leaseAt(t, env, time.Second, LeaseRequest{Member: "a", TTL: time.Minute}, func(LeaseReply, error) {})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(PauseSignal, PauseRequest{For: time.Hour}) }, 2*time.Second)
	env.RegisterDelayedCallback(func() { env.SetCurrentHistoryLength(maxHistory) }, 3*time.Second)
	env.ExecuteWorkflow(WorkflowType, State{})
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("ended with %v, want continue-as-new past %d events", err, maxHistory)
	}
	var carried State
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &carried); err != nil {
		t.Fatal(err)
	}
	if _, ok := carried.Leases["a"]; !ok || carried.PausedUntil.IsZero() {
		t.Errorf("carried %+v, want a's lease and the pause", carried)
	}
}

func TestShare(t *testing.T) {
	for _, c := range []struct {
		rate      float64
		burst, n  int
		wantRate  float64
		wantBurst int
	}{
		{33, 5, 1, 33, 5},
		{33, 5, 2, 16.5, 2},
		{33, 5, 3, 11, 1},
		{33, 5, 10, 3.3, 1},
		{30, 10, 0, 30, 10},
	} {
		r, b := Share(c.rate, c.burst, c.n)
		if r != c.wantRate || b != c.wantBurst {
			t.Errorf("Share(%v, %d, %d) = %v, %d; want %v, %d", c.rate, c.burst, c.n, r, b, c.wantRate, c.wantBurst)
		}
	}
}
