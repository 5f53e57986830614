package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func probe(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealth_ReadyFollowsThePollersAndTheServer(t *testing.T) {
	h := &health{}
	srv := httptest.NewServer(h.handler())
	t.Cleanup(srv.Close)

	steps := []struct {
		name      string
		polling   *bool
		reachable *bool
		path      string
		wantCode  int
		wantBody  string
	}{
		{"healthz before start", nil, nil, "/healthz", http.StatusOK, "ok\n"},
		{"readyz before start", nil, nil, "/readyz", http.StatusServiceUnavailable, "not ready\n"},
		{"readyz server answers, not polling yet", nil, ptr(true), "/readyz", http.StatusServiceUnavailable, "not ready\n"},
		{"readyz while polling", ptr(true), nil, "/readyz", http.StatusOK, "ready\n"},
		{"healthz while polling", nil, nil, "/healthz", http.StatusOK, "ok\n"},
		{"readyz server lost", nil, ptr(false), "/readyz", http.StatusServiceUnavailable, "not ready\n"},
		{"healthz server lost", nil, nil, "/healthz", http.StatusOK, "ok\n"},
		{"readyz server back", nil, ptr(true), "/readyz", http.StatusOK, "ready\n"},
		{"readyz while stopping", ptr(false), nil, "/readyz", http.StatusServiceUnavailable, "not ready\n"},
		{"healthz while stopping", nil, nil, "/healthz", http.StatusOK, "ok\n"},
		{"unknown path", nil, nil, "/metrics", http.StatusNotFound, "404 page not found\n"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.polling != nil {
				h.setPolling(*s.polling)
			}
			if s.reachable != nil {
				h.reachable.Store(*s.reachable)
			}
			code, body := probe(t, http.MethodGet, srv.URL+s.path)
			if code != s.wantCode || body != s.wantBody {
				t.Errorf("got %d %q, want %d %q", code, body, s.wantCode, s.wantBody)
			}
		})
	}
}

func TestHealth_OnlyGet(t *testing.T) {
	srv := httptest.NewServer((&health{}).handler())
	t.Cleanup(srv.Close)
	if code, _ := probe(t, http.MethodPost, srv.URL+"/healthz"); code != http.StatusMethodNotAllowed {
		t.Errorf("got %d, want %d", code, http.StatusMethodNotAllowed)
	}
}

func ptr[T any](v T) *T { return &v }
