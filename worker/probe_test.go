package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRun_Probe covers `worker --probe URL`: one GET, 0 only for a 2xx answer, never a redirect
// followed, 2 for a URL that is not one, and no settings read (the environment given is empty).
func TestRun_Probe(t *testing.T) {
	var requests, redirected atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/readyz":
			http.Error(w, "not polling", http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/target":
			redirected.Add(1)
		}
	}))
	defer srv.Close()
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		return "http://" + addr + "/readyz"
	}()

	tests := []struct {
		name     string
		url      string
		wantCode int
		want     string // the one stderr line's start; empty: no output
		requests int32
	}{
		{"2xx is healthy", srv.URL + "/ok", 0, "", 1},
		{"503 is not", srv.URL + "/readyz", 1, "worker: probe " + srv.URL + "/readyz: 503 Service Unavailable", 1},
		{"a redirect is not followed", srv.URL + "/moved", 1, "worker: probe " + srv.URL + "/moved: 302 Found", 1},
		{"nothing listening", refused, 1, "worker: probe " + refused + ": ", 0},
		{"user info never shown", strings.Replace(srv.URL, "http://", "http://u:hunter2@", 1) + "/readyz", 1, "worker: probe http://u:xxxxx@", 1},
		{"query never shown", srv.URL + "/readyz?token=hunter2#hunter2", 1, "worker: probe " + srv.URL + "/readyz?xxxxx: 503 Service Unavailable", 1},
		{"query never shown without an answer", refused + "?token=hunter2", 1, "worker: probe " + refused + "?xxxxx: ", 0},
		{"not a URL", "127.0.0.1:9090/readyz", 2, "worker: --probe: want an absolute http or https URL", 0},
		{"no host", "http:///readyz", 2, "worker: --probe: want an absolute http or https URL", 0},
		{"malformed", "http://[::1/readyz", 2, "worker: --probe: want an absolute http or https URL", 0},
		{"empty", "", 2, "worker: --probe: want an absolute http or https URL", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := requests.Load()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"--probe", tt.url}, nil, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			got := lines(stderr.String())
			switch {
			case tt.want == "" && len(got) != 0:
				t.Errorf("stderr: got %q, want nothing", stderr.String())
			case tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)):
				t.Errorf("stderr: got %q, want one line starting with %q", stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("stderr shows the URL's password: %q", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
			if n := requests.Load() - before; n != tt.requests {
				t.Errorf("requests: got %d, want %d", n, tt.requests)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("requests to the redirect's target: got %d, want 0", n)
	}
}

// TestRun_ProbeGivesUpOnASilentServer: a server that accepts and never answers is unhealthy once
// the probe's timeout runs out, not a probe that hangs until the health check kills it.
func TestRun_ProbeGivesUpOnASilentServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--probe", srv.URL + "/readyz"}, nil, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	if want := "worker: probe " + srv.URL + "/readyz: no answer within 3s"; strings.TrimSpace(stderr.String()) != want {
		t.Errorf("stderr: got %q, want %q", stderr.String(), want)
	}
}

// probeChildURL, set, makes TestRun_ProbeIgnoresProxy the probe itself: the process probes the
// URL it names and exits with the probe's code.
const probeChildURL = "WORKER_TEST_PROBE_CHILD_URL"

// TestRun_ProbeIgnoresProxy: the probe reads no setting, so HTTP_PROXY and HTTPS_PROXY never
// route its request. Go reads the proxy variables once per process, so the probe runs in a child
// process (this test binary again) started with them set. The target is 0.0.0.0, which Go would
// send through a proxy (it is no loopback address) and which reaches this host's listeners.
func TestRun_ProbeIgnoresProxy(t *testing.T) {
	if target := os.Getenv(probeChildURL); target != "" {
		os.Exit(run(context.Background(), []string{"--probe", target}, nil, os.Stdout, os.Stderr))
	}
	if runtime.GOOS == "windows" {
		t.Skip("0.0.0.0 does not reach a local listener on Windows")
	}
	var direct, proxied atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		direct.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		http.Error(w, "proxied", http.StatusBadGateway)
	}))
	defer proxy.Close()
	target := fmt.Sprintf("http://0.0.0.0:%d/readyz", srv.Listener.Addr().(*net.TCPAddr).Port)

	cmd := exec.Command(os.Args[0], "-test.run=^TestRun_ProbeIgnoresProxy$")
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, probeChildURL+"="+target,
		"HTTP_PROXY="+proxy.URL, "HTTPS_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "https_proxy="+proxy.URL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("probe with HTTP_PROXY set: %v, output %q; want exit 0", err, out)
	}
	if n := proxied.Load(); n != 0 {
		t.Errorf("requests through the proxy: got %d, want 0", n)
	}
	if n := direct.Load(); n != 1 {
		t.Errorf("requests to the worker: got %d, want 1", n)
	}
}
