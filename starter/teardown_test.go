package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/devserver"
)

func TestRun_TeardownUsageErrors(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantFirst string
	}{
		{"all and one connection", []string{"--agent-id", "a1", "--all", "--connection-id", "c1"},
			"starter: --connection-id and --all are mutually exclusive"},
		{"all without agent", []string{"--all"}, "starter: --agent-id is required"},
		{"connection-ids without all", []string{"--agent-id", "a1", "--connection-id", "c1", "--connection-ids", "c1,c2"},
			"starter: --connection-ids needs --all"},
		{"concurrency without all", []string{"--agent-id", "a1", "--connection-id", "c1", "--concurrency", "5"},
			"starter: --concurrency needs --all"},
		{"continue-on-error without all", []string{"--agent-id", "a1", "--connection-id", "c1", "--continue-on-error=false"},
			"starter: --continue-on-error needs --all"},
		{"negative concurrency", []string{"--agent-id", "a1", "--all", "--concurrency", "-1"},
			"starter: --concurrency is -1, want 0 (the workflow's default) to 200"},
		{"concurrency over the bound", []string{"--agent-id", "a1", "--all", "--concurrency", "201"},
			"starter: --concurrency is 201, want 0 (the workflow's default) to 200"},
		{"concurrency not a number", []string{"--agent-id", "a1", "--all", "--concurrency", "many"},
			`invalid value "many" for flag -concurrency`},
		{"empty connection-ids", []string{"--agent-id", "a1", "--all", "--connection-ids", " "},
			"starter: --connection-ids is empty (leave it out to remove every connection)"},
		{"empty entry", []string{"--agent-id", "a1", "--all", "--connection-ids", "c1,,c2"},
			"starter: --connection-ids has an empty entry at position 2"},
		{"repeated id", []string{"--agent-id", "a1", "--all", "--connection-ids", "c1,c2, c1"},
			`starter: --connection-ids names "c1" twice`},
		{"invalid listed id", []string{"--agent-id", "a1", "--all", "--connection-ids", "c1,c/2"},
			`starter: invalid id: connection_ids[1] "c/2" contains '/' at byte 1`},
		{"invalid agent", []string{"--agent-id", "a 1", "--all"},
			`starter: invalid id: agent_id "a 1" contains ' ' at byte 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, offlineEnv(t), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code: got %d, want 2", code)
			}
			got := lines(stderr.String())
			if len(got) != 2 || !strings.HasPrefix(got[0], tt.wantFirst) || got[1] != usageLine {
				t.Errorf("stderr: got %q, want %q and the usage line", stderr.String(), tt.wantFirst)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestParseArgs_Teardown(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name string
		args []string
		want ac.RemoveAgentConnectionsInput
	}{
		{"defaults", nil,
			ac.RemoveAgentConnectionsInput{AgentID: "a1", MissingOK: &yes, ContinueOnError: &yes}},
		{"listed connections, trimmed", []string{"--connection-ids", "c1, c2 ,c3"},
			ac.RemoveAgentConnectionsInput{AgentID: "a1", ConnectionIDs: []string{"c1", "c2", "c3"}, MissingOK: &yes, ContinueOnError: &yes}},
		{"every switch", []string{"--concurrency", "200", "--continue-on-error=false", "--missing-ok=false"},
			ac.RemoveAgentConnectionsInput{AgentID: "a1", Concurrency: 200, MissingOK: &no, ContinueOnError: &no}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--agent-id", "a1", "--all"}, tt.args...)
			var stderr bytes.Buffer
			opts, _, ok := parseArgs(args, nil, io.Discard, &stderr)
			if !ok {
				t.Fatalf("parseArgs refused %v: %s", args, stderr.String())
			}
			if !opts.all || !opts.wait {
				t.Errorf("got all %t wait %t, want both true", opts.all, opts.wait)
			}
			if got := teardownInput(opts); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("input: got %s, want %s", mustJSON(t, got), mustJSON(t, tt.want))
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderProgress(t *testing.T) {
	tests := []struct {
		name      string
		in        ac.TeardownProgress
		wantBar   string
		wantCount string
	}{
		{"not listed yet", ac.TeardownProgress{Total: 0},
			"[..........] listing connections", "listing connections"},
		{"nothing to remove", ac.TeardownProgress{Listed: true},
			"[##########] 0/0 done, 0 failed, 0 in flight", "0/0 done, 0 failed, 0 in flight"},
		{"under way", ac.TeardownProgress{Listed: true, Total: 500, Done: 120, Failed: 3, InFlight: 10},
			"[##........] 120/500 done, 3 failed, 10 in flight", "120/500 done, 3 failed, 10 in flight"},
		{"failures fill the bar too", ac.TeardownProgress{Listed: true, Total: 4, Done: 2, Failed: 2},
			"[##########] 2/4 done, 2 failed, 0 in flight", "2/4 done, 2 failed, 0 in flight"},
		{"more finished than total is clamped", ac.TeardownProgress{Listed: true, Total: 2, Done: 3},
			"[##########] 3/2 done, 0 failed, 0 in flight", "3/2 done, 0 failed, 0 in flight"},
		{"cancelling", ac.TeardownProgress{Listed: true, Total: 10, Done: 5, InFlight: 2, Cancelled: true},
			"[#####.....] 5/10 done, 0 failed, 2 in flight, cancelling", "5/10 done, 0 failed, 2 in flight, cancelling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderProgressBar(tt.in, 10); got != tt.wantBar {
				t.Errorf("bar: got %q, want %q", got, tt.wantBar)
			}
			if got := renderProgressCounts(tt.in); got != tt.wantCount {
				t.Errorf("counts: got %q, want %q", got, tt.wantCount)
			}
		})
	}
}

func TestProgressPrinter_PlainLinesOnlyOnChangeAtMostOncePerSecond(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, false)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pp.now = func() time.Time { return clock }
	p := func(done int) ac.TeardownProgress { return ac.TeardownProgress{Listed: true, Total: 3, Done: done} }
	steps := []struct {
		after time.Duration
		done  int
	}{
		{0, 0},                       // printed: the first
		{500 * time.Millisecond, 0},  // unchanged
		{500 * time.Millisecond, 1},  // changed, a second after the last line: printed
		{500 * time.Millisecond, 2},  // changed, too soon
		{500 * time.Millisecond, 2},  // a second now: printed
		{5 * time.Second, 2},         // unchanged, however long
		{500 * time.Millisecond, 3},  // changed, long enough after: printed
		{100 * time.Millisecond, 3},  // unchanged
		{2000 * time.Millisecond, 3}, // unchanged
	}
	for _, s := range steps {
		clock = clock.Add(s.after)
		pp.show(p(s.done))
	}
	pp.finish()
	want := "progress: 0/3 done, 0 failed, 0 in flight\n" +
		"progress: 1/3 done, 0 failed, 0 in flight\n" +
		"progress: 2/3 done, 0 failed, 0 in flight\n" +
		"progress: 3/3 done, 0 failed, 0 in flight\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestProgressPrinter_TerminalRewritesOneLine(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, true)
	pp.show(ac.TeardownProgress{})
	pp.show(ac.TeardownProgress{}) // unchanged: nothing written
	pp.show(ac.TeardownProgress{Listed: true, Total: 10, Done: 5, Failed: 1, InFlight: 10})
	pp.show(ac.TeardownProgress{Listed: true, Total: 10, Done: 6, Failed: 1, InFlight: 2}) // one byte shorter
	pp.finish()
	pp.finish() // the line is already ended
	want := "\r[....................] listing connections" +
		"\r[############........] 5/10 done, 1 failed, 10 in flight" +
		"\r[##############......] 6/10 done, 1 failed, 2 in flight " +
		"\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}

	var end bytes.Buffer
	pp = newProgressPrinter(&end, true)
	pp.show(ac.TeardownProgress{Listed: true, Total: 4, Done: 1, InFlight: 2})
	pp.showResult(ac.RemoveAgentConnectionsResult{Total: 4, Removed: 2, AlreadyAbsent: 1, Failed: 1})
	pp.finish()
	want = "\r[#####...............] 1/4 done, 0 failed, 2 in flight" +
		"\r[####################] 3/4 done, 1 failed, 0 in flight\n"
	if end.String() != want {
		t.Errorf("last bar from the result: got %q, want %q", end.String(), want)
	}
	var plain bytes.Buffer
	newProgressPrinter(&plain, false).showResult(ac.RemoveAgentConnectionsResult{Total: 1, Removed: 1})
	if plain.Len() != 0 {
		t.Errorf("plain lines: got %q from the result, want nothing (the summary follows)", plain.String())
	}

	var nothing bytes.Buffer
	newProgressPrinter(&nothing, true).finish()
	if nothing.Len() != 0 {
		t.Errorf("finish with no bar shown: got %q, want nothing", nothing.String())
	}
	var none *progressPrinter
	none.show(ac.TeardownProgress{}) // a nil printer shows nothing and does not panic
	none.finish()
}

func TestTeardownComplete(t *testing.T) {
	removed := ac.ConnectionOutcome{ConnectionID: "c1", Outcome: ac.OutcomeRemoved}
	absent := ac.ConnectionOutcome{ConnectionID: "c2", Outcome: ac.OutcomeAlreadyAbsent}
	tests := []struct {
		name string
		in   ac.RemoveAgentConnectionsResult
		want bool
	}{
		{"nothing to remove", ac.RemoveAgentConnectionsResult{}, true},
		{"removed and absent", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1, AlreadyAbsent: 1, Connections: []ac.ConnectionOutcome{removed, absent}}, true},
		{"cancelled after everything was done", ac.RemoveAgentConnectionsResult{Total: 1, Removed: 1, Cancelled: true, Connections: []ac.ConnectionOutcome{removed}}, false},
		{"failed", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1, Failed: 1}, false},
		{"remained", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1, Remained: 1}, false},
		{"reappeared", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1, Reappeared: 1}, false},
		{"skipped", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1, Skipped: 1}, false},
		{"counts short of the total", ac.RemoveAgentConnectionsResult{Total: 2, Removed: 1}, false},
		{"an outcome this starter does not know", ac.RemoveAgentConnectionsResult{Total: 1, Removed: 1,
			Connections: []ac.ConnectionOutcome{{ConnectionID: "c1", Outcome: "moved"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := teardownComplete(tt.in); got != tt.want {
				t.Errorf("got %t, want %t", got, tt.want)
			}
		})
	}
}

func TestRenderSummary(t *testing.T) {
	many := ac.RemoveAgentConnectionsResult{AgentID: "a1", Total: maxListed + 2, Failed: maxListed + 2}
	for i := range maxListed + 2 {
		many.Connections = append(many.Connections, ac.ConnectionOutcome{
			ConnectionID: fmt.Sprintf("c%03d", i), Outcome: ac.OutcomeFailed, FailureType: ac.ErrUnauthorized, Message: "check LANGSMITH_API_KEY",
		})
	}
	tests := []struct {
		name string
		in   ac.RemoveAgentConnectionsResult
		want string
	}{
		{"complete", ac.RemoveAgentConnectionsResult{AgentID: "a1", Total: 500, Removed: 480, AlreadyAbsent: 20, Verified: true}, `teardown of agent a1 complete: 500 connections removed or already absent
  removed         480
  already absent   20
  failed            0
  remained          0
  reappeared        0
  skipped           0
  cancelled        no
  verified        yes
`},
		{"one connection", ac.RemoveAgentConnectionsResult{AgentID: "a1", Total: 1, Removed: 1}, `teardown of agent a1 complete: 1 connection removed or already absent
  removed          1
  already absent   0
  failed           0
  remained         0
  reappeared       0
  skipped          0
  cancelled       no
  verified        no
`},
		{"incomplete", ac.RemoveAgentConnectionsResult{
			AgentID: "a1", Total: 6, Removed: 1, AlreadyAbsent: 1, Failed: 1, Remained: 1, Reappeared: 1, Skipped: 1,
			Connections: []ac.ConnectionOutcome{
				{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
				{ConnectionID: "c2", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1},
				{ConnectionID: "c3-locked", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrValidation,
					Message: "path.connection_id: connection is locked\n\x1b[31mred\x1b[0m\tend"},
				{ConnectionID: "c4", Outcome: ac.OutcomeRemained, Message: "still listed after removal"},
				{ConnectionID: "c5", Outcome: ac.OutcomeReappeared},
				{ConnectionID: "c6", Outcome: ac.OutcomeSkipped},
			},
		}, `teardown of agent a1 incomplete: 4 of 6 connections not removed
  removed          1
  already absent   1
  failed           1
  remained         1
  reappeared       1
  skipped          1
  cancelled       no
  verified        no
connections not removed:
  CONNECTION  OUTCOME     FAILURE TYPE     MESSAGE
  c3-locked   failed      ValidationError  path.connection_id: connection is locked [31mred [0m end
  c4          remained    -                still listed after removal
  c5          reappeared  -                -
`},
		{"cancelled", ac.RemoveAgentConnectionsResult{
			AgentID: "a1", Total: 3, Removed: 1, Skipped: 2, Cancelled: true,
			Connections: []ac.ConnectionOutcome{
				{ConnectionID: "c1", Outcome: ac.OutcomeRemoved},
				{ConnectionID: "c2", Outcome: ac.OutcomeSkipped},
				{ConnectionID: "c3", Outcome: ac.OutcomeSkipped},
			},
		}, `teardown of agent a1 cancelled: 2 of 3 connections not removed
  removed           1
  already absent    0
  failed            0
  remained          0
  reappeared        0
  skipped           2
  cancelled       yes
  verified         no
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderSummary(tt.in); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	t.Run("long lists are cut", func(t *testing.T) {
		got := lines(renderSummary(many))
		if n := len(got); n != 9+1+1+maxListed+1 {
			t.Errorf("got %d lines, want the verdict, 8 rows, a heading, a header row, %d connections and one more line", n, maxListed)
		}
		if last := got[len(got)-1]; last != "  ... and 2 more (-o json lists them all)" {
			t.Errorf("last line: got %q, want the count of the connections left out", last)
		}
	})
}

// fakeTeardown stands in for RemoveAgentConnectionsWorkflow, which is tested in workflows/: the
// starter only needs something under its name that answers the progress query and returns a
// result. It sets its query handler late, so the starter's first queries fail, then finishes one
// connection per step; its agent ID says how it ends.
func fakeTeardown(ctx workflow.Context, in ac.RemoveAgentConnectionsInput) (ac.RemoveAgentConnectionsResult, error) {
	res := ac.RemoveAgentConnectionsResult{AgentID: in.AgentID}
	if err := workflow.Sleep(ctx, 700*time.Millisecond); err != nil {
		return res, err
	}
	ids := in.ConnectionIDs
	if len(ids) == 0 {
		ids = []string{"c1", "c2", "c3"}
	}
	p := ac.TeardownProgress{AgentID: in.AgentID, Listed: true, Total: len(ids), Remaining: len(ids), Runs: 1}
	if err := workflow.SetQueryHandler(ctx, ac.ProgressQuery, func() (ac.TeardownProgress, error) { return p, nil }); err != nil {
		return res, err
	}
	switch in.AgentID {
	case "a-slow":
		return res, workflow.Sleep(ctx, 10*time.Minute)
	case "a-broken":
		return res, temporal.NewNonRetryableApplicationError("listing failed for good", "ListFailed", nil)
	}
	for _, id := range ids {
		p.InFlight = 1
		if err := workflow.Sleep(ctx, 600*time.Millisecond); err != nil {
			return res, err
		}
		o := ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeRemoved, Attempts: 1}
		if id == "locked" {
			o = ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeFailed, Attempts: 1,
				FailureType: ac.ErrValidation, Message: "path.connection_id: connection is locked"}
			p.Failed++
			res.Failed++
		} else {
			p.Done++
			res.Removed++
		}
		p.InFlight, p.Remaining = 0, p.Remaining-1
		res.Connections = append(res.Connections, o)
	}
	res.Total = len(ids)
	slices.SortFunc(res.Connections, func(a, b ac.ConnectionOutcome) int { return strings.Compare(a.ConnectionID, b.ConnectionID) })
	return res, nil
}

func TestRunAll_AgainstDevServer(t *testing.T) {
	srv := devserver.ForTest(t, devserver.Options{})
	const taskQueue = "starter-teardown-e2e"
	c, err := client.Dial(client.Options{HostPort: srv.Address, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Close)
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(fakeTeardown, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)

	env := environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=" + srv.Address,
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
	}
	starter := func(args ...string) runResult {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		code := run(ctx, args, env, &stdout, &stderr)
		return runResult{code, stdout.String(), stderr.String()}
	}
	progressLines := func(t *testing.T, stdout string) []string {
		t.Helper()
		var got []string
		for _, l := range lines(stdout) {
			if strings.HasPrefix(l, "progress: ") {
				if len(got) > 0 && got[len(got)-1] == l {
					t.Errorf("progress line %q repeated, want lines only when the numbers change", l)
				}
				got = append(got, l)
			}
		}
		return got
	}

	t.Run("one connection fails: progress, summary, exit 1", func(t *testing.T) {
		r := starter("--agent-id", "a-fail", "--all", "--connection-ids", "c1,locked,c3")
		if r.code != 1 {
			t.Errorf("exit code: got %d, want 1 (stderr %q)", r.code, r.stderr)
		}
		out := lines(r.stdout)
		if len(out) == 0 || !strings.HasPrefix(out[0], "teardown of agent a-fail: workflow remove-agent-connections/a-fail, run ") {
			t.Errorf("first line: got %q, want the workflow and run IDs", r.stdout)
		}
		if p := progressLines(t, r.stdout); len(p) == 0 {
			t.Errorf("stdout: got %q, want progress lines", r.stdout)
		}
		wantEnd := `teardown of agent a-fail incomplete: 1 of 3 connections not removed
  removed          2
  already absent   0
  failed           1
  remained         0
  reappeared       0
  skipped          0
  cancelled       no
  verified        no
connections not removed:
  CONNECTION  OUTCOME  FAILURE TYPE     MESSAGE
  locked      failed   ValidationError  path.connection_id: connection is locked
`
		if !strings.HasSuffix(r.stdout, wantEnd) {
			t.Errorf("stdout: got\n%s\nwant it to end with\n%s", r.stdout, wantEnd)
		}
		if r.stderr != "" {
			t.Errorf("stderr: got %q, want nothing", r.stderr)
		}
	})

	t.Run("every connection removed: exit 0, the flags reach the workflow", func(t *testing.T) {
		r := starter("--agent-id", "a-ok", "--all", "--concurrency", "7", "--continue-on-error=false", "--missing-ok=false")
		if r.code != 0 {
			t.Errorf("exit code: got %d, want 0 (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "progress: ") || !strings.Contains(r.stdout, "teardown of agent a-ok complete: 3 connections removed or already absent\n") {
			t.Errorf("stdout: got %q, want progress and the complete verdict", r.stdout)
		}
		in := startInput(t, c, ac.RemoveAgentConnectionsWorkflowID("a-ok"))
		want := `{"agent_id":"a-ok","concurrency":7,"missing_ok":false,"continue_on_error":false}`
		if got := mustJSON(t, in); got != want {
			t.Errorf("workflow input: got %s, want %s", got, want)
		}
	})

	t.Run("json: only the result on stdout", func(t *testing.T) {
		r := starter("--agent-id", "a-json", "--all", "--connection-ids", "locked", "-o", "json")
		if r.code != 1 {
			t.Errorf("exit code: got %d, want 1", r.code)
		}
		var got ac.RemoveAgentConnectionsResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout %q is not one JSON result: %v", r.stdout, err)
		}
		if got.AgentID != "a-json" || got.Total != 1 || got.Failed != 1 || len(got.Connections) != 1 || got.Connections[0].FailureType != ac.ErrValidation {
			t.Errorf("got %+v, want a-json with its one connection failed with ValidationError", got)
		}
		if r.stderr != "" {
			t.Errorf("stderr: got %q, want nothing (no terminal to draw progress on)", r.stderr)
		}
	})

	t.Run("workflow fails: its failure type, exit 1", func(t *testing.T) {
		r := starter("--agent-id", "a-broken", "--all")
		if r.code != 1 || r.stderr != "teardown failed: ListFailed: listing failed for good\n" {
			t.Errorf("got exit %d, stderr %q; want 1 and the failure", r.code, r.stderr)
		}
		r = starter("--agent-id", "a-broken", "--all", "-o", "json")
		want := `{"agent_id":"a-broken","workflow_id":"remove-agent-connections/a-broken","error":{"type":"ListFailed","message":"listing failed for good"}}` + "\n"
		if r.code != 1 || r.stdout != want {
			t.Errorf("got exit %d, stdout %q; want 1 and %q", r.code, r.stdout, want)
		}
	})

	t.Run("interrupted: the workflow goes on and the same command attaches to it", func(t *testing.T) {
		// Ctrl-C, as main wires it, cancels run's context with the signal as its cause; here the
		// first progress line does.
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		stdout := &interruptOn{marker: "progress: ", interrupt: func() { cancel(interrupted{os.Interrupt}) }}
		var stderr bytes.Buffer
		code := run(ctx, []string{"--agent-id", "a-slow", "--all"}, env, stdout, &stderr)
		r := runResult{code, stdout.String(), stderr.String()}
		const id = "remove-agent-connections/a-slow"
		if r.code != 130 || !strings.HasPrefix(r.stderr, "starter: stopped waiting; teardown "+id+" (run ") ||
			!strings.HasSuffix(r.stderr, ") goes on; run the same command to follow it again\n") {
			t.Errorf("got exit %d, stderr %q; want 130 and the workflow ID to follow", r.code, r.stderr)
		}
		if p := progressLines(t, r.stdout); len(p) == 0 || p[0] != "progress: 0/3 done, 0 failed, 0 in flight" {
			t.Errorf("stdout: got %q, want the progress shown before the interrupt", r.stdout)
		}
		desc, err := c.DescribeWorkflow(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if st := desc.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("workflow status: got %s, want running (the starter must not cancel it)", st)
		}
		r = starter("--agent-id", "a-slow", "--all", "--wait=false", "-o", "json")
		var started startedJSON
		if err := json.Unmarshal([]byte(r.stdout), &started); err != nil || r.code != 0 {
			t.Fatalf("second starter: got exit %d, stdout %q; want 0 and JSON", r.code, r.stdout)
		}
		if runID := desc.RawResponse.GetWorkflowExecutionInfo().GetExecution().GetRunId(); started.WorkflowID != id || started.RunID != runID {
			t.Errorf("got %+v, want workflow %s run %s (attached, not a new run)", started, id, runID)
		}

		// --timeout: the same wait, bounded; exit 124 and the teardown still runs.
		begin := time.Now()
		r = starter("--agent-id", "a-slow", "--all", "--timeout", "1500ms", "-o", "json")
		if r.code != 124 || r.stdout != "" || !strings.HasPrefix(r.stderr, "starter: timed out after 1.5s waiting; teardown "+id+" (run ") {
			t.Errorf("with --timeout: got exit %d, stdout %q, stderr %q; want 124, nothing on stdout and the workflow to follow", r.code, r.stdout, r.stderr)
		}
		if took := time.Since(begin); took < 1500*time.Millisecond || took > 15*time.Second {
			t.Errorf("with --timeout 1.5s the starter took %s", took)
		}
		if desc, err := c.DescribeWorkflow(context.Background(), id, ""); err != nil || desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("after the timeout: %v, %v; want the teardown still running", desc, err)
		}
	})
}

// interruptOn collects what is written and calls interrupt once marker has been written.
type interruptOn struct {
	bytes.Buffer
	marker    string
	interrupt func()
}

func (w *interruptOn) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.marker) {
		w.interrupt()
	}
	return n, err
}

// startInput decodes the input a workflow was started with, from its first history event.
func startInput(t *testing.T, c client.Client, workflowID string) ac.RemoveAgentConnectionsInput {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := iter.Next()
	if err != nil {
		t.Fatalf("history of %s: %v", workflowID, err)
	}
	var in ac.RemoveAgentConnectionsInput
	payloads := ev.GetWorkflowExecutionStartedEventAttributes().GetInput()
	if err := converter.GetDefaultDataConverter().FromPayloads(payloads, &in); err != nil {
		t.Fatalf("decode the input of %s: %v", workflowID, err)
	}
	return in
}
