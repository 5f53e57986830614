package controlplane

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
// keep-alive pool: the server sees no connection closed while the requests run, and no more
// opened than requests ran at once (plus the one the transport may dial in a race with a
// connection coming back to the pool).
func TestHTTPClient_GivingUpKeepsThePool(t *testing.T) {
	const (
		concurrency = 4
		sequential  = 30
		perWorker   = 30
		retries     = 2
	)
	var conns, closed, requests atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if strings.HasPrefix(r.URL.Path, "/fail/") {
			w.WriteHeader(http.StatusServiceUnavailable) // no Retry-After: retried in process
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed:
			closed.Add(1)
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
	if got := conns.Load(); got > 1 || closed.Load() != 0 {
		t.Errorf("one request at a time opened %d connections and closed %d, want 1 and 0: a request that gave up dropped the pool", got, closed.Load())
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
	if n := closed.Load(); n != 0 {
		t.Errorf("%d DELETEs (%d giving up after %d retries) closed %d connections, want none closed", sent.Load(), failed.Load(), retries, n)
	}
	// http.Transport may dial one connection more than the requests in flight when a request
	// arrives just as another connection is on its way back to the pool; that one joins the pool.
	if got := conns.Load(); got > concurrency+1 {
		t.Errorf("%d DELETEs (%d giving up after %d retries) opened %d connections, want at most %d (the requests in flight at once, plus one dial race)",
			sent.Load(), failed.Load(), retries, got, concurrency+1)
	}
}
