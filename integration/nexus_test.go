package integration

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/examples/nexuscaller"
	"github.com/agentops/agentconnections/examples/teardownsaga"
	"github.com/agentops/agentconnections/internal/devserver"
)

// callerSide is another team's side of a Nexus call: a client and a worker in the caller
// namespace, running the example callers, and the endpoint that targets this test's worker.
type callerSide struct {
	t         *testing.T
	client    client.Client
	taskQueue string
	endpoint  string
	platform  *teardownsaga.StandInPlatform
}

var notEndpointChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// newCallerSide creates the endpoint (named after the test, as `temporal operator nexus endpoint
// create` does it) targeting the stack's namespace and task queue, and starts the caller worker.
func newCallerSide(t *testing.T, s *stack) *callerSide {
	t.Helper()
	name := "it-" + strings.Trim(notEndpointChars.ReplaceAllString(t.Name(), "-"), "-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := server.CreateNexusEndpoint(ctx, name, "default", s.taskQueue); err != nil {
		t.Fatal(err)
	}
	// The caller side's SDK log is left out of the test output; the worker's own log is kept.
	c, err := client.Dial(client.Options{HostPort: server.Address, Namespace: devserver.CallerNamespace,
		Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cs := &callerSide{t: t, client: c, taskQueue: "caller-" + name, endpoint: name, platform: teardownsaga.NewStandInPlatform("dep-1")}
	w := worker.New(c, cs.taskQueue, worker.Options{})
	w.RegisterWorkflow(nexuscaller.RemoveConnection)
	w.RegisterWorkflow(nexuscaller.Teardown)
	w.RegisterWorkflow(nexuscaller.Restore)
	w.RegisterWorkflow(teardownsaga.AgentTeardownSaga)
	cs.platform.Register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return cs
}

// run starts a caller workflow in the caller namespace.
func (cs *callerSide) run(wf any, in any) client.WorkflowRun {
	cs.t.Helper()
	run, err := cs.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       "caller-" + uuid.NewString(),
		TaskQueue:                cs.taskQueue,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, wf, in)
	if err != nil {
		cs.t.Fatal(err)
	}
	return run
}

// remove runs nexuscaller.RemoveConnection and returns what it saw.
func (cs *callerSide) remove(in ac.RemoveConnectionInput) nexuscaller.RemoveOutcome {
	cs.t.Helper()
	var out nexuscaller.RemoveOutcome
	if err := cs.get(cs.run(nexuscaller.RemoveConnection, nexuscaller.RemoveInput{Endpoint: cs.endpoint, Removal: in}), &out); err != nil {
		cs.t.Fatalf("caller workflow: %v", err)
	}
	return out
}

func (cs *callerSide) get(run client.WorkflowRun, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	return run.Get(ctx, v)
}

func TestNexus_RemovalRemoves(t *testing.T) {
	s := newStack(t, "a1", "c1")
	cs := newCallerSide(t, s)
	out := cs.remove(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	want := ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}
	if out.Failure != nil || out.Result == nil || !reflect.DeepEqual(*out.Result, want) {
		t.Fatalf("got %+v (failure %+v), want %+v", out.Result, out.Failure, want)
	}
	if s.em.HasConnection("a1", "c1") || s.em.DeleteCount("c1") != 1 {
		t.Errorf("got c1 present %t after %d DELETEs, want it removed by one", s.em.HasConnection("a1", "c1"), s.em.DeleteCount("c1"))
	}
	// The operation ran the removal in the worker's namespace under the contract's workflow ID.
	desc, err := s.client.DescribeWorkflow(context.Background(), ac.RemoveConnectionWorkflowID("a1", "c1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED || desc.RawResponse.GetWorkflowExecutionInfo().GetType().GetName() != ac.RemoveConnectionWorkflowType {
		t.Errorf("got %s %s, want a completed %s", desc.RawResponse.GetWorkflowExecutionInfo().GetType().GetName(), desc.Status, ac.RemoveConnectionWorkflowType)
	}
}

func TestNexus_422IsTypedAtTheCaller(t *testing.T) {
	s := newStack(t, "a1", "c1")
	s.em.MarkInvalid("c1")
	cs := newCallerSide(t, s)
	out := cs.remove(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	f := out.Failure
	if out.Result != nil || f == nil {
		t.Fatalf("got result %+v, want a failure", out.Result)
	}
	if f.Operation != ac.RemoveConnectionOperation || f.Type != ac.ErrValidation || !strings.Contains(f.Message, "422") {
		t.Errorf("got %+v, want a %s failure of %s naming the 422", f, ac.ErrValidation, ac.RemoveConnectionOperation)
	}
	if f.Details == nil || *f.Details != (ac.FailureDetails{StatusCode: 422, Requests: 1}) {
		t.Errorf("got details %+v, want status 422 after 1 request", f.Details)
	}
	if n := s.em.DeleteCount("c1"); n != 1 {
		t.Errorf("got %d DELETEs, want 1", n)
	}
}

// A refused ID starts nothing: the caller gets InvalidRequest, as a direct start's run would fail.
func TestNexus_RefusedInputIsTypedAndStartsNothing(t *testing.T) {
	s := newStack(t, "a1", "c1")
	cs := newCallerSide(t, s)
	out := cs.remove(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c/1"})
	if out.Failure == nil || out.Failure.Type != ac.ErrInvalidRequest || !strings.Contains(out.Failure.Message, "connection_id") {
		t.Fatalf("got %+v / %+v, want an %s failure naming connection_id", out.Result, out.Failure, ac.ErrInvalidRequest)
	}
	if _, err := s.client.DescribeWorkflow(context.Background(), ac.RemoveConnectionWorkflowID("a1", "c/1"), ""); err == nil {
		t.Error("got a removal workflow for a refused ID, want none started")
	}
	if len(s.em.Log()) != 0 {
		t.Errorf("got %d requests at the control plane, want none", len(s.em.Log()))
	}
}

// A teardown through Nexus: progress shows in the worker's namespace while it runs, it continues
// as new on the way, and the caller gets the final run's result.
func TestNexus_TeardownWithProgress(t *testing.T) {
	const n = 1500
	s := newStack(t, "agent-nx", connectionIDs(n)...)
	// At least 7.5 s of requests (1,500 at 20 in parallel, 100 ms each): a window the progress
	// query cannot miss on a loaded machine, where 10 ms once let the whole teardown finish
	// between two answered queries.
	s.em.SetLatency(100 * time.Millisecond)
	cs := newCallerSide(t, s)
	run := cs.run(nexuscaller.Teardown, nexuscaller.TeardownInput{Endpoint: cs.endpoint,
		Teardown: ac.RemoveAgentConnectionsInput{AgentID: "agent-nx", Concurrency: 20, MaxHistoryEvents: 100}})
	var seen ac.TeardownProgress
	s.waitProgress(ac.RemoveAgentConnectionsWorkflowID("agent-nx"), func(p ac.TeardownProgress) bool {
		seen = p
		return p.Listed && p.Done > 0 && p.Done < p.Total
	})
	var res ac.RemoveAgentConnectionsResult
	if err := cs.get(run, &res); err != nil {
		t.Fatalf("caller: %v", err)
	}
	if res.Total != n || res.Removed != n || !res.Verified {
		t.Errorf("got total %d removed %d verified %t, want %d removed and verified", res.Total, res.Removed, res.Verified, n)
	}
	if res.Runs < 2 {
		t.Errorf("got %d runs, want the teardown to have continued as new (the caller follows the chain)", res.Runs)
	}
	if seen.Total != n {
		t.Errorf("got progress %+v mid-way, want %d connections listed", seen, n)
	}
	if st := s.em.Stats(); st.Removed != n || st.Delete404 != 0 {
		t.Errorf("got %d removing DELETEs and %d 404s, want %d and none", st.Removed, st.Delete404, n)
	}
}

// Cancelling the caller cancels the operation and so the teardown, which stops as it does for any
// Temporal cancellation; the caller gets its partial result.
func TestNexus_CancelledTeardownGivesThePartialResult(t *testing.T) {
	all := connectionIDs(300)
	s := newStack(t, "agent-nxc", all...)
	s.em.SetLatency(100 * time.Millisecond)
	cs := newCallerSide(t, s)
	run := cs.run(nexuscaller.Teardown, nexuscaller.TeardownInput{Endpoint: cs.endpoint,
		Teardown: ac.RemoveAgentConnectionsInput{AgentID: "agent-nxc", Concurrency: 10}})
	workflowID := ac.RemoveAgentConnectionsWorkflowID("agent-nxc")
	s.waitProgress(workflowID, func(p ac.TeardownProgress) bool { return p.Done >= 20 })
	if err := cs.client.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	err := cs.get(run, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("got %v, want the caller Canceled", err)
	}
	var res ac.RemoveAgentConnectionsResult
	if err := canceled.Details(&res); err != nil {
		t.Fatal(err)
	}
	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	if !res.Cancelled || res.Total != 300 || sum != 300 || res.Removed < 20 || res.Skipped == 0 || res.StopReason == "" {
		t.Errorf("got %+v, want cancelled, 300 accounted for, at least 20 removed and some skipped", res)
	}
	// The teardown itself ended Canceled in the worker's namespace, and stopped removing.
	desc, err := s.client.DescribeWorkflow(context.Background(), workflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("got the teardown %s, want Canceled", desc.Status)
	}
	if left := len(s.em.Connections("agent-nxc")); left != 300-res.Removed {
		t.Errorf("got %d connections left, want the %d the result does not report removed", left, 300-res.Removed)
	}
}

// A Nexus call and a direct start of the same removal converge on one run: one DELETE, and both
// callers get that run's result.
func TestNexus_RacingADirectStartSendsOneDelete(t *testing.T) {
	ids := []string{"c1", "c2", "c3", "c4"}
	s := newStack(t, "a1", ids...)
	s.em.SetLatency(300 * time.Millisecond)
	cs := newCallerSide(t, s)
	for _, id := range ids {
		in := ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: id}
		var wg sync.WaitGroup
		var viaNexus nexuscaller.RemoveOutcome
		var direct ac.RemoveConnectionResult
		var directErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			viaNexus = cs.remove(in)
		}()
		go func() {
			defer wg.Done()
			direct, directErr = s.result(s.start(in))
		}()
		wg.Wait()
		if directErr != nil || viaNexus.Result == nil {
			t.Fatalf("%s: got direct error %v, Nexus %+v", id, directErr, viaNexus.Failure)
		}
		if !reflect.DeepEqual(*viaNexus.Result, direct) || direct.Outcome != ac.OutcomeRemoved || direct.Attempts != 1 {
			t.Errorf("%s: got %+v through Nexus and %+v directly, want the same removal, removed by one request", id, *viaNexus.Result, direct)
		}
		if n := s.em.DeleteCount(id); n != 1 {
			t.Errorf("%s: got %d DELETEs, want 1", id, n)
		}
	}
}

// A caller that attaches to a run it did not start gets that run's result, which that run's input
// decides: here a direct teardown of two given connections, not the Nexus caller's whole agent.
func TestNexus_AttachingToADirectStartGetsThatRunsResult(t *testing.T) {
	s := newStack(t, "agent-att", "c1", "c2", "c3", "c4")
	// c1's DELETE hangs until the faults are cleared (and the worker's request timeout ends it),
	// so the direct run is still open when the Nexus call arrives.
	s.em.InjectNext(emulator.Fault{Hang: true, ConnectionID: "c1", Count: 100})
	cs := newCallerSide(t, s)
	direct := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-att", ConnectionIDs: []string{"c1", "c2"}})
	s.waitFor("c1's DELETE to hang", func() bool { return s.em.Faults().Pending[0].Count < 100 })
	run := cs.run(nexuscaller.Teardown, nexuscaller.TeardownInput{Endpoint: cs.endpoint, Teardown: ac.RemoveAgentConnectionsInput{AgentID: "agent-att"}})
	s.waitFor("the operation to attach to the direct run", func() bool {
		d, err := s.client.DescribeWorkflow(context.Background(), direct.GetID(), direct.GetRunID())
		return err == nil && len(d.RawResponse.GetCallbacks()) > 0
	})
	s.em.Reset()
	var viaNexus ac.RemoveAgentConnectionsResult
	if err := cs.get(run, &viaNexus); err != nil {
		t.Fatalf("caller: %v", err)
	}
	res := s.teardownResult(direct)
	if viaNexus.Total != 2 || viaNexus.Removed != 2 || viaNexus.Total != res.Total || viaNexus.Removed != res.Removed {
		t.Errorf("got %+v through Nexus and %+v directly, want the direct run's two removals in both", viaNexus, res)
	}
	if left := s.em.Connections("agent-att"); len(left) != 2 {
		t.Errorf("got %v left, want c3 and c4: the caller's own input (every connection) was not used", left)
	}
}

// Cancelling an operation cancels the run behind it, even one a direct start began: there is one
// teardown per agent, shared by every caller attached to it.
func TestNexus_CancellingAnAttachedOperationCancelsTheSharedTeardown(t *testing.T) {
	s := newStack(t, "agent-shared", connectionIDs(300)...)
	s.em.SetLatency(100 * time.Millisecond)
	cs := newCallerSide(t, s)
	direct := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-shared", Concurrency: 10})
	run := cs.run(nexuscaller.Teardown, nexuscaller.TeardownInput{Endpoint: cs.endpoint, Teardown: ac.RemoveAgentConnectionsInput{AgentID: "agent-shared"}})
	s.waitFor("the operation to attach to the direct run", func() bool {
		d, err := s.client.DescribeWorkflow(context.Background(), direct.GetID(), direct.GetRunID())
		return err == nil && len(d.RawResponse.GetCallbacks()) > 0
	})
	if err := cs.client.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	var canceled *temporal.CanceledError
	if err := cs.get(run, nil); !errors.As(err, &canceled) {
		t.Fatalf("got %v from the caller, want Canceled", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res ac.RemoveAgentConnectionsResult
	if err := direct.Get(ctx, nil); !errors.As(err, &canceled) || canceled.Details(&res) != nil || !res.Cancelled {
		t.Errorf("got %v (result %+v) from the direct start, want its run Canceled with the result", err, res)
	}
}

// The saga variant in the caller namespace reaches the teardown through the endpoint.
func TestNexus_SagaTearsDownThroughTheEndpoint(t *testing.T) {
	s := newStack(t, "agent-saga", "c1", "c2", "c3")
	cs := newCallerSide(t, s)
	var res teardownsaga.SagaResult
	err := cs.get(cs.run(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "agent-saga", DeploymentID: "dep-1", NexusEndpoint: cs.endpoint}), &res)
	if err != nil {
		t.Fatalf("saga: %v", err)
	}
	if !res.TeardownFinished || res.ConnectionsRemoved != 3 || !res.TeardownVerified || !res.DeploymentDeleted {
		t.Errorf("got %+v, want 3 removed, verified, and the deployment deleted", res)
	}
	if left := s.em.Connections("agent-saga"); len(left) != 0 {
		t.Errorf("got %v left, want none", left)
	}
	if cs.platform.DeploymentExists("dep-1") {
		t.Error("got the deployment still there")
	}
}

// A missing agent stops the saga before the irreversible step, with AgentNotFound in its chain.
func TestNexus_SagaStopsOnAMissingAgent(t *testing.T) {
	s := newStack(t, "agent-saga", "c1")
	cs := newCallerSide(t, s)
	err := cs.get(cs.run(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "agent-gone", DeploymentID: "dep-1", NexusEndpoint: cs.endpoint}), nil)
	var opErr *temporal.NexusOperationError
	var appErr *temporal.ApplicationError
	if !errors.As(err, &opErr) || !hasType(err, ac.ErrAgentNotFound) || !errors.As(err, &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed {
		t.Fatalf("got %v, want the saga failed with the operation's %s in its chain", err, ac.ErrAgentNotFound)
	}
	if !cs.platform.DeploymentExists("dep-1") || !cs.platform.AgentEnabled("agent-gone") {
		t.Error("got the deployment deleted or the agent left disabled, want neither")
	}
}

// hasType reports whether an ApplicationError of that type is anywhere in err's chain.
func hasType(err error, failureType string) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == failureType {
			return true
		}
	}
	return false
}
