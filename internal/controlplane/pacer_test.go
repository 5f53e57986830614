package controlplane

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
)

func TestPacer_PauseHoldsEveryRequest(t *testing.T) {
	p := newPacer(0, 0)
	p.pause(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v while paused, want the context's error", err)
	}
	// A pause that outlasts the caller's deadline is reported at once, with what remains.
	p.pause(time.Hour)
	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	var paused *pausedError
	if err := p.wait(dctx); !errors.As(err, &paused) || paused.remaining < 59*time.Minute {
		t.Errorf("got %v, want a pausedError with about an hour left", err)
	}
	p2 := newPacer(0, 0)
	p2.pause(-time.Second)
	if err := p2.wait(context.Background()); err != nil {
		t.Errorf("got %v with no pause, want nil", err)
	}
}

func TestPacer_ShorterPauseDoesNotCutALongerOne(t *testing.T) {
	p := newPacer(0, 0)
	p.pause(time.Hour)
	p.pause(time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.wait(ctx); err == nil {
		t.Error("got no wait after a shorter pause, want the hour-long pause to hold")
	}
}

func TestPacer_SteadyRate(t *testing.T) {
	// Burst 1 at 1 request/s: the second request must wait, which a short deadline shows.
	p := newPacer(1, 1)
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.wait(ctx); err == nil {
		t.Error("got a second request through at once, want it held by the 1/s limit")
	}
}

func TestDelete_429PausesTheWholeClient(t *testing.T) {
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}, func(c *Config) { c.MaxRetryAfter = 2 * time.Hour })
	if _, err := f.remove(t, DeleteRequest{MissingOK: true}); err == nil {
		t.Fatal("got success, want the 429")
	}
	// Another removal (another connection) now sends nothing: its call cannot outlast the pause
	// (its context has a deadline, as an activity's has), so it hands the wait back as
	// RateLimited with the time left.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := f.client.Delete(ctx, DeleteRequest{AgentID: "agent-1", ConnectionID: "conn-2", MissingOK: true, Logger: f.logs})
	e := cpError(t, err)
	if e.Type != ac.ErrRateLimited || !e.Retryable || e.RetryAfter < 59*time.Minute {
		t.Errorf("got %s (retryable %t) with retry after %s, want retryable RateLimited with about an hour", e.Type, e.Retryable, e.RetryAfter)
	}
	if res.Requests != 0 || e.Requests != 0 || e.Status != 0 {
		t.Errorf("got requests %d/%d and status %d for the paused removal, want 0, 0 and 0", res.Requests, e.Requests, e.Status)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("got %d requests, want 1 (nothing sent while paused)", got)
	}
}

func TestDelete_RateLimitSpacesRequests(t *testing.T) {
	f := newFixture(t, status(204, ""), func(c *Config) { c.RequestsPerSecond = 1; c.Burst = 1 })
	if _, err := f.remove(t, DeleteRequest{MissingOK: true}); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty now: a caller with a short deadline cannot send.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.client.pacer.wait(ctx); err == nil {
		t.Error("got a token right after a request at 1/s burst 1, want none")
	}
}

func TestPacer_DemandCountsAskedAndWaiting(t *testing.T) {
	p := newPacer(0.001, 1) // one token, then none for 1000 s
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.wait(ctx) }()
	for {
		if _, waiting := p.demand(); waiting == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if asked, waiting := p.demand(); asked != 2 || waiting != 0 {
		t.Errorf("demand is %d asked, %d waiting; want 2 asked, 0 waiting", asked, waiting)
	}
}

// A raised rate holds for requests already waiting: they do not keep the turns they would have
// had at the old rate (the old one here would keep the waiter 100 s).
func TestPacer_ARaisedRateReachesWaitingRequests(t *testing.T) {
	p := newPacer(0.01, 1)
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- p.wait(context.Background()) }()
	for {
		if _, waiting := p.demand(); waiting == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.setRate(1000, 1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A 429's pause holds the requests already waiting for a turn too, not only those that ask after
// it. At 20/s with a burst of 1, only the requests that held a turn when the pause began (at most
// 1 + 20/s × reserveAhead = 6) may still leave; before the fix, the 20 waiters went on leaving at
// 20/s through the pause. The pause is an hour, so the bound holds however slow the machine is.
func TestPacer_APauseHoldsRequestsAlreadyWaiting(t *testing.T) {
	p := newPacer(20, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Int64
	done := make(chan struct{}, 20)
	for range 20 {
		go func() {
			if p.wait(ctx) == nil {
				sent.Add(1)
			}
			done <- struct{}{}
		}()
	}
	for {
		if _, waiting := p.demand(); waiting+int(sent.Load()) == 20 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.pause(time.Hour)
	at := sent.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := sent.Load() - at; n > 6 {
		t.Errorf("%d requests left during the pause, want at most the 6 that could hold a turn when it began", n)
	}
	cancel()
	for range 20 {
		<-done
	}
}
