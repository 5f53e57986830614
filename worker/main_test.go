package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

// baseEnv is an environment that passes validation and touches nothing outside the test: no
// Temporal config file, no health server.
func baseEnv(t *testing.T, extra ...string) environ.Env {
	t.Helper()
	env := environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"LANGSMITH_API_KEY=" + testAPIKey,
		"WORKER_HTTP_ADDRESS=",
	}
	return append(env, extra...)
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestRun_Version(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--version"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	if got := stdout.String(); !strings.HasPrefix(got, "agent-connections-worker ") || len(lines(got)) != 1 {
		t.Errorf("stdout: got %q, want one line starting with agent-connections-worker", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
}

func TestResolveVersion(t *testing.T) {
	info := func(main string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: main}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	tests := []struct {
		name   string
		linked string
		info   func() (*debug.BuildInfo, bool)
		want   string
	}{
		{"linked wins", "v1.2.3", info("v0.9.0", rev), "v1.2.3"},
		{"module version", "", info("v0.9.0", rev), "v0.9.0"},
		{"vcs revision", "", info("(devel)", rev), "0123456789ab"},
		{"dirty revision", "", info("(devel)", rev, dirty), "0123456789ab-dirty"},
		{"nothing known", "", info("(devel)"), "devel"},
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "devel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveVersion(tt.linked, tt.info); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRun_UsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined: -nope"},
		{"positional argument", []string{"extra"}, 2, `worker: unexpected argument "extra"; settings come from the environment`},
		{"help", []string{"-h"}, 0, "usage: worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, baseEnv(t), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tt.want)
			}
		})
	}
}

// TestRun_BadConfigIsOneLineBeforeDialing points TEMPORAL_ADDRESS at a dead port: a run that got
// as far as dialing would take the whole dial timeout.
func TestRun_BadConfigIsOneLineBeforeDialing(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"no key", []string{"LANGSMITH_API_KEY="},
			"worker: LANGSMITH_API_KEY: not set; set LANGSMITH_API_KEY or LANGSMITH_API_KEY_FILE (or LANGSMITH_BEARER_TOKEN)"},
		{"request timeout", []string{"LANGSMITH_REQUEST_TIMEOUT=abc"},
			`worker: LANGSMITH_REQUEST_TIMEOUT: "abc" is not a Go duration such as 30s`},
		{"key with a space", []string{"LANGSMITH_API_KEY=" + testAPIKey + " " + testAPIKey},
			"worker: LANGSMITH_API_KEY: contains whitespace or a control character"},
		{"stop timeout", []string{"WORKER_STOP_TIMEOUT=forever"},
			`worker: WORKER_STOP_TIMEOUT: "forever" is not a Go duration such as 30s`},
		{"log format", []string{"LOG_FORMAT=yaml"}, `worker: LOG_FORMAT: "yaml" is not one of json, console`},
		{"temporal profile", []string{"TEMPORAL_PROFILE=nope"}, "worker: temporal client settings (TEMPORAL_*): "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv(t, append([]string{"TEMPORAL_ADDRESS=127.0.0.1:1"}, tt.env...)...)
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(context.Background(), nil, env, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code: got %d, want 2", code)
			}
			got := lines(stderr.String())
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Errorf("stderr: got %q, want exactly one line starting with %q", stderr.String(), tt.want)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("took %s, want an answer before any dial", elapsed)
			}
			assertNoSecret(t, "stderr", stderr.String())
		})
	}
}

// TestRun_DeadTemporalAddressFailsWithinDialTimeout covers a refused port (fails at once) and a
// server that accepts connections but never answers (fails when the dial timeout runs out).
func TestRun_DeadTemporalAddressFailsWithinDialTimeout(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
		}
	}()

	tests := []struct {
		name, address string
	}{
		{"refused", "127.0.0.1:1"},
		{"silent", silent.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t, "TEMPORAL_ADDRESS="+tt.address, "LOG_LEVEL=debug")
			var stdout, stderr proc.Buffer
			start := time.Now()
			code := run(context.Background(), nil, env, &stdout, &stderr)
			elapsed := time.Since(start)
			if code != 1 {
				t.Errorf("exit code: got %d, want 1", code)
			}
			if elapsed > dialTimeout+5*time.Second {
				t.Errorf("took %s, want at most the dial timeout (%s) and a little", elapsed, dialTimeout)
			}
			want := "worker: cannot connect to Temporal at " + tt.address + " (namespace default): "
			got := lines(stderr.String())
			if len(got) != 1 || !strings.HasPrefix(got[0], want) {
				t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), want)
			}
			assertNoSecret(t, "stderr", stderr.String())
		})
	}
}

func TestRun_HTTPAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	env := baseEnv(t, "TEMPORAL_ADDRESS=127.0.0.1:1", "WORKER_HTTP_ADDRESS="+ln.Addr().String())
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), nil, env, &stdout, &stderr); code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	want := "worker: WORKER_HTTP_ADDRESS: listen tcp " + ln.Addr().String()
	if got := lines(stderr.String()); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), want)
	}
}

// TestRegister_UsesContractNames runs the workflow by its contract name on a worker set up by
// register, and checks which activity type it ran.
func TestRegister_UsesContractNames(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(api.Close)
	cp, err := controlplane.New(controlplane.Config{BaseURL: api.URL, Credentials: controlplane.StaticCredentials{APIKey: testAPIKey}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(quietLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env, acts)
	var ran []string
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		ran = append(ran, info.ActivityType.Name)
	})
	env.ExecuteWorkflow(ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	if len(ran) != 1 || ran[0] != ac.RemoveConnectionActivityType {
		t.Errorf("activity types run: got %v, want [%s]", ran, ac.RemoveConnectionActivityType)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func quietLogger() tlog.Logger { return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

func TestRun_RemovesConnectionAgainstDevServer(t *testing.T) {
	hostPort := devserver.ForTest(t, devserver.Options{}).Address

	var requests atomic.Int32
	var sawKey, sawUserAgent atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Method != http.MethodDelete || r.URL.Path != "/v2/auth/agents/a1/connections/c1" {
			t.Errorf("request: got %s %s, want DELETE /v2/auth/agents/a1/connections/c1", r.Method, r.URL.Path)
		}
		sawKey.Store(r.Header.Get("X-Api-Key") == testFileKey)
		sawUserAgent.Store(strings.HasPrefix(r.Header.Get("User-Agent"), "agent-connections-worker/"))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(api.Close)

	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	taskQueue := "worker-e2e"
	env := environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=" + hostPort,
		"TEMPORAL_NAMESPACE=default",
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
		"LANGSMITH_API_KEY_FILE=" + writeKeyFile(t, testFileKey+"\n"),
		"LANGSMITH_CONTROL_PLANE_URL=" + api.URL,
		"WORKER_HTTP_ADDRESS=" + httpAddr,
		"WORKER_STOP_TIMEOUT=5s",
		"LOG_LEVEL=debug",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()

	waitReady(t, "http://"+httpAddr+"/readyz", done, &stderr)

	c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	wfCtx, wfCancel := context.WithTimeout(ctx, time.Minute)
	defer wfCancel()
	wr, err := c.ExecuteWorkflow(wfCtx, client.StartWorkflowOptions{
		ID:        ac.RemoveConnectionWorkflowID("a1", "c1"),
		TaskQueue: taskQueue,
	}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"})
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	// Decode into a map to check the JSON names other SDKs and the CLI see.
	var result map[string]any
	if err := wr.Get(wfCtx, &result); err != nil {
		t.Fatalf("workflow: %v; worker stderr: %s", err, stderr.String())
	}
	if result["outcome"] != "removed" || result["attempts"] != float64(1) {
		t.Errorf("result: got %v, want outcome removed and attempts 1", result)
	}
	if !sawKey.Load() {
		t.Error("the control plane got no X-Api-Key with the file's key, want it")
	}
	if !sawUserAgent.Load() {
		t.Error("the control plane got no agent-connections-worker User-Agent, want it")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("requests: got %d, want 1", n)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code after cancel: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancel")
	}
	logs := stderr.String()
	for _, want := range []string{`"msg":"worker started"`, `"task_queue":"worker-e2e"`, `"msg":"worker stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs: want %s in %s", want, logs)
		}
	}
	assertNoSecret(t, "worker logs", logs)
	assertNoSecret(t, "worker stdout", stdout.String())
}

// TestRun_StopLetsInFlightRemovalFinish cancels run while a DELETE is in flight: the worker waits
// (WORKER_STOP_TIMEOUT) for the activity, which completes instead of being left for a retry.
func TestRun_StopLetsInFlightRemovalFinish(t *testing.T) {
	hostPort := devserver.ForTest(t, devserver.Options{}).Address

	arrived := make(chan struct{})
	var answered atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(arrived)
		time.Sleep(time.Second)
		w.WriteHeader(http.StatusNoContent)
		answered.Store(true)
	}))
	t.Cleanup(api.Close)

	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := baseEnv(t,
		"TEMPORAL_ADDRESS="+hostPort,
		"TEMPORAL_TASK_QUEUE=worker-stop",
		"LANGSMITH_CONTROL_PLANE_URL="+api.URL,
		"WORKER_HTTP_ADDRESS="+httpAddr,
		"WORKER_STOP_TIMEOUT=20s",
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()
	waitReady(t, "http://"+httpAddr+"/readyz", done, &stderr)

	c, err := client.Dial(client.Options{HostPort: hostPort, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	wr, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:        ac.RemoveConnectionWorkflowID("a1", "slow"),
		TaskQueue: "worker-stop",
	}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "slow"})
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the DELETE did not arrive within 30s")
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("run did not return within 40s of cancel")
	}
	if !answered.Load() {
		t.Error("run returned before the in-flight request was answered, want it to wait")
	}
	desc, err := c.DescribeWorkflow(context.Background(), wr.GetID(), wr.GetRunID())
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if n := len(desc.RawResponse.GetPendingActivities()); n != 0 {
		t.Errorf("pending activities after stop: got %d, want 0 (the removal completed)", n)
	}
}

// waitReady polls /readyz until it answers 200, failing if run returns first.
func waitReady(t *testing.T, url string, done <-chan int, stderr *proc.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case code := <-done:
			t.Fatalf("run returned %d before it was ready; stderr: %s", code, stderr.String())
		default:
		}
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not 200 after 30s; stderr: %s", url, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
