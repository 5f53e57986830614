package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/fleet"
)

// fleetRow is one teardown by k worker binaries sharing one budget (section 2c).
type fleetRow struct {
	Replicas                 int
	N, Requests, Removed     int
	Duration, Span           time.Duration
	PerMinute, Percent       float64
	Status429, PeakPerSecond int
	BucketDrawn              float64
	Killed                   bool
	KillAt, RestartAt        time.Duration // from the first request
	Recovered                time.Duration // from the restart to the first 5 s window at ≥ 90%; -1 if never
	Status429AroundKill      int           // 429s within 5 s of the kill
	// PerReplica is the control plane requests each replica sent, from its /metrics at the end
	// (a killed replica's are lost: the row says so); -1 where /metrics could not be read.
	PerReplica []int
}

// fleetTeardowns runs section 2c: the same teardown at each replica count, then once more at the
// largest with one replica killed a third of the way in and restarted.
func (h *harness) fleetTeardowns() ([]fleetRow, error) {
	var rows []fleetRow
	for _, k := range h.sz.fleetReplicas {
		row, err := h.fleetRun(k, false)
		if err != nil {
			return rows, fmt.Errorf("%d replicas: %w", k, err)
		}
		rows = append(rows, row)
	}
	k := h.sz.fleetReplicas[len(h.sz.fleetReplicas)-1]
	row, err := h.fleetRun(k, true)
	if err != nil {
		return rows, fmt.Errorf("%d replicas, one killed: %w", k, err)
	}
	return append(rows, row), nil
}

func (h *harness) fleetRun(k int, kill bool) (fleetRow, error) {
	sz := h.sz
	row := fleetRow{Replicas: k, N: sz.fleetN, Killed: kill}
	h.logf("2c. fleet of %d worker binaries, teardown of %d, budget %d/s burst %d, emulator %d/min (kill one: %t)",
		k, sz.fleetN, sz.paceRPS, sz.paceBurst, sz.paceLimit, kill)
	cp := newControlPlane(emulator.Options{Latency: sz.paceLatency, RateLimitPerMinute: sz.paceLimit, LogLimit: 2*sz.fleetN + 1000})
	defer cp.close()
	tq := h.name("bench-fleet")
	env := []string{fmt.Sprintf("LANGSMITH_REQUESTS_PER_SECOND=%d", sz.paceRPS), fmt.Sprintf("LANGSMITH_REQUEST_BURST=%d", sz.paceBurst)}
	workers := make([]*workerProc, 0, k)
	defer func() {
		for _, w := range workers {
			w.p.Stop(10 * time.Second)
		}
	}()
	for range k {
		w, err := h.startWorker(tq, cp.srv.URL, env...)
		if err != nil {
			return row, err
		}
		workers = append(workers, w)
	}
	if err := h.awaitMembers(tq, k); err != nil {
		return row, err
	}
	// Every lease is counted, but a replica that renewed before the last one joined still paces at
	// its larger share until its next renewal: start after one more renewal period, so the figures
	// are the fleet's steady state, not the join (docs/fleet-budget.md, Limits).
	select {
	case <-h.ctx.Done():
		return row, h.ctx.Err()
	case <-time.After(fleet.DefaultRefresh):
	}
	agent := h.name("fleet")
	ids := connectionIDs(sz.fleetN)
	var killAt, restartAt time.Time
	stopWatch := func() {}
	if kill {
		killed := make(chan struct{})
		ctx, cancel := context.WithCancel(h.ctx)
		// Waits for the watcher, so its kill and restart times (and workers) are read after it
		// wrote them.
		stopWatch = func() { cancel(); <-killed }
		go func() {
			defer close(killed)
			killAt, restartAt = h.killAndRestart(ctx, cp, agent, tq, env, workers, sz.fleetN/3)
		}()
		defer func() { cancel(); <-killed }()
	}
	d, err := h.teardownOnce(cp, tq, false, agent, ids, sz.paceConc)
	stopWatch()
	if err != nil {
		return row, err
	}
	row.Duration = d
	for _, w := range workers {
		row.PerReplica = append(row.PerReplica, requestsSent(w.addr))
	}
	return fillFleetRow(row, cp, float64(sz.paceLimit), killAt, restartAt)
}

// killAndRestart SIGKILLs the second replica once `at` connections are removed and starts another
// in its place at once; it returns when both happened (zero times if ctx ended first).
func (h *harness) killAndRestart(ctx context.Context, cp *controlPlane, agent, tq string, env []string, workers []*workerProc, at int) (time.Time, time.Time) {
	for cp.em.Stats().Removed < at {
		select {
		case <-ctx.Done():
			return time.Time{}, time.Time{}
		case <-time.After(20 * time.Millisecond):
		}
	}
	victim := workers[1]
	victim.p.Kill()
	killAt := time.Now()
	h.logf("   killed a replica at %d removed", cp.em.Stats().Removed)
	w, err := h.startWorker(tq, cp.srv.URL, env...)
	if err != nil {
		h.logf("   restart failed: %v", err)
		return killAt, time.Time{}
	}
	workers[1] = w // stopped with the others
	return killAt, time.Now()
}

// requestsSent is the sum of the worker's agent_connections_http_requests_total counters, read
// from its /metrics; -1 when they cannot be read.
func requestsSent(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1
	}
	total := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "agent_connections_http_requests_total{") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			total += v
		}
	}
	return int(total)
}

// awaitMembers waits until the fleet's budget workflow counts k live leases.
func (h *harness) awaitMembers(tq string, k int) error {
	cp, err := controlplane.New(controlplane.Config{BaseURL: "http://127.0.0.1", Credentials: controlplane.StaticCredentials{APIKey: apiKey}})
	if err != nil {
		return err
	}
	tag, err := cp.CredentialTag(fleet.TagLabel)
	if err != nil {
		return err
	}
	id := fleet.WorkflowID(tq, tag)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if live, err := h.liveMembers(id); err == nil && live == k {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the fleet did not count %d members within a minute", k)
}

func (h *harness) liveMembers(workflowID string) (int, error) {
	v, err := h.client.QueryWorkflow(h.ctx, workflowID, "", fleet.StateQuery)
	if err != nil {
		return 0, err
	}
	var st fleet.State
	if err := v.Get(&st); err != nil {
		return 0, err
	}
	live := 0
	for _, until := range st.Leases {
		if until.After(time.Now()) {
			live++
		}
	}
	return live, nil
}

// fillFleetRow reads the rates and 429s of a fleet run from the emulator's log.
func fillFleetRow(row fleetRow, cp *controlPlane, limit float64, killAt, restartAt time.Time) (fleetRow, error) {
	st := cp.em.Stats()
	row.Status429, row.Removed = st.Status429, st.Removed
	log := cp.em.Log()
	if len(log) < 2 {
		return row, fmt.Errorf("got %d requests in the emulator's log, want at least 2", len(log))
	}
	times := make([]time.Time, len(log))
	for i, e := range log {
		times[i] = e.Time
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	row.Requests = len(times)
	row.Span = times[len(times)-1].Sub(times[0])
	row.PerMinute = float64(len(times)-1) / row.Span.Minutes()
	row.Percent = 100 * row.PerMinute / limit
	row.PeakPerSecond = peakInWindow(times, time.Second)
	row.BucketDrawn = bucketDrawn(times, limit)
	if !row.Killed || killAt.IsZero() || restartAt.IsZero() {
		return row, nil
	}
	row.KillAt, row.RestartAt = killAt.Sub(times[0]), restartAt.Sub(times[0])
	row.Recovered = recovery(times, restartAt, limit*0.9/60, 5*time.Second)
	for _, e := range log {
		if e.Status == http.StatusTooManyRequests && e.Time.Sub(killAt).Abs() <= 5*time.Second {
			row.Status429AroundKill++
		}
	}
	return row, nil
}

// recovery is how long after from the first window of length w begins in which requests arrive
// at least at perSecond; -1 when none does before the log ends.
func recovery(times []time.Time, from time.Time, perSecond float64, w time.Duration) time.Duration {
	need := int(perSecond * w.Seconds())
	lo := sort.Search(len(times), func(i int) bool { return !times[i].Before(from) })
	for i := lo; i < len(times); i++ {
		j := sort.Search(len(times), func(j int) bool { return !times[j].Before(times[i].Add(w)) })
		if j == len(times) {
			break // the window runs past the end of the teardown
		}
		if j-i >= need {
			return times[i].Sub(from)
		}
	}
	return -1
}

// fleetGoals are section 2c's goals: at every replica count ≥ 90% of the limit, no 429, the
// bucket held by the fleet's limiters; after a kill and restart, back to 90% within 30 s.
func (r *report) fleetGoals() []goal {
	var gs []goal
	p := r.Sizes
	for _, row := range r.Fleet {
		name := fmt.Sprintf("2c. fleet of %d", row.Replicas)
		if row.Killed {
			name += ", one killed and restarted"
		}
		gs = append(gs,
			goal{Name: name + ": sustained requests/min", Target: "≥ 90%", Figure: fmt.Sprintf("%.0f/min = %.1f%%", row.PerMinute, row.Percent), Met: row.Percent >= 90},
			goal{Name: name + ": 429 answers", Target: "0", Figure: fmt.Sprintf("%d", row.Status429), Met: row.Status429 == 0},
			goal{Name: name + ": emulator tokens drawn below full", Target: fmt.Sprintf("≤ %d (2 × the fleet's burst %d)", 2*p.paceBurst, p.paceBurst),
				Figure: fmt.Sprintf("%.1f", row.BucketDrawn), Met: row.BucketDrawn <= float64(2*p.paceBurst)})
		if row.Killed {
			gs = append(gs, goal{Name: name + ": back to 90% after the restart", Target: "≤ 30 s",
				Figure: recoveredText(row.Recovered), Met: row.Recovered >= 0 && row.Recovered <= 30*time.Second})
		}
	}
	return gs
}

func perReplicaText(counts []int) string {
	parts := make([]string, len(counts))
	for i, n := range counts {
		parts[i] = "?"
		if n >= 0 {
			parts[i] = strconv.Itoa(n)
		}
	}
	return strings.Join(parts, " / ")
}

func recoveredText(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(100 * time.Millisecond).String()
}

// mdFleet writes section 2c, one budget shared by replicas.
func (r *report) mdFleet(w printf) {
	if len(r.Fleet) == 0 {
		return
	}
	p := r.Sizes
	w("## 2c. One budget for the whole fleet (worker binaries)\n\n")
	w("Emulator in rate-limit mode (`RateLimitPerMinute: %d`, one bucket for the key that starts full with %d tokens), latency %s;\n", p.paceLimit, p.paceLimit, p.paceLatency)
	w("1 to %d worker binaries on one task queue with one key, each started with the same `LANGSMITH_REQUESTS_PER_SECOND=%d`,\n", p.fleetReplicas[len(p.fleetReplicas)-1], p.paceRPS)
	w("`LANGSMITH_REQUEST_BURST=%d` (the fleet's budget, which they divide: `internal/fleet`, docs/fleet-budget.md); a teardown of %d\n", p.paceBurst, p.fleetN)
	w("connections at concurrency %d, started one renewal period (%s) after the budget workflow counts every replica, so\n", p.paceConc, fleet.DefaultRefresh)
	w("that every replica paces at its steady share (docs/fleet-budget.md, the join overshoot). Rates are from the emulator's\n")
	w("request log, first to last request. In the last row the second replica is SIGKILLed once a third of the connections\n")
	w("are removed and a new one started at once; \"back to 90%%\" is the time from the restart to the first 5 s window of\n")
	w("requests at ≥ 90%% of the limit. Requests per replica are each worker's own count (`agent_connections_http_requests_total`\n")
	w("on its /metrics) at the end; a killed replica's count is lost with it.\n\n")
	w("| replicas | teardown wall time | requests | sustained rate | 429 answers | most in one second | tokens drawn below full | kill / restart at | back to 90%% after the restart | 429s within 5 s of the kill | requests per replica |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range r.Fleet {
		killed, back, around := "", "", ""
		if row.Killed {
			killed = fmt.Sprintf("%s / %s", row.KillAt.Round(100*time.Millisecond), row.RestartAt.Round(100*time.Millisecond))
			back, around = recoveredText(row.Recovered), fmt.Sprintf("%d", row.Status429AroundKill)
		}
		name := fmt.Sprintf("%d", row.Replicas)
		if row.Killed {
			name += " (one killed)"
		}
		w("| %s | %s | %d in %s | %.0f/min = **%.1f%%** | **%d** | %d | %.1f of %d | %s | %s | %s | %s |\n", name, row.Duration.Round(time.Millisecond),
			row.Requests, row.Span.Round(time.Millisecond), row.PerMinute, row.Percent, row.Status429, row.PeakPerSecond, row.BucketDrawn, p.paceLimit, killed, back, around,
			perReplicaText(row.PerReplica))
	}
	w("\nGoals (≥ 90%% of %d/min, no 429, the bucket held by the fleet's own limiters, back to 90%% within 30 s): see the table of goals above.\n\n", p.paceLimit)
}
