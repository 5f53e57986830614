package fleet

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/agentops/agentconnections/internal/devserver"
)

// fakePacer records what a member sets.
type fakePacer struct {
	tag string

	mu      sync.Mutex
	waiting int
	rate    float64
	burst   int
	paused  time.Duration
}

func (p *fakePacer) SetPace(r float64, b int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate, p.burst = r, b
}

func (p *fakePacer) PauseFor(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = max(p.paused, d)
}

func (p *fakePacer) CredentialTag(string) (string, error) { return p.tag, nil }

func (p *fakePacer) Demand() (uint64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return 0, p.waiting
}

func (p *fakePacer) setWaiting(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiting = n
}

func (p *fakePacer) pace() (float64, int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate, p.burst, p.paused
}

// eventually polls cond until it holds or a minute has passed (a bound for a stuck test, not a
// timing check).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type fleetEnv struct {
	c  client.Client
	tq string
}

// newFleetEnv is a dev server with one worker polling a task queue with the budget workflow on it.
func newFleetEnv(t *testing.T) fleetEnv {
	t.Helper()
	srv := devserver.ForTest(t, devserver.Options{})
	c, err := client.Dial(client.Options{HostPort: srv.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tq := "fleet-test"
	w := worker.New(c, tq, worker.Options{})
	Register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return fleetEnv{c: c, tq: tq}
}

// join runs a member with a fast refresh until the test ends or stop is called.
func (e fleetEnv) join(t *testing.T, name, tag string) (*Member, *fakePacer, func()) {
	t.Helper()
	m, err := New(Options{Client: e.c, TaskQueue: e.tq, RequestsPerSecond: 33, Burst: 5,
		Refresh: 100 * time.Millisecond, TTL: time.Second, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePacer{tag: tag}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, p)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return m, p, sync.OnceFunc(stop)
}

func TestMembers_ShareTheBudgetAndThePause(t *testing.T) {
	e := newFleetEnv(t)
	a, pa, _ := e.join(t, "a", "tag1")
	eventually(t, "a alone takes the whole budget", func() bool {
		r, b, _ := pa.pace()
		return a.Members() == 1 && r == 33 && b == 5
	})
	b, pb, stopB := e.join(t, "b", "tag1")
	_, pc, _ := e.join(t, "c", "tag2") // another key: another fleet
	eventually(t, "a and b each take half", func() bool {
		ra, ba, _ := pa.pace()
		rb, bb, _ := pb.pace()
		return a.Members() == 2 && b.Members() == 2 && ra == 16.5 && rb == 16.5 && ba == 2 && bb == 2
	})
	if r, _, _ := pc.pace(); r != 0 && r != 33 {
		t.Errorf("c, alone on its key, paces at %v, want 33", r)
	}

	// A 429 that b got pauses a, through the workflow; c, on another key, is not paused.
	b.RateLimited(30 * time.Second)
	eventually(t, "b's 429 pauses a", func() bool {
		_, _, paused := pa.pace()
		return paused > 20*time.Second
	})
	if _, _, paused := pc.pace(); paused != 0 {
		t.Errorf("c, on another key, was paused for %s", paused)
	}

	// b stops: a takes the whole budget again.
	stopB()
	eventually(t, "a takes b's share back after b leaves", func() bool {
		r, _, _ := pa.pace()
		return a.Members() == 1 && r == 33
	})
}

func TestMembers_ADeadMembersLeaseLapses(t *testing.T) {
	e := newFleetEnv(t)
	a, pa, _ := e.join(t, "a", "tag1")
	// Members starts at 1 before any renewal: wait for a's first answered renewal, or the ghost
	// could lease first, hold the whole budget, and leave a the idle share until it lapses.
	eventually(t, "a alone", func() bool {
		r, _, _ := pa.pace()
		return a.Members() == 1 && r == 33
	})
	// A member that renews once and dies: no leave signal, only its lease, for 2 s.
	ghost, err := New(Options{Client: e.c, TaskQueue: e.tq, Name: "ghost", Refresh: time.Second, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ghost.lease(context.Background(), WorkflowID(e.tq, "tag1"), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a counts the ghost", func() bool {
		r, _, _ := pa.pace()
		return a.Members() == 2 && r == 16.5
	})
	eventually(t, "the ghost's lease lapses and a takes its share", func() bool {
		r, _, _ := pa.pace()
		return a.Members() == 1 && r == 33
	})
}

// A member with requests waiting for its pacer is busy: it takes all the budget but the idle
// member's floor, and gives it back when it has nothing more to send.
func TestMembers_ABusyMemberTakesWhatAnIdleOneLeaves(t *testing.T) {
	e := newFleetEnv(t)
	_, pa, _ := e.join(t, "a", "tag1")
	_, pb, _ := e.join(t, "b", "tag1")
	even := func() bool {
		ra, _, _ := pa.pace()
		rb, _, _ := pb.pace()
		return ra == 16.5 && rb == 16.5
	}
	eventually(t, "a and b, both idle, each take half", even)
	pb.setWaiting(3)
	floor := 33 * IdleShare / 2
	eventually(t, "busy b takes all but idle a's floor", func() bool {
		ra, _, _ := pa.pace()
		rb, _, _ := pb.pace()
		return math.Abs(ra-floor) < 1e-9 && math.Abs(rb-(33-floor)) < 1e-9
	})
	pb.setWaiting(0)
	eventually(t, "b idle again: an even split", even)
}
