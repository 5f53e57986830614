// Package integration runs the real worker binary against a real Temporal dev server (the temporal
// CLI that `make test` installs) and the control plane emulator, and starts removals through the
// real Temporal client.
package integration

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

const testKey = "integration-secret-key-5f2a9c"

var (
	server    *devserver.Server
	workerBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	return devserver.RunWithWorker(m.Run, func(s *devserver.Server, bin string) { server, workerBin = s, bin })
}

// stack is one test's emulator, worker and client, on a task queue of its own.
type stack struct {
	t         *testing.T
	em        *emulator.Server
	emURL     string
	taskQueue string
	client    client.Client
	worker    *proc.Process
	workerEnv []string
	// httpAddr is the running worker's WORKER_HTTP_ADDRESS (/metrics, /healthz, /readyz).
	httpAddr string
}

func newStack(t *testing.T, agentID string, connectionIDs ...string) *stack {
	t.Helper()
	return newStackWithEnv(t, nil, agentID, connectionIDs...)
}

// newStackWithEnv is newStack with extra worker environment (later entries win).
func newStackWithEnv(t *testing.T, workerEnv []string, agentID string, connectionIDs ...string) *stack {
	t.Helper()
	em := emulator.New(emulator.Options{APIKey: testKey, Seed: map[string][]string{agentID: connectionIDs}, LogLimit: 50_000})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close) // runs first: releases hanging requests so srv.Close does not wait
	c, err := client.Dial(client.Options{HostPort: server.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &stack{t: t, em: em, emURL: srv.URL, taskQueue: "it-" + strings.ReplaceAll(t.Name(), "/", "-"), client: c, workerEnv: workerEnv}
	s.startWorker()
	return s
}

// startWorker runs the worker binary and waits until it reports ready.
func (s *stack) startWorker() {
	s.t.Helper()
	port, err := devserver.FreePort()
	if err != nil {
		s.t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.t.TempDir(),
		"TEMPORAL_ADDRESS=" + server.Address,
		"TEMPORAL_NAMESPACE=default",
		"TEMPORAL_TASK_QUEUE=" + s.taskQueue,
		"LANGSMITH_API_KEY=" + testKey,
		"LANGSMITH_CONTROL_PLANE_URL=" + s.emURL,
		"LANGSMITH_REQUEST_TIMEOUT=5s",
		// The tests measure removals, not pacing: no steady request limit (a 429 still pauses).
		"LANGSMITH_REQUESTS_PER_SECOND=0",
		"WORKER_HTTP_ADDRESS=" + addr,
		"WORKER_STOP_TIMEOUT=5s",
		"LOG_LEVEL=debug",
	}
	env = append(env, s.workerEnv...)
	p, err := proc.Start("worker", workerBin, nil, env, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.worker = p
	s.httpAddr = addr
	s.t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if strings.Contains(p.Output(), testKey) {
			s.t.Errorf("the worker logged the API key")
		}
		if s.t.Failed() {
			s.t.Logf("worker output:\n%s", p.Output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			s.t.Fatalf("worker exited at start: %s", p.Output())
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("worker not ready within 30s: %s", p.Output())
}

// start begins a removal the way a calling service does: the contract's workflow ID and type name.
func (s *stack) start(in ac.RemoveConnectionInput) client.WorkflowRun {
	s.t.Helper()
	run, err := s.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       ac.RemoveConnectionWorkflowID(in.AgentID, in.ConnectionID),
		TaskQueue:                s.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, ac.RemoveConnectionWorkflowType, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return run
}

func (s *stack) result(run client.WorkflowRun) (ac.RemoveConnectionResult, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res ac.RemoveConnectionResult
	err := run.Get(ctx, &res)
	return res, err
}

// deleteTimes are the times the emulator logged a DELETE of connectionID.
func (s *stack) deleteTimes(connectionID string) []time.Time {
	var ts []time.Time
	for _, e := range s.em.Log() {
		if e.Method == http.MethodDelete && strings.HasSuffix(e.Path, "/connections/"+connectionID) {
			ts = append(ts, e.Time)
		}
	}
	return ts
}

func (s *stack) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegration_204Removes(t *testing.T) {
	s := newStack(t, "a1", "c1")
	res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"}))
	if err != nil {
		t.Fatal(err)
	}
	want := ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}
	if s.em.HasConnection("a1", "c1") {
		t.Error("got c1 still at the control plane, want it removed")
	}
}

func TestIntegration_422FailsAfterOneRequest(t *testing.T) {
	s := newStack(t, "a1", "c1")
	s.em.MarkInvalid("c1")
	_, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"}))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ac.ErrValidation {
		t.Fatalf("got %v, want a %s failure", err, ac.ErrValidation)
	}
	if got := s.em.DeleteCount("c1"); got != 1 {
		t.Errorf("got %d DELETE requests, want exactly 1", got)
	}
}

func TestIntegration_503ThenSuccess(t *testing.T) {
	s := newStack(t, "a1", "c1")
	// With Retry-After the 503 goes back to Temporal: a second activity attempt, visible in history.
	s.em.InjectNext(emulator.Fault{Status: 503, RetryAfter: "1", ConnectionID: "c1"})
	res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ac.OutcomeRemoved || res.Attempts != 2 {
		t.Errorf("got %+v, want removed after 2 requests", res)
	}
}

func TestIntegration_429RetryAfterIsWaited(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fault   emulator.Fault
		minWait time.Duration
	}{
		{"seconds", emulator.Fault{Status: 429, RetryAfter: "3", ConnectionID: "c1"}, 3 * time.Second},
		// An HTTP date has one-second resolution: 3 s from now may read as just over 2 s.
		{"http date", emulator.Fault{Status: 429, RetryAfter: "3", RetryAfterDate: true, ConnectionID: "c1"}, 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, "a1", "c1")
			s.em.InjectNext(tt.fault)
			res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != ac.OutcomeRemoved || res.Attempts != 2 {
				t.Errorf("got %+v, want removed after 2 requests", res)
			}
			times := s.deleteTimes("c1")
			if len(times) != 2 {
				t.Fatalf("got %d DELETEs, want 2", len(times))
			}
			if wait := times[1].Sub(times[0]); wait < tt.minWait {
				t.Errorf("got the retry %s after the 429, want at least %s", wait, tt.minWait)
			}
		})
	}
}

func TestIntegration_WorkerStoppedMidRetryAndRestarted(t *testing.T) {
	s := newStack(t, "a1", "c1")
	s.em.InjectNext(emulator.Fault{Status: 503, RetryAfter: "4", ConnectionID: "c1"})
	run := s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: new(bool)})
	// Wait until Temporal holds the retry: attempt 2 scheduled after the 503.
	s.waitFor("the retry to be scheduled", func() bool {
		d, err := s.client.DescribeWorkflow(context.Background(), run.GetID(), run.GetRunID())
		if err != nil || len(d.RawResponse.PendingActivities) == 0 {
			return false
		}
		return d.RawResponse.PendingActivities[0].Attempt == 2
	})
	s.worker.Kill()
	s.startWorker()
	res, err := s.result(run)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ac.OutcomeRemoved || res.Attempts != 2 {
		t.Errorf("got %+v, want removed after 2 requests", res)
	}
}

func TestIntegration_WorkerKilledMidRequestIsPickedUpAfterHeartbeatTimeout(t *testing.T) {
	s := newStack(t, "a1", "c1")
	s.em.InjectNext(emulator.Fault{Hang: true, ConnectionID: "c1"})
	run := s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1", MissingOK: new(bool)})
	// The hang fault is taken off the queue when the first DELETE arrives; that request never ends.
	s.waitFor("the first DELETE to reach the control plane", func() bool { return len(s.em.Faults().Pending) == 0 })
	s.worker.Kill() // mid-request: the DELETE never gets its answer
	s.startWorker()
	res, err := s.result(run)
	if err != nil {
		t.Fatal(err)
	}
	// The killed attempt recorded no count (no heartbeat precedes a first request): the next
	// attempt counts it as one request, so the count survived the crash.
	if res.Outcome != ac.OutcomeRemoved || res.Attempts != 2 {
		t.Errorf("got %+v, want removed with attempts 2", res)
	}
	// The dead attempt ended by heartbeat timeout, not by its much longer start-to-close timeout.
	iter := s.client.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var timeoutTypes []enumspb.TimeoutType
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetLastFailure() != nil {
			if ti := a.GetLastFailure().GetTimeoutFailureInfo(); ti != nil {
				timeoutTypes = append(timeoutTypes, ti.GetTimeoutType())
			}
		}
	}
	if len(timeoutTypes) != 1 || timeoutTypes[0] != enumspb.TIMEOUT_TYPE_HEARTBEAT {
		t.Errorf("got timeouts %v before the retry, want one heartbeat timeout", timeoutTypes)
	}
}
