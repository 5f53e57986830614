package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/environ"
	"github.com/agentops/agentconnections/workflows"
)

// savedTeardown is a teardown's result as `starter --all -o json` prints it: c1 to c4 removed
// (restored), c5 already absent and c6 failed for good (neither restored), c7 interrupted (a
// request may have removed it: restored).
func savedTeardown(agentID string) ac.RemoveAgentConnectionsResult {
	removed := func(id string) ac.ConnectionOutcome {
		return ac.ConnectionOutcome{ConnectionID: id, Outcome: ac.OutcomeRemoved, Attempts: 1,
			OAuthTokenID: "tok-" + id, ProviderID: "github", Scopes: []string{"repo"}}
	}
	return ac.RemoveAgentConnectionsResult{AgentID: agentID, Total: 7, Removed: 4, AlreadyAbsent: 1, Failed: 2, Verified: true, Runs: 1,
		Connections: []ac.ConnectionOutcome{
			removed("c1"), removed("c2"), removed("c3"), removed("c4"),
			{ConnectionID: "c5", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 1},
			{ConnectionID: "c6", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrValidation, Message: "locked", OAuthTokenID: "tok-c6"},
			{ConnectionID: "c7", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrInterrupted, Message: "stopped", OAuthTokenID: "tok-c7"},
		}}
}

// writeFile writes content to a new file in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runRestore runs `starter restore` with args, stdin as its stdin, never on a terminal.
func runRestore(ctx context.Context, env environ.Env, stdin string, args ...string) runResult {
	var stdout, stderr bytes.Buffer
	code := runConsole(ctx, append([]string{"restore"}, args...), env, console{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr})
	return runResult{code, stdout.String(), stderr.String()}
}

func TestRunRestore_UsageErrors(t *testing.T) {
	file := writeFile(t, "teardown.json", mustJSON(t, savedTeardown("a1")))
	tests := []struct {
		name      string
		args      []string
		wantFirst string
	}{
		{"no file", nil, "starter: the saved teardown result is required: a FILE, or - for stdin"},
		{"two files", []string{file, "other.json"}, `starter: unexpected argument "other.json": one FILE at a time`},
		{"bad output", []string{file, "-o", "yaml"}, `starter: -o "yaml": want text or json`},
		{"concurrency over the bound", []string{file, "--concurrency", "201"}, "starter: --concurrency is 201, want 0 (the input's or the workflow's default) to 200"},
		{"timeout without wait", []string{"--wait=false", "--timeout", "1s", file}, "starter: --timeout bounds the wait; it means nothing with --wait=false"},
		{"unknown flag", []string{file, "--all"}, "flag provided but not defined: -all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runRestore(context.Background(), offlineEnv(t), "", tt.args...)
			got := lines(r.stderr)
			if r.code != 2 || len(got) != 2 || got[0] != tt.wantFirst || got[1] != restoreUsageLine || r.stdout != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want 2, %q and the usage line", r.code, r.stdout, r.stderr, tt.wantFirst)
			}
		})
	}
}

func TestRunRestore_BadInputIsExit2WithOneLine(t *testing.T) {
	truncated := savedTeardown("a1")
	truncated.ReportTruncated, truncated.ReportPages, truncated.Connections = true, 2, truncated.Connections[:3]
	bare := savedTeardown("a1")
	bareIDs := []string{}
	for i, o := range bare.Connections {
		if o.Outcome == ac.OutcomeRemoved && len(bareIDs) < 4 {
			bare.Connections[i].OAuthTokenID = ""
			bareIDs = append(bareIDs, o.ConnectionID)
		}
	}
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", "removed: c1\n", "not a JSON object: "},
		{"empty", "\n", "empty; nothing started"},
		{"two values", mustJSON(t, savedTeardown("a1")) + "{}", "not a JSON object: more after the first JSON value; nothing started"},
		{"a failed teardown's output", `{"agent_id":"a1","workflow_id":"remove-agent-connections/a1","error":{"type":"AgentNotFound","message":"no agent"}}`,
			"a failed workflow's output (it has an error and no connections): there is nothing to restore from it; nothing started"},
		{"a restore's result", `{"agent_id":"a1","total":1,"restored":1,"connections":[]}`,
			"a restore's result, not a teardown's: give the teardown's result (starter --all -o json); nothing started"},
		{"a cut report", mustJSON(t, truncated),
			"the teardown's result holds 3 of its 7 entries (report_truncated): save the output of starter --all -o json, which holds them all; nothing started"},
		{"removed entries without a snapshot", mustJSON(t, bare),
			fmt.Sprintf("%d removed entries have no snapshot (oauth_token_id), so the result cannot restore them (%s, %s, %s and 1 more)", len(bareIDs), bareIDs[0], bareIDs[1], bareIDs[2])},
		{"neither", `{"agent_id":"a1"}`, `neither a teardown's result nor a restore input: it has no "connections"; nothing started`},
		{"an invalid token", `{"agent_id":"a1","connections":[{"connection_id":"c1","oauth_token_id":"t/1"}]}`,
			`invalid id: connections[0].oauth_token_id "t/1" contains '/' at byte 1; nothing started`},
		{"no agent", `{"connections":[{"connection_id":"c1","oauth_token_id":"t1"}]}`, "invalid id: agent_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "in.json", tt.content)
			r := runRestore(context.Background(), offlineEnv(t), "", file)
			got := lines(r.stderr)
			if r.code != 2 || len(got) != 1 || !strings.HasPrefix(got[0], "starter: "+file+": ") || !strings.Contains(got[0], tt.want) || r.stdout != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want 2 and one line naming the file and %q", r.code, r.stdout, r.stderr, tt.want)
			}
			r = runRestore(context.Background(), offlineEnv(t), tt.content, "-")
			if r.code != 2 || !strings.HasPrefix(r.stderr, "starter: stdin: ") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("from stdin: got exit %d, stderr %q; want 2 naming stdin and %q", r.code, r.stderr, tt.want)
			}
		})
	}
	t.Run("a missing file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "absent.json")
		r := runRestore(context.Background(), offlineEnv(t), "", file)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "starter: "+file+": open ") || !strings.HasSuffix(r.stderr, "; nothing started\n") {
			t.Errorf("got exit %d, stderr %q; want 2 and the open error", r.code, r.stderr)
		}
	})
}

func TestRunRestore_DryRun(t *testing.T) {
	file := writeFile(t, "teardown.json", mustJSON(t, savedTeardown("a1")))
	t.Run("as JSON: the teardown's undoable entries, --concurrency over the input's", func(t *testing.T) {
		r := runRestore(context.Background(), offlineEnv(t), "", file, "--dry-run", "-o", "json", "--concurrency", "3")
		var got dryRunResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 0 and JSON", r.code, r.stdout, r.stderr)
		}
		want := dryRunResult{DryRun: true, WorkflowType: ac.RestoreAgentConnectionsWorkflowType, WorkflowID: "restore-agent-connections/a1",
			TaskQueue: ac.DefaultTaskQueue, Namespace: "default", Address: "127.0.0.1:1", AgentID: "a1",
			ConnectionIDs: []string{"c1", "c2", "c3", "c4", "c7"},
			Input: json.RawMessage(`{"agent_id":"a1","connections":[` +
				`{"connection_id":"c1","oauth_token_id":"tok-c1","provider_id":"github","scopes":["repo"]},` +
				`{"connection_id":"c2","oauth_token_id":"tok-c2","provider_id":"github","scopes":["repo"]},` +
				`{"connection_id":"c3","oauth_token_id":"tok-c3","provider_id":"github","scopes":["repo"]},` +
				`{"connection_id":"c4","oauth_token_id":"tok-c4","provider_id":"github","scopes":["repo"]},` +
				`{"connection_id":"c7","oauth_token_id":"tok-c7"}],"concurrency":3}`)}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v (input %s)\nwant %+v (input %s)", got, got.Input, want, want.Input)
		}
	})
	t.Run("as text, a restore input from stdin", func(t *testing.T) {
		in := `{"agent_id":"a1","connections":[{"connection_id":"c1","oauth_token_id":"t1","outcome":"removed"}]}`
		r := runRestore(context.Background(), offlineEnv(t), in, "-", "--dry-run")
		want := `dry run: nothing started; neither Temporal nor the control plane was asked anything
would restore these 1 connection of agent a1 (removed connection, OAuth token):
    c1  t1
  workflow RestoreAgentConnectionsWorkflow, ID restore-agent-connections/a1 (a running one with this ID is followed instead)
  task queue agent-connections, namespace default at 127.0.0.1:1
`
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("got exit %d, stdout\n%s\nstderr %q; want 0 and\n%s", r.code, r.stdout, r.stderr, want)
		}
	})
}

func TestRunRestore_HelpListsEveryFlag(t *testing.T) {
	r := runRestore(context.Background(), offlineEnv(t), "", "-h")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("got exit %d, stderr %q; want 0 and the help on stdout", r.code, r.stderr)
	}
	fs := flag.NewFlagSet("starter restore", flag.ContinueOnError)
	var ra restoreArgs
	defineRestoreFlags(fs, &ra, ac.DefaultTaskQueue)
	fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := aliases[f.Name]; !isAlias && !strings.Contains(r.stdout, "--"+f.Name) {
			t.Errorf("help does not list --%s", f.Name)
		}
	})
	for _, code := range []string{"\n  0 ", "\n  1 ", "\n  2 ", "\n  124 ", "\n  130 "} {
		if !strings.Contains(r.stdout, code) {
			t.Errorf("help does not explain exit code %s", strings.TrimSpace(code))
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, offlineEnv(t), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "starter restore (FILE | -) [flags]") {
		t.Errorf("starter -h does not name starter restore:\n%s", stdout.String())
	}
}

func TestRestoreComplete(t *testing.T) {
	ok := ac.RestoreOutcome{ConnectionID: "c1", Outcome: ac.OutcomeRestored, NewConnectionID: "n1"}
	tests := []struct {
		name string
		in   ac.RestoreAgentConnectionsResult
		want bool
	}{
		{"all restored or present", ac.RestoreAgentConnectionsResult{Total: 2, Restored: 1, AlreadyPresent: 1,
			Connections: []ac.RestoreOutcome{ok, {ConnectionID: "c2", Outcome: ac.OutcomeAlreadyPresent}}}, true},
		{"nothing to restore", ac.RestoreAgentConnectionsResult{}, true},
		{"one failed", ac.RestoreAgentConnectionsResult{Total: 2, Restored: 1, Failed: 1}, false},
		{"one skipped", ac.RestoreAgentConnectionsResult{Total: 2, Restored: 1, Skipped: 1}, false},
		{"cancelled", ac.RestoreAgentConnectionsResult{Total: 1, Restored: 1, Cancelled: true, Connections: []ac.RestoreOutcome{ok}}, false},
		{"an unknown outcome", ac.RestoreAgentConnectionsResult{Total: 1, Restored: 1, Connections: []ac.RestoreOutcome{{Outcome: "moved"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := restoreComplete(tt.in); got != tt.want {
				t.Errorf("got %t, want %t", got, tt.want)
			}
		})
	}
}

// startRestoreWorker runs the real restore workflow and activities in-process, against api.
func startRestoreWorker(t *testing.T, hostPort, taskQueue, apiURL string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Close)
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:     apiURL,
		Credentials: controlplane.StaticCredentials{APIKey: testAPIKey},
		HTTPRetry:   controlplane.HTTPRetry{WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.RestoreAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RestoreAgentConnectionsWorkflowType})
	w.RegisterActivity(acts)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	return c
}

func TestRunRestore_AgainstDevServer(t *testing.T) {
	hostPort := devserver.ForTest(t, devserver.Options{}).Address
	emu := emulator.New(emulator.Options{APIKey: testAPIKey})
	t.Cleanup(emu.Close)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	const taskQueue = "starter-restore-e2e"
	c := startRestoreWorker(t, hostPort, taskQueue, srv.URL)
	env := environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=" + hostPort,
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
	}
	starter := func(t *testing.T, stdin string, args ...string) runResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r := runRestore(ctx, env, stdin, args...)
		if strings.Contains(r.stdout+r.stderr, testAPIKey) {
			t.Errorf("starter output holds the API key")
		}
		return r
	}
	notStarted := func(t *testing.T, agentID string) {
		t.Helper()
		if _, err := c.DescribeWorkflow(context.Background(), ac.RestoreAgentConnectionsWorkflowID(agentID), ""); err == nil {
			t.Errorf("a restore of %s exists; nothing should have started", agentID)
		}
	}

	// a1 still has c3's token (already present); c4's token is revoked (422).
	emu.Seed("a1", "c3")
	emu.RevokeTokens("tok-c4")
	file := writeFile(t, "teardown.json", mustJSON(t, savedTeardown("a1")))

	t.Run("from a saved teardown: progress, summary, exit 1 for the revoked token", func(t *testing.T) {
		r := starter(t, "", file)
		out := lines(r.stdout)
		if r.code != 1 || len(out) == 0 || !strings.HasPrefix(out[0], "restore of agent a1: workflow restore-agent-connections/a1, run ") {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 1 and the workflow and run IDs first", r.code, r.stdout, r.stderr)
		}
		wantCounts := "restore of agent a1 incomplete: 1 of 5 connections not restored\n" +
			"  restored           3\n  already present    1\n  failed             1\n  skipped            0\n  cancelled         no\nconnections:\n"
		if !strings.Contains(r.stdout, wantCounts) {
			t.Errorf("stdout:\n%s\nwant it to hold\n%s", r.stdout, wantCounts)
		}
		per := emu.ConnectionsPerToken("a1")
		for _, tok := range []string{"tok-c1", "tok-c2", "tok-c3", "tok-c7"} {
			if per[tok] != 1 {
				t.Errorf("connections with %s: got %d, want 1", tok, per[tok])
			}
		}
		if per["tok-c4"]+per["tok-c5"]+per["tok-c6"] != 0 {
			t.Errorf("connections per token: got %v, want none for c4 (revoked), c5 and c6 (not removed)", per)
		}
		rows := map[string][]string{}
		for _, l := range out {
			if f := strings.Fields(l); len(f) >= 4 {
				rows[f[0]] = f
			}
		}
		if f := rows["c3"]; len(f) != 5 || f[1] != ac.OutcomeAlreadyPresent || f[2] != "c3" {
			t.Errorf("row of c3: got %q, want already_present as c3", f)
		}
		if f := rows["c4"]; len(f) < 5 || f[1] != ac.OutcomeFailed || f[3] != ac.ErrValidation || !strings.Contains(rowText(r.stdout, "c4"), "OAuth token tok-c4 is revoked") {
			t.Errorf("row of c4: got %q, want failed ValidationError with the 422's detail", f)
		}
		if f := rows["c1"]; len(f) != 5 || f[1] != ac.OutcomeRestored || f[2] == "-" {
			t.Errorf("row of c1: got %q, want restored with its new connection", f)
		}
		if r.stderr != "" {
			t.Errorf("stderr: got %q, want nothing", r.stderr)
		}
	})

	t.Run("a restore input on stdin, as JSON: all present now, exit 0", func(t *testing.T) {
		in := `{"agent_id":"a1","connections":[{"connection_id":"c1","oauth_token_id":"tok-c1"},{"connection_id":"c2","oauth_token_id":"tok-c2"}]}`
		r := starter(t, in, "-", "-o", "json")
		var got ac.RestoreAgentConnectionsResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 0 and one JSON result", r.code, r.stdout, r.stderr)
		}
		if got.Total != 2 || got.AlreadyPresent != 2 || len(got.Connections) != 2 || got.Connections[0].NewConnectionID == "" {
			t.Errorf("got %+v, want both already present with their connections", got)
		}
		if per := emu.ConnectionsPerToken("a1"); per["tok-c1"] != 1 || per["tok-c2"] != 1 {
			t.Errorf("connections per token: got %v, want still one each", per)
		}
	})

	t.Run("a bad file starts nothing", func(t *testing.T) {
		bad := writeFile(t, "bad.json", `{"agent_id":"a-bad","connections":[{"connection_id":"c1","oauth_token_id":"t 1"}]}`)
		r := starter(t, "", bad)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "starter: "+bad+": invalid id: ") || r.stdout != "" {
			t.Errorf("got exit %d, stdout %q, stderr %q; want 2 and the problem", r.code, r.stdout, r.stderr)
		}
		notStarted(t, "a-bad")
	})

	t.Run("not confirmed on a terminal starts nothing", func(t *testing.T) {
		asked := writeFile(t, "asked.json", mustJSON(t, savedTeardown("a-asked")))
		r := runAsked(context.Background(), t, env, strings.NewReader("n\n"), "restore", asked)
		if r.code != 2 || !strings.HasPrefix(r.stdout, "About to restore 5 connections of agent a-asked: c1, c2, c3, c4, c7.\n") ||
			r.stderr != "starter: not confirmed; nothing started\n" {
			t.Errorf("got exit %d, stdout %q, stderr %q; want 2 after the question", r.code, r.stdout, r.stderr)
		}
		notStarted(t, "a-asked")
	})

	t.Run("a restore of other tokens already running is not followed", func(t *testing.T) {
		emu.Seed("a-busy")
		// The running restore's POST is held, so it is still running when the second starter comes.
		emu.InjectNext(emulator.Fault{Delay: 5 * time.Second, Method: http.MethodPost, AgentID: "a-busy"})
		first := writeFile(t, "busy1.json", `{"agent_id":"a-busy","connections":[{"connection_id":"b1","oauth_token_id":"tok-b1"}]}`)
		other := writeFile(t, "busy2.json", `{"agent_id":"a-busy","connections":[{"connection_id":"b2","oauth_token_id":"tok-b2"}]}`)
		if r := starter(t, "", first, "--wait=false"); r.code != 0 {
			t.Fatalf("first restore: got exit %d, stderr %q; want it started", r.code, r.stderr)
		}
		r := starter(t, "", other, "-o", "json")
		if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "starter: a restore of agent a-busy with other entries is already running as restore-agent-connections/a-busy (run ") {
			t.Errorf("other tokens: got exit %d, stdout %q, stderr %q; want 2 naming the running restore", r.code, r.stdout, r.stderr)
		}
		// The same tokens (in another order, with a duplicate) follow it to its end.
		same := writeFile(t, "busy3.json", `{"agent_id":"a-busy","connections":[{"connection_id":"x","oauth_token_id":"tok-b1"},{"connection_id":"b1","oauth_token_id":"tok-b1"}]}`)
		r = starter(t, "", same, "-o", "json")
		var got ac.RestoreAgentConnectionsResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || got.Restored != 1 ||
			got.InputDigest != ac.RestoreInputDigest([]ac.ConnectionSnapshot{{OAuthTokenID: "tok-b1"}}) {
			t.Errorf("the same tokens: got exit %d, stdout %q, stderr %q; want 0 and b1 restored", r.code, r.stdout, r.stderr)
		}
		if per := emu.ConnectionsPerToken("a-busy"); per["tok-b1"] != 1 || per["tok-b2"] != 0 {
			t.Errorf("connections per token: got %v, want one for tok-b1 and none for tok-b2", per)
		}
	})

	t.Run("with no worker on the task queue the check still answers, at once", func(t *testing.T) {
		idle := append(environ.Env{}, env...)
		idle = append(idle, "TEMPORAL_TASK_QUEUE=no-worker-here")
		run := func(file string, args ...string) runResult {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return runRestore(ctx, idle, "", append([]string{file}, args...)...)
		}
		first := writeFile(t, "idle1.json", `{"agent_id":"a-idle","connections":[{"connection_id":"n1","oauth_token_id":"tok-n1"}]}`)
		other := writeFile(t, "idle2.json", `{"agent_id":"a-idle","connections":[{"connection_id":"n2","oauth_token_id":"tok-n2"}]}`)
		if r := run(first, "--wait=false"); r.code != 0 || r.stderr != "" {
			t.Fatalf("first restore: got exit %d, stderr %q; want it started with nothing to say", r.code, r.stderr)
		}
		t.Cleanup(func() {
			_ = c.TerminateWorkflow(context.Background(), ac.RestoreAgentConnectionsWorkflowID("a-idle"), "", "test over")
		})
		if r := run(other, "--wait=false"); r.code != 2 || !strings.Contains(r.stderr, "a restore of agent a-idle with other entries is already running") {
			t.Errorf("other tokens: got exit %d, stderr %q; want 2 naming the running restore", r.code, r.stderr)
		}
		if r := run(first, "--wait=false"); r.code != 0 || r.stderr != "" {
			t.Errorf("the same tokens: got exit %d, stderr %q; want it followed", r.code, r.stderr)
		}
	})

	t.Run("follow, time out, interrupt: the restore goes on", func(t *testing.T) {
		emu.Seed("a-slow", "x")
		emu.SetLatency(2 * time.Second)
		defer emu.SetLatency(0)
		slow := writeFile(t, "slow.json", `{"agent_id":"a-slow","connections":[{"connection_id":"s1","oauth_token_id":"tok-s1"}]}`)
		r := starter(t, "", slow, "--wait=false", "-o", "json")
		var started startedJSON
		if err := json.Unmarshal([]byte(r.stdout), &started); err != nil || r.code != 0 || started.WorkflowID != "restore-agent-connections/a-slow" {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 0 and the started workflow", r.code, r.stdout, r.stderr)
		}
		goesOn := "restore restore-agent-connections/a-slow (run " + started.RunID + ") goes on; run the same command to follow it again\n"
		r = starter(t, "", slow, "--timeout", "300ms", "-o", "json")
		if r.code != 124 || r.stdout != "" || r.stderr != "starter: timed out after 300ms waiting; "+goesOn {
			t.Errorf("with --timeout: got exit %d, stdout %q, stderr %q; want 124 and %q", r.code, r.stdout, r.stderr, goesOn)
		}
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		stdout := &interruptOn{marker: "restore of agent a-slow: workflow", interrupt: func() { cancel(interrupted{os.Interrupt}) }}
		var stderr bytes.Buffer
		code := runConsole(ctx, []string{"restore", slow}, env, console{stdout: stdout, stderr: &stderr})
		if code != 130 || stderr.String() != "starter: stopped waiting; "+goesOn {
			t.Errorf("interrupted: got exit %d, stderr %q; want 130 and %q", code, stderr.String(), goesOn)
		}
		if desc, err := c.DescribeWorkflow(context.Background(), started.WorkflowID, ""); err != nil || desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("after the timeout and the interrupt: %v, %v; want the restore still running", desc, err)
		}
		r = starter(t, "", slow, "-o", "json")
		var got ac.RestoreAgentConnectionsResult
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || got.Restored != 1 {
			t.Errorf("following it to the end: got exit %d, stdout %q, stderr %q; want 0 and s1 restored", r.code, r.stdout, r.stderr)
		}
		if per := emu.ConnectionsPerToken("a-slow"); per["tok-s1"] != 1 {
			t.Errorf("connections per token: got %v, want one for tok-s1", per)
		}
	})
}

// rowText is the line of out whose first field is first.
func rowText(out, first string) string {
	for _, l := range lines(out) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return l
		}
	}
	return ""
}
