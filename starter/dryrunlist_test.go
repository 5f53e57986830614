package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/environ"
)

// `starter --all --dry-run` with a LangSmith key lists the agent's connections through the control
// plane (the emulator here) and prints them: one GET, never a DELETE, and never a word to Temporal,
// whose address is a listener that records every connection made to it (temporalTrap).

const (
	testWorkspace = "ws-dry-run"
	testFileKey   = "lsv2_sk_FROMTHEFILE4567"
)

// temporalTrap is a TCP listener standing in for Temporal's frontend: anything the starter dials
// there is accepted and recorded.
type temporalTrap struct {
	addr     string
	accepted chan net.Conn
}

func newTemporalTrap(t *testing.T) *temporalTrap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &temporalTrap{addr: ln.Addr().String(), accepted: make(chan net.Conn, 64)}
	go func() {
		defer close(tr.accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.accepted <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for c := range tr.accepted {
			_ = c.Close()
		}
	})
	return tr
}

// contacted reports how many connections reached the trap before now. It connects to the trap
// itself and takes the accepted connections, in the order they were made, up to its own: with no
// timing involved, every earlier one is counted.
func (tr *temporalTrap) contacted(t *testing.T) int {
	t.Helper()
	own, err := net.Dial("tcp", tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = own.Close() }()
	before := 0
	for c := range tr.accepted {
		mine := c.RemoteAddr().String() == own.LocalAddr().String()
		_ = c.Close()
		if mine {
			return before
		}
		before++
	}
	t.Fatal("the trap closed before its own connection arrived")
	return before
}

// dryRunStack is a control plane (the emulator) holding agent a1's connections c1 to c3, and a
// Temporal address that records any contact.
type dryRunStack struct {
	emu  *emulator.Server
	url  string
	trap *temporalTrap
}

func newDryRunStack(t *testing.T, opts emulator.Options) *dryRunStack {
	t.Helper()
	if opts.Seed == nil {
		opts.Seed = map[string][]string{"a1": {"c1", "c2", "c3"}}
	}
	emu := emulator.New(opts)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	t.Cleanup(emu.Close) // runs first
	return &dryRunStack{emu: emu, url: srv.URL, trap: newTemporalTrap(t)}
}

// env is the starter's environment: Temporal at the trap, no config file, then extra.
func (s *dryRunStack) env(t *testing.T, extra ...string) environ.Env {
	return append(environ.Env{
		"TEMPORAL_CONFIG_FILE=" + filepath.Join(t.TempDir(), "absent.toml"),
		"TEMPORAL_ADDRESS=" + s.trap.addr,
	}, extra...)
}

// keyEnv is env with the key, the workspace and the emulator as the control plane.
func (s *dryRunStack) keyEnv(t *testing.T, extra ...string) environ.Env {
	return s.env(t, append([]string{"LANGSMITH_API_KEY=" + testAPIKey, "LANGSMITH_WORKSPACE_ID=" + testWorkspace,
		"LANGSMITH_CONTROL_PLANE_URL=" + s.url}, extra...)...)
}

// run runs the starter and checks what every dry run must hold: Temporal not contacted, no DELETE
// sent and the connections untouched, no key in the output. It returns what the control plane saw.
func (s *dryRunStack) run(t *testing.T, env environ.Env, args ...string) (runResult, []emulator.LogEntry) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, env, &stdout, &stderr)
	r := runResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if n := s.trap.contacted(t); n != 0 {
		t.Errorf("Temporal was contacted %d times; a dry run contacts it never", n)
	}
	log := s.emu.Log()
	for _, e := range log {
		if e.Method != http.MethodGet {
			t.Errorf("control plane got %s %s; a dry run sends only GET", e.Method, e.Path)
		}
	}
	if st := s.emu.Stats(); len(st.DeletesByConnection) != 0 || st.Removed != 0 {
		t.Errorf("control plane stats %+v: want no DELETE", st)
	}
	if got := s.emu.Connections("a1"); !reflect.DeepEqual(got, []string{"c1", "c2", "c3"}) {
		t.Errorf("a1's connections: got %v, want c1 to c3 untouched", got)
	}
	for _, secret := range []string{testAPIKey, testFileKey} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("the output holds the key:\nstdout %s\nstderr %s", r.stdout, r.stderr)
		}
	}
	return r, log
}

// wantOneGET checks the control plane saw one request: the list of a1's connections.
func wantOneGET(t *testing.T, log []emulator.LogEntry, agentID string) {
	t.Helper()
	if len(log) != 1 || log[0].Method != http.MethodGet || log[0].Path != "/v2/auth/agents/"+agentID+"/connections" {
		t.Errorf("control plane log %+v: want one GET of %s's connections", log, agentID)
	}
}

type listedDryRun struct {
	dryRunResult
	Connections *[]string `json:"connections"`
}

func TestRun_DryRunAllListsTheConnections(t *testing.T) {
	s := newDryRunStack(t, emulator.Options{APIKey: testAPIKey, TenantID: testWorkspace})
	t.Run("every connection, as text", func(t *testing.T) {
		s.emu.ResetStats()
		r, log := s.run(t, s.keyEnv(t), "--agent-id", "a1", "--all", "--dry-run")
		want := `dry run: nothing started or removed; Temporal was not contacted, and the control plane was only asked for the connections of agent a1 (GET)
would remove every connection of agent a1, as the control plane lists them when the teardown runs; it lists 3 connections now:
    c1
    c2
    c3
  workflow RemoveAgentConnectionsWorkflow, ID remove-agent-connections/a1 (a running one with this ID is followed instead)
  task queue agent-connections, namespace default at ` + s.trap.addr + `
  input {"agent_id":"a1","missing_ok":true,"continue_on_error":true}
`
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("got exit %d, stdout\n%s\nstderr %q; want 0 and\n%s", r.code, r.stdout, r.stderr, want)
		}
		wantOneGET(t, log, "a1")
	})
	t.Run("every connection, as JSON: the plan plus connections", func(t *testing.T) {
		s.emu.ResetStats()
		r, log := s.run(t, s.keyEnv(t), "--agent-id", "a1", "--all", "--dry-run", "-o", "json")
		var got listedDryRun
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 0 and JSON", r.code, r.stdout, r.stderr)
		}
		if !got.DryRun || !got.ListsConnections || got.WorkflowID != "remove-agent-connections/a1" ||
			got.Connections == nil || !reflect.DeepEqual(*got.Connections, []string{"c1", "c2", "c3"}) {
			t.Errorf("got %+v (connections %v); want the plan and c1 to c3", got, got.Connections)
		}
		wantOneGET(t, log, "a1")
	})
	t.Run("given IDs, as text: which of them are listed", func(t *testing.T) {
		s.emu.ResetStats()
		r, log := s.run(t, s.keyEnv(t), "--agent-id", "a1", "--all", "--connection-ids", "c2,c9", "--dry-run")
		want := "would remove these 2 connections of agent a1; the control plane lists 1 of them now (3 connections of the agent in all):\n" +
			"    c2  listed\n    c9  not listed\n"
		if r.code != 0 || !strings.Contains(r.stdout, want) || r.stderr != "" {
			t.Errorf("got exit %d, stdout\n%s\nstderr %q; want 0 and\n%s", r.code, r.stdout, r.stderr, want)
		}
		wantOneGET(t, log, "a1")
	})
	t.Run("given IDs, as JSON", func(t *testing.T) {
		s.emu.ResetStats()
		r, _ := s.run(t, s.keyEnv(t), "--agent-id", "a1", "--all", "--connection-ids", "c2,c9", "--dry-run", "-o", "json")
		var got listedDryRun
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("got exit %d, stdout %q, stderr %q; want 0 and JSON", r.code, r.stdout, r.stderr)
		}
		if !reflect.DeepEqual(got.ConnectionIDs, []string{"c2", "c9"}) || got.Connections == nil ||
			!reflect.DeepEqual(*got.Connections, []string{"c1", "c2", "c3"}) {
			t.Errorf("got connection_ids %v, connections %v; want c2,c9 and c1 to c3", got.ConnectionIDs, got.Connections)
		}
	})
	t.Run("an agent with no connections", func(t *testing.T) {
		s.emu.ResetStats()
		s.emu.Seed("empty")
		r, _ := s.run(t, s.keyEnv(t), "--agent-id", "empty", "--all", "--dry-run")
		want := "would remove every connection of agent empty, as the control plane lists them when the teardown runs; it lists 0 connections now: the teardown would remove nothing\n"
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("got exit %d, stdout\n%s\nwant 0 and %q", r.code, r.stdout, want)
		}
	})
	t.Run("a single removal's dry run asks nothing, key or not", func(t *testing.T) {
		s.emu.ResetStats()
		r, log := s.run(t, s.keyEnv(t), "--agent-id", "a1", "--connection-id", "c1", "--dry-run")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "dry run: nothing started; neither Temporal nor the control plane was asked anything\n") ||
			strings.Contains(r.stdout, "LANGSMITH_API_KEY") || len(log) != 0 {
			t.Errorf("got exit %d, stdout\n%s\ncontrol plane log %+v; want the plan as before and no request", r.code, r.stdout, log)
		}
	})
	t.Run("a restore's dry run asks nothing, key or not", func(t *testing.T) {
		s.emu.ResetStats()
		in := `{"agent_id":"a1","connections":[{"connection_id":"c1","oauth_token_id":"t1","outcome":"removed"}]}`
		r := runRestore(context.Background(), s.keyEnv(t), in, "-", "--dry-run")
		if log := s.emu.Log(); r.code != 0 || !strings.HasPrefix(r.stdout, "dry run: nothing started; neither Temporal nor the control plane was asked anything\n") ||
			len(log) != 0 || s.trap.contacted(t) != 0 {
			t.Errorf("got exit %d, stdout\n%s\ncontrol plane log %+v; want the plan as before and no request", r.code, r.stdout, log)
		}
	})
}

// TestRun_DryRunAllReadsTheWorkersSettings: the key from its file, the langgraph-cli names, a
// bearer token; and without a workspace, a warning on stderr.
func TestRun_DryRunAllReadsTheWorkersSettings(t *testing.T) {
	keyFile := writeFile(t, "langsmith-key", testFileKey+"\n")
	tests := []struct {
		name       string
		opts       emulator.Options
		env        []string
		wantStderr string
	}{
		{"key from a file", emulator.Options{APIKey: testFileKey, TenantID: testWorkspace},
			[]string{"LANGSMITH_API_KEY_FILE=" + keyFile, "LANGSMITH_TENANT_ID=" + testWorkspace}, ""},
		{"langgraph-cli's names", emulator.Options{APIKey: testAPIKey, TenantID: testWorkspace},
			[]string{"LANGGRAPH_HOST_API_KEY=" + testAPIKey, "LANGSMITH_WORKSPACE_ID=" + testWorkspace}, ""},
		{"a bearer token", emulator.Options{BearerToken: testFileKey, TenantID: testWorkspace},
			[]string{"LANGSMITH_BEARER_TOKEN=" + testFileKey, "LANGSMITH_WORKSPACE_ID=" + testWorkspace}, ""},
		{"no workspace: a warning", emulator.Options{APIKey: testAPIKey},
			[]string{"LANGSMITH_API_KEY=" + testAPIKey},
			"starter: warning: no workspace set (LANGSMITH_WORKSPACE_ID or LANGSMITH_TENANT_ID): requests carry no X-Tenant-Id, which a key with access to several workspaces needs\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newDryRunStack(t, tt.opts)
			urlVar := "LANGSMITH_CONTROL_PLANE_URL="
			if strings.HasPrefix(tt.env[0], "LANGGRAPH_") {
				urlVar = "LANGGRAPH_HOST_URL="
			}
			r, log := s.run(t, s.env(t, append(tt.env, urlVar+s.url)...), "--agent-id", "a1", "--all", "--dry-run", "-o", "json")
			var got listedDryRun
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || r.stderr != tt.wantStderr {
				t.Fatalf("got exit %d, stdout %q, stderr %q; want 0, JSON and stderr %q", r.code, r.stdout, r.stderr, tt.wantStderr)
			}
			if got.Connections == nil || !reflect.DeepEqual(*got.Connections, []string{"c1", "c2", "c3"}) {
				t.Errorf("connections: got %v, want c1 to c3", got.Connections)
			}
			wantOneGET(t, log, "a1")
		})
	}
}

// TestRun_DryRunAllFailures: each failure of the list is one line on stderr, exit 1, nothing on
// stdout and no key anywhere; bad settings are exit 2 before any request.
func TestRun_DryRunAllFailures(t *testing.T) {
	s := newDryRunStack(t, emulator.Options{APIKey: testAPIKey, TenantID: testWorkspace})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + closed.Addr().String()
	keyFile := writeFile(t, "langsmith-key", testFileKey)
	_ = closed.Close()
	tests := []struct {
		name      string
		env       environ.Env
		agentID   string
		wantCode  int
		wantFirst string
	}{
		{"agent not found (404)", s.keyEnv(t), "nobody", 1,
			"starter: dry run: agent nobody not found: the control plane at " + s.url + " answered 404 to its connection list, " +
				"so the teardown would fail AgentNotFound; if the agent exists, check that LANGSMITH_CONTROL_PLANE_URL carries the install's path prefix"},
		{"key refused (401)", s.keyEnv(t, "LANGSMITH_API_KEY="+testFileKey), "a1", 1,
			"starter: dry run: the control plane at " + s.url + " refused the LangSmith key (401 Unauthorized): " +
				"check LANGSMITH_API_KEY\n"},
		{"key from a file refused (401)", s.keyEnv(t, "LANGSMITH_API_KEY=", "LANGSMITH_API_KEY_FILE="+keyFile), "a1", 1,
			"starter: dry run: the control plane at " + s.url + " refused the LangSmith key (401 Unauthorized): " +
				"check LANGSMITH_API_KEY_FILE\n"},
		{"key refused for the workspace (403)", s.keyEnv(t, "LANGSMITH_WORKSPACE_ID=another"), "a1", 1,
			"starter: dry run: the control plane at " + s.url + " refused the LangSmith key (403 Forbidden): " +
				"check LANGSMITH_WORKSPACE_ID and the key's access to it\n"},
		{"control plane unreachable", s.keyEnv(t, "LANGSMITH_CONTROL_PLANE_URL="+deadURL), "a1", 1,
			"starter: dry run: cannot reach the control plane at " + deadURL + " (LANGSMITH_CONTROL_PLANE_URL) to list the connections of agent a1: "},
		{"an unreadable key file", s.keyEnv(t, "LANGSMITH_API_KEY=", "LANGSMITH_API_KEY_FILE="+filepath.Join(t.TempDir(), "absent")), "a1", 2,
			"starter: LangSmith settings: LANGSMITH_API_KEY_FILE: "},
		{"two names for the key disagree", s.keyEnv(t, "LANGGRAPH_HOST_API_KEY="+testFileKey), "a1", 2,
			"starter: LangSmith settings: LANGSMITH_API_KEY and LANGGRAPH_HOST_API_KEY: both set, to different values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.emu.ResetStats()
			r, log := s.run(t, tt.env, "--agent-id", tt.agentID, "--all", "--dry-run")
			if r.code != tt.wantCode || len(lines(r.stderr)) != 1 || !strings.HasPrefix(r.stderr, tt.wantFirst) || r.stdout != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want %d, nothing on stdout and one line starting %q",
					r.code, r.stdout, r.stderr, tt.wantCode, tt.wantFirst)
			}
			if tt.wantCode == 2 && len(log) != 0 {
				t.Errorf("control plane log %+v: bad settings should send nothing", log)
			}
		})
	}
}

// TestRun_DryRunAllWithoutKey: the plan as before, and one line saying what a key would add; the
// JSON has no connections.
func TestRun_DryRunAllWithoutKey(t *testing.T) {
	s := newDryRunStack(t, emulator.Options{APIKey: testAPIKey})
	env := s.env(t, "LANGSMITH_CONTROL_PLANE_URL="+s.url, "LANGSMITH_WORKSPACE_ID="+testWorkspace)
	r, log := s.run(t, env, "--agent-id", "a1", "--all", "--dry-run")
	if got := lines(r.stdout); r.code != 0 || len(got) != 6 || got[1] != "would remove every connection of agent a1 (as the control plane lists them when the teardown runs)" ||
		got[5] != "with LANGSMITH_API_KEY (or LANGSMITH_API_KEY_FILE) set, --dry-run would list the agent's connections now (a read-only GET)" {
		t.Errorf("got exit %d, stdout\n%s\nwant 0, the plan and the line about the key", r.code, r.stdout)
	}
	r, _ = s.run(t, env, "--agent-id", "a1", "--all", "--dry-run", "-o", "json")
	if r.code != 0 || strings.Contains(r.stdout, `"connections"`) || !strings.Contains(r.stdout, `"lists_connections":true`) {
		t.Errorf("got exit %d, stdout %s; want the plan alone", r.code, r.stdout)
	}
	if len(log) != 0 || len(s.emu.Log()) != 0 {
		t.Errorf("control plane log %+v: without a key nothing is asked", s.emu.Log())
	}
}

// TestLoadLangSmith_Region: with no control plane URL set, LANGSMITH_ENDPOINT on the EU host picks
// the EU control plane, as the worker does.
func TestLoadLangSmith_Region(t *testing.T) {
	ls, ok, err := loadLangSmith(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey, "LANGSMITH_ENDPOINT=https://eu.api.smith.langchain.com"})
	if err != nil || !ok || ls.url.String() != "https://eu.api.host.langchain.com" {
		t.Errorf("got %v, %t, %v; want the EU control plane", ls.url, ok, err)
	}
	ls, ok, err = loadLangSmith(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey})
	if err != nil || !ok || ls.url.String() != "https://api.host.langchain.com" {
		t.Errorf("got %v, %t, %v; want the US control plane", ls.url, ok, err)
	}
}
