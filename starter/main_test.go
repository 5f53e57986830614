package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/workflows"
)

// testAPIKey is the worker's key in the real test; no starter output may contain it.
const testAPIKey = "lsv2_sk_STARTERSECRET0123"

// offlineEnv points at a dead Temporal address: a test that gets as far as dialing fails fast
// and visibly instead of reaching some real server.
func offlineEnv(t *testing.T, extra ...string) environ.Env {
	t.Helper()
	return append(environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=127.0.0.1:1",
	}, extra...)
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestRun_UsageErrors(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantFirst string
	}{
		{"no arguments", nil, "starter: --agent-id is required"},
		{"no connection", []string{"--agent-id", "a1"}, "starter: --connection-id is required"},
		{"no agent", []string{"--connection-id", "c1"}, "starter: --agent-id is required"},
		{"unknown flag", []string{"--agent", "a1"}, "flag provided but not defined: -agent"},
		{"positional", []string{"--agent-id", "a1", "--connection-id", "c1", "now"}, `starter: unexpected argument "now"`},
		{"slash in agent", []string{"--agent-id", "a/1", "--connection-id", "c1"},
			`starter: invalid id: agent_id "a/1" contains '/' at byte 1`},
		{"dot-dot connection", []string{"--agent-id", "a1", "--connection-id", ".."},
			`starter: invalid id: connection_id ".." is a path segment, not an id`},
		{"percent in connection", []string{"--agent-id", "a1", "--connection-id", "c%2F1"},
			`starter: invalid id: connection_id "c%2F1" contains '%' at byte 1`},
		{"empty task queue", []string{"--agent-id", "a1", "--connection-id", "c1", "--task-queue", " "}, "starter: --task-queue is empty"},
		{"bad bool", []string{"--agent-id", "a1", "--connection-id", "c1", "--wait=maybe"}, `invalid boolean value "maybe" for -wait`},
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

func TestParseArgs_Defaults(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       environ.Env
		wantQueue string
		wantWait  bool
		wantMiss  bool
		wantJSON  bool
	}{
		{"defaults", nil, nil, "agent-connections", true, true, false},
		{"queue from env", nil, environ.Env{"TEMPORAL_TASK_QUEUE=eu-removals"}, "eu-removals", true, true, false},
		{"flag beats env", []string{"--task-queue", "q2"}, environ.Env{"TEMPORAL_TASK_QUEUE=eu-removals"}, "q2", true, true, false},
		{"switches", []string{"--wait=false", "--missing-ok=false", "-o", "json"}, nil, "agent-connections", false, false, true},
		{"long output flag", []string{"--output=json"}, nil, "agent-connections", true, true, true},
		{"text output", []string{"-o", "text"}, nil, "agent-connections", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--agent-id", "a1", "--connection-id", "c1"}, tt.args...)
			var stderr bytes.Buffer
			opts, _, ok := parseArgs(args, tt.env, io.Discard, &stderr)
			if !ok {
				t.Fatalf("parseArgs refused %v: %s", args, stderr.String())
			}
			if opts.taskQueue != tt.wantQueue || opts.wait != tt.wantWait || opts.missingOK != tt.wantMiss || opts.json != tt.wantJSON {
				t.Errorf("got queue %q wait %t missing-ok %t json %t, want %q %t %t %t",
					opts.taskQueue, opts.wait, opts.missingOK, opts.json, tt.wantQueue, tt.wantWait, tt.wantMiss, tt.wantJSON)
			}
			if opts.agentID != "a1" || opts.connectionID != "c1" {
				t.Errorf("got ids %q %q, want a1 c1", opts.agentID, opts.connectionID)
			}
		})
	}
}

func TestRun_UnreachableServerIsOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"--agent-id", "a1", "--connection-id", "c1"}, offlineEnv(t), &stdout, &stderr)
	if code != 2 {
		t.Errorf("exit code: got %d, want 2", code)
	}
	if elapsed := time.Since(start); elapsed > dialTimeout+5*time.Second {
		t.Errorf("took %s, want at most the dial timeout and a little", elapsed)
	}
	want := "starter: cannot connect to Temporal at 127.0.0.1:1 (namespace default): "
	if got := lines(stderr.String()); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), want)
	}
}

func TestRun_BadTemporalSettings(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--agent-id", "a1", "--connection-id", "c1"}, offlineEnv(t, "TEMPORAL_PROFILE=missing"), &stdout, &stderr)
	if code != 2 {
		t.Errorf("exit code: got %d, want 2", code)
	}
	want := "starter: temporal client settings (TEMPORAL_*): "
	if got := lines(stderr.String()); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), want)
	}
}

func TestDescribeResult(t *testing.T) {
	tests := []struct {
		in   ac.RemoveConnectionResult
		want string
	}{
		{ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: "removed", Attempts: 1}, "removed connection c1 of agent a1 (1 request)"},
		{ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: "removed", Attempts: 3}, "removed connection c1 of agent a1 (3 requests)"},
		{ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: "already_absent", Attempts: 1}, "connection c1 of agent a1 was already absent"},
		{ac.RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: "moved"}, `connection c1 of agent a1: outcome "moved"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := describeResult(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func quietLogger() tlog.Logger { return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

// fakeControlPlane answers by connection ID: ok → 204, gone → 404, bad → 422, slow → 204 once
// release is closed. It counts DELETEs per path and checks the key.
type fakeControlPlane struct {
	arrived  chan struct{} // closed when the first "slow" request arrives
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	requests map[string]int
	badKey   atomic.Bool
}

func (f *fakeControlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != testAPIKey {
		f.badKey.Store(true)
	}
	f.mu.Lock()
	f.requests[r.URL.Path]++
	f.mu.Unlock()
	switch r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:] {
	case "gone":
		w.WriteHeader(http.StatusNotFound)
	case "bad":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"detail":[{"loc":["path","connection_id"],"msg":"connection id is not valid","type":"value_error"}]}`))
	case "slow":
		f.once.Do(func() { close(f.arrived) })
		select {
		case <-f.release:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeControlPlane) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[path]
}

// startWorker runs the real workflow and activities in-process, against api.
func startWorker(t *testing.T, hostPort, taskQueue, apiURL string) {
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
	w.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	w.RegisterActivity(acts)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
}

type runResult struct {
	code           int
	stdout, stderr string
}

func TestRun_AgainstDevServer(t *testing.T) {
	hostPort := devserver.ForTest(t, devserver.Options{}).Address
	api := &fakeControlPlane{arrived: make(chan struct{}), release: make(chan struct{}), requests: map[string]int{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	// Release a blocked handler before the server closes, whatever the test did.
	t.Cleanup(func() {
		select {
		case <-api.release:
		default:
			close(api.release)
		}
	})
	const taskQueue = "starter-e2e"
	startWorker(t, hostPort, taskQueue, srv.URL)

	env := environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=" + hostPort,
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
	}
	starter := func(args ...string) runResult {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		code := run(ctx, args, env, &stdout, &stderr)
		r := runResult{code, stdout.String(), stderr.String()}
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.Contains(out, testAPIKey) {
				t.Errorf("starter output holds the API key: %q", out)
			}
		}
		return r
	}
	ids := func(connection string, more ...string) []string {
		return append([]string{"--agent-id", "a1", "--connection-id", connection}, more...)
	}
	expect := func(t *testing.T, r runResult, code int, stdout, stderr string) {
		t.Helper()
		if r.code != code || r.stdout != stdout || !strings.HasPrefix(r.stderr, stderr) {
			t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr starting with %q",
				r.code, r.stdout, r.stderr, code, stdout, stderr)
		}
	}

	t.Run("removed", func(t *testing.T) {
		expect(t, starter(ids("ok")...), 0, "removed connection ok of agent a1 (1 request)\n", "")
	})
	t.Run("removed again after the first run closed, as JSON", func(t *testing.T) {
		expect(t, starter(ids("ok", "-o", "json")...), 0,
			`{"agent_id":"a1","connection_id":"ok","outcome":"removed","attempts":1}`+"\n", "")
		if n := api.count("/v2/auth/agents/a1/connections/ok"); n != 2 {
			t.Errorf("DELETEs of ok: got %d, want 2 (a new run after the closed one)", n)
		}
	})
	t.Run("already absent", func(t *testing.T) {
		expect(t, starter(ids("gone")...), 0, "connection gone of agent a1 was already absent\n", "")
	})
	t.Run("missing-ok false", func(t *testing.T) {
		r := starter(ids("gone", "--missing-ok=false")...)
		expect(t, r, 1, "", "removal failed: NotFound: ")
	})
	t.Run("422 fails with its type", func(t *testing.T) {
		r := starter(ids("bad")...)
		expect(t, r, 1, "", "removal failed: ValidationError: ")
		if !strings.Contains(r.stderr, "connection id is not valid") || len(lines(r.stderr)) != 1 {
			t.Errorf("stderr: got %q, want one line with the API's message", r.stderr)
		}
	})
	t.Run("422 as JSON", func(t *testing.T) {
		r := starter(ids("bad", "-o", "json")...)
		if r.code != 1 {
			t.Errorf("exit code: got %d, want 1", r.code)
		}
		var got failedJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("stdout %q is not JSON: %v", r.stdout, err)
		}
		if got.AgentID != "a1" || got.ConnectionID != "bad" || got.Error.Type != ac.ErrValidation || !strings.Contains(got.Error.Message, "connection id is not valid") {
			t.Errorf("got %+v, want a1/bad with a ValidationError naming the API's message", got)
		}
	})
	t.Run("attach to the running removal", func(t *testing.T) {
		var first, second startedJSON
		r := starter(ids("slow", "--wait=false", "-o", "json")...)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &first) != nil {
			t.Fatalf("first starter: got exit %d, stdout %q, stderr %q; want 0 and JSON", r.code, r.stdout, r.stderr)
		}
		select {
		case <-api.arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("the first removal's DELETE did not arrive within 30s")
		}
		r = starter(ids("slow", "--wait=false", "-o", "json")...)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &second) != nil {
			t.Fatalf("second starter: got exit %d, stdout %q, stderr %q; want 0 and JSON", r.code, r.stdout, r.stderr)
		}
		if first.WorkflowID != "remove-connection/a1/slow" || second != first {
			t.Errorf("got %+v and %+v, want both on workflow remove-connection/a1/slow with the same run ID", first, second)
		}

		r = starter(ids("slow", "--wait=false")...)
		wantPlain := fmt.Sprintf("workflow_id: %s\nrun_id: %s\n", first.WorkflowID, first.RunID)
		expect(t, r, 0, wantPlain, "")

		// Bounded waits on the running removal: --timeout, then SIGTERM; it goes on after both.
		wantGoesOn := fmt.Sprintf("removal %s (run %s) goes on; run the same command to follow it again\n", first.WorkflowID, first.RunID)
		r = starter(ids("slow", "--timeout", "1s")...)
		expect(t, r, 124, "", "starter: timed out after 1s waiting; "+wantGoesOn)
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(time.Second, func() { cancel(interrupted{syscall.SIGTERM}) })
		var stdout, stderr bytes.Buffer
		code := run(ctx, ids("slow"), env, &stdout, &stderr)
		expect(t, runResult{code, stdout.String(), stderr.String()}, 143, "", "starter: stopped waiting; "+wantGoesOn)

		close(api.release)
		c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var result ac.RemoveConnectionResult
		if err := c.GetWorkflow(context.Background(), first.WorkflowID, first.RunID).Get(context.Background(), &result); err != nil {
			t.Fatalf("removal: %v", err)
		}
		if result.Outcome != ac.OutcomeRemoved || result.Attempts != 1 {
			t.Errorf("result: got %+v, want removed after 1 request", result)
		}
		if n := api.count("/v2/auth/agents/a1/connections/slow"); n != 1 {
			t.Errorf("DELETEs of slow: got %d, want 1 (the starters shared one removal)", n)
		}
	})
	t.Run("--address and --namespace beat the environment", func(t *testing.T) {
		dead := append(slices.Clone(env), "TEMPORAL_ADDRESS=127.0.0.1:1", "TEMPORAL_NAMESPACE=nowhere")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), ids("flagged", "--address", hostPort, "-n", "default"), dead, &stdout, &stderr)
		expect(t, runResult{code, stdout.String(), stderr.String()}, 0, "removed connection flagged of agent a1 (1 request)\n", "")
		stdout.Reset()
		stderr.Reset()
		code = run(context.Background(), ids("flagged", "--namespace", "nowhere"), env, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "nowhere") {
			t.Errorf("in a namespace that does not exist: got exit %d, stderr %q; want 2 naming it", code, stderr.String())
		}
	})
	t.Run("asked on a terminal", func(t *testing.T) {
		r := runAsked(context.Background(), t, env, strings.NewReader("y\n"), ids("asked")...)
		if r.code != 0 || !strings.HasSuffix(r.stdout, "Continue? [y/N] removed connection asked of agent a1 (1 request)\n") {
			t.Errorf("answered yes: got exit %d, stdout %q, stderr %q; want the question, then the removal", r.code, r.stdout, r.stderr)
		}
		r = runAsked(context.Background(), t, env, strings.NewReader("n\n"), ids("declined")...)
		if r.code != 2 || r.stderr != "starter: not confirmed; nothing started\n" {
			t.Errorf("answered no: got exit %d, stderr %q; want 2 and nothing started", r.code, r.stderr)
		}
		c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.DescribeWorkflow(context.Background(), ac.RemoveConnectionWorkflowID("a1", "declined"), ""); err == nil {
			t.Error("answered no, yet a removal of declined exists")
		}
		if n := api.count("/v2/auth/agents/a1/connections/declined"); n != 0 {
			t.Errorf("answered no, yet %d DELETEs of declined", n)
		}
	})
	if api.badKey.Load() {
		t.Error("the control plane got a request without the worker's key")
	}
}
