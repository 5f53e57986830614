// Command recordhistories records the workflow histories that workflows/replay_test.go replays. It
// starts a Temporal dev server, the control plane emulator and an in-process worker running the
// real workflows and activities, runs one execution per path worth guarding, checks that each took
// the path its file name says, and writes each history as JSON, in the format of
// `temporal workflow show --output json`:
//
//	go run ./workflows/internal/recordhistories -out workflows/testdata
//
// Re-record only for a deliberate, versioned change of a workflow (workflow.GetVersion or worker
// versioning), never to make a failing replay pass. It stops everything it started when it ends.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/workflows"
)

const (
	taskQueue = "replay-recording"
	// identity replaces the SDK's default "pid@hostname" in the recorded events, so the files do
	// not carry the recording machine's name.
	identity = "recordhistories"
	// maxEvents keeps every recorded history small enough to read and to replay quickly.
	maxEvents = 300
	// scenarioTimeout bounds one execution; the slowest takes a few seconds.
	scenarioTimeout = 2 * time.Minute
)

func main() {
	out := flag.String("out", "workflows/testdata", "directory the history files are written to")
	verbose := flag.Bool("v", false, "show the SDK's log (the activity failures the executions provoke included)")
	only := flag.String("only", "", "comma-separated scenario names (file names without .json) to record; empty records all")
	flag.Parse()
	sdkLog := io.Discard
	if *verbose {
		sdkLog = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, *out, *only, os.Stderr, sdkLog)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "recordhistories:", err)
		os.Exit(1)
	}
}

// recording is one history to write.
type recording struct {
	file string
	hist *historypb.History
	data []byte
}

// recorder holds the stack the executions run on.
type recorder struct {
	c    client.Client
	em   *emulator.Server
	recs []recording
	// only names the scenarios to run (all when empty).
	only map[string]bool
}

// run records every history into outDir: it starts the stack, runs the scenarios, checks what
// they recorded and only then writes it. Each step is a function below, in the order they run.
func run(ctx context.Context, outDir, only string, stderr, sdkLog io.Writer) error {
	apiKey, err := randomKey()
	if err != nil {
		return err
	}
	srv, err := devserver.Start(ctx, devserver.Options{})
	if err != nil {
		return fmt.Errorf("start temporal dev server: %w", err)
	}
	defer srv.Stop()

	em := emulator.New(emulator.Options{APIKey: apiKey})
	hs := httptest.NewServer(em)
	defer hs.Close()
	defer em.Close() // runs first: releases held requests so hs.Close does not wait for them

	logger := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(sdkLog, nil)))
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.Address, Identity: identity, Logger: logger})
	if err != nil {
		return fmt.Errorf("dial %s: %w", srv.Address, err)
	}
	defer c.Close()

	w, err := startWorker(c, hs.URL, apiKey)
	if err != nil {
		return err
	}
	defer w.Stop()

	r := &recorder{c: c, em: em, only: map[string]bool{}}
	for name := range strings.SplitSeq(only, ",") {
		if name != "" {
			r.only[name] = true
		}
	}
	if err := r.runScenarios(ctx); err != nil {
		return err
	}
	// Everything is checked before anything is written: a history with the key in it must never
	// reach the disk.
	if err := r.check(apiKey); err != nil {
		return err
	}
	return r.write(outDir, stderr)
}

// startWorker starts an in-process worker running the real workflows and activities against the
// emulator at baseURL.
func startWorker(c client.Client, baseURL, apiKey string) (worker.Worker, error) {
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:     baseURL,
		Credentials: controlplane.StaticCredentials{APIKey: apiKey},
	})
	if err != nil {
		return nil, err
	}
	acts, err := activities.New(activities.Config{
		ControlPlane: cp,
		Coordinator:  activities.TemporalCoordinator{Client: c},
	})
	if err != nil {
		return nil, err
	}
	// Without a sticky cache no sticky task queue is used, whose name carries the host name; and
	// every workflow task replays the history from the start, a first check of determinism.
	worker.SetStickyWorkflowCacheSize(0)
	w := worker.New(c, taskQueue, worker.Options{Identity: identity})
	w.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	w.RegisterActivity(acts)
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	return w, nil
}

// runScenarios runs each execution in turn, each within scenarioTimeout and against an emulator
// reset after it, and stops at the first that fails.
func (r *recorder) runScenarios(ctx context.Context) error {
	for _, s := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"remove_connection_removed", r.removed},
		{"remove_connection_422", r.validationError},
		{"remove_connection_503_then_removed", r.serverErrorThenRemoved},
		{"remove_connection_missing_ok_false_404", r.notFound},
		{"remove_connection_invalid_id", r.invalidID},
		{"remove_connection_waits_for_teardown", r.waitsForTeardown},
		{"teardown_listed", r.teardownListed},
		{"teardown_given_ids", r.teardownGivenIDs},
		{"teardown_cancelled", r.teardownCancelled},
		{"teardown_temporal_cancelled", r.teardownTemporalCancelled},
		{"teardown_continued_as_new", r.teardownContinuedAsNew},
	} {
		if len(r.only) > 0 && !r.only[s.name] {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
		err := s.run(sctx)
		cancel()
		r.em.Reset()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// check renders every recorded history as JSON, refusing one that is too long or holds key.
func (r *recorder) check(key string) error {
	for i := range r.recs {
		rec := &r.recs[i]
		if n := len(rec.hist.Events); n > maxEvents {
			return fmt.Errorf("%s has %d events, more than the %d a replay test should carry", rec.file, n, maxEvents)
		}
		data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(rec.hist)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", rec.file, err)
		}
		if err := checkNoSecret(data, key); err != nil {
			return fmt.Errorf("%s: %w", rec.file, err)
		}
		rec.data = append(data, '\n')
	}
	return nil
}

// write writes every checked history to outDir and says so on stderr.
func (r *recorder) write(outDir string, stderr io.Writer) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, rec := range r.recs {
		path := filepath.Join(outDir, rec.file)
		if err := os.WriteFile(path, rec.data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s: %d events, %d bytes\n", path, len(rec.hist.Events), len(rec.data))
	}
	return nil
}

// randomKey makes a fresh API key for the emulator, the one checkNoSecret looks for.
func randomKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "recordhistories-key-" + hex.EncodeToString(b), nil
}

// checkNoSecret fails when key is anywhere in the JSON: in its text, or inside any string that
// decodes as base64 (payload data is base64 in this format).
func checkNoSecret(data []byte, key string) error {
	if strings.Contains(string(data), key) {
		return errors.New("the history holds the API key")
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("read back the history JSON: %w", err)
	}
	var found bool
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if strings.Contains(v, key) {
				found = true
			}
			if b, err := base64.StdEncoding.DecodeString(v); err == nil && strings.Contains(string(b), key) {
				found = true
			}
		}
	}
	walk(doc)
	if found {
		return errors.New("a payload of the history holds the API key")
	}
	return nil
}

// keep fetches a closed run's full history for writing to file.
func (r *recorder) keep(ctx context.Context, file, workflowID, runID string) (*historypb.History, error) {
	it := r.c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	hist := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		hist.Events = append(hist.Events, ev)
	}
	if len(hist.Events) == 0 {
		return nil, fmt.Errorf("history of %s is empty", workflowID)
	}
	r.recs = append(r.recs, recording{file: file, hist: hist})
	return hist, nil
}

func (r *recorder) startRemoval(ctx context.Context, in ac.RemoveConnectionInput) (client.WorkflowRun, error) {
	return r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       ac.RemoveConnectionWorkflowID(in.AgentID, in.ConnectionID),
		TaskQueue:                taskQueue,
		WorkflowExecutionTimeout: scenarioTimeout,
	}, ac.RemoveConnectionWorkflowType, in)
}

func (r *recorder) startTeardown(ctx context.Context, in ac.RemoveAgentConnectionsInput) (client.WorkflowRun, error) {
	return r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       ac.RemoveAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:                taskQueue,
		WorkflowExecutionTimeout: scenarioTimeout,
	}, ac.RemoveAgentConnectionsWorkflowType, in)
}

// removalEnd is how a RemoveConnectionWorkflow ended, and its history.
type removalEnd struct {
	res  ac.RemoveConnectionResult
	err  error // the workflow's failure
	hist *historypb.History
}

// removal runs one RemoveConnectionWorkflow to its end and keeps its history.
func (r *recorder) removal(ctx context.Context, file string, in ac.RemoveConnectionInput) (removalEnd, error) {
	run, err := r.startRemoval(ctx, in)
	if err != nil {
		return removalEnd{}, err
	}
	var end removalEnd
	end.err = run.Get(ctx, &end.res)
	end.hist, err = r.keep(ctx, file, run.GetID(), run.GetRunID())
	return end, err
}

// expectRemoval runs a removal that must succeed with want.
func (r *recorder) expectRemoval(ctx context.Context, file string, in ac.RemoveConnectionInput, want ac.RemoveConnectionResult) (*historypb.History, error) {
	end, err := r.removal(ctx, file, in)
	if err != nil {
		return nil, err
	}
	if end.err != nil {
		return nil, fmt.Errorf("got error %w, want %+v", end.err, want)
	}
	if !reflect.DeepEqual(end.res, want) {
		return nil, fmt.Errorf("got %+v, want %+v", end.res, want)
	}
	return end.hist, nil
}

// expectFailure runs a removal that must fail with an ApplicationError of type wantType.
func (r *recorder) expectFailure(ctx context.Context, file string, in ac.RemoveConnectionInput, wantType string) (*historypb.History, error) {
	end, err := r.removal(ctx, file, in)
	if err != nil {
		return nil, err
	}
	var appErr *temporal.ApplicationError
	if !errors.As(end.err, &appErr) || appErr.Type() != wantType {
		return nil, fmt.Errorf("got result %+v, error %v; want failure type %s", end.res, end.err, wantType)
	}
	return end.hist, nil
}

func (r *recorder) removed(ctx context.Context) error {
	r.em.Seed("agent-one", "conn-removed")
	_, err := r.expectRemoval(ctx, "remove_connection_removed.json",
		ac.RemoveConnectionInput{AgentID: "agent-one", ConnectionID: "conn-removed"},
		ac.RemoveConnectionResult{AgentID: "agent-one", ConnectionID: "conn-removed", Outcome: ac.OutcomeRemoved, Attempts: 1})
	return err
}

func (r *recorder) validationError(ctx context.Context) error {
	r.em.Seed("agent-one", "conn-locked")
	r.em.MarkInvalid("conn-locked")
	_, err := r.expectFailure(ctx, "remove_connection_422.json",
		ac.RemoveConnectionInput{AgentID: "agent-one", ConnectionID: "conn-locked"}, ac.ErrValidation)
	return err
}

func (r *recorder) serverErrorThenRemoved(ctx context.Context) error {
	r.em.Seed("agent-one", "conn-flaky")
	r.em.InjectNext(emulator.Fault{Status: 503, RetryAfter: "1", ConnectionID: "conn-flaky"})
	hist, err := r.expectRemoval(ctx, "remove_connection_503_then_removed.json",
		ac.RemoveConnectionInput{AgentID: "agent-one", ConnectionID: "conn-flaky"},
		ac.RemoveConnectionResult{AgentID: "agent-one", ConnectionID: "conn-flaky", Outcome: ac.OutcomeRemoved, Attempts: 2})
	if err != nil {
		return err
	}
	for _, ev := range hist.Events {
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() == 2 {
			return nil
		}
	}
	return errors.New("got no second activity attempt in the history, want the retry after Retry-After")
}

func (r *recorder) notFound(ctx context.Context) error {
	_, err := r.expectFailure(ctx, "remove_connection_missing_ok_false_404.json",
		ac.RemoveConnectionInput{AgentID: "agent-one", ConnectionID: "conn-missing", MissingOK: new(false)}, ac.ErrNotFound)
	return err
}

func (r *recorder) invalidID(ctx context.Context) error {
	hist, err := r.expectFailure(ctx, "remove_connection_invalid_id.json",
		ac.RemoveConnectionInput{AgentID: "agent-one", ConnectionID: "bad/id"}, ac.ErrInvalidRequest)
	if err != nil {
		return err
	}
	for _, ev := range hist.Events {
		if ev.GetActivityTaskScheduledEventAttributes() != nil || ev.GetMarkerRecordedEventAttributes() != nil {
			return errors.New("got an activity in the history, want none before the ID check")
		}
	}
	return nil
}

// waitsForTeardown starts a standalone removal of a connection a slow teardown owns and has not
// reached yet, so the removal waits for the teardown's outcome instead of sending a DELETE.
func (r *recorder) waitsForTeardown(ctx context.Context) error {
	const agent = "agent-wait"
	ids := connectionIDs("wait-", 20)
	r.em.Seed(agent, ids...)
	r.em.SetLatency(150 * time.Millisecond)
	teardown, err := r.startTeardown(ctx, ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 1})
	if err != nil {
		return err
	}
	if _, err := r.waitProgress(ctx, teardown.GetID(), func(p ac.TeardownProgress) bool { return p.Listed }); err != nil {
		return err
	}
	last := ids[len(ids)-1]
	hist, err := r.expectRemoval(ctx, "remove_connection_waits_for_teardown.json",
		ac.RemoveConnectionInput{AgentID: agent, ConnectionID: last},
		ac.RemoveConnectionResult{AgentID: agent, ConnectionID: last, Outcome: ac.OutcomeRemoved, Attempts: 0})
	if err != nil {
		return err
	}
	if !scheduled(hist, "AwaitTeardownOutcome") || scheduled(hist, ac.RemoveConnectionActivityType) {
		return errors.New("got a history without the wait for the teardown, or with a DELETE of its own")
	}
	var res ac.RemoveAgentConnectionsResult
	if err := teardown.Get(ctx, &res); err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	if res.Removed != len(ids) {
		return fmt.Errorf("got teardown %d removed, want %d", res.Removed, len(ids))
	}
	return nil
}

// teardownListed lists 30 connections, one of which the control plane refuses (422), and meets a
// burst of 503s with Retry-After, so a second round waits on a timer; then it lists again.
func (r *recorder) teardownListed(ctx context.Context) error {
	const agent = "agent-listed"
	ids := connectionIDs("listed-", 30)
	r.em.Seed(agent, ids...)
	r.em.MarkInvalid(ids[7])
	r.em.InjectNext(emulator.Fault{Status: 503, RetryAfter: "1", Count: 3, Method: "DELETE", AgentID: agent})
	res, hist, err := r.runTeardown(ctx, "teardown_listed.json", ac.RemoveAgentConnectionsInput{AgentID: agent})
	if err != nil {
		return err
	}
	if res.Total != 30 || res.Removed != 29 || res.Failed != 1 || !res.Verified {
		return fmt.Errorf("got total %d removed %d failed %d verified %t, want 30, 29, 1, true", res.Total, res.Removed, res.Failed, res.Verified)
	}
	if !hasEvent(hist, enumspb.EVENT_TYPE_TIMER_STARTED) || scheduledCount(hist, ac.ListConnectionsActivityType) != 2 {
		return errors.New("got a history without a retry round or without both listings")
	}
	return nil
}

// teardownGivenIDs removes named connections: one twice (merged), one already gone. It lists the
// agent first for their snapshots (teardown_given_ids_v0.json is the same run before that list
// was added).
func (r *recorder) teardownGivenIDs(ctx context.Context) error {
	const agent = "agent-given"
	r.em.Seed(agent, connectionIDs("given-", 6)...)
	res, hist, err := r.runTeardown(ctx, "teardown_given_ids.json", ac.RemoveAgentConnectionsInput{
		AgentID:       agent,
		ConnectionIDs: []string{"given-0000", "given-0001", "given-0002", "given-0000", "given-gone"},
		Concurrency:   2,
	})
	if err != nil {
		return err
	}
	if res.Total != 4 || res.Removed != 3 || res.AlreadyAbsent != 1 || !res.Verified {
		return fmt.Errorf("got total %d removed %d already absent %d verified %t, want 4, 3, 1, true", res.Total, res.Removed, res.AlreadyAbsent, res.Verified)
	}
	if n := scheduledCount(hist, ac.ListConnectionsActivityType); n != 2 {
		return fmt.Errorf("got %d lists, want 2: one for the snapshots, one to verify", n)
	}
	for _, o := range res.Connections {
		if want := "tok-" + o.ConnectionID; o.Outcome == ac.OutcomeRemoved && o.OAuthTokenID != want {
			return fmt.Errorf("%s: got token %q, want %q", o.ConnectionID, o.OAuthTokenID, want)
		}
	}
	return nil
}

// startSlowTeardown seeds agent with 40 connections named from prefix, slows every request to
// 100ms, starts a teardown one connection at a time, and returns its run once 5 are done.
func (r *recorder) startSlowTeardown(ctx context.Context, agent, prefix string) (client.WorkflowRun, error) {
	r.em.Seed(agent, connectionIDs(prefix, 40)...)
	r.em.SetLatency(100 * time.Millisecond)
	run, err := r.startTeardown(ctx, ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 1})
	if err != nil {
		return nil, err
	}
	if _, err := r.waitProgress(ctx, run.GetID(), func(p ac.TeardownProgress) bool { return p.Done >= 5 }); err != nil {
		return nil, err
	}
	return run, nil
}

// checkCancelled says how res is not the result of a slow teardown cancelled midway: cancelled,
// some removed, some skipped, all 40 counted.
func checkCancelled(res ac.RemoveAgentConnectionsResult) error {
	if !res.Cancelled || res.Skipped == 0 || res.Removed == 0 || res.Total != 40 {
		return fmt.Errorf("got cancelled %t skipped %d removed %d total %d, want true, some, some, 40", res.Cancelled, res.Skipped, res.Removed, res.Total)
	}
	return nil
}

// teardownCancelled cancels a slow teardown through its update once some connections are done.
func (r *recorder) teardownCancelled(ctx context.Context) error {
	run, err := r.startSlowTeardown(ctx, "agent-cancel", "cancel-")
	if err != nil {
		return err
	}
	h, err := r.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   run.GetID(),
		UpdateName:   ac.CancelUpdate,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return fmt.Errorf("cancel update: %w", err)
	}
	var p ac.TeardownProgress
	if err := h.Get(ctx, &p); err != nil {
		return fmt.Errorf("cancel update: %w", err)
	}
	res, _, err := r.teardownResult(ctx, "teardown_cancelled.json", run)
	if err != nil {
		return err
	}
	return checkCancelled(res)
}

// teardownTemporalCancelled cancels a slow teardown through Temporal's own cancellation, as the
// CLI or a parent does: the run ends Canceled with its result in the details.
func (r *recorder) teardownTemporalCancelled(ctx context.Context) error {
	run, err := r.startSlowTeardown(ctx, "agent-tcancel", "tcancel-")
	if err != nil {
		return err
	}
	if err := r.c.CancelWorkflow(ctx, run.GetID(), run.GetRunID()); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	err = run.Get(ctx, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		return fmt.Errorf("got %v, want the teardown Canceled", err)
	}
	var res ac.RemoveAgentConnectionsResult
	if err := canceled.Details(&res); err != nil {
		return fmt.Errorf("canceled details: %w", err)
	}
	if err := checkCancelled(res); err != nil {
		return err
	}
	_, err = r.keep(ctx, "teardown_temporal_cancelled.json", run.GetID(), run.GetRunID())
	return err
}

// teardownContinuedAsNew runs a teardown whose history bound is so small it continues as new
// every couple of batches; it keeps the first run and the last.
func (r *recorder) teardownContinuedAsNew(ctx context.Context) error {
	const agent = "agent-can"
	r.em.Seed(agent, connectionIDs("can-", 300)...)
	run, err := r.startTeardown(ctx, ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 1, MaxHistoryEvents: ac.MinTeardownMaxHistoryEvents})
	if err != nil {
		return err
	}
	// The run follows the chain of runs as Get waits, so its run ID changes: note the first one.
	firstRunID := run.GetRunID()
	var res ac.RemoveAgentConnectionsResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	if res.Runs < 3 || res.Removed != 300 || !res.Verified {
		return fmt.Errorf("got runs %d removed %d verified %t, want at least 3, 300, true", res.Runs, res.Removed, res.Verified)
	}
	first, err := r.keep(ctx, "teardown_continued_as_new_run1.json", run.GetID(), firstRunID)
	if err != nil {
		return err
	}
	if !hasEvent(first, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW) {
		return errors.New("got a first run that did not continue as new")
	}
	desc, err := r.c.DescribeWorkflow(ctx, run.GetID(), "")
	if err != nil {
		return err
	}
	lastRunID := desc.WorkflowExecution.RunID
	if lastRunID == firstRunID {
		return errors.New("got the first run as the last one")
	}
	last, err := r.keep(ctx, "teardown_continued_as_new_final.json", run.GetID(), lastRunID)
	if err != nil {
		return err
	}
	if !hasEvent(last, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) {
		return errors.New("got a last run that did not complete")
	}
	return nil
}

// runTeardown starts a teardown of in and waits for its result, keeping its history in file.
func (r *recorder) runTeardown(ctx context.Context, file string, in ac.RemoveAgentConnectionsInput) (ac.RemoveAgentConnectionsResult, *historypb.History, error) {
	run, err := r.startTeardown(ctx, in)
	if err != nil {
		return ac.RemoveAgentConnectionsResult{}, nil, err
	}
	return r.teardownResult(ctx, file, run)
}

// teardownResult waits for run's result and keeps its history in file.
func (r *recorder) teardownResult(ctx context.Context, file string, run client.WorkflowRun) (ac.RemoveAgentConnectionsResult, *historypb.History, error) {
	var res ac.RemoveAgentConnectionsResult
	if err := run.Get(ctx, &res); err != nil {
		return res, nil, fmt.Errorf("teardown: %w", err)
	}
	hist, err := r.keep(ctx, file, run.GetID(), run.GetRunID())
	return res, hist, err
}

// waitProgress asks the teardown's progress query until done says it is far enough.
func (r *recorder) waitProgress(ctx context.Context, workflowID string, done func(ac.TeardownProgress) bool) (ac.TeardownProgress, error) {
	var last error
	for {
		v, err := r.c.QueryWorkflow(ctx, workflowID, "", ac.ProgressQuery)
		if err == nil {
			var p ac.TeardownProgress
			if err = v.Get(&p); err == nil && done(p) {
				return p, nil
			}
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return ac.TeardownProgress{}, fmt.Errorf("waiting for the teardown's progress: %w (last query error: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func connectionIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return ids
}

func hasEvent(h *historypb.History, t enumspb.EventType) bool {
	for _, ev := range h.Events {
		if ev.GetEventType() == t {
			return true
		}
	}
	return false
}

func scheduledCount(h *historypb.History, activityType string) int {
	n := 0
	for _, ev := range h.Events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activityType {
			n++
		}
	}
	return n
}

func scheduled(h *historypb.History, activityType string) bool {
	return scheduledCount(h, activityType) > 0
}
