package integration

import (
	"net/http"
	"sort"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// deleteStarts are the times DELETE requests reached the emulator, sorted.
func (s *stack) deleteStarts() []time.Time {
	var ts []time.Time
	for _, e := range s.em.Log() {
		if e.Method == http.MethodDelete {
			ts = append(ts, e.Time.Add(-e.Duration))
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return ts
}

func TestIntegration_RequestRateLimitHolds(t *testing.T) {
	const perSecond, burst = 20, 5
	s := newStackWithEnv(t, []string{"LANGSMITH_REQUESTS_PER_SECOND=20", "LANGSMITH_REQUEST_BURST=5"}, "agent-paced", connectionIDs(120)...)
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-paced", Concurrency: 50}))
	if res.Removed != 120 {
		t.Fatalf("got %d removed, want 120", res.Removed)
	}
	// In any one-second window, no more requests than the rate plus the burst left the worker.
	starts := s.deleteStarts()
	most := 0
	for i := range starts {
		j := i
		for j < len(starts) && starts[j].Sub(starts[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	// The pacer bounds when requests leave the worker; the emulator sees when they arrive, and a
	// loaded machine can bunch arrivals by a few milliseconds across a window's edge. Two requests
	// of slack cover that; without pacing, 120 requests at concurrency 50 arrive well inside a
	// second.
	const jitter = 2
	if most > perSecond+burst+jitter {
		t.Errorf("got %d DELETEs within one second, want at most %d (rate %d/s, burst %d, %d for arrival jitter)",
			most, perSecond+burst+jitter, perSecond, burst, jitter)
	}
}

func TestIntegration_429PausesEveryRequest(t *testing.T) {
	s := newStack(t, "agent-429", connectionIDs(150)...)
	s.em.SetLatency(10 * time.Millisecond)
	// Concurrency 30 runs three batches at once: the 429 in one must hold the other two as well.
	s.em.InjectNext(emulator.Fault{Status: 429, RetryAfter: "2", ConnectionID: "conn-0005"})
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-429", Concurrency: 30}))
	if res.Removed != 150 {
		t.Fatalf("got %d removed, want 150", res.Removed)
	}
	var answered time.Time
	for _, e := range s.em.Log() {
		if e.Status == http.StatusTooManyRequests {
			answered = e.Time
		}
	}
	if answered.IsZero() {
		t.Fatal("got no 429 in the emulator's log, want the injected one")
	}
	// Requests already on their way when the 429 was answered may land just after it; after that
	// nothing reaches the control plane until the two seconds are over.
	for _, st := range s.deleteStarts() {
		if st.After(answered.Add(100*time.Millisecond)) && st.Before(answered.Add(1900*time.Millisecond)) {
			t.Errorf("got a DELETE %s after the 429, want none for its 2 s Retry-After", st.Sub(answered))
		}
	}
}
