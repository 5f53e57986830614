package activities

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

func TestRemoveConnection_429PausesTheWholeClient(t *testing.T) {
	var n atomic.Int64
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}, func(c *Config) { c.MaxRetryAfter = 2 * time.Hour })
	if _, err := f.remove(t, input(true)); err == nil {
		t.Fatal("got success, want the 429")
	}
	// Another removal (another connection) now sends nothing: its attempt cannot outlast the
	// pause, so it hands the wait to Temporal as RateLimited with the time left.
	in := input(true)
	in.ConnectionID = "conn-2"
	f.env.SetTestTimeout(time.Minute)
	_, err := f.remove(t, in)
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrRateLimited || appErr.NextRetryDelay() < 59*time.Minute {
		t.Errorf("got %s with next delay %s, want RateLimited with about an hour", appErr.Type(), appErr.NextRetryDelay())
	}
	if got := n.Load(); got != 1 {
		t.Errorf("got %d requests, want 1 (nothing sent while paused)", got)
	}
}

func TestRemoveConnection_RateLimitSpacesRequests(t *testing.T) {
	f := newFixture(t, status(204, ""), func(c *Config) { c.RequestsPerSecond = 1; c.Burst = 1 })
	if _, err := f.remove(t, input(true)); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty now: a caller with a short deadline cannot send.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.acts.pacer.wait(ctx); err == nil {
		t.Error("got a token right after a request at 1/s burst 1, want none")
	}
}
