package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

// sizes are the sizes of one run: the full one, or --quick.
type sizes struct {
	e2eN, e2eWarm int
	e2eLevels     []int
	tdN           int
	tdLatency     time.Duration
	tdLevels      []int
	tdGoalLevel   int
	paceN         int
	paceConc      int
	paceRPS       int
	paceBurst     int
	paceLimit     int // the emulator's requests per minute
	paceLatency   time.Duration
	footprint     []int
	footConc      int
	fleetN        int   // section 2c: the fleet's teardown
	fleetReplicas []int // worker binaries sharing the budget, one run each
	restoreN      int   // section 2d: connections torn down, then restored
	restoreConc   int
}

var fullSizes = sizes{
	e2eN: 200, e2eWarm: 20, e2eLevels: []int{1, 10, 50},
	tdN: 1000, tdLatency: 20 * time.Millisecond, tdLevels: []int{1, 10, 50, 100}, tdGoalLevel: 50,
	paceN: 1200, paceConc: 50, paceRPS: 33, paceBurst: 5, paceLimit: 2000, paceLatency: 20 * time.Millisecond,
	footprint: []int{100, 1000, 10_000}, footConc: 50,
	fleetN: 3000, fleetReplicas: []int{1, 2, 3},
	restoreN: 1000, restoreConc: 50,
}

var quickSizes = sizes{
	e2eN: 12, e2eWarm: 4, e2eLevels: []int{1, 4},
	tdN: 60, tdLatency: 20 * time.Millisecond, tdLevels: []int{10, 50}, tdGoalLevel: 50,
	paceN: 40, paceConc: 50, paceRPS: 33, paceBurst: 5, paceLimit: 2000, paceLatency: 20 * time.Millisecond,
	footprint: []int{20, 100}, footConc: 50,
	fleetN: 60, fleetReplicas: []int{1, 2},
	restoreN: 40, restoreConc: 50,
}

// run is the whole benchmark: it returns the report, or the first error. Everything it starts is
// stopped before it returns.
func run(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	started := time.Now()
	sz := fullSizes
	if opts.quick {
		sz = quickSizes
	}
	h := &harness{ctx: ctx, opts: opts, sz: sz, progress: progress}
	rep := &report{Command: opts.command, Date: started, Quick: opts.quick, Only: opts.only, Sizes: sz, Machine: describeMachine()}

	tmp, err := os.MkdirTemp("", "agent-connections-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	h.logf("building the worker binary")
	if h.workerBin, err = proc.BuildWorker(ctx, tmp); err != nil {
		return nil, err
	}
	h.logf("starting a temporal dev server")
	h.server, err = devserver.Start(ctx, devserver.Options{})
	if err != nil {
		return nil, fmt.Errorf("start the temporal dev server: %w", err)
	}
	defer h.server.Stop()
	h.client, err = client.Dial(client.Options{HostPort: h.server.Address, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	defer h.client.Close()

	if opts.runs(sectionE2E) {
		if rep.E2E, err = h.endToEnd(); err != nil {
			return nil, fmt.Errorf("end-to-end removals: %w", err)
		}
	}
	if opts.runs(sectionTeardown) {
		if rep.Teardown, err = h.teardowns(); err != nil {
			return nil, fmt.Errorf("teardown: %w", err)
		}
	}
	if opts.runs(sectionPace) {
		if rep.Pace, err = h.paced(); err != nil {
			return nil, fmt.Errorf("paced teardown: %w", err)
		}
	}
	if opts.runs(sectionFleet) {
		if rep.Fleet, err = h.fleetTeardowns(); err != nil {
			return nil, fmt.Errorf("fleet teardown: %w", err)
		}
	}
	if opts.runs(sectionRestore) {
		x, err := h.restoreBeside()
		if err != nil {
			return nil, fmt.Errorf("restore beside the teardown: %w", err)
		}
		rep.Restore = &x
	}
	if opts.runs(sectionFootprint) {
		if rep.Footprint, err = h.footprint(); err != nil {
			return nil, fmt.Errorf("footprint: %w", err)
		}
	}
	rep.evaluate()
	if !opts.quick && !opts.noProfile {
		for _, g := range rep.Goals {
			if g.Met || g.profile == nil {
				continue
			}
			h.logf("goal missed (%s): profiling the in-process variant", g.Name)
			p, err := h.profile(g.profile)
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("Profiling %s failed: %v", g.profile.name, err))
				continue
			}
			rep.Profiles = append(rep.Profiles, p)
		}
	}
	rep.Elapsed = time.Since(started)
	return rep, nil
}

// runConcurrent runs jobs 0..n-1 on conc goroutines and returns the wall time they took.
func (h *harness) runConcurrent(n, conc int, job func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	jobs := make(chan int)
	errc := make(chan error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				if err := job(ctx, i); err != nil {
					errc <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// removeOne starts one removal (or the no-op baseline) the way a caller does and waits for it.
func (h *harness) removeOne(ctx context.Context, taskQueue, workflowType, agentID, connectionID string) error {
	run, err := h.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       ac.RemoveConnectionWorkflowID(agentID, connectionID),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflowType, ac.RemoveConnectionInput{AgentID: agentID, ConnectionID: connectionID})
	if err != nil {
		return err
	}
	var res ac.RemoveConnectionResult
	if err := run.Get(ctx, &res); err != nil {
		return err
	}
	if res.Outcome != ac.OutcomeRemoved {
		return fmt.Errorf("removal of %s/%s: got outcome %q, want %q", agentID, connectionID, res.Outcome, ac.OutcomeRemoved)
	}
	return nil
}

// e2eVariant is one way of running a removal in section 1.
type e2eVariant struct {
	key          string
	taskQueue    string
	workflowType string
	real         bool // sends DELETEs: the control plane must be empty afterwards
	binaryPID    int  // the worker binary's process, 0 for the in-process worker
}

// e2eSample is what one batch of removals (or no-op workflows) took.
type e2eSample struct {
	n    int
	wall time.Duration
	// CPU seconds meanwhile: the dev server, this process (the client, and the in-process worker
	// when it is the one measured), and the worker binary (when it is).
	serverCPU, selfCPU, workerCPU float64
}

func (s *e2eSample) add(o e2eSample) {
	s.n += o.n
	s.wall += o.wall
	s.serverCPU += o.serverCPU
	s.selfCPU += o.selfCPU
	s.workerCPU += o.workerCPU
}

func (s e2eSample) rate() float64 { return float64(s.n) / s.wall.Seconds() }

// perMS is CPU seconds as milliseconds per workflow.
func (s e2eSample) perMS(cpu float64) float64 { return cpu * 1000 / float64(s.n) }

// e2eRun measures n removals of v at concurrency conc. workerPID is the worker binary's process
// (0 for the in-process worker).
func (h *harness) e2eRun(cp *controlPlane, v e2eVariant, n, conc, workerPID int) (e2eSample, error) {
	agent := h.name(fmt.Sprintf("e2e-%s-c%d", v.key, conc))
	ids := connectionIDs(n)
	cp.em.Seed(agent, ids...)
	server0, self0 := processCPU(h.server.PID()), selfCPU()
	var worker0 float64
	if workerPID != 0 {
		worker0 = processCPU(workerPID)
	}
	d, err := h.runConcurrent(n, conc, func(ctx context.Context, i int) error {
		return h.removeOne(ctx, v.taskQueue, v.workflowType, agent, ids[i])
	})
	if err != nil {
		return e2eSample{}, err
	}
	s := e2eSample{n: n, wall: d, serverCPU: processCPU(h.server.PID()) - server0, selfCPU: selfCPU() - self0}
	if workerPID != 0 {
		s.workerCPU = processCPU(workerPID) - worker0
	}
	if v.real {
		if left := len(cp.em.Connections(agent)); left != 0 {
			return e2eSample{}, fmt.Errorf("%s: %w: %d of %d", v.key, errIncomplete, left, n)
		}
	}
	return s, nil
}

// startBothWorkers starts an emulated control plane with o, and against it the in-process worker
// on tq+"-inproc" and the worker binary on tq+"-binary". stop stops them all, the binary first.
func (h *harness) startBothWorkers(o emulator.Options, tq string) (cp *controlPlane, wp *workerProc, stop func(), err error) {
	cp = newControlPlane(o)
	ip, err := h.startInProcess(tq+"-inproc", cp.srv.URL)
	if err != nil {
		cp.close()
		return nil, nil, nil, err
	}
	wp, err = h.startWorker(tq+"-binary", cp.srv.URL)
	if err != nil {
		ip.stop()
		cp.close()
		return nil, nil, nil, err
	}
	return cp, wp, func() {
		wp.p.Stop(10 * time.Second)
		ip.stop()
		cp.close()
	}, nil
}

func (h *harness) endToEnd() ([]e2eRow, error) {
	rounds := 2
	if h.opts.quick {
		rounds = 1
	}
	h.logf("1. end-to-end removals (levels %v, %d each in %d interleaved rounds)", h.sz.e2eLevels, h.sz.e2eN, rounds)
	tq := h.name("bench-e2e")
	cp, wp, stop, err := h.startBothWorkers(emulator.Options{}, tq)
	if err != nil {
		return nil, err
	}
	defer stop()
	variants := []e2eVariant{
		{key: "noop", taskQueue: tq + "-inproc", workflowType: noopWorkflowName},
		{key: "inproc", taskQueue: tq + "-inproc", workflowType: ac.RemoveConnectionWorkflowType, real: true},
		{key: "binary", taskQueue: tq + "-binary", workflowType: ac.RemoveConnectionWorkflowType, real: true, binaryPID: wp.p.PID()},
	}
	for _, v := range variants {
		if _, err := h.e2eRun(cp, v, h.sz.e2eWarm, min(10, h.sz.e2eWarm), v.binaryPID); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", v.key, err)
		}
	}
	var rows []e2eRow
	for _, conc := range h.sz.e2eLevels {
		// Each variant runs in every round, in reverse order every other round, so that neither
		// goes first every time.
		samples := make([]e2eSample, len(variants))
		for r := range rounds {
			for k := range variants {
				i := k
				if r%2 == 1 {
					i = len(variants) - 1 - k
				}
				s, err := h.e2eRun(cp, variants[i], h.sz.e2eN/rounds, conc, variants[i].binaryPID)
				if err != nil {
					return nil, err
				}
				samples[i].add(s)
			}
		}
		noop, inproc, binary := samples[0], samples[1], samples[2]
		row := e2eRow{
			Concurrency: conc, N: noop.n,
			Baseline: noop.rate(), InProcess: inproc.rate(), Binary: binary.rate(),
			ServerMSBaseline: noop.perMS(noop.serverCPU), ServerMSInProcess: inproc.perMS(inproc.serverCPU), ServerMSBinary: binary.perMS(binary.serverCPU),
			SelfMSBaseline: noop.perMS(noop.selfCPU), SelfMSInProcess: inproc.perMS(inproc.selfCPU), SelfMSBinary: binary.perMS(binary.selfCPU),
			WorkerMSBinary: binary.perMS(binary.workerCPU),
		}
		row.Ratio = row.InProcess / row.Baseline
		row.BinaryRatio = row.Binary / row.Baseline
		h.logf("   concurrency %d: no-op %.1f/s, removal in-process %.1f/s (%.2f), binary %.1f/s (%.2f)",
			conc, row.Baseline, row.InProcess, row.Ratio, row.Binary, row.BinaryRatio)
		rows = append(rows, row)
	}
	return rows, nil
}

// teardownOnce removes ids of a freshly seeded agent with the batched teardown or the naive
// baseline, and returns the wall time from start to result.
func (h *harness) teardownOnce(cp *controlPlane, taskQueue string, naive bool, agent string, ids []string, conc int) (time.Duration, error) {
	cp.em.Seed(agent, ids...)
	start := time.Now()
	var err error
	if naive {
		var run client.WorkflowRun
		run, err = h.client.ExecuteWorkflow(h.ctx, client.StartWorkflowOptions{ID: "bench-naive/" + agent, TaskQueue: taskQueue},
			naiveWorkflowName, agent, ids, conc)
		if err == nil {
			var removed int
			err = run.Get(h.ctx, &removed)
			if err == nil && removed != len(ids) {
				err = fmt.Errorf("naive teardown removed %d of %d", removed, len(ids))
			}
		}
	} else {
		var run client.WorkflowRun
		run, err = h.client.ExecuteWorkflow(h.ctx, client.StartWorkflowOptions{ID: ac.RemoveAgentConnectionsWorkflowID(agent), TaskQueue: taskQueue},
			ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: agent, ConnectionIDs: ids, Concurrency: conc})
		if err == nil {
			var res ac.RemoveAgentConnectionsResult
			err = run.Get(h.ctx, &res)
			if err == nil && res.Removed != len(ids) {
				err = fmt.Errorf("teardown: removed %d of %d (failed %d, remained %d, skipped %d)", res.Removed, len(ids), res.Failed, res.Remained, res.Skipped)
			}
		}
	}
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if left := len(cp.em.Connections(agent)); left != 0 {
		return 0, fmt.Errorf("%w: %d of %d", errIncomplete, left, len(ids))
	}
	return elapsed, nil
}

func (h *harness) teardowns() ([]teardownRow, error) {
	h.logf("2a. teardown of %d connections at %s a request (levels %v)", h.sz.tdN, h.sz.tdLatency, h.sz.tdLevels)
	tq := h.name("bench-teardown")
	cp, _, stop, err := h.startBothWorkers(emulator.Options{Latency: h.sz.tdLatency}, tq)
	if err != nil {
		return nil, err
	}
	defer stop()
	ids := connectionIDs(h.sz.tdN)
	// Warm both workers up (workflow caches, connections) on a small teardown each.
	for _, q := range []string{tq + "-inproc", tq + "-binary"} {
		if _, err := h.teardownOnce(cp, q, false, h.name("td-warm"), connectionIDs(20), 10); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	if _, err := h.teardownOnce(cp, tq+"-inproc", true, h.name("td-warm"), connectionIDs(20), 10); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var rows []teardownRow
	rate := func(d time.Duration) float64 { return float64(len(ids)) / d.Seconds() }
	for _, conc := range h.sz.tdLevels {
		row := teardownRow{Concurrency: conc, N: len(ids)}
		// once runs one teardown and returns connections/s and the API requests it sent.
		once := func(queue string, naive bool, what string) (float64, int, error) {
			req0 := cp.em.Stats().Requests
			d, err := h.teardownOnce(cp, queue, naive, h.name(fmt.Sprintf("td-%s-c%d", what, conc)), ids, conc)
			if err != nil {
				return 0, 0, fmt.Errorf("%s, concurrency %d: %w", what, conc, err)
			}
			return rate(d), cp.em.Stats().Requests - req0, nil
		}
		var err error
		if row.Naive, row.NaiveRequests, err = once(tq+"-inproc", true, "naive"); err != nil {
			return nil, err
		}
		if row.Batched, row.BatchedRequests, err = once(tq+"-inproc", false, "batched"); err != nil {
			return nil, err
		}
		if row.Binary, row.BinaryRequests, err = once(tq+"-binary", false, "binary"); err != nil {
			return nil, err
		}
		row.Ratio = row.Batched / row.Naive
		row.BinaryRatio = row.Binary / row.Naive
		// The floor the control plane's latency sets: conc requests in flight, one latency each.
		row.LatencyBound = float64(conc) / h.sz.tdLatency.Seconds()
		h.logf("   concurrency %d: naive %.0f/s, batched %.0f/s (%.1fx), binary %.0f/s (%.1fx)",
			conc, row.Naive, row.Batched, row.Ratio, row.Binary, row.BinaryRatio)
		rows = append(rows, row)
	}
	return rows, nil
}

func (h *harness) paced() (paceResult, error) {
	sz := h.sz
	res := paceResult{N: sz.paceN, Concurrency: sz.paceConc, RPS: sz.paceRPS, Burst: sz.paceBurst, LimitPerMinute: sz.paceLimit, Latency: sz.paceLatency}
	h.logf("2b. paced teardown of %d connections: emulator %d/min, worker %d/s burst %d", sz.paceN, sz.paceLimit, sz.paceRPS, sz.paceBurst)
	cp := newControlPlane(emulator.Options{Latency: sz.paceLatency, RateLimitPerMinute: sz.paceLimit, LogLimit: 2*sz.paceN + 100})
	defer cp.close()
	tq := h.name("bench-paced")
	wp, err := h.startWorker(tq, cp.srv.URL,
		fmt.Sprintf("LANGSMITH_REQUESTS_PER_SECOND=%d", sz.paceRPS), fmt.Sprintf("LANGSMITH_REQUEST_BURST=%d", sz.paceBurst))
	if err != nil {
		return res, err
	}
	defer wp.p.Stop(10 * time.Second)
	d, err := h.teardownOnce(cp, tq, false, h.name("paced"), connectionIDs(sz.paceN), sz.paceConc)
	if err != nil {
		return res, err
	}
	res.Duration = d
	st := cp.em.Stats()
	res.Status429 = st.Status429
	res.Removed = st.Removed
	log := cp.em.Log()
	res.Requests = len(log)
	if len(log) < 2 {
		return res, fmt.Errorf("got %d requests in the emulator's log, want at least 2", len(log))
	}
	times := make([]time.Time, len(log))
	for i, e := range log {
		times[i] = e.Time
	}
	span := times[len(times)-1].Sub(times[0])
	res.Span = span
	res.PerMinute = float64(len(times)-1) / span.Minutes()
	res.Percent = 100 * res.PerMinute / float64(sz.paceLimit)
	res.PeakPerSecond = peakInWindow(times, time.Second)
	res.BucketDrawn = bucketDrawn(times, float64(sz.paceLimit))
	h.logf("   %d requests in %s: %.0f/min (%.1f%% of %d), %d answered 429, peak %d in one second, %.1f of the emulator's initial tokens drawn",
		res.Requests, span.Round(time.Millisecond), res.PerMinute, res.Percent, sz.paceLimit, res.Status429, res.PeakPerSecond, res.BucketDrawn)
	return res, nil
}

// peakInWindow is the largest number of times (sorted) within any window of length w.
func peakInWindow(times []time.Time, w time.Duration) int {
	peak, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= w {
			lo++
		}
		peak = max(peak, hi-lo+1)
	}
	return peak
}

// bucketDrawn replays the emulator's token bucket (perMinute tokens, refilled at perMinute a
// minute, full at the first request) over the request times and returns how far below full it
// ever went: how much of its initial burst the requests needed. A client that holds the rate by
// itself draws about its own burst.
func bucketDrawn(times []time.Time, perMinute float64) float64 {
	perSecond := perMinute / 60
	tokens, lowest := perMinute, perMinute
	last := times[0]
	for _, t := range times {
		tokens = min(perMinute, tokens+t.Sub(last).Seconds()*perSecond)
		last = t
		tokens--
		lowest = min(lowest, tokens)
	}
	return perMinute - lowest
}

func (h *harness) footprint() ([]footprintRow, error) {
	h.logf("3. worker footprint (teardowns of %v connections, a fresh worker each)", h.sz.footprint)
	var rows []footprintRow
	for _, n := range append([]int{0}, h.sz.footprint...) {
		row, err := h.footprintRun(n)
		if err != nil {
			return nil, fmt.Errorf("%d connections: %w", n, err)
		}
		h.logf("   %d connections: %s, peak RSS %.1f MiB, CPU %.2f s (dev server %.2f s)",
			n, row.Elapsed.Round(time.Millisecond), float64(row.PeakRSSKiB)/1024, row.CPUSeconds, row.ServerCPUSeconds)
		rows = append(rows, row)
	}
	return rows, nil
}

// footprintRun runs a teardown of n connections (none: the worker starts, idles a second and
// stops) on a fresh worker binary and reads what the worker used.
func (h *harness) footprintRun(n int) (footprintRow, error) {
	row := footprintRow{Connections: n}
	cp := newControlPlane(emulator.Options{})
	defer cp.close()
	tq := h.name(fmt.Sprintf("bench-footprint-%d", n))
	wp, err := h.startWorker(tq, cp.srv.URL)
	if err != nil {
		return row, err
	}
	defer wp.p.Stop(10 * time.Second)
	cpu0 := processCPU(h.server.PID())
	if n == 0 {
		select {
		case <-time.After(time.Second):
		case <-h.ctx.Done():
			return row, h.ctx.Err()
		}
	} else {
		if row.Elapsed, err = h.teardownOnce(cp, tq, false, h.name("footprint"), connectionIDs(n), h.sz.footConc); err != nil {
			return row, err
		}
	}
	row.ServerCPUSeconds = processCPU(h.server.PID()) - cpu0
	u, err := wp.stop()
	if err != nil {
		return row, err
	}
	row.PeakRSSKiB, row.CPUSeconds = u.peakRSSKiB, u.cpuSeconds
	return row, nil
}

// profileTarget says which in-process measurement to repeat under the CPU profiler.
type profileTarget struct {
	name        string
	teardown    bool
	concurrency int
}

// profile repeats an in-process measurement under runtime/pprof and summarises the top entries
// with `go tool pprof -top`. The profile covers this process (the in-process worker and the
// client), not the dev server, whose CPU time is reported next to it.
func (h *harness) profile(t *profileTarget) (profileResult, error) {
	res := profileResult{Name: t.name}
	if err := os.MkdirAll(h.opts.profileDir, 0o755); err != nil {
		return res, err
	}
	res.Path = filepath.Join(h.opts.profileDir, t.name+".pprof")
	f, err := os.Create(res.Path)
	if err != nil {
		return res, err
	}
	defer f.Close()

	cp := newControlPlane(emulator.Options{})
	defer cp.close()
	tq := h.name("bench-profile")
	ip, err := h.startInProcess(tq, cp.srv.URL)
	if err != nil {
		return res, err
	}
	defer ip.stop()
	measure := func() (string, error) {
		if t.teardown {
			cp.em.SetLatency(h.sz.tdLatency)
			d, err := h.teardownOnce(cp, tq, false, h.name("profile-td"), connectionIDs(h.sz.tdN), t.concurrency)
			return fmt.Sprintf("%.0f connections/s", float64(h.sz.tdN)/d.Seconds()), err
		}
		smp, err := h.e2eRun(cp, e2eVariant{key: "profile", taskQueue: tq, workflowType: ac.RemoveConnectionWorkflowType, real: true}, h.sz.e2eN, t.concurrency, 0)
		return fmt.Sprintf("%.1f removals/s", smp.rate()), err
	}
	self0, server0 := selfCPU(), processCPU(h.server.PID())
	start := time.Now()
	if err := pprof.StartCPUProfile(f); err != nil {
		return res, err
	}
	res.Figure, err = measure()
	pprof.StopCPUProfile()
	if err != nil {
		return res, err
	}
	res.Wall = time.Since(start)
	res.SelfCPU = selfCPU() - self0
	res.ServerCPU = processCPU(h.server.PID()) - server0
	out, err := exec.CommandContext(h.ctx, "go", "tool", "pprof", "-top", "-nodecount=15", res.Path).CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	res.Top = strings.TrimSpace(string(out))
	return res, nil
}
