package controlplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a Metrics that remembers every call, durations left out.
type recorder struct {
	mu          sync.Mutex
	requests    []string // "METHOD route status_class"
	retryAfters []string // "status delay"
	pacerWaits  int
}

func (r *recorder) Request(method, route, statusClass string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		statusClass += " (negative duration)"
	}
	r.requests = append(r.requests, method+" "+route+" "+statusClass)
}

func (r *recorder) RetryAfter(statusCode int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAfters = append(r.retryAfters, http.StatusText(statusCode)+" "+d.String())
}

func (r *recorder) PacerWait(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pacerWaits++
}

// calls is a sorted copy of what was recorded.
func (r *recorder) calls() (requests, retryAfters []string, pacerWaits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sorted := func(s []string) []string {
		c := slices.Clone(s)
		sort.Strings(c)
		return c
	}
	return sorted(r.requests), sorted(r.retryAfters), r.pacerWaits
}

func withMetrics(m Metrics) fixtureOption {
	return func(c *Config) { c.Metrics = m }
}

// answers replies to successive requests with the given statuses (the last one repeats), with a
// Retry-After of 3 seconds on a 429.
func answers(statuses ...int) http.HandlerFunc {
	var mu sync.Mutex
	next := 0
	return func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		status := statuses[min(next, len(statuses)-1)]
		next++
		mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "3")
		}
		w.WriteHeader(status)
	}
}

func TestDelete_MetricsFollowEachRequest(t *testing.T) {
	const route = "DELETE " + RouteConnection
	tests := []struct {
		name            string
		statuses        []int
		wantRequests    []string
		wantRetryAfters []string
	}{
		{"204", []int{204}, []string{route + " 2xx"}, nil},
		{"503 then 204, retried in process", []int{503, 204}, []string{route + " 2xx", route + " 5xx"}, nil},
		{"429 with Retry-After", []int{429}, []string{route + " 4xx"}, []string{"Too Many Requests 3s"}},
		{"422", []int{422}, []string{route + " 4xx"}, nil},
		{"404 with missing_ok", []int{404}, []string{route + " 4xx"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			f := newFixture(t, answers(tt.statuses...), withMetrics(rec))
			_, _ = f.remove(t, DeleteRequest{MissingOK: true})
			requests, retryAfters, pacerWaits := rec.calls()
			if !reflect.DeepEqual(requests, tt.wantRequests) {
				t.Errorf("requests: got %q, want %q", requests, tt.wantRequests)
			}
			if !reflect.DeepEqual(retryAfters, tt.wantRetryAfters) {
				t.Errorf("Retry-After: got %q, want %q", retryAfters, tt.wantRetryAfters)
			}
			if want := len(tt.wantRequests); pacerWaits != want {
				t.Errorf("pacer waits: got %d, want %d (one per request)", pacerWaits, want)
			}
		})
	}
}

func TestDelete_MetricsOfARefusedIDAndAnUnreachableAPI(t *testing.T) {
	rec := &recorder{}
	f := newFixtureAt(t, "http://127.0.0.1:1", nil, withMetrics(rec))
	_, _ = f.remove(t, DeleteRequest{AgentID: "agent-1", ConnectionID: "a/b"})
	_, _ = f.remove(t, DeleteRequest{MissingOK: true})
	requests, _, _ := rec.calls()
	// The refused ID sends nothing; port 1 refuses at once: the first request and both
	// in-process retries.
	wantRequests := slices.Repeat([]string{"DELETE " + RouteConnection + " " + StatusClassNetworkError}, 3)
	if !reflect.DeepEqual(requests, wantRequests) {
		t.Errorf("requests: got %q, want %q", requests, wantRequests)
	}
}

func TestList_MetricsUseTheListRoute(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":[{"id":"c1"}]}`))
	}, withMetrics(rec))
	if _, err := f.list(t, "agent-1"); err != nil {
		t.Fatal(err)
	}
	requests, _, _ := rec.calls()
	if want := []string{"GET " + RouteConnections + " 2xx"}; !reflect.DeepEqual(requests, want) {
		t.Errorf("requests: got %q, want %q", requests, want)
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{100: "1xx", 204: "2xx", 302: "3xx", 404: "4xx", 599: "5xx", 600: "other", 0: "other"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%d): got %s, want %s", code, got, want)
		}
	}
}

func TestMetricsArgumentsNeverCarryIDsOrCredentials(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, answers(429), withMetrics(rec))
	_, _ = f.remove(t, DeleteRequest{AgentID: "agent-secret-id", ConnectionID: "conn-secret-id"})
	_, _ = f.list(t, "agent-secret-id")
	requests, retryAfters, _ := rec.calls()
	all := strings.Join(slices.Concat(requests, retryAfters), " ")
	if len(requests) != 2 || len(retryAfters) != 2 {
		t.Fatalf("got requests %q and Retry-After %q, want two of each", requests, retryAfters)
	}
	for _, s := range []string{"agent-secret-id", "conn-secret-id", testKey, testBearer, testTenant} {
		if strings.Contains(all, s) {
			t.Errorf("got %q in the metrics' arguments %q, want it never there", s, all)
		}
	}
}

func TestNetworkErrorKind(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"cancelled by the caller", cancelled, context.Canceled, "canceled"},
		{"deadline", context.Background(), context.DeadlineExceeded, "timeout"},
		{"refused", context.Background(), &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection_refused"},
		{"reset", context.Background(), &net.OpError{Op: "read", Err: syscall.ECONNRESET}, "connection_reset"},
		{"cut short", context.Background(), io.ErrUnexpectedEOF, "connection_reset"},
		{"dns", context.Background(), &net.DNSError{Err: "no such host", Name: "cp.invalid"}, "dns_error"},
		{"anything else", context.Background(), errors.New("tls: bad certificate"), StatusClassNetworkError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := networkErrorKind(tt.ctx, tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
