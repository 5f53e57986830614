package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

// fakeServer answers CheckHealth as a Temporal server that is up, down (refuses at once) or
// hung (answers nothing until the caller gives up).
type fakeServer struct {
	mu    sync.Mutex
	state string // "up", "down" or "hung"
}

func (f *fakeServer) set(state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = state
}

func (f *fakeServer) CheckHealth(ctx context.Context, _ *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	f.mu.Lock()
	state := f.state
	f.mu.Unlock()
	switch state {
	case "up":
		return &client.CheckHealthResponse{}, nil
	case "hung":
		<-ctx.Done()
		return nil, ctx.Err()
	default:
		return nil, errors.New("connection refused")
	}
}

// change is one call of watchTemporal's onChange.
type change struct {
	reachable bool
	err       error
}

// waitFor polls cond until it holds, failing after five seconds (the checks here run every 10 ms).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadiness_FollowsTheServer(t *testing.T) {
	srv := &fakeServer{state: "up"}
	r := &readiness{}
	changes := make(chan change, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watchTemporal(ctx, srv, 10*time.Millisecond, 50*time.Millisecond, func(reachable bool, err error) {
			changes <- change{reachable, err}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	expect := func(reachable bool) {
		t.Helper()
		select {
		case c := <-changes:
			if c.reachable != reachable || (c.err == nil) != reachable {
				t.Errorf("got change to reachable=%t (error %v), want reachable=%t", c.reachable, c.err, reachable)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change to reachable=%t reported", reachable)
		}
	}

	waitFor(t, "the first check", r.reachable.Load)
	if r.ready() {
		t.Error("ready before the worker polls, want not ready")
	}
	r.setPolling(true)
	if !r.ready() {
		t.Error("not ready while polling and the server answers, want ready")
	}

	srv.set("down")
	waitFor(t, "not ready once the server refuses", func() bool { return !r.ready() })
	expect(false)

	srv.set("up")
	waitFor(t, "ready once the server answers again", r.ready)
	expect(true)

	srv.set("hung")
	waitFor(t, "not ready once the server stops answering", func() bool { return !r.ready() })
	expect(false)

	srv.set("up")
	waitFor(t, "ready once the hung server answers", r.ready)
	expect(true)

	r.setPolling(false)
	if r.ready() {
		t.Error("ready after the worker stopped polling, want not ready")
	}
	select {
	case c := <-changes:
		t.Errorf("got an unexpected change to reachable=%t", c.reachable)
	default:
	}
}

func TestReadiness_FirstCheckReportedOnlyWhenItFails(t *testing.T) {
	for _, state := range []string{"up", "down"} {
		t.Run(state, func(t *testing.T) {
			r := &readiness{}
			var got []change
			ctx, cancel := context.WithCancel(context.Background())
			checks := 0
			srv := checkerFunc(func(ctx context.Context) error {
				checks++
				if checks == 2 {
					cancel() // one check, then stop
				}
				return (&fakeServer{state: state}).check(ctx)
			})
			r.watchTemporal(ctx, srv, time.Millisecond, time.Second, func(reachable bool, err error) {
				got = append(got, change{reachable, err})
			})
			want := 0
			if state == "down" {
				want = 1
			}
			if len(got) != want {
				t.Errorf("got %d changes reported after a first check that was %s, want %d", len(got), state, want)
			}
			if r.reachable.Load() != (state == "up") {
				t.Errorf("reachable=%t after a first check that was %s", r.reachable.Load(), state)
			}
		})
	}
}

func TestReadiness_StopEndsTheWatch(t *testing.T) {
	r := &readiness{}
	stop := r.watchInBackground(context.Background(), &fakeServer{state: "hung"}, quietLogger(), "127.0.0.1:7233")
	ended := make(chan struct{})
	go func() {
		stop()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the watch of a hung server within 5s")
	}
}

// checkerFunc adapts a function to healthChecker.
type checkerFunc func(ctx context.Context) error

func (f checkerFunc) CheckHealth(ctx context.Context, _ *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	if err := f(ctx); err != nil {
		return nil, err
	}
	return &client.CheckHealthResponse{}, nil
}

func (f *fakeServer) check(ctx context.Context) error {
	_, err := f.CheckHealth(ctx, nil)
	return err
}
