package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/environ"
)

// Credential values used across the worker's tests. Every test that captures an error, stderr or
// a log checks that none of them shows up.
const (
	testAPIKey      = "lsv2_sk_SECRETKEY0123456789"
	testFileKey     = "lsv2_sk_FILEKEY9876543210"
	testBearerToken = "SECRETBEARER-abcdef"
)

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, secret := range []string{testAPIKey, testFileKey, testBearerToken, "ROTATEDKEY"} {
		if strings.Contains(text, secret) {
			t.Errorf("%s holds a credential: %q", where, text)
		}
	}
}

func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig_Defaults(t *testing.T) {
	cfg, err := loadConfig(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey}.LookupEnv, nil)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"TaskQueue", cfg.TaskQueue, "agent-connections"},
		{"APIKey", cfg.Credentials.APIKey, testAPIKey},
		{"APIKeyFile", cfg.APIKeyFile, ""},
		{"TenantID", cfg.Credentials.TenantID, ""},
		{"BearerToken", cfg.Credentials.BearerToken, ""},
		{"ControlPlaneURL", cfg.ControlPlaneURL.String(), "https://api.host.langchain.com"},
		{"RequestTimeout", cfg.RequestTimeout, 30 * time.Second},
		{"HTTPAddress", cfg.HTTPAddress, "127.0.0.1:9090"},
		{"StopTimeout", cfg.StopTimeout, 30 * time.Second},
		{"MaxConcurrentActivities", cfg.MaxConcurrentActivities, 100},
		{"RequestsPerSecond", cfg.RequestsPerSecond, 30.0},
		{"RequestBurst", cfg.RequestBurst, 10},
		{"TaskQueueActivitiesPerSecond", cfg.TaskQueueActivitiesPerSecond, 0.0},
		{"LogFormat", cfg.LogFormat, "json"},
		{"LogLevel", cfg.LogLevel, "info"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfig_ValidValues(t *testing.T) {
	keyFile := writeKeyFile(t, "\n  "+testFileKey+"\n")
	console := "console"
	tests := []struct {
		name  string
		env   environ.Env
		flag  *string
		check func(t *testing.T, cfg config)
	}{
		{"task queue", environ.Env{"TEMPORAL_TASK_QUEUE=removals-eu"}, nil, func(t *testing.T, cfg config) {
			if cfg.TaskQueue != "removals-eu" {
				t.Errorf("got %q, want removals-eu", cfg.TaskQueue)
			}
		}},
		{"empty task queue keeps the default", environ.Env{"TEMPORAL_TASK_QUEUE="}, nil, func(t *testing.T, cfg config) {
			if cfg.TaskQueue != "agent-connections" {
				t.Errorf("got %q, want agent-connections", cfg.TaskQueue)
			}
		}},
		{"api key is trimmed", environ.Env{"LANGSMITH_API_KEY= " + testAPIKey + "\n"}, nil, func(t *testing.T, cfg config) {
			if cfg.Credentials.APIKey != testAPIKey {
				t.Error("got an untrimmed key, want it trimmed")
			}
		}},
		{"api key file is read and trimmed", environ.Env{"LANGSMITH_API_KEY=", "LANGSMITH_API_KEY_FILE=" + keyFile}, nil, func(t *testing.T, cfg config) {
			if cfg.Credentials.APIKey != testFileKey || cfg.APIKeyFile != keyFile {
				t.Errorf("got key file %q and a key of %d bytes, want %q and the file's trimmed key", cfg.APIKeyFile, len(cfg.Credentials.APIKey), keyFile)
			}
			if cfg.keyFileStamp == (controlplane.FileStamp{}) {
				t.Error("got no file stamp, want the file's size and mtime")
			}
		}},
		{"bearer token alone", environ.Env{"LANGSMITH_API_KEY=", "LANGSMITH_BEARER_TOKEN=" + testBearerToken}, nil, func(t *testing.T, cfg config) {
			if cfg.Credentials.BearerToken != testBearerToken || cfg.Credentials.APIKey != "" {
				t.Errorf("got %v, want only a bearer token", cfg.Credentials)
			}
		}},
		{"tenant", environ.Env{"LANGSMITH_TENANT_ID=0d6a9ee4-7c25-4f5e-9a8e-3f1d0a2b4c5d"}, nil, func(t *testing.T, cfg config) {
			if cfg.Credentials.TenantID != "0d6a9ee4-7c25-4f5e-9a8e-3f1d0a2b4c5d" {
				t.Errorf("got tenant %q, want the set one", cfg.Credentials.TenantID)
			}
		}},
		{"eu control plane with prefix", environ.Env{"LANGSMITH_CONTROL_PLANE_URL=https://eu.api.host.langchain.com/prefix/"}, nil, func(t *testing.T, cfg config) {
			if got := cfg.ControlPlaneURL.String(); got != "https://eu.api.host.langchain.com/prefix" {
				t.Errorf("got %q, want https://eu.api.host.langchain.com/prefix", got)
			}
		}},
		{"request timeout", environ.Env{"LANGSMITH_REQUEST_TIMEOUT=1m30s"}, nil, func(t *testing.T, cfg config) {
			if cfg.RequestTimeout != 90*time.Second {
				t.Errorf("got %s, want 1m30s", cfg.RequestTimeout)
			}
		}},
		{"http address", environ.Env{"WORKER_HTTP_ADDRESS=:8080"}, nil, func(t *testing.T, cfg config) {
			if cfg.HTTPAddress != ":8080" {
				t.Errorf("got %q, want :8080", cfg.HTTPAddress)
			}
		}},
		{"empty http address turns it off", environ.Env{"WORKER_HTTP_ADDRESS="}, nil, func(t *testing.T, cfg config) {
			if cfg.HTTPAddress != "" {
				t.Errorf("got %q, want empty", cfg.HTTPAddress)
			}
		}},
		{"stop timeout", environ.Env{"WORKER_STOP_TIMEOUT=2m"}, nil, func(t *testing.T, cfg config) {
			if cfg.StopTimeout != 2*time.Minute {
				t.Errorf("got %s, want 2m", cfg.StopTimeout)
			}
		}},
		{"zero stop timeout", environ.Env{"WORKER_STOP_TIMEOUT=0s"}, nil, func(t *testing.T, cfg config) {
			if cfg.StopTimeout != 0 {
				t.Errorf("got %s, want 0s", cfg.StopTimeout)
			}
		}},
		{"max concurrent activities", environ.Env{"WORKER_MAX_CONCURRENT_ACTIVITIES=7"}, nil, func(t *testing.T, cfg config) {
			if cfg.MaxConcurrentActivities != 7 {
				t.Errorf("got %d, want 7", cfg.MaxConcurrentActivities)
			}
		}},
		{"rate limits", environ.Env{"LANGSMITH_REQUESTS_PER_SECOND=16.5", "LANGSMITH_REQUEST_BURST=3", "WORKER_TASK_QUEUE_ACTIVITIES_PER_SECOND=20"}, nil, func(t *testing.T, cfg config) {
			if cfg.RequestsPerSecond != 16.5 || cfg.RequestBurst != 3 || cfg.TaskQueueActivitiesPerSecond != 20 {
				t.Errorf("got %v/%d/%v, want 16.5/3/20", cfg.RequestsPerSecond, cfg.RequestBurst, cfg.TaskQueueActivitiesPerSecond)
			}
		}},
		{"rate limit off", environ.Env{"LANGSMITH_REQUESTS_PER_SECOND=0"}, nil, func(t *testing.T, cfg config) {
			if cfg.RequestsPerSecond != 0 {
				t.Errorf("got %v, want 0 (off)", cfg.RequestsPerSecond)
			}
		}},
		{"log format and level", environ.Env{"LOG_FORMAT=console", "LOG_LEVEL=debug"}, nil, func(t *testing.T, cfg config) {
			if cfg.LogFormat != "console" || cfg.LogLevel != "debug" {
				t.Errorf("got %s/%s, want console/debug", cfg.LogFormat, cfg.LogLevel)
			}
		}},
		{"flag overrides LOG_FORMAT", environ.Env{"LOG_FORMAT=xml"}, &console, func(t *testing.T, cfg config) {
			if cfg.LogFormat != "console" {
				t.Errorf("got %s, want console", cfg.LogFormat)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey}, tt.env...)
			cfg, err := loadConfig(env.LookupEnv, tt.flag)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestLoadConfig_Malformed(t *testing.T) {
	keyFile := writeKeyFile(t, testFileKey)
	emptyFile := writeKeyFile(t, " \n\t\n")
	missingFile := filepath.Join(t.TempDir(), "no-such-key")
	spacedFile := writeKeyFile(t, "lsv2_sk_FILEKEY 9876543210")
	bigFile := writeKeyFile(t, strings.Repeat("k", controlplane.MaxKeyFileBytes+1))
	xml := "xml"
	withKey := func(env ...string) environ.Env { return append(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey}, env...) }

	tests := []struct {
		name string
		env  environ.Env
		flag *string
		want string
	}{
		{"no credentials", environ.Env{}, nil,
			"LANGSMITH_API_KEY: not set; set LANGSMITH_API_KEY or LANGSMITH_API_KEY_FILE (or LANGSMITH_BEARER_TOKEN)"},
		{"blank key", environ.Env{"LANGSMITH_API_KEY=   "}, nil,
			"LANGSMITH_API_KEY: not set; set LANGSMITH_API_KEY or LANGSMITH_API_KEY_FILE (or LANGSMITH_BEARER_TOKEN)"},
		{"key and key file", withKey("LANGSMITH_API_KEY_FILE=" + keyFile), nil,
			"LANGSMITH_API_KEY_FILE: both LANGSMITH_API_KEY and LANGSMITH_API_KEY_FILE are set; set only one"},
		{"key with a space", environ.Env{"LANGSMITH_API_KEY=" + testAPIKey + " x"}, nil,
			"LANGSMITH_API_KEY: contains whitespace or a control character"},
		{"bearer with a newline inside", environ.Env{"LANGSMITH_BEARER_TOKEN=" + testBearerToken + "\nx"}, nil,
			"LANGSMITH_BEARER_TOKEN: contains whitespace or a control character"},
		{"tenant with a control character", withKey("LANGSMITH_TENANT_ID=t\x01"), nil,
			"LANGSMITH_TENANT_ID: contains whitespace or a control character"},
		{"missing key file", environ.Env{"LANGSMITH_API_KEY_FILE=" + missingFile}, nil,
			"LANGSMITH_API_KEY_FILE: stat " + missingFile + ": no such file or directory"},
		{"empty key file", environ.Env{"LANGSMITH_API_KEY_FILE=" + emptyFile}, nil,
			"LANGSMITH_API_KEY_FILE: " + emptyFile + " is empty"},
		{"key file with a space", environ.Env{"LANGSMITH_API_KEY_FILE=" + spacedFile}, nil,
			"LANGSMITH_API_KEY_FILE: " + spacedFile + " contains whitespace or a control character"},
		{"key file too big", environ.Env{"LANGSMITH_API_KEY_FILE=" + bigFile}, nil,
			"LANGSMITH_API_KEY_FILE: " + bigFile + " is larger than 65536 bytes; it should hold only the key"},
		{"key file is a directory", environ.Env{"LANGSMITH_API_KEY_FILE=" + t.TempDir()}, nil,
			"is a directory"},
		{"task queue with spaces", withKey("TEMPORAL_TASK_QUEUE= q1"), nil,
			`TEMPORAL_TASK_QUEUE: " q1" has leading or trailing whitespace`},
		{"control plane scheme", withKey("LANGSMITH_CONTROL_PLANE_URL=ftp://example.com"), nil,
			`LANGSMITH_CONTROL_PLANE_URL: control plane URL must start with http:// or https://, got scheme "ftp"`},
		{"control plane without host", withKey("LANGSMITH_CONTROL_PLANE_URL=https://"), nil,
			"LANGSMITH_CONTROL_PLANE_URL: control plane URL has no host"},
		{"control plane with user info", withKey("LANGSMITH_CONTROL_PLANE_URL=https://user:" + testBearerToken + "@example.com"), nil,
			"LANGSMITH_CONTROL_PLANE_URL: control plane URL must not carry credentials; set LANGSMITH_API_KEY instead"},
		{"control plane with query", withKey("LANGSMITH_CONTROL_PLANE_URL=https://example.com/?a=b"), nil,
			"LANGSMITH_CONTROL_PLANE_URL: control plane URL must not have a query or fragment"},
		{"request timeout not a duration", withKey("LANGSMITH_REQUEST_TIMEOUT=abc"), nil,
			`LANGSMITH_REQUEST_TIMEOUT: "abc" is not a Go duration such as 30s`},
		{"request timeout without unit", withKey("LANGSMITH_REQUEST_TIMEOUT=30"), nil,
			`LANGSMITH_REQUEST_TIMEOUT: "30" is not a Go duration such as 30s`},
		{"request timeout over the maximum", withKey("LANGSMITH_REQUEST_TIMEOUT=5m1s"), nil,
			`LANGSMITH_REQUEST_TIMEOUT: 5m1s is over the maximum of 5m0s`},
		{"request timeout zero", withKey("LANGSMITH_REQUEST_TIMEOUT=0s"), nil,
			`LANGSMITH_REQUEST_TIMEOUT: "0s" must be greater than zero`},
		{"request timeout negative", withKey("LANGSMITH_REQUEST_TIMEOUT=-5s"), nil,
			`LANGSMITH_REQUEST_TIMEOUT: "-5s" must not be negative`},
		{"stop timeout not a duration", withKey("WORKER_STOP_TIMEOUT=soon"), nil,
			`WORKER_STOP_TIMEOUT: "soon" is not a Go duration such as 30s`},
		{"stop timeout negative", withKey("WORKER_STOP_TIMEOUT=-1m"), nil,
			`WORKER_STOP_TIMEOUT: "-1m" must not be negative`},
		{"http address without port", withKey("WORKER_HTTP_ADDRESS=localhost"), nil,
			`WORKER_HTTP_ADDRESS: "localhost" is not host:port such as 127.0.0.1:9090 (address localhost: missing port in address)`},
		{"http address with a bad port", withKey("WORKER_HTTP_ADDRESS=127.0.0.1:http"), nil,
			`WORKER_HTTP_ADDRESS: "127.0.0.1:http" is not host:port such as 127.0.0.1:9090 (port "http" is not a number from 0 to 65535)`},
		{"max concurrent activities zero", withKey("WORKER_MAX_CONCURRENT_ACTIVITIES=0"), nil,
			`WORKER_MAX_CONCURRENT_ACTIVITIES: "0" is not a positive integer`},
		{"max concurrent activities text", withKey("WORKER_MAX_CONCURRENT_ACTIVITIES=many"), nil,
			`WORKER_MAX_CONCURRENT_ACTIVITIES: "many" is not a positive integer`},
		{"requests per second negative", withKey("LANGSMITH_REQUESTS_PER_SECOND=-1"), nil,
			`LANGSMITH_REQUESTS_PER_SECOND: "-1" is not a number of requests per second such as 30 (0 turns the limit off)`},
		{"requests per second text", withKey("LANGSMITH_REQUESTS_PER_SECOND=fast"), nil,
			`LANGSMITH_REQUESTS_PER_SECOND: "fast" is not a number of requests per second such as 30 (0 turns the limit off)`},
		{"request burst zero", withKey("LANGSMITH_REQUEST_BURST=0"), nil,
			`LANGSMITH_REQUEST_BURST: "0" is not a positive integer`},
		{"task queue rate NaN", withKey("WORKER_TASK_QUEUE_ACTIVITIES_PER_SECOND=NaN"), nil,
			`WORKER_TASK_QUEUE_ACTIVITIES_PER_SECOND: "NaN" is not a number of requests per second such as 30 (0 turns the limit off)`},
		{"log format", withKey("LOG_FORMAT=xml"), nil,
			`LOG_FORMAT: "xml" is not one of json, console`},
		{"log format flag", withKey(), &xml, `--log-format: "xml" is not one of json, console`},
		{"log level", withKey("LOG_LEVEL=loud"), nil,
			`LOG_LEVEL: "loud" is not one of debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(tt.env.LookupEnv, tt.flag)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q, want one line", err)
			}
			assertNoSecret(t, "error", err.Error())
		})
	}
}

func TestCredentials_StringHidesSecrets(t *testing.T) {
	cfg, err := loadConfig(environ.Env{"LANGSMITH_API_KEY=" + testAPIKey, "LANGSMITH_BEARER_TOKEN=" + testBearerToken}.LookupEnv, nil)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		assertNoSecret(t, "config printed with "+verb, fmt.Sprintf(verb, cfg))
		assertNoSecret(t, "credential source printed with "+verb, fmt.Sprintf(verb, controlplane.StaticCredentials(cfg.Credentials)))
	}
}
