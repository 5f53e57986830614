package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/agentops/agentconnections/internal/proc"
)

const testWorkspace = "0f1e2d3c-workspace"

// TestLoadConfig_LangSmithAliases: the names LangSmith's SDKs and langgraph-cli use set the same
// settings as the worker's own, and two names set to different values stop the start.
func TestLoadConfig_LangSmithAliases(t *testing.T) {
	t.Run("each alias alone", func(t *testing.T) {
		cfg, err := loadConfig(baseEnv(t, "LANGSMITH_API_KEY=",
			"LANGSMITH_WORKSPACE_ID="+testWorkspace,
			"LANGGRAPH_HOST_API_KEY="+testAPIKey,
			"LANGGRAPH_HOST_URL=https://cp.example.com/api-host/",
		).LookupEnv, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Credentials.TenantID != testWorkspace {
			t.Errorf("tenant ID: got %q, want LANGSMITH_WORKSPACE_ID's %q", cfg.Credentials.TenantID, testWorkspace)
		}
		if cfg.Credentials.APIKey != testAPIKey {
			t.Errorf("API key: got one that is not LANGGRAPH_HOST_API_KEY's, want it")
		}
		if got := cfg.ControlPlaneURL.String(); got != "https://cp.example.com/api-host" {
			t.Errorf("control plane URL: got %q, want LANGGRAPH_HOST_URL's https://cp.example.com/api-host", got)
		}
	})
	t.Run("alias and name set alike", func(t *testing.T) {
		_, err := loadConfig(baseEnv(t,
			"LANGSMITH_TENANT_ID="+testWorkspace, "LANGSMITH_WORKSPACE_ID="+testWorkspace,
			"LANGGRAPH_HOST_API_KEY="+testAPIKey,
			"LANGSMITH_CONTROL_PLANE_URL=https://cp.example.com", "LANGGRAPH_HOST_URL=https://cp.example.com/",
		).LookupEnv, nil)
		if err != nil {
			t.Errorf("got %v, want no error: the two names agree", err)
		}
	})
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"workspace and tenant differ", []string{"LANGSMITH_TENANT_ID=" + testWorkspace, "LANGSMITH_WORKSPACE_ID=other"},
			"LANGSMITH_TENANT_ID and LANGSMITH_WORKSPACE_ID: both set, to different values; LANGSMITH_WORKSPACE_ID is another name for LANGSMITH_TENANT_ID: set one of them"},
		{"keys differ", []string{"LANGGRAPH_HOST_API_KEY=" + testFileKey},
			"LANGSMITH_API_KEY and LANGGRAPH_HOST_API_KEY: both set, to different values"},
		{"URLs differ", []string{"LANGSMITH_CONTROL_PLANE_URL=https://a.example.com", "LANGGRAPH_HOST_URL=https://b.example.com"},
			"LANGSMITH_CONTROL_PLANE_URL and LANGGRAPH_HOST_URL: both set, to different values"},
		{"a bad alias is named", []string{"LANGGRAPH_HOST_URL=ftp://cp.example.com"},
			`LANGGRAPH_HOST_URL: control plane URL must start with http:// or https://, got scheme "ftp"`},
		{"a bad alias key is named", []string{"LANGSMITH_API_KEY=", "LANGGRAPH_HOST_API_KEY=" + testAPIKey + " x"},
			"LANGGRAPH_HOST_API_KEY: contains whitespace or a control character"},
		{"alias key and key file", []string{"LANGSMITH_API_KEY=", "LANGGRAPH_HOST_API_KEY=" + testAPIKey, "LANGSMITH_API_KEY_FILE=" + writeKeyFile(t, testFileKey)},
			"LANGSMITH_API_KEY_FILE: both LANGGRAPH_HOST_API_KEY and LANGSMITH_API_KEY_FILE are set; set only one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(baseEnv(t, tt.env...).LookupEnv, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error: got %v, want it to start with %q", err, tt.want)
			}
			if err != nil {
				assertNoSecret(t, "error", err.Error())
			}
		})
	}
}

// TestLoadConfig_LangSmithAliasesCompareAsTheyAreRead: a name set to only whitespace is unset, as
// it is when read alone, so its alias holds; URLs are alike whatever the case of their scheme and
// host, not of their path.
func TestLoadConfig_LangSmithAliasesCompareAsTheyAreRead(t *testing.T) {
	t.Run("a blank name is unset", func(t *testing.T) {
		for _, env := range [][]string{
			{"LANGSMITH_API_KEY= \t ", "LANGGRAPH_HOST_API_KEY=" + testAPIKey},
			{"LANGSMITH_TENANT_ID=  ", "LANGSMITH_WORKSPACE_ID=" + testWorkspace},
			{"LANGSMITH_CONTROL_PLANE_URL= ", "LANGGRAPH_HOST_URL=https://cp.example.com"},
		} {
			cfg, err := loadConfig(baseEnv(t, env...).LookupEnv, nil)
			if err != nil {
				assertNoSecret(t, "error", err.Error())
				t.Errorf("%s blank, %s set: got %v, want no error: the blank name is unset, so its alias holds",
					strings.SplitN(env[0], "=", 2)[0], strings.SplitN(env[1], "=", 2)[0], err)
				continue
			}
			got := map[string]string{"LANGGRAPH_HOST_API_KEY": cfg.Credentials.APIKey, "LANGSMITH_WORKSPACE_ID": cfg.Credentials.TenantID,
				"LANGGRAPH_HOST_URL": cfg.ControlPlaneURL.String()}
			if name, want, _ := strings.Cut(env[1], "="); got[name] != want {
				t.Errorf("%s: the setting is not its value, want it to be", name)
			}
		}
	})
	t.Run("URLs alike but for the case of scheme and host", func(t *testing.T) {
		_, err := loadConfig(baseEnv(t, "LANGSMITH_TENANT_ID="+testWorkspace,
			"LANGGRAPH_HOST_URL=HTTPS://API.host.langchain.com/", "LANGSMITH_CONTROL_PLANE_URL=https://api.host.langchain.com",
		).LookupEnv, nil)
		if err != nil {
			t.Errorf("got %v, want no error: scheme and host are not case-sensitive", err)
		}
	})
	t.Run("paths differ in case", func(t *testing.T) {
		_, err := loadConfig(baseEnv(t, "LANGSMITH_TENANT_ID="+testWorkspace,
			"LANGSMITH_CONTROL_PLANE_URL=https://cp.example.com/api-host", "LANGGRAPH_HOST_URL=https://cp.example.com/API-host",
		).LookupEnv, nil)
		if want := "LANGSMITH_CONTROL_PLANE_URL and LANGGRAPH_HOST_URL: both set, to different values"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error: got %v, want it to start with %q", err, want)
		}
	})
}

// TestLoadConfig_Regions: with no control plane URL set, LANGSMITH_ENDPOINT's region picks it;
// set, a URL in the other region is kept and warned about. Unknown hosts are left alone.
func TestLoadConfig_Regions(t *testing.T) {
	const (
		euEndpoint = "LANGSMITH_ENDPOINT=https://eu.api.smith.langchain.com"
		usEndpoint = "LANGSMITH_ENDPOINT=https://api.smith.langchain.com"
	)
	tests := []struct {
		name     string
		env      []string
		wantURL  string
		wantNote string // the start of the one note expected; empty: none
		wantWarn bool
	}{
		{"EU endpoint, no URL: the EU control plane", []string{euEndpoint}, "https://eu.api.host.langchain.com",
			"no control plane URL set and LANGSMITH_ENDPOINT is on the EU host: using the EU control plane", false},
		{"US endpoint, no URL: the US default", []string{usEndpoint}, "https://api.host.langchain.com", "", false},
		{"no endpoint: the US default", nil, "https://api.host.langchain.com", "", false},
		{"EU endpoint, US URL: kept, with a warning", []string{euEndpoint, "LANGSMITH_CONTROL_PLANE_URL=https://api.host.langchain.com"},
			"https://api.host.langchain.com", "LANGSMITH_ENDPOINT is in one region and LANGSMITH_CONTROL_PLANE_URL in the other", true},
		{"US endpoint, EU URL through the alias: kept, with a warning", []string{usEndpoint, "LANGGRAPH_HOST_URL=https://eu.api.host.langchain.com"},
			"https://eu.api.host.langchain.com", "LANGSMITH_ENDPOINT is in one region and LANGGRAPH_HOST_URL in the other", true},
		{"EU endpoint, EU URL", []string{euEndpoint, "LANGSMITH_CONTROL_PLANE_URL=https://eu.api.host.langchain.com"},
			"https://eu.api.host.langchain.com", "", false},
		{"EU endpoint, self-hosted URL", []string{euEndpoint, "LANGSMITH_CONTROL_PLANE_URL=https://smith.example.com/api-host"},
			"https://smith.example.com/api-host", "", false},
		{"self-hosted endpoint, no URL", []string{"LANGSMITH_ENDPOINT=https://smith.example.com/api"}, "https://api.host.langchain.com", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(baseEnv(t, append([]string{"LANGSMITH_TENANT_ID=" + testWorkspace}, tt.env...)...).LookupEnv, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.ControlPlaneURL.String(); got != tt.wantURL {
				t.Errorf("control plane URL: got %s, want %s", got, tt.wantURL)
			}
			switch {
			case tt.wantNote == "" && len(cfg.notes) != 0:
				t.Errorf("notes: got %+v, want none", cfg.notes)
			case tt.wantNote != "" && (len(cfg.notes) != 1 || !strings.HasPrefix(cfg.notes[0].msg, tt.wantNote) || cfg.notes[0].warn != tt.wantWarn):
				t.Errorf("notes: got %+v, want one (warning %t) starting %q", cfg.notes, tt.wantWarn, tt.wantNote)
			}
		})
	}
}

func TestLoadConfig_NoWorkspaceIsWarned(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		warn bool
	}{
		{"key, no workspace", nil, true},
		{"key file, no workspace", []string{"LANGSMITH_API_KEY=", "LANGSMITH_API_KEY_FILE=" + writeKeyFile(t, testFileKey)}, true},
		{"key and workspace", []string{"LANGSMITH_WORKSPACE_ID=" + testWorkspace}, false},
		{"bearer token only", []string{"LANGSMITH_API_KEY=", "LANGSMITH_BEARER_TOKEN=" + testBearerToken}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(baseEnv(t, tt.env...).LookupEnv, nil)
			if err != nil {
				t.Fatal(err)
			}
			warned := len(cfg.notes) == 1 && cfg.notes[0].warn && strings.HasPrefix(cfg.notes[0].msg, "no workspace set (LANGSMITH_WORKSPACE_ID or LANGSMITH_TENANT_ID)")
			if warned != tt.warn || (!tt.warn && len(cfg.notes) != 0) {
				t.Errorf("notes: got %+v, want the no-workspace warning: %t", cfg.notes, tt.warn)
			}
		})
	}
}

// TestRun_NotesAreLoggedAtStart: the region and workspace warnings follow the start-up line, and
// an alias conflict is one line, exit 2.
func TestRun_NotesAreLoggedAtStart(t *testing.T) {
	front := newFakeFrontend(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := baseEnv(t, "TEMPORAL_ADDRESS="+strings.TrimPrefix(front.URL, "https://"),
		"TEMPORAL_TLS_SERVER_CA_CERT_DATA="+front.caPEM(), "WORKER_HTTP_ADDRESS="+httpAddr,
		"LANGSMITH_ENDPOINT=https://eu.api.smith.langchain.com", "LANGSMITH_CONTROL_PLANE_URL=https://api.host.langchain.com")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	var stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()
	waitReady(t, "http://"+httpAddr+"/readyz", done, &stderr)
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	logs := stderr.String()
	for _, want := range []string{
		`"level":"warn"`, `"msg":"LANGSMITH_ENDPOINT is in one region and LANGSMITH_CONTROL_PLANE_URL in the other`,
		`"langsmith_endpoint_region":"EU"`, `"control_plane_region":"US"`,
		`"msg":"no workspace set (LANGSMITH_WORKSPACE_ID or LANGSMITH_TENANT_ID)`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs: want %s in %s", want, logs)
		}
	}
	assertNoSecret(t, "logs", logs)

	var errOut bytes.Buffer
	env = baseEnv(t, "TEMPORAL_ADDRESS=127.0.0.1:1", "LANGGRAPH_HOST_API_KEY="+testFileKey)
	if code := run(context.Background(), nil, env, &stdout, &errOut); code != 2 {
		t.Errorf("exit code with conflicting keys: got %d, want 2", code)
	}
	want := "worker: LANGSMITH_API_KEY and LANGGRAPH_HOST_API_KEY: both set, to different values"
	if got := lines(errOut.String()); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("stderr: got %q, want one line starting %q", errOut.String(), want)
	}
	assertNoSecret(t, "stderr", errOut.String())
}
