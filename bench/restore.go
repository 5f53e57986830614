package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// restoreGoalRatio is section 2d's target for restore connections/s over teardown connections/s,
// fixed before the section was first measured and not to be moved after. Both run on the same
// worker binary, emulator latency and concurrency, in batches of the same shape (50 entries, 10
// requests at a time, at most 5 batches in flight at concurrency 50): per connection one request
// either way. What a restore does more: each batch lists the agent before its first POST (one
// more latency on the batch's path, 6 request rounds where a teardown batch has 5: about 0.83 of
// the teardown's rate by latency alone), those 20 lists return up to the whole agent (about
// 10,000 connection encodings for 1,000 restored, against the teardown's two lists), and each
// POST carries a JSON body each way where a DELETE answers 204. 0.6 allows that CPU a quarter of
// the rate on top of the extra latency, on a machine whose cores the dev server, the worker and
// the emulator share. (What this left out, found at the first measurement and said in the
// report, the target unchanged: a teardown batch asks Temporal about a standalone removal of
// each connection before its DELETE, which a restore does not.)
const restoreGoalRatio = 0.6

// restorePhase is one of section 2d's two workflows, as measured.
type restorePhase struct {
	Wall     time.Duration
	Rate     float64        // connections/s
	Requests int            // API requests it sent (the emulator's count)
	ByMethod map[string]int // "DELETE", "POST", "GET": requests per method, whatever the answer
	// CPU seconds meanwhile: the worker binary, the dev server, and this process (the client and
	// the emulator).
	WorkerCPU, ServerCPU, SelfCPU float64
}

// restoreResult is section 2d: a teardown of N connections and the restore of all N from its
// report, on one worker binary.
type restoreResult struct {
	N, Concurrency int
	Latency        time.Duration
	Teardown       restorePhase
	Restore        restorePhase
	Ratio          float64 // restore connections/s over teardown connections/s
	Restored       int     // entries the restore reported restored
	OnePerToken    int     // snapshot tokens holding exactly one connection at the emulator afterwards
	AtEmulator     int     // the agent's connections at the emulator afterwards
	ReportPages    int     // pages of the teardown's report the snapshot came from
}

// restoreBeside runs section 2d on a fresh worker binary against an emulator with 2a's latency:
// seed an agent with N connections (each with its oauth_token_id), tear it down, restore every
// connection from the teardown's report entries, and check at the emulator that each token holds
// exactly one connection. Any shortfall fails the bench.
func (h *harness) restoreBeside() (restoreResult, error) {
	sz := h.sz
	res := restoreResult{N: sz.restoreN, Concurrency: sz.restoreConc, Latency: sz.tdLatency}
	h.logf("2d. teardown then restore of %d connections at concurrency %d, %s a request (worker binary)", sz.restoreN, sz.restoreConc, sz.tdLatency)
	cp := newControlPlane(emulator.Options{Latency: sz.tdLatency, LogLimit: 4*sz.restoreN + 1000})
	defer cp.close()
	tq := h.name("bench-restore")
	wp, err := h.startWorker(tq, cp.srv.URL)
	if err != nil {
		return res, err
	}
	defer wp.p.Stop(10 * time.Second)
	// Warm the worker up on both workflows (workflow caches, connections) with a small pair.
	if _, err := h.teardownThenRestore(cp, tq, wp.p.PID(), h.name("restore-warm"), 20, 10); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	m, err := h.teardownThenRestore(cp, tq, wp.p.PID(), h.name("restore"), sz.restoreN, sz.restoreConc)
	if err != nil {
		return res, err
	}
	m.N, m.Concurrency, m.Latency = res.N, res.Concurrency, res.Latency
	h.logf("   teardown %s (%.0f/s, %d requests), restore %s (%.0f/s, %d requests): restore/teardown %.2f; %d of %d tokens hold one connection",
		m.Teardown.Wall.Round(time.Millisecond), m.Teardown.Rate, m.Teardown.Requests,
		m.Restore.Wall.Round(time.Millisecond), m.Restore.Rate, m.Restore.Requests, m.Ratio, m.OnePerToken, m.N)
	return m, nil
}

// teardownThenRestore seeds agent with n connections, removes them with
// RemoveAgentConnectionsWorkflow (given their IDs, as section 2a does), restores them with
// RestoreAgentConnectionsWorkflow from the snapshots of the teardown's report, and checks the
// emulator.
func (h *harness) teardownThenRestore(cp *controlPlane, taskQueue string, workerPID int, agent string, n, conc int) (restoreResult, error) {
	var res restoreResult
	ids := connectionIDs(n)
	cp.em.Seed(agent, ids...)
	before := map[string]string{} // connection ID -> token, as the emulator had them
	for _, c := range cp.em.TokenConnections(agent) {
		before[c.ConnectionID] = c.OAuthTokenID
	}

	var down ac.RemoveAgentConnectionsResult
	var run client.WorkflowRun
	var err error
	res.Teardown, err = h.measurePhase(cp, workerPID, n, func() error {
		var err error
		run, err = h.client.ExecuteWorkflow(h.ctx, client.StartWorkflowOptions{ID: ac.RemoveAgentConnectionsWorkflowID(agent), TaskQueue: taskQueue},
			ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: agent, ConnectionIDs: ids, Concurrency: conc})
		if err != nil {
			return err
		}
		return run.Get(h.ctx, &down)
	})
	if err != nil {
		return res, fmt.Errorf("teardown: %w", err)
	}
	if down.Removed != n {
		return res, fmt.Errorf("teardown: removed %d of %d (failed %d, remained %d, skipped %d)", down.Removed, n, down.Failed, down.Remained, down.Skipped)
	}
	if left := len(cp.em.Connections(agent)); left != 0 {
		return res, fmt.Errorf("teardown: %w: %d of %d", errIncomplete, left, n)
	}

	// The snapshots the restore takes: the teardown's report entries, every page of them.
	entries, pages, err := h.teardownReport(run.GetID(), down)
	if err != nil {
		return res, err
	}
	res.ReportPages = pages
	snaps := ac.RestoreEntries(entries)
	if len(snaps) != n {
		return res, fmt.Errorf("the teardown's report holds %d restorable entries, want %d", len(snaps), n)
	}
	for _, s := range snaps {
		if tok, ok := before[s.ConnectionID]; !ok || tok != s.OAuthTokenID {
			return res, fmt.Errorf("the teardown's report gives %s token %q, the emulator had %q", s.ConnectionID, s.OAuthTokenID, tok)
		}
	}

	var up ac.RestoreAgentConnectionsResult
	res.Restore, err = h.measurePhase(cp, workerPID, n, func() error {
		r, err := h.client.ExecuteWorkflow(h.ctx, client.StartWorkflowOptions{ID: ac.RestoreAgentConnectionsWorkflowID(agent), TaskQueue: taskQueue},
			ac.RestoreAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsInput{AgentID: agent, Connections: snaps, Concurrency: conc})
		if err != nil {
			return err
		}
		return r.Get(h.ctx, &up)
	})
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	res.Restored = up.Restored
	if up.Total != n || up.Restored != n {
		return res, fmt.Errorf("restore: %d of %d restored (already present %d, failed %d, skipped %d, stop %q)",
			up.Restored, n, up.AlreadyPresent, up.Failed, up.Skipped, up.StopReason)
	}
	per := cp.em.ConnectionsPerToken(agent)
	var bad []string
	for _, s := range snaps {
		if per[s.OAuthTokenID] == 1 {
			res.OnePerToken++
		} else {
			bad = append(bad, fmt.Sprintf("%s: %d", s.OAuthTokenID, per[s.OAuthTokenID]))
		}
	}
	res.AtEmulator = len(cp.em.Connections(agent))
	if len(bad) > 0 || res.AtEmulator != n {
		sort.Strings(bad)
		return res, fmt.Errorf("after the restore: %d of %d tokens hold exactly one connection, %d connections at the emulator, want %d (first: %s)",
			res.OnePerToken, n, res.AtEmulator, n, strings.Join(bad[:min(len(bad), 5)], ", "))
	}
	res.Ratio = res.Restore.Rate / res.Teardown.Rate
	return res, nil
}

// measurePhase runs one workflow to its result and reads its wall time, the emulator's request
// counts and the CPU time of the processes meanwhile.
func (h *harness) measurePhase(cp *controlPlane, workerPID, n int, do func() error) (restorePhase, error) {
	st0 := cp.em.Stats()
	worker0, server0, self0 := processCPU(workerPID), processCPU(h.server.PID()), selfCPU()
	start := time.Now()
	err := do()
	p := restorePhase{Wall: time.Since(start)}
	if err != nil {
		return p, err
	}
	p.WorkerCPU = processCPU(workerPID) - worker0
	p.ServerCPU = processCPU(h.server.PID()) - server0
	p.SelfCPU = selfCPU() - self0
	st := cp.em.Stats()
	p.Requests = st.Requests - st0.Requests
	p.ByMethod = map[string]int{}
	for k, v := range st.ByMethodStatus {
		method, _, _ := strings.Cut(k, " ")
		p.ByMethod[method] += v - st0.ByMethodStatus[k]
	}
	for k, v := range p.ByMethod {
		if v == 0 {
			delete(p.ByMethod, k)
		}
	}
	p.Rate = float64(n) / p.Wall.Seconds()
	return p, nil
}

// teardownReport is every entry of a finished teardown's report: the result's, or, when the
// result was truncated, every page of the report query.
func (h *harness) teardownReport(workflowID string, down ac.RemoveAgentConnectionsResult) ([]ac.ConnectionOutcome, int, error) {
	if !down.ReportTruncated {
		return down.Connections, max(down.ReportPages, 1), nil
	}
	var all []ac.ConnectionOutcome
	for page := 0; page < down.ReportPages; page++ {
		v, err := h.client.QueryWorkflow(h.ctx, workflowID, "", ac.ReportQuery, page)
		if err != nil {
			return nil, 0, fmt.Errorf("report page %d: %w", page, err)
		}
		var p ac.ReportPage
		if err := v.Get(&p); err != nil {
			return nil, 0, fmt.Errorf("report page %d: %w", page, err)
		}
		all = append(all, p.Connections...)
	}
	return all, down.ReportPages, nil
}

// requestsText is "1000 DELETE + 2 GET": a phase's requests by method, most first.
func requestsText(byMethod map[string]int) string {
	methods := make([]string, 0, len(byMethod))
	for m := range byMethod {
		methods = append(methods, m)
	}
	sort.Slice(methods, func(i, j int) bool {
		if byMethod[methods[i]] != byMethod[methods[j]] {
			return byMethod[methods[i]] > byMethod[methods[j]]
		}
		return methods[i] < methods[j]
	})
	parts := make([]string, len(methods))
	for i, m := range methods {
		parts[i] = fmt.Sprintf("%d %s", byMethod[m], m)
	}
	return strings.Join(parts, " + ")
}

// ratioText is a/b to two places, or "–" when b is not positive (a CPU time below the clock tick).
func ratioText(a, b float64) string {
	if !(b > 0) || !finite(a/b) {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// thousands writes n with a comma every three digits: 1,000.
func thousands(n int) string {
	s := fmt.Sprintf("%d", n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// restoreGoals are section 2d's goals: everything restored with one connection per token (the
// bench fails before reporting otherwise, so a report always shows it met), and the restore's
// rate against the teardown's.
func (r *report) restoreGoals() []goal {
	x := r.Restore
	if x == nil {
		return nil
	}
	return []goal{
		{
			Name:   fmt.Sprintf("2d. restore of %s (worker binary): all restored, one connection per token", thousands(x.N)),
			Target: fmt.Sprintf("%d of %d", x.N, x.N),
			Figure: fmt.Sprintf("%d restored; %d tokens with exactly one connection; %d connections at the emulator", x.Restored, x.OnePerToken, x.AtEmulator),
			Met:    x.Restored == x.N && x.OnePerToken == x.N && x.AtEmulator == x.N,
		},
		{
			Name:   fmt.Sprintf("2d. restore connections/s vs teardown connections/s, %s at concurrency %d (worker binary)", thousands(x.N), x.Concurrency),
			Target: fmt.Sprintf("≥ %.1f", restoreGoalRatio),
			Figure: fmt.Sprintf("%.2f (%.0f/s vs %.0f/s)", x.Ratio, x.Restore.Rate, x.Teardown.Rate),
			Met:    finite(x.Ratio) && x.Ratio >= restoreGoalRatio,
		},
	}
}

// mdRestore writes section 2d, the restore measured beside the teardown it undoes.
func (r *report) mdRestore(w printf) {
	x := r.Restore
	if x == nil {
		return
	}
	w("## 2d. Restore of %s connections beside the teardown (worker binary)\n\n", thousands(x.N))
	w("One worker binary (pacing off), an emulator with %s a request as in 2a. An agent seeded with %s connections, each\n", x.Latency, thousands(x.N))
	w("with its own `oauth_token_id`, is torn down by `RemoveAgentConnectionsWorkflow` (given the IDs, as in 2a, concurrency %d);\n", x.Concurrency)
	w("then `RestoreAgentConnectionsWorkflow` (concurrency %d) re-creates every connection from the snapshots the teardown's\n", x.Concurrency)
	w("report entries carry (`RestoreEntries`; %d report page(s), checked against the emulator's list before the teardown).\n", x.ReportPages)
	w("Both run on the same worker, emulator and dev server, after a warm-up pair of 20, so the ratio compares like with like;\n")
	w("the baselines of 1 and 2a are not needed here and the binary is what runs in production. Wall time is from start to\n")
	w("result. Requests are the emulator's count by method: the teardown lists the agent for the snapshots, DELETEs, and lists\n")
	w("it again to verify; the restore lists the agent at the start of each batch, then POSTs one connection per token. After\n")
	w("the restore the bench checks at the emulator that each token holds exactly one connection and fails otherwise. CPU is\n")
	w("seconds during each workflow: the worker binary's, the dev server's, and the bench process's (the client and the emulator).\n\n")
	w("| | teardown | restore | restore / teardown |\n| --- | --- | --- | --- |\n")
	t, s := x.Teardown, x.Restore
	w("| wall time | %s | %s | %s |\n", t.Wall.Round(time.Millisecond), s.Wall.Round(time.Millisecond), ratioText(s.Wall.Seconds(), t.Wall.Seconds()))
	w("| connections/s | %.0f | %.0f | **%s** |\n", t.Rate, s.Rate, ratioText(s.Rate, t.Rate))
	w("| API requests | %d (%s) | %d (%s) | %s |\n", t.Requests, requestsText(t.ByMethod), s.Requests, requestsText(s.ByMethod), ratioText(float64(s.Requests), float64(t.Requests)))
	w("| worker binary CPU (s) | %.2f | %.2f | %s |\n", t.WorkerCPU, s.WorkerCPU, ratioText(s.WorkerCPU, t.WorkerCPU))
	w("| dev server CPU (s) | %.2f | %.2f | %s |\n", t.ServerCPU, s.ServerCPU, ratioText(s.ServerCPU, t.ServerCPU))
	w("| bench process CPU (s) | %.2f | %.2f | %s |\n", t.SelfCPU, s.SelfCPU, ratioText(s.SelfCPU, t.SelfCPU))
	w("| outcome | %d removed | %d restored; %d of %d tokens with exactly one connection, %d at the emulator | |\n\n",
		x.N, x.Restored, x.OnePerToken, x.N, x.AtEmulator)
	w("Goals: all restored with one connection per token: %s; restore connections/s ≥ %.1f of the teardown's: %s. The %.1f was\n",
		r.goalWord("2d. restore of"), restoreGoalRatio, r.goalWord("2d. restore connections/s"), restoreGoalRatio)
	w("set before the first measurement: per connection both send one request at the same latency in batches of the same\n")
	w("shape, but a restore batch lists the agent before its POSTs (one more latency on its path, about 0.83 of the rate by\n")
	w("latency alone), its lists return up to the whole agent, and each POST carries a JSON body each way.\n\n")
	w("That reasoning left out what a teardown does per connection and a restore does not: before each DELETE the teardown's\n")
	w("batch asks Temporal whether a standalone `RemoveConnectionWorkflow` of the connection is running (a `DescribeWorkflow`,\n")
	w("the coordination that keeps the two from sending the same DELETE twice); a restore has no standalone counterpart to\n")
	w("check. That is one dev server round trip on each connection's path and the dev server CPU above (%.2f s for the\n", t.ServerCPU)
	w("teardown, %.2f s for the restore).", s.ServerCPU)
	if x.Ratio > 1 {
		w("\nSo the restore ran faster than the teardown it undoes (%.2f), against the expectation the target was set from;\n", x.Ratio)
		w("the target is left as it was set.")
	}
	w("\n\n")
}
