package activities

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/devserver"
)

// fakeRemovalInput drives the stand-in RemoveConnectionWorkflow below.
type fakeRemovalInput struct {
	State    string `json:"state"`
	Outcome  string `json:"outcome"`
	FailType string `json:"fail_type"`
}

const finishSignal = "finish"

// fakeRemovalWorkflow answers removal_state like RemoveConnectionWorkflow and ends when signalled.
func fakeRemovalWorkflow(ctx workflow.Context, in fakeRemovalInput) (ac.RemoveConnectionResult, error) {
	if err := workflow.SetQueryHandler(ctx, ac.RemovalStateQuery, func() (ac.RemovalState, error) {
		return ac.RemovalState{State: in.State}, nil
	}); err != nil {
		return ac.RemoveConnectionResult{}, err
	}
	workflow.GetSignalChannel(ctx, finishSignal).Receive(ctx, nil)
	if in.FailType != "" {
		return ac.RemoveConnectionResult{}, temporal.NewNonRetryableApplicationError("failed on purpose", in.FailType, nil)
	}
	return ac.RemoveConnectionResult{Outcome: in.Outcome, Attempts: 2}, nil
}

// fakeTeardownWorkflow answers connection_status like RemoveAgentConnectionsWorkflow, ends when
// signalled, and returns the outcomes among the claims as its result.
func fakeTeardownWorkflow(ctx workflow.Context, claims map[string]ac.ConnectionClaim) (ac.RemoveAgentConnectionsResult, error) {
	if err := workflow.SetQueryHandler(ctx, ac.ConnectionStatusQuery, func(id string) (ac.ConnectionClaim, error) {
		return claims[id], nil
	}); err != nil {
		return ac.RemoveAgentConnectionsResult{}, err
	}
	// It ends when signalled, or Canceled with its result in the details, as the real one does.
	cancelled := false
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(workflow.GetSignalChannel(ctx, finishSignal), func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
	sel.Select(ctx)
	var res ac.RemoveAgentConnectionsResult
	for _, id := range []string{"c1", "c2", "c3"} {
		if o := claims[id].Outcome; o != nil {
			res.Connections = append(res.Connections, *o)
		}
	}
	if cancelled {
		res.Cancelled = true
		return res, temporal.NewCanceledError(res)
	}
	return res, nil
}

func TestTemporalCoordinator_DevServer(t *testing.T) {
	srv := devserver.ForTest(t, devserver.Options{})
	c, err := client.Dial(client.Options{HostPort: srv.Address, Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const taskQueue = "coordinator-test"
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakeRemovalWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	w.RegisterWorkflowWithOptions(fakeTeardownWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coord := TemporalCoordinator{Client: c}
	start := func(t *testing.T, id, wfType string, arg any) client.WorkflowRun {
		t.Helper()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, wfType, arg)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		return run
	}
	finish := func(t *testing.T, run client.WorkflowRun) {
		t.Helper()
		if err := c.SignalWorkflow(ctx, run.GetID(), "", finishSignal, nil); err != nil {
			t.Fatalf("signal %s: %v", run.GetID(), err)
		}
	}
	// removalState polls past the short window in which a new run cannot answer queries yet.
	removalState := func(t *testing.T, agent, conn string) (string, bool) {
		t.Helper()
		for {
			st, _, running, err := coord.RemovalState(ctx, agent, conn, time.Time{})
			if err != nil {
				t.Fatalf("RemovalState: %v", err)
			}
			if !running || st != "" || ctx.Err() != nil {
				return st, running
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("RemovalState", func(t *testing.T) {
		if st, running := removalState(t, "agent-none", "c1"); running || st != "" {
			t.Errorf("got (%q, %t) for no workflow, want (\"\", false)", st, running)
		}
		run := start(t, ac.RemoveConnectionWorkflowID("agent-rs", "c1"), ac.RemoveConnectionWorkflowType, fakeRemovalInput{State: ac.RemovalRemoving, Outcome: ac.OutcomeRemoved})
		if st, running := removalState(t, "agent-rs", "c1"); !running || st != ac.RemovalRemoving {
			t.Errorf("got (%q, %t) for a running removal, want (%q, true)", st, running, ac.RemovalRemoving)
		}
		finish(t, run)
		if err := run.Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if st, running := removalState(t, "agent-rs", "c1"); running || st != "" {
			t.Errorf("got (%q, %t) for a completed removal, want (\"\", false)", st, running)
		}
		// Completed after a teardown started: it reads as the removal that handled the connection.
		st, runID, running, err := coord.RemovalState(ctx, "agent-rs", "c1", time.Now().Add(-time.Hour))
		if err != nil || !running || st != ac.RemovalRemoving {
			t.Errorf("got (%q, %t, %v) for a removal completed since, want (%q, true, nil)", st, running, err, ac.RemovalRemoving)
		}
		if runID != run.GetRunID() {
			t.Errorf("got run %q, want the described run %q", runID, run.GetRunID())
		}
		st, _, running, err = coord.RemovalState(ctx, "agent-rs", "c1", time.Now().Add(time.Hour))
		if err != nil || running || st != "" {
			t.Errorf("got (%q, %t, %v) for a removal completed before, want (\"\", false, nil)", st, running, err)
		}
	})

	t.Run("TeardownClaim", func(t *testing.T) {
		claim, running, err := coord.TeardownClaim(ctx, "agent-none", "c1")
		if err != nil || running || claim.Claimed {
			t.Errorf("got (%+v, %t, %v) for no teardown, want not running", claim, running, err)
		}
		removed := &ac.ConnectionOutcome{ConnectionID: "c2", Outcome: ac.OutcomeRemoved, Attempts: 1}
		run := start(t, ac.RemoveAgentConnectionsWorkflowID("agent-td"), ac.RemoveAgentConnectionsWorkflowType,
			map[string]ac.ConnectionClaim{"c1": {Claimed: true}, "c2": {Outcome: removed}})
		for _, tt := range []struct {
			conn string
			want ac.ConnectionClaim
		}{
			{"c1", ac.ConnectionClaim{Claimed: true}},
			{"c2", ac.ConnectionClaim{Outcome: removed}},
			{"c3", ac.ConnectionClaim{}},
		} {
			var claim ac.ConnectionClaim
			var running bool
			for {
				claim, running, err = coord.TeardownClaim(ctx, "agent-td", tt.conn)
				if err != nil {
					t.Fatalf("TeardownClaim %s: %v", tt.conn, err)
				}
				// A run too new to answer reads as running with no claim; ask again.
				if tt.want == (ac.ConnectionClaim{}) || claim != (ac.ConnectionClaim{}) || ctx.Err() != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !running || claim.Claimed != tt.want.Claimed || (claim.Outcome == nil) != (tt.want.Outcome == nil) ||
				(claim.Outcome != nil && !reflect.DeepEqual(*claim.Outcome, *tt.want.Outcome)) {
				t.Errorf("got (%+v, %t) for %s, want (%+v, true)", claim, running, tt.conn, tt.want)
			}
		}
		finish(t, run)
		if err := run.Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
		claim, running, err = coord.TeardownClaim(ctx, "agent-td", "c1")
		if err != nil || running || claim.Claimed {
			t.Errorf("got (%+v, %t, %v) for a completed teardown, want not running", claim, running, err)
		}
		o, err := coord.FinishedTeardownOutcome(ctx, "agent-td", "c2")
		if err != nil || o == nil || !reflect.DeepEqual(*o, *removed) {
			t.Errorf("got (%+v, %v) from the completed teardown's result, want %+v", o, err, removed)
		}
		if o, err := coord.FinishedTeardownOutcome(ctx, "agent-td", "c1"); err != nil || o != nil {
			t.Errorf("got (%+v, %v) for a connection the result lacks, want (nil, nil)", o, err)
		}
		if o, err := coord.FinishedTeardownOutcome(ctx, "agent-none", "c1"); err != nil || o != nil {
			t.Errorf("got (%+v, %v) for no teardown, want (nil, nil)", o, err)
		}

		// A teardown cancelled by Temporal ends Canceled; its result is in the error's details.
		run = start(t, ac.RemoveAgentConnectionsWorkflowID("agent-tdc"), ac.RemoveAgentConnectionsWorkflowType,
			map[string]ac.ConnectionClaim{"c2": {Outcome: removed}})
		if err := c.CancelWorkflow(ctx, run.GetID(), ""); err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); err == nil {
			t.Fatal("got the cancelled teardown completed, want it Canceled")
		}
		if o, err := coord.FinishedTeardownOutcome(ctx, "agent-tdc", "c2"); err != nil || o == nil || !reflect.DeepEqual(*o, *removed) {
			t.Errorf("got (%+v, %v) from the cancelled teardown's details, want %+v", o, err, removed)
		}
	})

	t.Run("AwaitRemoval", func(t *testing.T) {
		run := start(t, ac.RemoveConnectionWorkflowID("agent-aw", "ok"), ac.RemoveConnectionWorkflowType, fakeRemovalInput{State: ac.RemovalRemoving, Outcome: ac.OutcomeAlreadyAbsent})
		done := make(chan struct{})
		var res ac.RemoveConnectionResult
		var awaitErr error
		go func() {
			defer close(done)
			res, awaitErr = coord.AwaitRemoval(ctx, "agent-aw", "ok", "")
		}()
		finish(t, run)
		<-done
		if awaitErr != nil || res.Outcome != ac.OutcomeAlreadyAbsent || res.Attempts != 2 {
			t.Errorf("got (%+v, %v), want already_absent with 2 attempts", res, awaitErr)
		}

		run = start(t, ac.RemoveConnectionWorkflowID("agent-aw", "bad"), ac.RemoveConnectionWorkflowType, fakeRemovalInput{State: ac.RemovalRemoving, FailType: ac.ErrValidation})
		finish(t, run)
		_, err := coord.AwaitRemoval(ctx, "agent-aw", "bad", "")
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != ac.ErrValidation {
			t.Errorf("got error %v, want an ApplicationError of type %s", err, ac.ErrValidation)
		}

		if _, err := coord.AwaitRemoval(ctx, "agent-aw", "missing", ""); !errors.Is(err, ErrRemovalNotRunning) {
			t.Errorf("got error %v for no workflow, want ErrRemovalNotRunning", err)
		}

		run = start(t, ac.RemoveConnectionWorkflowID("agent-aw", "killed"), ac.RemoveConnectionWorkflowType, fakeRemovalInput{State: ac.RemovalRemoving})
		if err := c.TerminateWorkflow(ctx, run.GetID(), "", "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := coord.AwaitRemoval(ctx, "agent-aw", "killed", ""); !errors.Is(err, ErrRemovalNotRunning) {
			t.Errorf("got error %v for a terminated workflow, want ErrRemovalNotRunning", err)
		}
	})

	t.Run("NoClient", func(t *testing.T) {
		if _, _, _, err := (TemporalCoordinator{}).RemovalState(ctx, "a", "c", time.Time{}); err == nil {
			t.Error("got no error without a client, want one")
		}
	})
}
