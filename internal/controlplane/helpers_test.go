package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testKey    = "lsv2_sk_test_secret_key_0123456789"
	testBearer = "bearer-secret-token-9876543210"
	testTenant = "tenant-1"
)

// logBuffer captures every line a call and go-retryablehttp log, to check what a log would show.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) add(level, msg string, keyvals ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, keyvals))
}
func (l *logBuffer) Debug(msg string, kv ...any) { l.add("DEBUG", msg, kv...) }
func (l *logBuffer) Info(msg string, kv ...any)  { l.add("INFO", msg, kv...) }
func (l *logBuffer) Warn(msg string, kv ...any)  { l.add("WARN", msg, kv...) }
func (l *logBuffer) Error(msg string, kv ...any) { l.add("ERROR", msg, kv...) }
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// fixture is one Client pointed at one test server, logging into logs.
type fixture struct {
	client   *Client
	logs     *logBuffer
	requests *atomic.Int64
}

type fixtureOption func(*Config)

// newFixture starts an httptest server running handler (counting requests) and a client that
// points at it with fast in-process retries.
func newFixture(t *testing.T, handler http.HandlerFunc, opts ...fixtureOption) *fixture {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return newFixtureAt(t, srv.URL, &n, opts...)
}

// newFixtureAt is a client pointed at baseURL; n, when not nil, is the server's request count.
func newFixtureAt(t *testing.T, baseURL string, n *atomic.Int64, opts ...fixtureOption) *fixture {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{
		BaseURL:        baseURL,
		Credentials:    StaticCredentials{APIKey: testKey, TenantID: testTenant, BearerToken: testBearer},
		RequestTimeout: 2 * time.Second,
		UserAgent:      "agent-connections-worker/test",
		HTTPRetry:      HTTPRetry{Max: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond},
		Logger:         logs,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n == nil {
		n = &atomic.Int64{}
	}
	return &fixture{client: c, logs: logs, requests: n}
}

// remove deletes connection conn-1 of agent-1 (or the IDs r names), logging into the fixture.
func (f *fixture) remove(t *testing.T, r DeleteRequest) (DeleteResult, error) {
	t.Helper()
	if r.AgentID == "" && r.ConnectionID == "" {
		r.AgentID, r.ConnectionID = "agent-1", "conn-1"
	}
	if r.Logger == nil {
		r.Logger = f.logs
	}
	return f.client.Delete(context.Background(), r)
}

func (f *fixture) list(t *testing.T, agentID string) ([]string, error) {
	t.Helper()
	return f.client.List(context.Background(), agentID, f.logs)
}

// cpError unwraps the *Error a call failed with.
func cpError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want a *controlplane.Error", err, err)
	}
	return e
}

// sequence answers the i-th request with the i-th handler, repeating the last one.
func sequence(handlers ...http.HandlerFunc) http.HandlerFunc {
	var i atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		n := int(i.Add(1)) - 1
		if n >= len(handlers) {
			n = len(handlers) - 1
		}
		handlers[n](w, r)
	}
}

func status(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}
