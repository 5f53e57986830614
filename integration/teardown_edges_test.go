package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// waitProgress polls the teardown's progress query until done says so.
func (s *stack) waitProgress(workflowID string, done func(ac.TeardownProgress) bool) {
	s.t.Helper()
	s.waitFor("teardown progress", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := s.client.QueryWorkflow(ctx, workflowID, "", ac.ProgressQuery)
		if err != nil {
			return false
		}
		var p ac.TeardownProgress
		return v.Get(&p) == nil && done(p)
	})
}

// Temporal's own cancellation, as `temporal workflow cancel` sends it, on a real server: the
// batches in flight report what their requests did (nothing is lost or sent twice), nothing new
// starts, and the run ends Canceled with the result in the details.
func TestIntegration_TeardownCancelledByTemporal(t *testing.T) {
	all := connectionIDs(300)
	s := newStack(t, "agent-tcancel", all...)
	s.em.SetLatency(100 * time.Millisecond)
	run := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-tcancel", Concurrency: 10})
	s.waitProgress(run.GetID(), func(p ac.TeardownProgress) bool { return p.Done >= 20 })
	if err := s.client.CancelWorkflow(context.Background(), run.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run.Get(ctx, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("got %v, want the teardown Canceled", err)
	}
	var res ac.RemoveAgentConnectionsResult
	if err := canceled.Details(&res); err != nil {
		t.Fatal(err)
	}
	desc, err := s.client.DescribeWorkflow(ctx, run.GetID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("got status %s, want Canceled", desc.Status)
	}
	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	if !res.Cancelled || res.Total != 300 || sum != 300 || res.Skipped == 0 || res.Removed < 20 {
		t.Errorf("got %+v, want cancelled, 300 accounted for, some removed and some skipped", res)
	}
	// On a real server a cancelled batch reports its requests in flight: none is left unknown.
	if res.Failed != 0 {
		t.Errorf("got %d failed, want 0: every request in flight at the cancel finished with its outcome", res.Failed)
	}
	st := s.em.Stats()
	left := map[string]bool{}
	for _, id := range s.em.Connections("agent-tcancel") {
		left[id] = true
	}
	for _, o := range res.Connections {
		n := st.DeletesByConnection[o.ConnectionID]
		switch o.Outcome {
		case ac.OutcomeRemoved:
			if n != 1 || left[o.ConnectionID] {
				t.Errorf("%s: removed with %d DELETEs, still there %t; want one DELETE and gone", o.ConnectionID, n, left[o.ConnectionID])
			}
		case ac.OutcomeSkipped:
			if n != 0 || !left[o.ConnectionID] {
				t.Errorf("%s: skipped with %d DELETEs, still there %t; want none and still there", o.ConnectionID, n, left[o.ConnectionID])
			}
		}
	}
	// Nothing more after the run ended.
	time.Sleep(500 * time.Millisecond)
	if after := s.em.Stats().Removed; after != st.Removed {
		t.Errorf("got %d removals after the run ended, want none", after-st.Removed)
	}
}

// A key the control plane lets list but refuses to delete with (403), at scale and with long IDs:
// the teardown stops at the first refusal, sends no futile DELETEs, and reports every connection
// in a result that fits, instead of being terminated for its size.
func TestIntegration_RefusedKeyAtScaleStopsAndReports(t *testing.T) {
	const n = 5000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("conn-%04d-%s", i, strings.Repeat("x", 190))
	}
	s := newStack(t, "agent-refused", ids...)
	s.em.InjectNext(emulator.Fault{Status: 403, Method: "DELETE", Count: n, Detail: "this key may not remove connections"})
	res := s.teardownResult(s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-refused", Concurrency: 20}))
	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	if res.Total != n || sum != n || !strings.Contains(res.StopReason, "refused the key") {
		t.Errorf("got total %d sum %d stop %q, want %d accounted for and the refusal named", res.Total, sum, res.StopReason, n)
	}
	deletes := s.em.Stats().ByMethodStatus["DELETE 403"]
	if deletes == 0 || deletes > 20 || res.Failed != deletes || res.Skipped != n-deletes {
		t.Errorf("got %d refused DELETEs, %d failed, %d skipped; want at most the 20 in flight at the refusal, the rest skipped", deletes, res.Failed, res.Skipped)
	}
	if !res.ReportTruncated || len(res.Connections) >= n || res.ReportPages < 2 {
		t.Errorf("got %d entries in the result over %d pages, want a bounded result and the rest paged", len(res.Connections), res.ReportPages)
	}
	desc, err := s.client.DescribeWorkflow(context.Background(), ac.RemoveAgentConnectionsWorkflowID("agent-refused"), "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("got status %s, want Completed", desc.Status)
	}
	t.Logf("refused key: %d connections of %d-byte IDs, %d DELETEs sent, history %d events, %d bytes; result %d entries, %d report pages",
		n, len(ids[0]), deletes, desc.HistoryLength, desc.RawResponse.GetWorkflowExecutionInfo().GetHistorySizeBytes(), len(res.Connections), res.ReportPages)
}

// A 404 on the agent's list (a missing agent, or a URL without the install's path prefix) fails
// the teardown AgentNotFound instead of reporting zero connections removed.
func TestIntegration_MissingAgentFailsTheTeardown(t *testing.T) {
	s := newStack(t, "agent-present", "c1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-absent"}).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ac.ErrAgentNotFound {
		t.Fatalf("got %v, want %s", err, ac.ErrAgentNotFound)
	}
	if !strings.Contains(appErr.Message(), "/v2/auth/agents/{agent_id}/connections") {
		t.Errorf("got message %q, want the route template", appErr.Message())
	}
}
