package activities

import (
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// recorder is a Metrics, for the activities and for their control plane client, that remembers
// every call, durations left out.
type recorder struct {
	mu          sync.Mutex
	requests    []string // "METHOD route status_class"
	removals    []string // "outcome/failure_type"
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

func (r *recorder) Removal(outcome, failureType string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removals = append(r.removals, outcome+"/"+failureType)
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

// calls is a sorted copy of what was recorded, so concurrent batches compare deterministically.
func (r *recorder) calls() (requests, removals, retryAfters []string, pacerWaits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sorted := func(s []string) []string {
		c := slices.Clone(s)
		sort.Strings(c)
		return c
	}
	return sorted(r.requests), sorted(r.removals), sorted(r.retryAfters), r.pacerWaits
}

func withMetrics(r *recorder) fixtureOption {
	return func(c *fixtureConfig) {
		c.Config.Metrics = r
		c.acts.Metrics = r
	}
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
		switch status {
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "3")
		case http.StatusUnprocessableEntity:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"detail":[{"loc":["path","connection_id"],"msg":"locked"}]}`))
			return
		}
		w.WriteHeader(status)
	}
}

func TestRemoveConnection_RemovalMetricFollowsTheOutcome(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		wantRemovals []string
	}{
		{"204", []int{204}, []string{"removed/"}},
		{"503 then 204, retried in process", []int{503, 204}, []string{"removed/"}},
		{"429 with Retry-After", []int{429}, []string{"transient/" + ac.ErrRateLimited}},
		{"422", []int{422}, []string{"failed/" + ac.ErrValidation}},
		{"404 with missing_ok", []int{404}, []string{"already_absent/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			f := newFixture(t, answers(tt.statuses...), withMetrics(rec))
			_, _ = f.remove(t, input(true))
			_, removals, _, _ := rec.calls()
			if !reflect.DeepEqual(removals, tt.wantRemovals) {
				t.Errorf("removals: got %q, want %q", removals, tt.wantRemovals)
			}
		})
	}
}

func TestRemoveConnection_RemovalMetricOfARefusedIDAndAnUnreachableAPI(t *testing.T) {
	rec := &recorder{}
	f := newFixtureAt(t, "http://127.0.0.1:1", nil, nil, withMetrics(rec))
	_, _ = f.remove(t, RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "a/b"})
	_, _ = f.remove(t, input(true))
	_, removals, _, _ := rec.calls()
	wantRemovals := []string{"failed/" + ac.ErrInvalidRequest, "transient/" + ac.ErrUnavailable}
	if !reflect.DeepEqual(removals, wantRemovals) {
		t.Errorf("removals: got %q, want %q", removals, wantRemovals)
	}
}

func TestRemoveConnections_MetricsCountEachFinishedConnection(t *testing.T) {
	rec := &recorder{}
	handler := newPerID(answers(204), map[string]http.HandlerFunc{
		"locked": answers(422),
		"gone":   answers(404),
		"flaky":  answers(503, 204),
		"down":   func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("Retry-After", "1"); w.WriteHeader(503) },
	})
	f := newFixture(t, handler.ServeHTTP, withMetrics(rec))
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", MissingOK: true, Parallelism: 2,
		Items: items("c1", "locked", "gone", "flaky", "down", "bad id")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 5 || len(res.Transient) != 1 {
		t.Fatalf("got %d done and %d transient, want 5 and 1: %+v", len(res.Done), len(res.Transient), res)
	}
	requests, removals, retryAfters, _ := rec.calls()
	wantRemovals := []string{"already_absent/", "failed/" + ac.ErrInvalidRequest, "failed/" + ac.ErrValidation, "removed/", "removed/", "transient/" + ac.ErrServerError}
	if !reflect.DeepEqual(removals, wantRemovals) {
		t.Errorf("removals: got %q, want %q", removals, wantRemovals)
	}
	count := map[string]int{}
	for _, r := range requests {
		count[r]++
	}
	route := "DELETE " + controlplane.RouteConnection
	want := map[string]int{route + " 2xx": 2, route + " 4xx": 2, route + " 5xx": 2}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("requests: got %v, want %v", count, want)
	}
	if wantRA := []string{"Service Unavailable 1s"}; !reflect.DeepEqual(retryAfters, wantRA) {
		t.Errorf("Retry-After: got %q, want %q", retryAfters, wantRA)
	}
}

func TestListConnections_CountsNoRemoval(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":[{"id":"c1"}]}`))
	}, withMetrics(rec))
	if _, err := f.list(t, "agent-1"); err != nil {
		t.Fatal(err)
	}
	if _, removals, _, _ := rec.calls(); len(removals) != 0 {
		t.Errorf("removals: got %q, want none for a listing", removals)
	}
}

func TestMetricsArgumentsNeverCarryIDsOrCredentials(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, answers(422), withMetrics(rec))
	_, _ = f.remove(t, RemoveConnectionInput{AgentID: "agent-secret-id", ConnectionID: "conn-secret-id"})
	requests, removals, retryAfters, _ := rec.calls()
	all := strings.Join(slices.Concat(requests, removals, retryAfters), " ")
	for _, s := range []string{"agent-secret-id", "conn-secret-id", testKey, testBearer, testTenant} {
		if strings.Contains(all, s) {
			t.Errorf("got %q in the metrics' arguments %q, want it never there", s, all)
		}
	}
}
