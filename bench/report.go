package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentops/agentconnections/internal/devserver"
)

// Markers of the activity hot-path section, which `go test -bench ./activities/` fills; a rewrite
// of the report keeps what is between them.
const (
	hotPathStart = "<!-- hot path -->"
	hotPathEnd   = "<!-- /hot path -->"
)

type e2eRow struct {
	Concurrency, N      int
	Baseline, InProcess float64 // per second, in-process worker
	Binary              float64 // per second, worker binary
	Ratio, BinaryRatio  float64
	ServerMSBaseline    float64 // dev server CPU ms per workflow
	ServerMSInProcess   float64
	ServerMSBinary      float64
	// this process's CPU ms per workflow: the client, plus the in-process worker when it ran them
	SelfMSBaseline, SelfMSInProcess, SelfMSBinary float64
	WorkerMSBinary                                float64 // the worker binary's CPU ms per removal
}

type teardownRow struct {
	Concurrency, N     int
	Naive, Batched     float64 // connections/s, in-process worker
	Binary             float64 // connections/s, worker binary
	Ratio, BinaryRatio float64
	LatencyBound       float64 // concurrency / latency
	// API requests each run sent (DELETEs, and the batched teardown's closing list)
	NaiveRequests, BatchedRequests, BinaryRequests int
}

type paceResult struct {
	N, Concurrency, RPS, Burst, LimitPerMinute int
	Latency, Duration, Span                    time.Duration
	Requests, Removed, Status429               int
	PerMinute, Percent                         float64
	PeakPerSecond                              int
	BucketDrawn                                float64
}

type footprintRow struct {
	Connections      int
	Elapsed          time.Duration
	PeakRSSKiB       int64
	CPUSeconds       float64
	ServerCPUSeconds float64
}

type profileResult struct {
	Name, Path, Figure, Top string
	Wall                    time.Duration
	SelfCPU, ServerCPU      float64
}

type goal struct {
	Name, Target, Figure string
	Met                  bool
	Note                 string
	profile              *profileTarget
}

type machine struct {
	CPUs                     int
	CPUModel, Memory, Go, OS string
	TemporalCLI              string
	GOMAXPROCS               int
}

type report struct {
	Command   string
	Date      time.Time
	Quick     bool
	Only      []string // the sections run (--only); empty when all ran
	Sizes     sizes
	Machine   machine
	E2E       []e2eRow
	Teardown  []teardownRow
	Pace      paceResult
	Fleet     []fleetRow
	Restore   *restoreResult
	Footprint []footprintRow
	Goals     []goal
	Profiles  []profileResult
	Notes     []string
	Elapsed   time.Duration
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), CPUModel: "unknown", Memory: "unknown"}
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.CPUs = n
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if kib, err := strconv.ParseFloat(f[0], 64); err == nil {
						m.Memory = fmt.Sprintf("%.1f GiB", kib/(1<<20))
					}
				}
			}
		}
	}
	m.OS = runtime.GOOS + "/" + runtime.GOARCH
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", kernel " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS += ", " + strings.Trim(v, `"`)
			}
		}
	}
	if cli, err := devserver.CLIPath(); err == nil {
		if out, err := exec.Command(cli, "--version").Output(); err == nil {
			m.TemporalCLI = strings.TrimSpace(string(out))
		}
	}
	return m
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// evaluate sets the goals from the figures.
func (r *report) evaluate() {
	r.Goals = nil
	if len(r.E2E) > 0 {
		worst := r.E2E[0]
		for _, row := range r.E2E[1:] {
			if row.Ratio < worst.Ratio {
				worst = row
			}
		}
		g := goal{
			Name:   "1. end-to-end removals/s vs no-op workflow (in-process, every concurrency)",
			Target: "≥ 0.9",
			Figure: fmt.Sprintf("lowest %.2f (concurrency %d)", worst.Ratio, worst.Concurrency),
			Met:    finite(worst.Ratio) && worst.Ratio >= 0.9,
		}
		if !g.Met {
			g.profile = &profileTarget{name: fmt.Sprintf("e2e-removal-c%d", worst.Concurrency), concurrency: worst.Concurrency}
		}
		r.Goals = append(r.Goals, g)
	}
	for _, row := range r.Teardown {
		if row.Concurrency != r.Sizes.tdGoalLevel {
			continue
		}
		g := goal{
			Name:   fmt.Sprintf("2a. batched teardown vs naive at concurrency %d (in-process)", row.Concurrency),
			Target: "≥ 5x",
			Figure: fmt.Sprintf("%.1fx", row.Ratio),
			Met:    finite(row.Ratio) && row.Ratio >= 5,
		}
		if !g.Met {
			g.profile = &profileTarget{name: fmt.Sprintf("teardown-batched-c%d", row.Concurrency), teardown: true, concurrency: row.Concurrency}
		}
		r.Goals = append(r.Goals, g)
	}
	p := r.Pace
	if p.Requests > 0 {
		r.Goals = append(r.Goals,
			goal{
				Name:   fmt.Sprintf("2b. sustained requests/min vs the API's %d (worker binary)", p.LimitPerMinute),
				Target: "≥ 90%",
				Figure: fmt.Sprintf("%.0f/min = %.1f%%", p.PerMinute, p.Percent),
				Met:    p.Percent >= 90,
			},
			goal{
				Name:   "2b. 429 answers from the emulator",
				Target: "0",
				Figure: strconv.Itoa(p.Status429),
				Met:    p.Status429 == 0,
			},
			goal{
				Name:   "2b. the worker's own limiter holds the rate (emulator tokens drawn below full)",
				Target: fmt.Sprintf("≤ %d (2 × worker burst %d), of %d", 2*p.Burst, p.Burst, p.LimitPerMinute),
				Figure: fmt.Sprintf("%.1f", p.BucketDrawn),
				Met:    p.BucketDrawn <= float64(2*p.Burst),
			})
	}
	r.Goals = append(r.Goals, r.fleetGoals()...)
	r.Goals = append(r.Goals, r.restoreGoals()...)
}

// printf appends formatted text to the report being written.
type printf func(format string, args ...any)

// markdown renders the report as docs/benchmarks.md, one section after another.
func (r *report) markdown() string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	r.mdIntro(w)
	r.mdMachine(w)
	r.mdGoals(w)
	if r.ran(sectionE2E) {
		r.mdEndToEnd(w)
	}
	if r.ran(sectionTeardown) {
		r.mdTeardown(w)
	}
	if r.ran(sectionPace) {
		r.mdPace(w)
	}
	r.mdFleet(w)
	r.mdRestore(w)
	if r.ran(sectionFootprint) {
		r.mdFootprint(w)
	}
	if len(r.Only) == 0 {
		mdHotPath(w) // a partial run is printed, never written over the file that holds it
	}
	r.mdProfiles(w)
	r.mdNotes(w)
	return b.String()
}

// ran reports whether the run included section.
func (r *report) ran(section string) bool {
	return len(r.Only) == 0 || slices.Contains(r.Only, section)
}

// mdIntro writes the title and how the figures were measured.
func (r *report) mdIntro(w printf) {
	w("# Benchmarks\n\n")
	if r.Quick {
		w("**Quick smoke run (`--quick`): sizes too small for the figures or goals to mean anything.**\n\n")
	}
	if len(r.Only) > 0 {
		w("**Partial run (`--only %s`): only those sections and their goals; the others were not measured.**\n\n", strings.Join(r.Only, ","))
	}
	w("Generated by `%s` on %s; the whole run took %s. Every figure is compared with a baseline measured in the\n", r.Command, r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	w("same run, on the same Temporal dev server (`bin/temporal server start-dev`, in-memory SQLite) and the same\n")
	w("in-process control plane emulator (`emulator/`). Regenerate with `make bench`; figures on another machine differ,\n")
	w("the ratios much less.\n\n")
	w("Where a figure is marked *in-process*, the worker runs inside the benchmark process (`worker.New` with the real\n")
	w("workflows and activities, 100 activity slots, a 5 s request timeout, no metrics or tracing): the baselines (a no-op\n")
	w("workflow, a naive teardown) are workflows the worker binary does not register, so the ratios compare like with like\n")
	w("there. *Worker binary* figures come from `go build ./worker` run as its own process (`LOG_LEVEL=warn`, metrics on,\n")
	w("the environment the integration tests use).\n\n")
}

// mdMachine writes the table of the machine the run was on.
func (r *report) mdMachine(w printf) {
	m := r.Machine
	w("## Machine\n\n| | |\n| --- | --- |\n")
	w("| CPUs (`nproc`) | %d (GOMAXPROCS %d) |\n| CPU | %s |\n| memory | %s |\n| Go | %s |\n| OS | %s |\n| Temporal | %s; Go SDK v1.51.0 |\n\n",
		m.CPUs, m.GOMAXPROCS, m.CPUModel, m.Memory, m.Go, m.OS, m.TemporalCLI)
}

// mdGoals writes the table of goals, met or not.
func (r *report) mdGoals(w printf) {
	w("## Goals\n\n| goal | target | measured | met |\n| --- | --- | --- | --- |\n")
	for _, g := range r.Goals {
		w("| %s | %s | %s | %s |\n", g.Name, g.Target, g.Figure, yesNo(g.Met))
	}
	w("\n")
}

// mdEndToEnd writes section 1, end-to-end removals/s against the no-op baseline.
func (r *report) mdEndToEnd(w printf) {
	sz := r.Sizes
	w("## 1. End-to-end removals/s\n\n")
	w("`RemoveConnectionWorkflow` (type `%s`, IDs from `RemoveConnectionWorkflowID`) started and awaited by N client\n", "RemoveConnectionWorkflow")
	w("goroutines, %d removals per level, emulator latency 0, pacing off (`LANGSMITH_REQUESTS_PER_SECOND=0`), versus a\n", sz.e2eN)
	w("no-op workflow that runs one no-op activity with the same options, input and result, on the same in-process worker.\n")
	w("Each variant had %d warm-up removals first; at each level the variants take turns (two rounds of half the removals,\n", sz.e2eWarm)
	w("the second in reverse order; one round in a quick run). CPU columns are CPU milliseconds per workflow during the level:\n")
	w("the dev server's; this process's (the client, plus the in-process worker when it ran them); the worker binary's.\n\n")
	w("| concurrency | no-op baseline/s (in-process) | removals/s (in-process) | ratio | removals/s (worker binary) | binary / baseline | dev server CPU ms: no-op / in-process / binary | bench process CPU ms: no-op / in-process / binary (client only) | worker binary CPU ms |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range r.E2E {
		w("| %d | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f |\n", row.Concurrency, row.Baseline, row.InProcess, row.Ratio,
			row.Binary, row.BinaryRatio, row.ServerMSBaseline, row.ServerMSInProcess, row.ServerMSBinary,
			row.SelfMSBaseline, row.SelfMSInProcess, row.SelfMSBinary, row.WorkerMSBinary)
	}
	w("\nGoal: ratio ≥ 0.9 at every concurrency: %s.\n\n", r.goalWord("1."))
}

// mdTeardown writes section 2a, the batched teardown against one activity per connection.
func (r *report) mdTeardown(w printf) {
	sz := r.Sizes
	w("## 2a. Teardown: batches versus one activity per connection\n\n")
	w("%d connections given by ID, emulator latency %s, pacing off. Naive baseline: one workflow running one plain\n", sz.tdN, sz.tdLatency)
	w("`RemoveConnection` activity per connection, at most `concurrency` at once. Batched: `RemoveAgentConnectionsWorkflow`\n")
	w("with that `concurrency` (wall time from start to result, its closing re-list included). Latency bound: `concurrency /\n")
	w("latency`, the most any shape could do against this emulator.\n\n")
	w("| concurrency | naive connections/s (in-process) | batched connections/s (in-process) | ratio | batched (worker binary) | binary / naive | latency bound | API requests: naive / batched / binary |\n")
	w("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range r.Teardown {
		w("| %d | %.0f | %.0f | %.1fx | %.0f | %.1fx | %.0f | %d / %d / %d |\n", row.Concurrency, row.Naive, row.Batched, row.Ratio, row.Binary,
			row.BinaryRatio, row.LatencyBound, row.NaiveRequests, row.BatchedRequests, row.BinaryRequests)
	}
	w("\nGoal: ratio ≥ 5x at concurrency %d: %s.\n\n", sz.tdGoalLevel, r.goalWord("2a."))
}

// mdPace writes section 2b, the teardown held to the API's rate limit.
func (r *report) mdPace(w printf) {
	p := r.Pace
	w("## 2b. Teardown under the API's rate limit (worker binary)\n\n")
	w("Emulator in rate-limit mode (`RateLimitPerMinute: %d`, a token bucket per key that starts full with %d tokens),\n", p.LimitPerMinute, p.LimitPerMinute)
	w("latency %s; worker binary with `LANGSMITH_REQUESTS_PER_SECOND=%d`, `LANGSMITH_REQUEST_BURST=%d`; teardown of %d\n", p.Latency, p.RPS, p.Burst, p.N)
	w("connections at concurrency %d. Rates are from the emulator's request log (every API request: the DELETEs and the\n", p.Concurrency)
	w("closing list), first to last request.\n\n")
	w("| | |\n| --- | --- |\n")
	w("| teardown wall time | %s |\n", p.Duration.Round(time.Millisecond))
	w("| requests (first to last) | %d in %s |\n", p.Requests, p.Span.Round(time.Millisecond))
	w("| connections removed | %d |\n", p.Removed)
	w("| sustained rate | %.0f requests/min = **%.1f%%** of %d |\n", p.PerMinute, p.Percent, p.LimitPerMinute)
	w("| 429 answers | **%d** |\n", p.Status429)
	w("| most requests in any one second | %d (worker: %d/s, burst %d) |\n", p.PeakPerSecond, p.RPS, p.Burst)
	w("| emulator tokens drawn below full (replayed bucket) | %.1f of %d |\n\n", p.BucketDrawn, p.LimitPerMinute)
	w("The emulator's bucket starts full, so it would have let a client burst %d requests before any 429; replaying it\n", p.LimitPerMinute)
	w("over the logged request times shows the teardown drew only %.1f tokens below full, about the worker's own burst of %d:\n", p.BucketDrawn, p.Burst)
	w("the worker's limiter, not the emulator's initial burst, held the rate. Goals: ≥ 90%% of %d/min: %s; no 429: %s;\n", p.LimitPerMinute, r.goalWord("2b. sustained"), r.goalWord("2b. 429"))
	w("initial burst not needed: %s.", r.goalWord("2b. the worker"))
	if p.Span < 30*time.Second {
		w(" (The requests spanned %s, shorter than the 30 s a full run is sized for.)", p.Span.Round(time.Millisecond))
	}
	w("\n\n")
}

// mdFootprint writes section 3, the worker binary's memory and CPU by teardown size.
func (r *report) mdFootprint(w printf) {
	w("## 3. Worker footprint (worker binary)\n\n")
	w("A fresh worker binary per row, pacing off, emulator latency 0, teardown at concurrency %d of connections given by ID.\n", r.Sizes.footConc)
	w("Peak RSS is `VmHWM` from `/proc/<pid>/status` read just before the worker is stopped; CPU is the worker's user + system\n")
	w("time after it exited (its wait4 rusage, as `ProcessState.UserTime()+SystemTime()` reports it), start-up and stop\n")
	w("included. Row 0 is a worker that starts, idles one second and stops. Dev server CPU is its CPU time during the teardown.\n\n")
	w("| connections | teardown wall time | connections/s | peak RSS (MiB) | worker CPU (s) | worker CPU ms per connection, above idle | dev server CPU (s) |\n")
	w("| --- | --- | --- | --- | --- | --- | --- |\n")
	var idle footprintRow
	for i, row := range r.Footprint {
		if i == 0 && row.Connections == 0 {
			idle = row
			w("| 0 (idle) | | | %.1f | %.2f | | %.2f |\n", float64(row.PeakRSSKiB)/1024, row.CPUSeconds, row.ServerCPUSeconds)
			continue
		}
		perConn := (row.CPUSeconds - idle.CPUSeconds) * 1000 / float64(row.Connections)
		w("| %d | %s | %.0f | %.1f | %.2f | %.2f | %.2f |\n", row.Connections, row.Elapsed.Round(time.Millisecond),
			float64(row.Connections)/row.Elapsed.Seconds(), float64(row.PeakRSSKiB)/1024, row.CPUSeconds, perConn, row.ServerCPUSeconds)
	}
	w("\n%s\n\n", r.growth())
}

// mdHotPath writes the empty activity hot-path section that `go test -bench ./activities/` fills.
func mdHotPath(w printf) {
	w("## Activity hot path\n\n")
	w("%s\nSee `go test -run XXX -bench . -benchmem -benchtime 2000x ./activities/` (section written separately).\n%s\n\n", hotPathStart, hotPathEnd)
}

// mdProfiles writes the CPU profiles taken of missed goals, if any.
func (r *report) mdProfiles(w printf) {
	if len(r.Profiles) == 0 {
		return
	}
	w("## CPU profiles of missed goals\n\n")
	for _, pr := range r.Profiles {
		w("`%s` (`%s`): the in-process measurement repeated under `runtime/pprof` (%s, %s wall). The profile covers\n", pr.Name, pr.Path, pr.Figure, pr.Wall.Round(time.Millisecond))
		w("the benchmark process (in-process worker and client): %.2f CPU s in it, %.2f CPU s in the dev server meanwhile.\n", pr.SelfCPU, pr.ServerCPU)
		w("Read it with `go tool pprof -top %s`. Top entries:\n\n```\n%s\n```\n\n", pr.Path, topEntries(pr.Top, 22))
	}
}

// mdNotes writes the notes the figures call for and those the run added, if any.
func (r *report) mdNotes(w printf) {
	notes := append(r.autoNotes(), r.Notes...)
	if len(notes) == 0 {
		return
	}
	w("## Notes\n\n")
	for _, n := range notes {
		w("- %s\n", n)
	}
	w("\n")
}

func (r *report) goalWord(prefix string) string {
	for _, g := range r.Goals {
		if strings.HasPrefix(g.Name, prefix) {
			if g.Met {
				return "**met**"
			}
			return "**missed**"
		}
	}
	return "not measured"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// topEntries keeps the header and the first lines of `go tool pprof -top`.
func topEntries(top string, n int) string {
	lines := strings.Split(top, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// growth describes how the footprint grows with the teardown's size.
func (r *report) growth() string {
	var rows []footprintRow
	var idle *footprintRow
	for i, row := range r.Footprint {
		if row.Connections == 0 {
			idle = &r.Footprint[i]
			continue
		}
		rows = append(rows, row)
	}
	if len(rows) < 2 || idle == nil {
		return ""
	}
	first, last := rows[0], rows[len(rows)-1]
	mib := func(k int64) float64 { return float64(k) / 1024 }
	s := fmt.Sprintf("Growth: peak RSS %.1f MiB idle, %.1f MiB at %d connections, %.1f MiB at %d (%.1fx for %.0fx the connections;",
		mib(idle.PeakRSSKiB), mib(first.PeakRSSKiB), first.Connections, mib(last.PeakRSSKiB), last.Connections,
		mib(last.PeakRSSKiB)/mib(first.PeakRSSKiB), float64(last.Connections)/float64(first.Connections))
	s += fmt.Sprintf(" %.1f KiB per connection above idle at %d).", float64(last.PeakRSSKiB-idle.PeakRSSKiB)/float64(last.Connections), last.Connections)
	s += fmt.Sprintf(" Worker CPU %.2f s at %d, %.2f s at %d: %.2f ms per connection above idle at the largest size",
		first.CPUSeconds, first.Connections, last.CPUSeconds, last.Connections, (last.CPUSeconds-idle.CPUSeconds)*1000/float64(last.Connections))
	s += fmt.Sprintf(", against %.2f ms of dev server CPU per connection.", last.ServerCPUSeconds*1000/float64(last.Connections))
	return s
}

// autoNotes are short, honest remarks the figures call for.
func (r *report) autoNotes() []string {
	var notes []string
	for _, g := range r.Goals {
		if !g.Met {
			notes = append(notes, fmt.Sprintf("Missed: %s (target %s, measured %s).%s", g.Name, g.Target, g.Figure, r.missNote(g)))
		}
	}
	for _, row := range r.Teardown {
		lo, hi := min(row.Batched, row.Binary), max(row.Batched, row.Binary)
		if hi > 2*lo {
			notes = append(notes, fmt.Sprintf("Teardown at concurrency %d: the same batched workflow ran at %.0f connections/s in-process and %.0f on the"+
				" worker binary (%d and %d API requests for %d connections). A gap this wide is not the worker's shape but one run"+
				" stalling; this run does not show why.", row.Concurrency, row.Batched, row.Binary, row.BatchedRequests, row.BinaryRequests, row.N))
		}
	}
	return notes
}

func (r *report) missNote(g goal) string {
	switch {
	case strings.HasPrefix(g.Name, "1."):
		if len(r.E2E) == 0 {
			return ""
		}
		row := r.E2E[0]
		for _, e := range r.E2E {
			if e.Ratio < row.Ratio {
				row = e
			}
		}
		s := fmt.Sprintf(" A removal does more than the no-op: a local activity first (`CheckTeardownClaim`, one DescribeWorkflow of"+
			" the agent's teardown), then an activity that sends a real DELETE. At concurrency %d the dev server used %.1f CPU ms per"+
			" removal against %.1f per no-op workflow, and this process %.1f against %.1f.",
			row.Concurrency, row.ServerMSInProcess, row.ServerMSBaseline, row.SelfMSInProcess, row.SelfMSBaseline)
		if row.ServerMSInProcess <= 1.15*row.ServerMSBaseline {
			s += fmt.Sprintf(" Per workflow that is within 15%%, so most of the gap is run-to-run variance of a dev server that is CPU-bound"+
				" on %d cores it shares with the worker and the client (about 30 CPU ms per workflow either way)", r.Machine.CPUs)
		} else {
			s += " The extra dev-server work per removal is what the ratio measures"
		}
		for _, p := range r.Profiles {
			if g.profile != nil && p.Name == g.profile.name {
				s += fmt.Sprintf("; the profiled repeat of the same level reached %s against the baseline's %.1f/s", p.Figure, row.Baseline)
			}
		}
		return s + "."
	case strings.HasPrefix(g.Name, "2a."):
		return " See the profile below."
	}
	return ""
}

// writeReport writes md to path, keeping the hot-path section an earlier file had filled in.
func writeReport(path, md string) error {
	if old, err := os.ReadFile(path); err == nil {
		if kept, ok := between(string(old), hotPathStart, hotPathEnd); ok {
			if _, fresh, ok := cutAround(md, hotPathStart, hotPathEnd); ok {
				md = fresh[0] + hotPathStart + kept + hotPathEnd + fresh[1]
			}
		}
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// between returns what lies between the markers.
func between(s, start, end string) (string, bool) {
	inner, _, ok := cutAround(s, start, end)
	return inner, ok
}

// cutAround splits s at the markers: the text between them, and the text before and after.
func cutAround(s, start, end string) (string, [2]string, bool) {
	i := strings.Index(s, start)
	if i < 0 {
		return "", [2]string{}, false
	}
	j := strings.Index(s[i+len(start):], end)
	if j < 0 {
		return "", [2]string{}, false
	}
	j += i + len(start)
	return s[i+len(start) : j], [2]string{s[:i], s[j+len(end):]}, true
}
