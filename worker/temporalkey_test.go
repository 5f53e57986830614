package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"

	"github.com/agentops/agentconnections/internal/environ"
	"github.com/agentops/agentconnections/internal/proc"
)

const (
	testTemporalKey        = "TEMPORALKEY-first-0123456789"
	testTemporalRotatedKey = "TEMPORALKEY-rotated-9876543210"
)

func TestLoadConfig_TemporalAPIKeyFile(t *testing.T) {
	path := writeKeyFile(t, testTemporalKey+"\n")
	cfg, err := loadConfig(baseEnv(t, "TEMPORAL_API_KEY_FILE="+path).LookupEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TemporalAPIKeyFile != path || cfg.TemporalKey.APIKey != testTemporalKey {
		t.Errorf("got file %q and a key read %t, want %q and the file's key", cfg.TemporalAPIKeyFile, cfg.TemporalKey.APIKey == testTemporalKey, path)
	}
	if printed := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg); strings.Contains(printed, testTemporalKey) {
		t.Errorf("printing the configuration shows the Temporal API key")
	}

	empty := writeKeyFile(t, "\n")
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"file and variable", []string{"TEMPORAL_API_KEY=" + testTemporalKey, "TEMPORAL_API_KEY_FILE=" + path},
			"TEMPORAL_API_KEY_FILE: both TEMPORAL_API_KEY and TEMPORAL_API_KEY_FILE are set; set only one"},
		{"missing file", []string{"TEMPORAL_API_KEY_FILE=" + path + ".absent"}, "TEMPORAL_API_KEY_FILE: stat " + path + ".absent"},
		{"empty file", []string{"TEMPORAL_API_KEY_FILE=" + empty}, "TEMPORAL_API_KEY_FILE: " + empty + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(baseEnv(t, tt.env...).LookupEnv, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error: got %v, want it to start with %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), testTemporalKey) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

// fakeFrontend is a Temporal frontend over TLS that answers every call with an empty message
// (health checks with SERVING), holds polls until the caller gives up, and records the
// authorization header of each call.
type fakeFrontend struct {
	*httptest.Server
	mu     sync.Mutex
	bearer []string
}

func newFakeFrontend(t *testing.T) *fakeFrontend {
	f := &fakeFrontend{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.EnableHTTP2 = true
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeFrontend) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.bearer = append(f.bearer, r.Header.Get("Authorization"))
	f.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	if strings.Contains(r.URL.Path, "/Poll") {
		<-r.Context().Done()
		return
	}
	msg := []byte{} // an empty message decodes as any response type
	if r.URL.Path == "/grpc.health.v1.Health/Check" {
		msg = []byte{0x08, 0x01} // status: SERVING
	}
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...))
	w.Header().Set("Grpc-Status", "0")
}

// last is the authorization header of the latest call.
func (f *fakeFrontend) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bearer) == 0 {
		return ""
	}
	return f.bearer[len(f.bearer)-1]
}

// caPEM is the frontend's certificate, for TEMPORAL_TLS_SERVER_CA_CERT_DATA.
func (f *fakeFrontend) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}))
}

// TestRun_TemporalKeyFileRotatesWithoutRestart runs the worker with TEMPORAL_API_KEY_FILE against
// a TLS frontend, replaces the file's key, and waits for the calls the worker goes on making (its
// health checks) to carry the new key, with no restart; neither key ever reaches the logs.
func TestRun_TemporalKeyFileRotatesWithoutRestart(t *testing.T) {
	front := newFakeFrontend(t)
	keyFile := writeKeyFile(t, testTemporalKey+"\n")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := baseEnv(t,
		"TEMPORAL_ADDRESS="+strings.TrimPrefix(front.URL, "https://"),
		"TEMPORAL_TLS_SERVER_CA_CERT_DATA="+front.caPEM(),
		"TEMPORAL_API_KEY_FILE="+keyFile,
		"WORKER_HTTP_ADDRESS="+httpAddr,
		"WORKER_STOP_TIMEOUT=1s",
	)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr proc.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()
	stop := sync.OnceValue(func() int {
		cancel()
		return <-done
	})
	defer stop()
	waitReady(t, "http://"+httpAddr+"/readyz", done, &stderr)
	if got := front.last(); got != "Bearer "+testTemporalKey {
		t.Fatalf("the frontend got authorization %t for the file's key, want it", got == "Bearer "+testTemporalKey)
	}

	if err := os.WriteFile(keyFile, []byte(testTemporalRotatedKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A later modification time, so the change is seen even where the clock's steps are coarse.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(keyFile, later, later); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for front.last() != "Bearer "+testTemporalRotatedKey {
		if time.Now().After(deadline) {
			t.Fatalf("the frontend never got the rotated key; worker log: %s", redactKeys(stderr.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	logs := stderr.String() + stdout.String()
	for _, want := range []string{`"temporal_api_key":"file"`, `"component":"temporal-api-key-file"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs: want %s in %s", want, redactKeys(logs))
		}
	}
	if strings.Contains(logs, testTemporalKey) || strings.Contains(logs, testTemporalRotatedKey) {
		t.Errorf("the worker logged a Temporal API key")
	}
}

// TestTemporalKeyFile_TurnsTLSOn: a key from the file, like TEMPORAL_API_KEY, turns TLS on with
// no TLS setting at all; TEMPORAL_TLS=false turns it off again.
func TestTemporalKeyFile_TurnsTLSOn(t *testing.T) {
	front := newFakeFrontend(t)
	keyFile := writeKeyFile(t, testTemporalKey+"\n")
	dial := func(extra ...string) error {
		env := baseEnv(t, append([]string{"TEMPORAL_ADDRESS=" + strings.TrimPrefix(front.URL, "https://"), "TEMPORAL_API_KEY_FILE=" + keyFile}, extra...)...)
		cfg, err := loadConfig(env.LookupEnv, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: environ.Env(env)})
		if err != nil {
			t.Fatal(err)
		}
		useTemporalKeyFile(&opts, cfg, quietLogger())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			c.Close()
		}
		return err
	}
	// The frontend speaks only TLS with a certificate of its own: a TLS client fails on that
	// certificate, a plaintext one on the protocol.
	if err := dial(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("dial with the key file and no TLS setting: got %v, want a TLS certificate error (TLS on)", err)
	}
	if err := dial("TEMPORAL_TLS=false"); err == nil || strings.Contains(err.Error(), "certificate") {
		t.Errorf("dial with TEMPORAL_TLS=false: got %v, want a failure that is not about certificates (TLS off)", err)
	}
}

// redactKeys keeps a failing test's output free of the test keys.
func redactKeys(s string) string {
	return strings.NewReplacer(testTemporalKey, "[first key]", testTemporalRotatedKey, "[rotated key]").Replace(s)
}
