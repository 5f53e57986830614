package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	ac "github.com/agentops/agentconnections"
)

// The flags and variables the temporal CLI users reach for, and the checks around them: all offline,
// against a dead Temporal address (offlineEnv), so anything that dials fails visibly.

func TestRun_HelpListsEveryFlagAndVariable(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, offlineEnv(t), &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit code %d, want 0", arg, code)
		}
		if stderr.Len() != 0 {
			t.Errorf("%s: stderr %q, want the help on stdout only", arg, stderr.String())
		}
		help := stdout.String()
		fs := flag.NewFlagSet("starter", flag.ContinueOnError)
		var opts options
		defineFlags(fs, &opts, ac.DefaultTaskQueue)
		fs.VisitAll(func(f *flag.Flag) {
			want := "--" + f.Name
			if len(f.Name) == 1 {
				want = "-" + f.Name + ", --"
			}
			if !strings.Contains(help, want) {
				t.Errorf("%s does not list %s", arg, want)
			}
		})
		for _, v := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_PROFILE",
			"TEMPORAL_CONFIG_FILE", "TEMPORAL_TASK_QUEUE", "TEMPORAL_GRPC_META_",
			"LANGSMITH_API_KEY", "LANGGRAPH_HOST_API_KEY", "LANGSMITH_API_KEY_FILE", "LANGSMITH_BEARER_TOKEN", "LANGSMITH_WORKSPACE_ID",
			"LANGSMITH_TENANT_ID", "LANGSMITH_CONTROL_PLANE_URL", "LANGGRAPH_HOST_URL", "LANGSMITH_ENDPOINT"} {
			if !strings.Contains(help, v) {
				t.Errorf("%s does not name the variable %s", arg, v)
			}
		}
		for _, code := range []string{"\n  0 ", "\n  1 ", "\n  2 ", "\n  124 ", "\n  130 "} {
			if !strings.Contains(help, code) {
				t.Errorf("%s does not explain exit code %s", arg, strings.TrimSpace(code))
			}
		}
		if !strings.Contains(help, "  -o, --output FORMAT\n") || !strings.Contains(help, "  --profile, --env NAME\n") {
			t.Errorf("%s: aliases not shown next to their flag:\n%s", arg, help)
		}
	}
}

func TestRun_NewUsageErrors(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantFirst string
	}{
		{"unknown output", []string{"-o", "yaml"}, `starter: -o "yaml": want text or json`},
		{"json against text", []string{"--json", "-o", "text"}, "starter: --json and -o text contradict each other"},
		{"two profiles", []string{"--profile", "a", "--env", "b"}, `starter: --profile "a" and --env "b" name different profiles`},
		{"empty profile", []string{"--env", ""}, "starter: --profile is empty"},
		{"empty address", []string{"--address", " "}, "starter: --address is empty"},
		{"empty namespace", []string{"-n", ""}, "starter: --namespace is empty"},
		{"negative timeout", []string{"--timeout", "-1s"}, "starter: --timeout is -1s, want 0 (no limit) or more"},
		{"timeout without waiting", []string{"--timeout", "1m", "--wait=false"}, "starter: --timeout bounds the wait; it means nothing with --wait=false"},
		{"timeout not a duration", []string{"--timeout", "10"}, `invalid value "10" for flag -timeout`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--agent-id", "a1", "--connection-id", "c1"}, tt.args...)
			code := run(context.Background(), args, offlineEnv(t), &stdout, &stderr)
			got := lines(stderr.String())
			if code != 2 || len(got) != 2 || !strings.HasPrefix(got[0], tt.wantFirst) || got[1] != usageLine {
				t.Errorf("got exit %d, stderr %q; want 2, %q and the usage line", code, stderr.String(), tt.wantFirst)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestParseArgs_NewFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		want       options
		wantNotice string
	}{
		{"output json", []string{"-o", "json"}, options{json: true}, ""},
		{"deprecated json", []string{"--json"}, options{json: true}, "starter: --json is deprecated and will be removed in the next release; use -o json\n"},
		{"deprecated json with -o json", []string{"--json", "--output", "json"}, options{json: true}, "starter: --json is deprecated and will be removed in the next release; use -o json\n"},
		{"connection", []string{"--address", "temporal.example:7233", "-n", "prod"}, options{address: "temporal.example:7233", namespace: "prod"}, ""},
		{"profile", []string{"--profile", "staging", "--config-file", "/etc/temporal.toml"}, options{profile: "staging", configFile: "/etc/temporal.toml"}, ""},
		{"env is the profile", []string{"--env", "staging"}, options{profile: "staging"}, ""},
		{"env and profile agree", []string{"--env", "staging", "--profile", "staging"}, options{profile: "staging"}, ""},
		{"dry run, yes, timeout", []string{"--dry-run", "-y", "--timeout", "90s"}, options{dryRun: true, yes: true, timeout: 90 * time.Second}, ""},
		{"long yes", []string{"--yes"}, options{yes: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			opts, _, ok := parseArgs(append([]string{"--agent-id", "a1", "--connection-id", "c1"}, tt.args...), nil, io.Discard, &stderr)
			if !ok {
				t.Fatalf("refused: %s", stderr.String())
			}
			got := options{json: opts.json, address: opts.address, namespace: opts.namespace, profile: opts.profile,
				configFile: opts.configFile, dryRun: opts.dryRun, yes: opts.yes, timeout: opts.timeout}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if stderr.String() != tt.wantNotice {
				t.Errorf("stderr: got %q, want %q", stderr.String(), tt.wantNotice)
			}
		})
	}
}

// dryRun runs the starter with --dry-run and -o json and decodes what it printed.
func dryRun(t *testing.T, env environ.Env, args ...string) (dryRunResult, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), append(args, "--dry-run", "-o", "json"), env, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("%v: exit %d, stderr %q", args, code, stderr.String())
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a dry run took %s; it must not dial", took)
	}
	var got dryRunResult
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q is not JSON: %v", stdout.String(), err)
	}
	return got, stderr.String()
}

type dryRunResult struct {
	DryRun           bool            `json:"dry_run"`
	WorkflowType     string          `json:"workflow_type"`
	WorkflowID       string          `json:"workflow_id"`
	TaskQueue        string          `json:"task_queue"`
	Namespace        string          `json:"namespace"`
	Address          string          `json:"address"`
	AgentID          string          `json:"agent_id"`
	ConnectionIDs    []string        `json:"connection_ids"`
	ListsConnections bool            `json:"lists_connections"`
	Input            json.RawMessage `json:"input"`
}

func TestRun_DryRunStartsNothing(t *testing.T) {
	t.Run("one connection, as JSON", func(t *testing.T) {
		got, _ := dryRun(t, offlineEnv(t), "--agent-id", "a1", "--connection-id", "c1", "--missing-ok=false")
		want := dryRunResult{DryRun: true, WorkflowType: ac.RemoveConnectionWorkflowType, WorkflowID: "remove-connection/a1/c1",
			TaskQueue: ac.DefaultTaskQueue, Namespace: "default", Address: "127.0.0.1:1", AgentID: "a1", ConnectionIDs: []string{"c1"},
			Input: json.RawMessage(`{"agent_id":"a1","connection_id":"c1","missing_ok":false}`)}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("teardown of given connections, as JSON", func(t *testing.T) {
		got, _ := dryRun(t, offlineEnv(t), "--agent-id", "a1", "--all", "--connection-ids", "c1,c2", "--concurrency", "5")
		if got.WorkflowType != ac.RemoveAgentConnectionsWorkflowType || got.WorkflowID != "remove-agent-connections/a1" ||
			got.ListsConnections || !reflect.DeepEqual(got.ConnectionIDs, []string{"c1", "c2"}) ||
			string(got.Input) != `{"agent_id":"a1","connection_ids":["c1","c2"],"concurrency":5,"missing_ok":true,"continue_on_error":true}` {
			t.Errorf("got %+v (input %s)", got, got.Input)
		}
	})
	t.Run("teardown that lists, as text", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--agent-id", "a1", "--all", "--dry-run"}, offlineEnv(t), &stdout, &stderr)
		want := `dry run: nothing started; neither Temporal nor the control plane was asked anything
would remove every connection of agent a1 (as the control plane lists them when the teardown runs)
  workflow RemoveAgentConnectionsWorkflow, ID remove-agent-connections/a1 (a running one with this ID is followed instead)
  task queue agent-connections, namespace default at 127.0.0.1:1
  input {"agent_id":"a1","missing_ok":true,"continue_on_error":true}
with LANGSMITH_API_KEY (or LANGSMITH_API_KEY_FILE) set, --dry-run would list the agent's connections now (a read-only GET)
`
		if code != 0 || stdout.String() != want || stderr.Len() != 0 {
			t.Errorf("got exit %d, stdout\n%s\nstderr %q; want 0 and\n%s", code, stdout.String(), stderr.String(), want)
		}
	})
	t.Run("teardown of given connections, as text", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--agent-id", "a1", "--all", "--connection-ids", "c1,c2", "--dry-run"}, offlineEnv(t), &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "would remove these 2 connections of agent a1:\n    c1\n    c2\n") {
			t.Errorf("got exit %d, stdout %q; want the IDs one per line", code, stdout.String())
		}
	})
	t.Run("bad Temporal settings fail it too", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--agent-id", "a1", "--all", "--dry-run", "--profile", "absent"}, offlineEnv(t), &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "starter: temporal client settings (TEMPORAL_*): ") {
			t.Errorf("got exit %d, stderr %q; want 2 and the settings' problem", code, stderr.String())
		}
	})
}

// The Temporal connection: the config file's profile, TEMPORAL_* over it, the flags over both.
func TestRun_ConnectionPrecedence(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "temporal.toml")
	if err := os.WriteFile(config, []byte(`
[profile.default]
address = "default.example:7233"
namespace = "from-default"

[profile.staging]
address = "staging.example:7233"
namespace = "from-staging"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := environ.Env{"TEMPORAL_CONFIG_FILE=" + config}
	tests := []struct {
		name                 string
		env                  environ.Env
		args                 []string
		wantAddress, wantNS  string
		wantErrorContains    string
		useExplicitConfigArg bool
	}{
		{"default profile", base, nil, "default.example:7233", "from-default", "", false},
		{"--env picks the profile", base, []string{"--env", "staging"}, "staging.example:7233", "from-staging", "", false},
		{"--profile picks the profile", base, []string{"--profile", "staging"}, "staging.example:7233", "from-staging", "", false},
		{"TEMPORAL_PROFILE picks it too", append(base, "TEMPORAL_PROFILE=staging"), nil, "staging.example:7233", "from-staging", "", false},
		{"--profile beats TEMPORAL_PROFILE", append(base, "TEMPORAL_PROFILE=staging"), []string{"--profile", "default"}, "default.example:7233", "from-default", "", false},
		{"the environment beats the file", append(base, "TEMPORAL_ADDRESS=env.example:7233"), []string{"--env", "staging"}, "env.example:7233", "from-staging", "", false},
		{"flags beat both", append(base, "TEMPORAL_ADDRESS=env.example:7233", "TEMPORAL_NAMESPACE=env-ns"),
			[]string{"--env", "staging", "--address", "flag.example:7233", "--namespace", "flag-ns"}, "flag.example:7233", "flag-ns", "", false},
		{"--config-file", environ.Env{"TEMPORAL_CONFIG_FILE=" + filepath.Join(dir, "absent.toml")}, []string{"--profile", "staging"},
			"staging.example:7233", "from-staging", "", true},
		{"a missing profile", base, []string{"--env", "prod"}, "", "", "unable to find profile prod", false},
		{"a missing --config-file", base, []string{"--config-file", filepath.Join(dir, "absent.toml")}, "", "", "--config-file: ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--agent-id", "a1", "--connection-id", "c1"}, tt.args...)
			if tt.useExplicitConfigArg {
				args = append(args, "--config-file", config)
			}
			if tt.wantErrorContains != "" {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), append(args, "--dry-run"), tt.env, &stdout, &stderr)
				if code != 2 || !strings.Contains(stderr.String(), tt.wantErrorContains) || len(lines(stderr.String())) != 1 {
					t.Errorf("got exit %d, stderr %q; want 2 and one line with %q", code, stderr.String(), tt.wantErrorContains)
				}
				return
			}
			got, _ := dryRun(t, tt.env, args...)
			if got.Address != tt.wantAddress || got.Namespace != tt.wantNS {
				t.Errorf("got %s namespace %s, want %s namespace %s", got.Address, got.Namespace, tt.wantAddress, tt.wantNS)
			}
		})
	}
}

// runAsked runs the starter as if on a terminal, answering the question with stdin.
func runAsked(ctx context.Context, t *testing.T, env environ.Env, stdin io.Reader, args ...string) runResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runConsole(ctx, args, env, console{stdin: stdin, stdout: &stdout, stderr: &stderr, interactive: true})
	return runResult{code, stdout.String(), stderr.String()}
}

func TestRun_AsksOnATerminal(t *testing.T) {
	one := []string{"--agent-id", "a1", "--connection-id", "c1"}
	const question = "About to remove connection c1 of agent a1.\n" +
		"  workflow RemoveConnectionWorkflow, ID remove-connection/a1/c1 (a running one with this ID is followed instead)\n" +
		"  task queue agent-connections, namespace default at 127.0.0.1:1\n" +
		"Continue? [y/N] "
	const dialFailure = "starter: cannot connect to Temporal at 127.0.0.1:1"

	for _, answer := range []string{"n\n", "\n", "", "nope\n", "yes please\n"} {
		t.Run("not yes: "+strings.TrimSpace(answer), func(t *testing.T) {
			r := runAsked(context.Background(), t, offlineEnv(t), strings.NewReader(answer), one...)
			if r.code != 2 || !strings.HasPrefix(r.stdout, question) || r.stderr != "starter: not confirmed; nothing started\n" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want 2, the question, and nothing dialled", r.code, r.stdout, r.stderr)
			}
		})
	}
	for _, answer := range []string{"y\n", "Y\n", "yes\n", " YES \n"} {
		t.Run("yes: "+strings.TrimSpace(answer), func(t *testing.T) {
			// A yes goes on to dial, which fails at the dead address: proof it went past the question.
			r := runAsked(context.Background(), t, offlineEnv(t), strings.NewReader(answer), one...)
			if r.code != 2 || r.stdout != question || !strings.HasPrefix(r.stderr, dialFailure) {
				t.Errorf("got exit %d, stdout %q, stderr %q; want the question, then the dial", r.code, r.stdout, r.stderr)
			}
		})
	}
	t.Run("--yes does not ask", func(t *testing.T) {
		r := runAsked(context.Background(), t, offlineEnv(t), strings.NewReader(""), append(one, "-y")...)
		if r.stdout != "" || !strings.HasPrefix(r.stderr, dialFailure) {
			t.Errorf("got stdout %q, stderr %q; want no question and the dial", r.stdout, r.stderr)
		}
	})
	t.Run("--dry-run does not ask", func(t *testing.T) {
		r := runAsked(context.Background(), t, offlineEnv(t), strings.NewReader(""), append(one, "--dry-run")...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "dry run: ") {
			t.Errorf("got exit %d, stdout %q; want the dry run and no question", r.code, r.stdout)
		}
	})
	t.Run("not on a terminal it does not ask", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := runConsole(context.Background(), one, offlineEnv(t), console{stdin: strings.NewReader("n\n"), stdout: &stdout, stderr: &stderr})
		if code != 2 || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), dialFailure) {
			t.Errorf("got exit %d, stdout %q, stderr %q; want no question and the dial", code, stdout.String(), stderr.String())
		}
	})
	t.Run("a teardown names what it removes", func(t *testing.T) {
		ids := "c00,c01,c02,c03,c04,c05,c06,c07,c08,c09,c10,c11"
		r := runAsked(context.Background(), t, offlineEnv(t), strings.NewReader("n\n"), "--agent-id", "a1", "--all", "--connection-ids", ids)
		if !strings.HasPrefix(r.stdout, "About to remove 12 connections of agent a1: c00, c01, c02, c03, c04, c05, c06, c07, c08, c09 and 2 more.\n") {
			t.Errorf("got %q", r.stdout)
		}
		r = runAsked(context.Background(), t, offlineEnv(t), strings.NewReader("n\n"), "--agent-id", "a1", "--all")
		if !strings.HasPrefix(r.stdout, "About to remove every connection of agent a1 (as the control plane lists them when the teardown runs).\n") {
			t.Errorf("got %q", r.stdout)
		}
	})
	for _, sig := range []struct {
		sig  os.Signal
		code int
	}{{os.Interrupt, 130}, {syscall.SIGTERM, 143}} {
		t.Run("interrupted while asking: "+sig.sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			stdin, w := io.Pipe() // never answers
			defer func() { _ = w.Close() }()
			time.AfterFunc(100*time.Millisecond, func() { cancel(interrupted{sig.sig}) })
			r := runAsked(ctx, t, offlineEnv(t), stdin, one...)
			if r.code != sig.code || r.stderr != "starter: interrupted; nothing started\n" {
				t.Errorf("got exit %d, stderr %q; want %d and nothing started", r.code, r.stderr, sig.code)
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = devNull.Close() }()
	// /dev/null is a character device, which is what a ModeCharDevice test would call a terminal.
	if fi, err := devNull.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Skipf("%s is not a character device here", os.DevNull)
	}
	if isTerminal(devNull) {
		t.Errorf("isTerminal(%s) is true; the starter would ask a question nobody can answer", os.DevNull)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) || isTerminal(nil) {
		t.Error("a file, a buffer or nil counts as a terminal")
	}
}
