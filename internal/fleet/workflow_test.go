package fleet

import (
	"errors"
	"math"

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

// TestBudgetWorkflow_BusyMembersShareWhatIdleOnesLeave: the budget follows demand. Idle members
// keep IdleShare of an even share while some member is busy, the busy ones split the rest, and a
// renewal never takes what the others still hold: the grants in force add up to at most the
// budget, but for the idle share a member gets on joining.
func TestBudgetWorkflow_BusyMembersShareWhatIdleOnesLeave(t *testing.T) {
	env := newEnv()
	const ttl = time.Minute
	var got []float64
	record := func(r LeaseReply, err error) {
		if err != nil {
			t.Errorf("lease: %v", err)
		}
		got = append(got, r.Share)
	}
	lease := func(at int, m string, busy bool) {
		leaseAt(t, env, time.Duration(at)*time.Second, LeaseRequest{Member: m, TTL: ttl, Busy: busy}, record)
	}
	lease(1, "a", true)  // alone: the whole budget
	lease(2, "b", false) // joins idle: a holds everything, b gets the idle share of 2
	lease(3, "c", true)  // joins busy: a still holds everything, c gets the idle share of 3
	lease(4, "b", false) // idle: the idle share of 3
	lease(5, "a", true)  // busy: half of what the idle b leaves
	lease(6, "c", true)  // now that a shrank, c gets as much
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(LeaveSignal, "a") }, 7*time.Second)
	lease(8, "c", true)  // a left: c takes all but the idle share of 2
	lease(9, "c", false) // nobody busy: an even split
	var st State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(StateQuery)
		if err == nil {
			err = v.Get(&st)
		}
		if err != nil {
			t.Errorf("query: %v", err)
		}
	}, 10*time.Second)
	env.ExecuteWorkflow(WorkflowType, State{})
	idle3, busy3 := IdleShare/3, (1-IdleShare/3)/2
	want := []float64{1, IdleShare / 2, idle3, idle3, busy3, busy3, 1 - IdleShare/2, 0.5}
	if len(got) != len(want) {
		t.Fatalf("got %d replies %v, want %v", len(got), got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("shares after each lease: got %v, want %v", got, want)
		}
	}
	if sum := st.Grants["b"] + st.Grants["c"]; len(st.Grants) != 2 || sum > 1+1e-9 {
		t.Errorf("grants in force %v add up to %v, want b's and c's, at most 1", st.Grants, sum)
	}
}

func TestShareOf(t *testing.T) {
	for _, c := range []struct {
		rate, f   float64
		burst     int
		wantRate  float64
		wantBurst int
	}{
		{33, 1, 5, 33, 5},
		{33, 0.5, 5, 16.5, 2},
		{30, 0.1, 5, 3, 1},
		{30, 2, 5, 30, 5},
	} {
		r, b := ShareOf(c.rate, c.burst, c.f)
		if math.Abs(r-c.wantRate) > 1e-9 || b != c.wantBurst {
			t.Errorf("ShareOf(%v, %d, %v) = %v, %d; want %v, %d", c.rate, c.burst, c.f, r, b, c.wantRate, c.wantBurst)
		}
	}
}
