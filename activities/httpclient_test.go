package activities

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// TestHTTPClient_GivingUpKeepsThePool sends DELETEs, one at a time and then from several
// goroutines, of which three in ten get 503 on every in-process retry. go-retryablehttp closes its
// client's idle connections whenever a request gives up; that must not reach the shared
// keep-alive pool, so the server sees no more connections than requests ever ran at once.
func TestHTTPClient_GivingUpKeepsThePool(t *testing.T) {
	const (
		concurrency = 4
		sequential  = 30
		perWorker   = 30
		retries     = 2
	)
	var conns, requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if strings.HasPrefix(r.URL.Path, "/fail/") {
			w.WriteHeader(http.StatusServiceUnavailable) // no Retry-After: retried in process
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	c := newHTTPClient(Config{
		RequestTimeout: 5 * time.Second,
		HTTPRetry:      HTTPRetry{Max: retries, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond},
	}, newPacer(0, 0))

	var failed, sent atomic.Int64
	send := func(i int) error {
		path := "/ok/"
		if i%10 < 3 {
			path = "/fail/"
			failed.Add(1)
		}
		sent.Add(1)
		req, err := retryablehttp.NewRequestWithContext(context.Background(), http.MethodDelete, srv.URL+path+"c", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}

	for i := range sequential {
		if err := send(i); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	if got := conns.Load(); got > 1 {
		t.Errorf("one request at a time opened %d connections, want 1: a request that gave up dropped the pool", got)
	}

	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for range concurrency {
		wg.Go(func() {
			for i := range perWorker {
				if err := send(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent request: %v", err)
	}

	// Every failing DELETE was sent 1+retries times: the retries were really exhausted.
	if want := sent.Load() + retries*failed.Load(); requests.Load() != want {
		t.Errorf("server saw %d requests, want %d", requests.Load(), want)
	}
	if got := conns.Load(); got > concurrency {
		t.Errorf("%d DELETEs (%d giving up after %d retries) opened %d connections, want at most %d (the requests in flight at once)",
			sent.Load(), failed.Load(), retries, got, concurrency)
	}
}
