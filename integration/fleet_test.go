package integration

import (
	"fmt"
	"strings"
	"testing"

	ac "github.com/agentops/agentconnections"
)

// Two replicas on one task queue with one key, each set to LANGSMITH_REQUESTS_PER_SECOND=8 with
// a burst of 4, against an emulator that allows the key 10 requests a second from a bucket of
// 4: together they stay under it (4/s and a burst of 2 each), so no request is answered 429.
// Each on its own budget they would send 16 a second and spend the bucket within a second.
func TestIntegration_TwoReplicasShareOneBudget(t *testing.T) {
	const n = 100
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("conn-%03d", i)
	}
	s := newStackWithEnv(t, []string{"LANGSMITH_REQUESTS_PER_SECOND=8", "LANGSMITH_REQUEST_BURST=4"}, "agent-fleet", ids...)
	s.em.SetRateLimit(600)
	s.em.SetRateLimitBurst(4)
	first := s.worker
	s.startWorker()
	second := s.worker
	// Each replica logs the number of members when it changes; wait until both count two.
	s.waitFor("both replicas to count two members", func() bool {
		return strings.Contains(first.Output(), `"members":2`) && strings.Contains(second.Output(), `"members":2`)
	})
	started := make([]ac.RemoveConnectionInput, n)
	for i, id := range ids {
		started[i] = ac.RemoveConnectionInput{AgentID: "agent-fleet", ConnectionID: id}
	}
	wfRuns := make([]func() (ac.RemoveConnectionResult, error), n)
	for i, in := range started {
		run := s.start(in)
		wfRuns[i] = func() (ac.RemoveConnectionResult, error) { return s.result(run) }
	}
	for i, get := range wfRuns {
		res, err := get()
		if err != nil || res.Outcome != ac.OutcomeRemoved {
			t.Fatalf("removal %d: %+v, %v", i, res, err)
		}
	}
	st := s.em.Stats()
	if st.Status429 != 0 {
		t.Errorf("the emulator answered %d requests 429, want none", st.Status429)
	}
	if st.Removed != n {
		t.Errorf("removed %d, want %d", st.Removed, n)
	}
	// Both replicas sent requests: the budget was shared, not used by one of them alone.
	sent := func(out string) int { return strings.Count(out, `"connection removed"`) }
	if sent(first.Output()) == 0 || sent(second.Output()) == 0 {
		t.Errorf("removals logged: %d and %d, want both replicas to have removed some", sent(first.Output()), sent(second.Output()))
	}
}
