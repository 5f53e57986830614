package workflows

// A seeded simulation of the teardown. Each seed draws one schedule: the agent's connections (given
// or listed; short, UUID, long, non-ASCII, or full of characters JSON escapes), the control
// plane's answer to every request (204, 404, 422, 400, 401/403 once the key is refused, 429 with
// Retry-After, 5xx with JSON or HTML bodies that may echo the key, hangs past the request timeout
// that may or may not have removed the connection, 204s that remove nothing, connections that
// vanish or appear), batch attempts whose completion is lost (the worker stopped, maybe mid-batch:
// retried from the heartbeat it flushed, or, on the last attempt, failed as a whole with a stale
// heartbeat), a cancel of either kind at a random moment, a tiny max_history_events so runs
// continue as new (a large carried state is read back page by page through the real
// LoadCarriedState), and standalone removals racing the teardown (a fake Coordinator). It runs the
// real RemoveAgentConnectionsWorkflow and the real activities in Temporal's test environment
// against that control plane (an httptest server), then checks in checkSchedule:
//
//  1. at most one DELETE per connection gets a final answer, none is sent after it and no two are
//     in flight at once, except for connections with a cut-off request, a lost batch attempt or a
//     standalone removal that ended without a result (those are counted); a retried attempt never
//     re-sends what an earlier attempt of its batch finished;
//  2. one report entry per connection (the result plus every page of the report query), sorted,
//     counts adding up to total, exactly the given or first-listed connections plus reappeared;
//  3. every outcome is backed by the control plane's answers: removed by a 204, already_absent by
//     a 404 (and not for a first-request 404 with missing_ok false), skipped only if never sent,
//     each failure type by its status, remained and reappeared by the verifying list;
//  4. after a refused key, a batch sends at most parallelism-1 DELETEs once it has taken the 401/403
//     in, no batch is scheduled after the workflow has the refusal, and the result says why it
//     stopped (DELETEs of other batches still running are counted: they cannot know yet);
//  5. no payload or failure Temporal would store is over 512 KB (the largest is reported);
//  6. the API key is in no payload, failure or log line;
//  7. the teardown ends completed, failed AgentNotFound (only when the first list said 404) or
//     Canceled (only after a Temporal cancel, with the result in its details), within 60 runs
//     and 6 hours of workflow time; a cancel update that answered cancelled shows in the result,
//     and no batch is scheduled after it was accepted;
//  8. each entry of a connection the teardown's own list showed (given connections are listed
//     too) carries the snapshot that list gave, bounded as a teardown keeps it, through
//     continue-as-new, paged states and report pages; other entries carry none, and a removed
//     entry is a valid restore entry;
//  9. a connection a DELETE of the teardown removed (whether or not its 204 reached the client)
//     is, when its entry has a snapshot and is not remained, an entry RestoreEntries restores.
//
// Run it:
//
//	go test ./workflows -run 'TestSimulation$' -sim.seeds=3000     # more seeds (make faults)
//	go test ./workflows -run 'TestSimulation$' -sim.seed=12345 -v  # one seed, with its schedule
//	go test ./workflows -run 'TestSimulation$' -sim.seed=12345 -v -sim.trace  # and its log
//
// Concurrent requests make the interleaving differ between runs of a seed, so a replay almost
// always, not always, takes the same path; each connection's answers depend only on the seed.
//
// What the test environment cannot show: it hands a cancelled activity's error to the workflow at
// once instead of waiting for it (WaitForCancellation), so a stopped teardown's batches in flight
// are reported Interrupted rather than with what they did, and their requests go on after the
// workflow ended; every event is its own workflow task, so a cancel never lands in the task that
// continues as new; Retry-After is capped at 20 ms because the client's 429 pause is real time.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
)

var (
	simSeed      = flag.Uint64("sim.seed", 0, "run only this teardown simulation seed")
	simSeeds     = flag.Int("sim.seeds", 200, "how many teardown simulation seeds TestSimulation runs")
	simFirst     = flag.Uint64("sim.first", 1, "the first seed TestSimulation runs")
	simWorkers   = flag.Int("sim.workers", 2, "schedules run at once per CPU")
	simTraceFlag = flag.Bool("sim.trace", false, "with -sim.seed, log every INFO and WARN line of the workflow and activities")
)

// simRegressions are seeds that found a defect; they run on every go test, and each failed before
// the commit its note names. draws is the start of the schedule the seed draws: a change to
// drawSimSchedule makes seeds draw other schedules, and then the test says so instead of passing
// without testing what the seed found.
var simRegressions = []struct {
	seed  uint64
	draws string
	found string
}{
	{464, "1190 connections (escaped ids, given false",
		"payloads over 512 KB: an agent whose IDs are full of '<', '>', '&' (six bytes each in JSON) made " +
			"ListConnections pages of 1.5 MB and results and report pages of 825 KB, because the byte bounds " +
			"counted raw bytes (fixed in 3cf85ea and b9996f8: ac.JSONBytes)"},
	{80, "40 connections (long ids, given true, 40 existing",
		"missing_ok false: a standalone removal was removing a connection (its DELETE got 204), then ended " +
			"without a result (terminated); the teardown re-queued the connection as never sent, and its own " +
			"DELETE's 404 became failed NotFound although the connection had been removed while it ran " +
			"(fixed in 036485c: such a connection is maybe sent)"},
	{201, "2 connections (long ids, given false, 2 existing",
		"the connection broke in the middle of the first list's 200 body (unexpected EOF): the list failed " +
			"UnexpectedStatus, not retryable, and with it the whole teardown, where a 503 in its place is retried " +
			"(fixed in 036485c: a cut-off body is Unavailable)"},
	{1652, "83 connections (short ids, given false, 83 existing",
		"missing_ok false, after 036485c: a standalone removal ended without a result, so the connection was " +
			"marked maybe sent; its next round sent nothing (the check for a standalone removal failed) and " +
			"retryLater overwrote the mark with Unavailable, so the round after read its 404 as NotFound"},
	{5876, "25 connections (unicode ids, given true, 25 existing",
		"the same overwrite after a lost batch: its DELETE got 204, every attempt's completion was lost and " +
			"the last failed without a heartbeat, so the connection was marked maybe sent with no request " +
			"counted; a round that sent nothing (the standalone-removal check failed) dropped the mark, and the " +
			"next DELETE's 404 became NotFound although the teardown itself had removed it"},
	{300, "204 connections (short ids, given false, 204 existing",
		"missing_ok false: a batch attempt found a standalone removal removing a connection (its DELETE got " +
			"204, then it was terminated) and its completion was lost; the retried attempt's check failed, so the " +
			"connection went back unmarked, and the next round's 404 became NotFound although it had been " +
			"removed (fixed: a retried batch's unfinished connections are maybe sent)"},
	{1814, "1 connections (short ids, given true, 0 existing",
		"a teardown given IDs on an agent with no connections lists it first (for the snapshots); the scripted " +
			"control plane answered {\"data\":null}, which the client rightly refuses (fixed in the test: [])"},
}

// Bounds of a schedule that every teardown must meet (invariant 7).
const (
	simMaxRuns        = 60
	simMaxVirtualTime = 6 * time.Hour
	// simRequestTimeout is the client's request timeout, past which a hanging request is cut off;
	// large schedules use simLargeRequestTimeout (and no hangs), so that reading a long list
	// under -race on a busy machine is not cut off too.
	simRequestTimeout      = 200 * time.Millisecond
	simLargeRequestTimeout = 3 * time.Second
)

func TestSimulation(t *testing.T) {
	t.Parallel()
	if *simSeed != 0 {
		if *simTraceFlag {
			simTrace = func(line string) { t.Log(line) }
			defer func() { simTrace = nil }()
		}
		st := runSimSeed(t, *simSeed, true)
		t.Log(st.summary(1))
		return
	}
	seeds := make([]uint64, *simSeeds)
	for i := range seeds {
		seeds[i] = *simFirst + uint64(i)
	}
	st := runSimSeeds(t, seeds)
	t.Log("teardown simulation: " + st.summary(len(seeds)))
	kinds := slices.Sorted(maps.Keys(st.examples))
	var ex []string
	for _, k := range kinds {
		slices.Sort(st.examples[k])
		ex = append(ex, fmt.Sprintf("%s %v", k, st.examples[k]))
	}
	t.Log("teardown simulation: seeds to replay: " + strings.Join(ex, "; ") + fmt.Sprintf("; slowest %v", st.slowest))
}

func TestSimulationRegressions(t *testing.T) {
	t.Parallel()
	for _, r := range simRegressions {
		t.Run(fmt.Sprint(r.seed), func(t *testing.T) {
			t.Parallel()
			if got := drawSimSchedule(r.seed).String(); !strings.HasPrefix(got, r.draws) {
				t.Fatalf("seed %d now draws %q, not %q: find a seed that draws what it found (%s)", r.seed, got, r.draws, r.found)
			}
			runSimSeed(t, r.seed, false)
		})
	}
}

// runSimSeeds runs the seeds on a few workers (most of a schedule's time is spent waiting on
// requests and timeouts, so more workers than CPUs pay off) and adds up their stats.
func runSimSeeds(t *testing.T, seeds []uint64) simStats {
	var total simStats
	var mu sync.Mutex
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range *simWorkers * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(seeds) {
					return
				}
				st := runSimSeed(t, seeds[i], false)
				mu.Lock()
				total.add(st)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total
}

// runSimSeed runs one schedule and reports every invariant it broke.
func runSimSeed(t *testing.T, seed uint64, verbose bool) simStats {
	t.Helper()
	sch := drawSimSchedule(seed)
	if verbose {
		t.Logf("seed %d: %s", seed, sch)
	}
	s := newSimRun(sch)
	if verbose {
		s.verbose = t.Logf
	}
	start := time.Now()
	s.run()
	s.stats.slowest = []simTimed{{seed, time.Since(start)}}
	if len(s.violations) > 0 {
		t.Errorf("teardown simulation seed %d broke %d invariant(s); replay with\n\tgo test ./workflows -run 'TestSimulation$' -sim.seed=%d -v\nschedule: %s\n%s",
			seed, len(s.violations), seed, sch, strings.Join(s.violations, "\n"))
	}
	return s.stats
}

// simStats are the counts the summary line adds up.
type simStats struct {
	schedules, runs, maxRunsSeen, checks   int
	continued                              int // schedules that continued as new
	deletes, cutOff                        int
	lostAttempts, lostRequests, duplicates int
	crossBatchRefused, gateWindow          int
	retryAfterRefusal                      int
	largestPayload                         int
	pagedStates, truncatedReports          int
	standalones, ignoredCancels            int
	snapshots                              int // removed entries whose snapshot was checked
	outcomes, ends                         map[string]int
	// examples are a few seeds of each notable kind, to replay.
	examples map[string][]uint64
	// slowest are the seeds that took longest, with their wall time.
	slowest []simTimed
}

type simTimed struct {
	seed uint64
	took time.Duration
}

func (t simTimed) String() string {
	return fmt.Sprintf("%d (%s)", t.seed, t.took.Round(100*time.Millisecond))
}

func (a *simStats) example(kind string, seed uint64) {
	if a.examples == nil {
		a.examples = map[string][]uint64{}
	}
	if len(a.examples[kind]) < 3 {
		a.examples[kind] = append(a.examples[kind], seed)
	}
}

func (a *simStats) add(b simStats) {
	a.schedules += b.schedules
	a.runs += b.runs
	a.continued += b.continued
	a.checks += b.checks
	a.deletes += b.deletes
	a.cutOff += b.cutOff
	a.lostAttempts += b.lostAttempts
	a.lostRequests += b.lostRequests
	a.duplicates += b.duplicates
	a.crossBatchRefused += b.crossBatchRefused
	a.gateWindow += b.gateWindow
	a.retryAfterRefusal += b.retryAfterRefusal
	a.ignoredCancels += b.ignoredCancels
	a.largestPayload = max(a.largestPayload, b.largestPayload)
	a.pagedStates += b.pagedStates
	a.truncatedReports += b.truncatedReports
	a.standalones += b.standalones
	a.snapshots += b.snapshots
	a.maxRunsSeen = max(a.maxRunsSeen, b.maxRunsSeen)
	a.slowest = append(a.slowest, b.slowest...)
	slices.SortFunc(a.slowest, func(x, y simTimed) int { return int(y.took - x.took) })
	a.slowest = a.slowest[:min(len(a.slowest), 3)]
	for kind, seeds := range b.examples {
		for _, seed := range seeds {
			a.example(kind, seed)
		}
	}
	for _, m := range []struct{ dst, src *map[string]int }{{&a.outcomes, &b.outcomes}, {&a.ends, &b.ends}} {
		if *m.dst == nil {
			*m.dst = map[string]int{}
		}
		for k, v := range *m.src {
			(*m.dst)[k] += v
		}
	}
}

func (a simStats) summary(seeds int) string {
	return fmt.Sprintf("%d seeds, %d schedules (%d continued as new), %d runs (at most %d in one), %d invariant checks, %d DELETEs, "+
		"%d cut-off requests, %d requests of lost batch attempts (%d lost attempts), %d repeated DELETEs after a cut-off or loss, "+
		"%d DELETEs of other batches after a refusal (%d of the refused batch, in its check window; %d of retries of a refused lost attempt), largest payload %d bytes, %d paged states, %d truncated reports, "+
		"%d standalone removals, %d Temporal cancels that landed after the workflow completed, %d removed entries' snapshots checked; ends %v; outcomes %v",
		seeds, a.schedules, a.continued, a.runs, a.maxRunsSeen, a.checks, a.deletes, a.cutOff, a.lostRequests, a.lostAttempts, a.duplicates,
		a.crossBatchRefused, a.gateWindow, a.retryAfterRefusal, a.largestPayload, a.pagedStates, a.truncatedReports, a.standalones, a.ignoredCancels,
		a.snapshots, a.ends, a.outcomes)
}

// simSchedule is everything one seed draws before the teardown starts.
type simSchedule struct {
	seed    uint64
	agentID string

	conns    []string // the connections the teardown is about (given, or listed at the start)
	existing []string // what the control plane holds at the start
	given    []string // connection_ids (nil: the teardown lists)
	vanish   []string // removed by someone else as the first DELETE arrives
	locked   map[string]bool
	idStyle  string

	concurrency     int
	missingOK       *bool
	continueOnError *bool
	maxHistory      int

	pHang, pHangApplies, p429, p5xx, p400, pPhantom float64
	refuseAfter, refuseStatus                       int
	echoKey                                         bool
	list404First, list404Verify                     bool
	listTransient                                   int
	appear                                          float64

	pLoseBatch     float64
	requestTimeout time.Duration

	cancelKind  string // "", "temporal", "update", "both"
	cancelAt    time.Duration
	cancelAfter int // deliver the cancel as this many activities have completed (0: at cancelAt)

	standalone map[string]simStandalone
}

func (s *simSchedule) String() string {
	ptr := func(b *bool) string {
		if b == nil {
			return "default"
		}
		return fmt.Sprint(*b)
	}
	kinds := map[int]int{}
	for _, sa := range s.standalone {
		kinds[sa.kind]++
	}
	return fmt.Sprintf("%d connections (%s ids, given %t, %d existing, %d vanish, %d locked), concurrency %d, missing_ok %s, "+
		"continue_on_error %s, max_history_events %d; hang %.3f (applies %.2f), 429 %.3f, 5xx %.3f, 400 %.3f, phantom 204 %.3f; "+
		"refuse after %d (%d), echo key %t; list 404 first %t verify %t, transient %d, appear %.2f; lose batch %.2f; "+
		"cancel %q at %s / after %d activities; standalone kinds %v",
		len(s.conns), s.idStyle, s.given != nil, len(s.existing), len(s.vanish), len(s.locked), s.concurrency, ptr(s.missingOK),
		ptr(s.continueOnError), s.maxHistory, s.pHang, s.pHangApplies, s.p429, s.p5xx, s.p400, s.pPhantom,
		s.refuseAfter, s.refuseStatus, s.echoKey, s.list404First, s.list404Verify, s.listTransient, s.appear, s.pLoseBatch,
		s.cancelKind, s.cancelAt, s.cancelAfter, kinds)
}

// simIDChars are bytes ValidateID accepts; the "escaped" style leans on the ones JSON escapes.
const (
	simIDChars      = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:@!$&'()*+,;="
	simEscapedChars = `<>&"`
)

func simID(r *rand.Rand, style string, i int) string {
	switch style {
	case "short":
		return fmt.Sprintf("conn-%04d", i)
	case "uuid":
		return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), r.IntN(1<<12), r.Uint64()&(1<<48-1))
	}
	prefix := fmt.Sprintf("c%04d-", i)
	n := ac.MaxIDBytes - len(prefix)
	if r.IntN(3) == 0 {
		n = 1 + r.IntN(n)
	}
	var b strings.Builder
	b.WriteString(prefix)
	for b.Len() < len(prefix)+n {
		switch {
		case style == "escaped":
			b.WriteByte(simEscapedChars[r.IntN(len(simEscapedChars))])
		case style == "unicode" && r.IntN(4) == 0 && b.Len()+3 <= ac.MaxIDBytes:
			b.WriteString([]string{"é", "ß", "日", "本", "λ"}[r.IntN(5)])
		default:
			b.WriteByte(simIDChars[r.IntN(len(simIDChars))])
		}
	}
	id := b.String()
	for len(id) > ac.MaxIDBytes || !utf8.ValidString(id) {
		id = id[:len(id)-1]
	}
	return id
}

func drawSimSchedule(seed uint64) *simSchedule {
	r := rand.New(rand.NewPCG(seed, 0x7ea2d0))
	chance := func(p float64) bool { return r.Float64() < p }
	upTo := func(p float64) float64 { return p * r.Float64() }
	s := &simSchedule{seed: seed, agentID: fmt.Sprintf("agent-%d", seed), locked: map[string]bool{}, standalone: map[string]simStandalone{}}

	n := 1 + r.IntN(300)
	if chance(0.5) {
		n = 1 + r.IntN(40)
	}
	s.idStyle = []string{"short", "uuid", "long", "unicode", "escaped"}[r.IntN(5)]
	given := chance(0.5)
	large := chance(0.015)
	if large {
		// A large agent: its carried state outgrows one payload, so runs read it back page by
		// page, and its report outgrows the result, so the report query pages it.
		n, given, s.idStyle = 1000+r.IntN(600), false, []string{"long", "long", "unicode", "escaped"}[r.IntN(4)]
	}
	seen := map[string]bool{}
	for i := range n {
		id := simID(r, s.idStyle, i)
		if ac.ValidateID("id", id) != nil || seen[id] {
			continue
		}
		seen[id] = true
		s.conns = append(s.conns, id)
	}
	pAbsent, pVanish, pLocked := 0.0, 0.0, 0.0
	if chance(0.4) {
		pAbsent = upTo(0.2)
	}
	if chance(0.3) {
		pVanish = upTo(0.1)
	}
	if chance(0.4) {
		pLocked = upTo(0.06)
	}
	for _, id := range s.conns {
		switch {
		case given && chance(pAbsent):
			// not at the control plane at all
		default:
			s.existing = append(s.existing, id)
			if chance(pVanish) {
				s.vanish = append(s.vanish, id)
			}
		}
		if chance(pLocked) {
			s.locked[id] = true
		}
	}
	if given {
		s.given = slices.Clone(s.conns)
		if chance(0.1) && len(s.given) > 0 {
			for range 1 + r.IntN(5) {
				s.given = append(s.given, s.given[r.IntN(len(s.given))])
			}
		}
		if total := 0; true {
			for _, id := range s.given {
				total += len(id)
			}
			if total > ac.MaxGivenConnectionBytes {
				s.given = nil // too many bytes to give: list them instead
				s.existing = slices.Clone(s.conns)
			}
		}
	}

	switch r.IntN(4) {
	case 0:
		s.concurrency = 0
	case 1:
		s.concurrency = 1 + r.IntN(3)
	case 2:
		s.concurrency = 1 + r.IntN(20)
	default:
		s.concurrency = 1 + r.IntN(ac.MaxTeardownConcurrency)
	}
	if chance(0.5) {
		b := chance(0.7)
		s.missingOK = &b
	}
	if chance(0.5) {
		b := chance(0.6)
		s.continueOnError = &b
	}
	if chance(0.5) || large {
		s.maxHistory = ac.MinTeardownMaxHistoryEvents + r.IntN(60)
		if chance(0.8) {
			// Small batches: many of them, so runs continue as new.
			s.concurrency = 1 + r.IntN(5)
		}
	}

	if chance(0.35) {
		s.pHang = 0.002 + upTo(0.02)
		s.pHangApplies = r.Float64()
	}
	s.requestTimeout = simRequestTimeout
	if len(s.conns) > 400 || s.idStyle == "escaped" {
		s.pHang, s.requestTimeout = 0, simLargeRequestTimeout
	}
	if chance(0.5) {
		s.p429 = upTo(0.05)
	}
	if chance(0.6) {
		s.p5xx = upTo(0.2)
	}
	if chance(0.1) {
		s.p400 = upTo(0.01)
	}
	if chance(0.15) {
		s.pPhantom = upTo(0.05)
	}
	if chance(0.15) {
		s.refuseAfter = 1 + r.IntN(len(s.conns)+5)
		s.refuseStatus = []int{http.StatusUnauthorized, http.StatusForbidden}[r.IntN(2)]
	}
	s.echoKey = chance(0.25)
	if s.given == nil {
		s.list404First = chance(0.05)
		if chance(0.2) {
			s.appear = upTo(1)
		}
	}
	s.list404Verify = chance(0.08)
	if chance(0.3) {
		s.listTransient = 1 + r.IntN(3)
	}
	if chance(0.3) {
		s.pLoseBatch = 0.05 + upTo(0.3)
	}

	switch c := r.Float64(); {
	case c < 0.2:
		s.cancelKind = "temporal"
	case c < 0.4:
		s.cancelKind = "update"
	case c < 0.45:
		s.cancelKind = "both"
	}
	if large && chance(0.7) {
		s.cancelKind = ""
		t := true
		s.continueOnError = &t
	}
	if s.cancelKind != "" {
		switch {
		case chance(0.5):
			// As an activity completes (a list, a batch, a page of the carried state, a wait
			// for a standalone removal): other batches are usually in flight then.
			s.cancelAfter = 1 + r.IntN(12)
		case chance(0.7):
			s.cancelAt = time.Duration(r.IntN(10_000)) * time.Millisecond
		default:
			s.cancelAt = time.Duration(r.IntN(180_000)) * time.Millisecond
		}
	}

	if chance(0.3) {
		frac := 0.02 + upTo(0.2)
		for _, id := range s.existing {
			if chance(frac) {
				s.standalone[id] = simStandalone{kind: r.IntN(saKinds), busyFor: r.IntN(3), failAsk: []int{0, 0, 1, 2}[r.IntN(4)]}
			}
		}
	}
	if large {
		// Batches of 50, a few at once: a couple of runs, each continuing as new with a paged
		// state, rather than dozens (each compresses and reloads the whole state).
		s.concurrency = 10 + int(seed%40)
	}
	return s
}

// simAttempt is one attempt of one RemoveConnections activity.
type simAttempt struct {
	gen        int
	activityID string
	number     int32
	items      []string
	par        int // the batch's parallelism
	start      time.Time

	mu         sync.Mutex
	sent       int
	crashAfter int
	cancel     context.CancelFunc
	refusedAt  time.Time
	// knewAt is when the batch itself had taken in a refusal: it heartbeated the refused
	// connection's outcome, after which none of its workers passes its check again.
	knewAt    time.Time
	lost      bool // the sim threw its completion away
	cancelled bool // the workflow cancelled the activity (the test environment drops its result)
}

func (a *simAttempt) sentOne() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent++
	if a.crashAfter > 0 && a.sent >= a.crashAfter && a.cancel != nil {
		a.cancel() // the worker stops: nothing new starts; the request that just left finishes
	}
}

func (a *simAttempt) refused(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refusedAt.IsZero() {
		a.refusedAt = at
	}
}

func (a *simAttempt) key() string { return fmt.Sprintf("%d/%s", a.gen, a.activityID) }

// simRun is one schedule being run.
type simRun struct {
	sch   *simSchedule
	cp    *simCP
	srv   *httptest.Server
	obs   *simObserver
	acts  *activities.Activities
	coord *simCoordinator
	conv  converter.DataConverter
	fconv converter.FailureConverter
	// strays counts batch activities and standalone removals still running; the test environment
	// drops a cancelled activity's result at once but lets it run on.
	strays sync.WaitGroup

	mu       sync.Mutex
	attempts []*simAttempt
	byKey    map[string][]*simAttempt
	started  map[string]time.Time // first attempt's start of each batch activity, by key
	open     map[string]bool      // activities running or with a result not yet processed
	ended    bool                 // the teardown ended: activities that start now do not run

	// Cancel delivery (all on the test environment's goroutine).
	activitiesDone  int
	temporalPending bool // a Temporal cancel is requested and no run ended since
	temporalSent    bool // a Temporal cancel was ever sent
	// temporalImprecise: it was sent from an activity-completed callback, with that batch's
	// result still to be processed first, so the workflow may complete before it lands.
	temporalImprecise bool
	updatePending     bool
	updateAccepted    bool
	updateSaidCanc    bool // the update returned progress with cancelled set
	updateAcceptAt    time.Time
	updateRejects     []string
	refusalSeenAt     time.Time // when the workflow got a batch result with Refused
	gen               int
	virtualStart      time.Time
	virtualEnd        time.Time
	endKind           string
	result            *ac.RemoveAgentConnectionsResult
	report            []ac.ConnectionOutcome
	finalErr          error
	pagedStates       int
	violations        []string
	stats             simStats
	verbose           func(format string, args ...any)
	// sabotage, when set, breaks what a batch does (TestSimulation_CatchesBrokenBatches).
	failedWith map[string]bool // failure types of the report's failed connections
	sabotage   func(s *simRun, ctx context.Context, in activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult)
}

func newSimRun(sch *simSchedule) *simRun {
	kr := rand.New(rand.NewPCG(sch.seed, 0x6b6579))
	key := fmt.Sprintf("lsv2_sk_SIMKEY%016x%016x", kr.Uint64(), kr.Uint64())
	obs := &simObserver{key: key}
	s := &simRun{sch: sch, obs: obs, byKey: map[string][]*simAttempt{}, started: map[string]time.Time{}}
	s.cp = newSimCP(sch, key)
	s.srv = httptest.NewServer(s.cp)
	transport := &simTransport{cp: s.cp, next: http.DefaultTransport.(*http.Transport).Clone()}
	s.coord = &simCoordinator{cp: s.cp, base: s.srv.URL, client: &http.Client{Transport: transport, Timeout: sch.requestTimeout}, wg: &s.strays, runs: map[string]*simStandalone{}}
	for id, sa := range sch.standalone {
		sa := sa
		s.coord.runs[id] = &sa
	}
	client, err := controlplane.New(controlplane.Config{
		BaseURL:        s.srv.URL,
		Credentials:    controlplane.StaticCredentials{APIKey: key},
		RequestTimeout: sch.requestTimeout,
		HTTPRetry:      controlplane.HTTPRetry{WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond},
		// Retry-After pauses this worker's requests in real time; the cap keeps a schedule fast
		// (the workflow's waits are virtual anyway).
		MaxRetryAfter: 20 * time.Millisecond,
		Transport:     transport,
		Logger:        simLogger{obs: obs},
	})
	if err != nil {
		panic(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: client, Coordinator: s.coord})
	if err != nil {
		panic(err)
	}
	s.acts = acts
	obs.progress = s.heartbeated
	s.conv = simConverter{DataConverter: converter.GetDefaultDataConverter(), obs: obs}
	s.fconv = simFailureConverter{FailureConverter: temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: s.conv}), obs: obs}
	return s
}

// heartbeated notes, for each connection a batch heartbeats as failed Unauthorized, that the
// attempt which got its 401/403 has taken the refusal in.
func (s *simRun) heartbeated(p activities.RemoveConnectionsProgress) {
	now := time.Now()
	for _, o := range p.Done {
		if o.FailureType != ac.ErrUnauthorized {
			continue
		}
		s.cp.mu.Lock()
		var refusedBy []*simAttempt
		for _, d := range s.cp.order {
			if d.conn == o.ConnectionID && d.attempt != nil && (d.status == http.StatusUnauthorized || d.status == http.StatusForbidden) {
				refusedBy = append(refusedBy, d.attempt)
			}
		}
		s.cp.mu.Unlock()
		for _, a := range refusedBy {
			a.mu.Lock()
			if a.knewAt.IsZero() {
				a.knewAt = now
			}
			a.mu.Unlock()
		}
	}
}

func (s *simRun) fail(format string, args ...any) {
	s.violations = append(s.violations, "  - "+fmt.Sprintf(format, args...))
}

// check counts an invariant check and records a violation when ok is false.
func (s *simRun) check(ok bool, format string, args ...any) bool {
	s.stats.checks++
	if !ok {
		s.fail(format, args...)
	}
	return ok
}

func (s *simRun) input() ac.RemoveAgentConnectionsInput {
	return ac.RemoveAgentConnectionsInput{
		AgentID: s.sch.agentID, ConnectionIDs: s.sch.given, Concurrency: s.sch.concurrency,
		MissingOK: s.sch.missingOK, ContinueOnError: s.sch.continueOnError, MaxHistoryEvents: s.sch.maxHistory,
	}
}

// run runs the teardown run after run until it ends, then checks the schedule.
func (s *simRun) run() {
	defer s.srv.Close()
	s.stats.schedules = 1
	s.stats.standalones = len(s.sch.standalone)
	in := TeardownInput{RemoveAgentConnectionsInput: s.input()}
	s.virtualStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.sch.seed%1000) * time.Second)
	now := s.virtualStart
	var env *testsuite.TestWorkflowEnvironment
	for s.gen = 0; ; s.gen++ {
		if s.gen >= simMaxRuns {
			s.fail("invariant 7: the teardown did not end within %d runs", simMaxRuns)
			break
		}
		env = s.newEnv(now)
		env.ExecuteWorkflow(RemoveAgentConnectionsWorkflow, in)
		now = env.Now()
		s.stats.runs++
		if !env.IsWorkflowCompleted() {
			s.fail("invariant 7: run %d did not complete (test timeout)", s.gen+1)
			break
		}
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if !errors.As(err, &can) {
			s.finalErr = err
			s.collectResult(env, err)
			break
		}
		var next TeardownInput
		if err := s.conv.FromPayloads(can.Input, &next); err != nil {
			s.fail("run %d continued as new with an unreadable input: %v", s.gen+1, err)
			break
		}
		s.checkCarried(env, next)
		if s.verbose != nil && next.State != nil {
			s.verbose("run %d continued as new at %s: %d finished, %d pending, paged %t", s.gen+1, now.Sub(s.virtualStart),
				len(next.State.Outcomes), len(next.State.Items), next.State.Paged != nil)
		}
		in = next
		// A cancel the run did not take before it ended goes to the next run, as a cancel by
		// workflow ID would.
	}
	s.virtualEnd = now
	s.stats.maxRunsSeen = s.gen + 1
	if s.gen > 0 {
		s.stats.continued = 1
	}
	s.waitStrays()
	s.checkSchedule()
	s.noteExamples()
}

// noteExamples records this seed among the examples of what it exercised.
func (s *simRun) noteExamples() {
	seed, st := s.sch.seed, &s.stats
	notes := map[string]bool{
		"continued-as-new":        s.gen > 0,
		"paged-state":             st.pagedStates > 0,
		"truncated-report":        st.truncatedReports > 0,
		"canceled":                s.endKind == "canceled",
		"cancel-update":           s.updateAccepted,
		"agent-not-found":         s.endKind == "failed "+ac.ErrAgentNotFound,
		"key-refused":             s.cp.refused,
		"other-batches-after-401": st.crossBatchRefused > 0,
		"cut-off":                 st.cutOff > 0,
		"remained":                st.outcomes[ac.OutcomeRemained] > 0,
		"reappeared":              st.outcomes[ac.OutcomeReappeared] > 0,
		"interrupted":             s.failedWith[ac.ErrInterrupted],
		"standalone":              st.standalones > 0,
		"batch-lost-to-the-workflow": slices.ContainsFunc(s.attempts, func(a *simAttempt) bool {
			return a.lost && a.number >= batchActivityOptions().RetryPolicy.MaximumAttempts
		}),
	}
	for kind, ok := range notes {
		if ok {
			st.example(kind, seed)
		}
	}
}

func (s *simRun) waitStrays() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.strays.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.fail("batch activities or standalone removals still running 30s after the teardown ended")
	}
}

func (s *simRun) newEnv(now time.Time) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(simLogger{obs: s.obs})
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	// A workflow task that runs a second without yielding fails as a deadlock. Under -race on a
	// busy machine, the continue-as-new that compresses a large state (about 0.1 s without -race
	// for 10,000 long IDs) or any task of a starved process can take that long; seed 725 (1,571
	// escaped IDs, continued as new) passed 10 s once while other builds shared the two cores. The
	// bound stays, to end a workflow that never yields long before the test timeout.
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 60 * time.Second})
	env.SetStartTime(now)
	env.SetDataConverter(s.conv)
	env.SetFailureConverter(s.fconv)
	if s.gen > 0 {
		env.SetContinuedExecutionRunID(fmt.Sprintf("sim-run-%d", s.gen))
	}
	env.RegisterWorkflow(RemoveAgentConnectionsWorkflow)
	env.RegisterActivity(s.acts)
	gen := s.gen
	env.OnActivity(ac.RemoveConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
			done, err := s.opened(ctx, gen)
			if err != nil {
				return activities.RemoveConnectionsResult{}, err
			}
			defer done()
			return s.batch(ctx, gen, in)
		})
	// The other activities run as they are; the wrappers only note that they run.
	env.OnActivity(ac.ListConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.ListConnectionsInput) (activities.ListConnectionsResult, error) {
			done, err := s.opened(ctx, gen)
			if err != nil {
				return activities.ListConnectionsResult{}, err
			}
			defer done()
			return s.acts.ListConnections(ctx, in)
		})
	env.OnActivity("AwaitStandaloneRemoval", mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.ConnectionAwait) (ac.ConnectionOutcome, error) {
			done, err := s.opened(ctx, gen)
			if err != nil {
				return ac.ConnectionOutcome{}, err
			}
			defer done()
			return s.acts.AwaitStandaloneRemoval(ctx, in)
		})
	env.OnActivity("LoadCarriedState", mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.CarriedStateInput) ([]byte, error) {
			done, err := s.opened(ctx, gen)
			if err != nil {
				return nil, err
			}
			defer done()
			return s.acts.LoadCarriedState(ctx, in)
		})
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		s.closed(gen, info)
		if info.ActivityType.Name != ac.RemoveConnectionsActivityType {
			return
		}
		s.mu.Lock()
		for _, a := range s.byKey[fmt.Sprintf("%d/%s", gen, info.ActivityID)] {
			a.mu.Lock()
			a.cancelled = true
			a.mu.Unlock()
		}
		s.mu.Unlock()
	})
	env.SetOnActivityCompletedListener(func(info *activity.Info, result converter.EncodedValue, err error) {
		s.closed(gen, info)
		if info.ActivityType.Name == ac.RemoveConnectionsActivityType && err == nil && result != nil {
			var res activities.RemoveConnectionsResult
			if result.Get(&res) == nil && res.Refused && s.refusalSeenAt.IsZero() {
				s.refusalSeenAt = time.Now()
			}
		}
		s.activitiesDone++
		if s.sch.cancelAfter > 0 && s.activitiesDone == s.sch.cancelAfter {
			s.deliverCancel(env, false)
		}
	})
	switch {
	case s.temporalPending || s.updatePending:
		// Requested while the previous run was ending: this run gets it first thing.
		env.RegisterDelayedCallback(func() { s.redeliver(env) }, time.Millisecond)
	case s.sch.cancelKind != "" && s.sch.cancelAfter == 0 && !s.temporalSent && !s.updateAccepted && len(s.updateRejects) == 0:
		at := s.virtualStart.Add(s.sch.cancelAt)
		d := max(at.Sub(now), time.Millisecond)
		env.RegisterDelayedCallback(func() { s.deliverCancel(env, true) }, d)
	}
	return env
}

// deliverCancel sends the schedule's cancel (on the test environment's goroutine). idle says the
// environment is idle (a timer callback): nothing is queued before the cancel, so the progress
// read now is what the workflow sees when the cancel reaches it.
func (s *simRun) deliverCancel(env *testsuite.TestWorkflowEnvironment, idle bool) {
	if s.temporalSent || s.updatePending || s.updateAccepted {
		return
	}
	kind := s.sch.cancelKind
	if kind == "update" || kind == "both" {
		s.sendUpdate(env)
	}
	switch {
	case kind == "temporal":
		s.sendTemporalCancel(env, idle)
	case kind == "both":
		// A moment after the update, if the workflow still runs then.
		env.RegisterDelayedCallback(func() { s.sendTemporalCancel(env, true) }, time.Millisecond)
	}
}

func (s *simRun) redeliver(env *testsuite.TestWorkflowEnvironment) {
	if s.updatePending {
		s.sendUpdate(env)
	}
	if s.temporalPending {
		s.sendTemporalCancel(env, true)
	}
}

func (s *simRun) sendTemporalCancel(env *testsuite.TestWorkflowEnvironment, idle bool) {
	s.temporalSent, s.temporalPending = true, true
	s.mu.Lock()
	busy := len(s.open) > 0
	s.mu.Unlock()
	// With an activity open, its result may be processed before the cancel lands, and the
	// workflow may complete in that task.
	s.temporalImprecise = !idle || busy
	env.CancelWorkflow()
}

// opened notes an activity attempt running, and counts it among the strays waitStrays waits for;
// closed notes that the workflow has its result (or has cancelled it). Between the two the
// workflow may still take a task of its own. An attempt that starts after the teardown ended (the
// test environment may still start an activity the workflow cancelled) does not run: opened
// returns an error for it. Call done when the attempt returns.
func (s *simRun) opened(ctx context.Context, gen int) (done func(), err error) {
	info := activity.GetInfo(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, errors.New("simulated: the teardown ended before this activity started")
	}
	s.strays.Add(1)
	if s.open == nil {
		s.open = map[string]bool{}
	}
	s.open[fmt.Sprintf("%d/%s", gen, info.ActivityID)] = true
	return s.strays.Done, nil
}

func (s *simRun) closed(gen int, info *activity.Info) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, fmt.Sprintf("%d/%s", gen, info.ActivityID))
}

func (s *simRun) sendUpdate(env *testsuite.TestWorkflowEnvironment) {
	s.updatePending = true
	id := fmt.Sprintf("sim-cancel-%d", s.gen)
	env.UpdateWorkflow(ac.CancelUpdate, id, &testsuite.TestUpdateCallback{
		OnAccept: func() {
			s.updatePending, s.updateAccepted = false, true
			if s.updateAcceptAt.IsZero() {
				s.updateAcceptAt = time.Now()
			}
		},
		OnReject: func(err error) {
			s.updatePending = false
			s.updateRejects = append(s.updateRejects, err.Error())
		},
		OnComplete: func(v any, err error) {
			if p, ok := v.(ac.TeardownProgress); ok && err == nil && p.Cancelled {
				s.updateSaidCanc = true
			}
		},
	})
}

// lossPlan says how the sim treats the attempts of one batch activity: the first `lose` attempts
// have their completion thrown away (the last of them reaches the workflow as a heartbeat timeout
// with a stale heartbeat, or as a plain failure), optionally after the worker stopped mid-batch.
type lossPlan struct {
	lose       int
	crashAfter int
	noDetails  bool
	cut        float64
}

func (s *simRun) lossPlan(gen int, activityID string) lossPlan {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", gen, activityID)
	r := rand.New(rand.NewPCG(s.sch.seed^0x1055, h.Sum64()))
	var p lossPlan
	if r.Float64() >= s.sch.pLoseBatch {
		return p
	}
	p.lose = []int{1, 1, 1, 2, 5, 5}[r.IntN(6)]
	if r.IntN(2) == 0 {
		p.crashAfter = 1 + r.IntN(20)
	}
	p.noDetails = r.IntN(4) == 0
	p.cut = r.Float64()
	return p
}

// batch runs the real RemoveConnections, then maybe loses its completion.
func (s *simRun) batch(ctx context.Context, gen int, in activities.RemoveConnectionsInput) (activities.RemoveConnectionsResult, error) {
	info := activity.GetInfo(ctx)
	a := &simAttempt{gen: gen, activityID: info.ActivityID, number: info.Attempt, start: time.Now(), par: max(in.Parallelism, 1)}
	for _, it := range in.Items {
		a.items = append(a.items, it.ConnectionID)
	}
	plan := s.lossPlan(gen, info.ActivityID)
	lose := int(info.Attempt) <= plan.lose
	if lose {
		a.crashAfter = plan.crashAfter
	}
	actx, cancel := context.WithCancel(context.WithValue(ctx, simAttemptKey{}, a))
	a.cancel = cancel
	s.mu.Lock()
	s.attempts = append(s.attempts, a)
	s.byKey[a.key()] = append(s.byKey[a.key()], a)
	if _, ok := s.started[a.key()]; !ok {
		s.started[a.key()] = a.start
	}
	s.mu.Unlock()

	res, err := s.acts.RemoveConnections(actx, in)
	if s.sabotage != nil && err == nil {
		s.sabotage(s, actx, in, &res)
	}
	cancel()
	if !lose || err != nil {
		return res, err
	}
	a.mu.Lock()
	a.lost = true
	a.mu.Unlock()
	maxAttempts := batchActivityOptions().RetryPolicy.MaximumAttempts
	if info.Attempt < maxAttempts || plan.noDetails {
		return activities.RemoveConnectionsResult{}, temporal.NewApplicationError("simulated: the worker lost this attempt's completion", "SimulatedLoss")
	}
	return activities.RemoveConnectionsResult{}, temporal.NewHeartbeatTimeoutError(s.staleProgress(a, res, plan.cut))
}

// staleProgress is a heartbeat the batch recorded some time before its completion was lost: the
// requests that had left by then (across its attempts) and the connections finished by then.
func (s *simRun) staleProgress(last *simAttempt, res activities.RemoveConnectionsResult, frac float64) activities.RemoveConnectionsProgress {
	s.mu.Lock()
	attempts := slices.Clone(s.byKey[last.key()])
	s.mu.Unlock()
	first := attempts[0].start
	now := time.Now()
	cut := first.Add(time.Duration(frac * float64(now.Sub(first))))
	ours := map[*simAttempt]bool{}
	for _, a := range attempts {
		ours[a] = true
	}
	p := activities.RemoveConnectionsProgress{Requests: map[string]int{}}
	lastEnd := map[string]time.Time{}
	s.cp.mu.Lock()
	for _, d := range s.cp.order {
		if !ours[d.attempt] {
			continue
		}
		if d.start.Before(cut) {
			p.Requests[d.conn]++
		}
		end := d.end
		if end.IsZero() {
			end = now
		}
		if end.After(lastEnd[d.conn]) {
			lastEnd[d.conn] = end
		}
	}
	s.cp.mu.Unlock()
	for _, o := range res.Done {
		if e, sent := lastEnd[o.ConnectionID]; (sent && e.Before(cut)) || (!sent && cut.After(last.start)) {
			p.Done = append(p.Done, o)
		}
	}
	return p
}

// checkCarried checks a continue-as-new input: the state is the teardown's own, it accounts for
// every connection once, and a paged state is served by the run that carried it.
func (s *simRun) checkCarried(env *testsuite.TestWorkflowEnvironment, next TeardownInput) {
	if !s.check(next.State != nil, "run %d continued as new without a state", s.gen+1) {
		return
	}
	s.check(len(next.ConnectionIDs) == 0, "run %d carried %d connection_ids in the input besides the state", s.gen+1, len(next.ConnectionIDs))
	st := next.State
	if st.Paged != nil {
		s.pagedStates++
		pages := make([][]byte, 0, st.Paged.Pages)
		total := 0
		for p := range st.Paged.Pages {
			v, err := env.QueryWorkflow(activities.CarriedStatePageQuery, p)
			var b []byte
			if err == nil {
				err = v.Get(&b)
			}
			if !s.check(err == nil, "run %d: carried state page %d: %v", s.gen+1, p, err) {
				return
			}
			pages = append(pages, b)
			total += len(b)
		}
		s.check(total == st.Paged.Bytes, "run %d: carried state pages hold %d bytes, the input says %d", s.gen+1, total, st.Paged.Bytes)
		s.coord.mu.Lock()
		s.coord.pages, s.coord.runID = pages, "default-test-run-id"
		s.coord.mu.Unlock()
		full, err := decodeCarried(slices.Concat(pages...))
		if !s.check(err == nil, "run %d: the paged carried state does not decode: %v", s.gen+1, err) {
			return
		}
		st = full
	}
	s.check(st.Runs == s.gen+1, "run %d carried runs=%d", s.gen+1, st.Runs)
	seen := map[string]bool{}
	for _, o := range st.Outcomes {
		s.check(!seen[o.ConnectionID], "run %d carried connection %.40q twice", s.gen+1, o.ConnectionID)
		seen[o.ConnectionID] = true
	}
	for _, it := range st.Items {
		s.check(!seen[it.ID], "run %d carried connection %.40q both pending and finished (or twice pending)", s.gen+1, it.ID)
		seen[it.ID] = true
	}
	if s.sch.given != nil {
		s.check(len(seen) == len(dedupe(s.sch.given)), "run %d carried %d connections, %d were given", s.gen+1, len(seen), len(dedupe(s.sch.given)))
	}
}

// collectResult reads the final run's result (or failure), with every page of its report.
func (s *simRun) collectResult(env *testsuite.TestWorkflowEnvironment, err error) {
	var res ac.RemoveAgentConnectionsResult
	var canceled *temporal.CanceledError
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		s.endKind = "completed"
		if e := env.GetWorkflowResult(&res); e != nil {
			s.fail("the result does not decode: %v", e)
			return
		}
	case errors.As(err, &canceled):
		s.endKind = "canceled"
		if !s.check(canceled.HasDetails(), "the workflow ended Canceled without the result in its details") {
			return
		}
		if e := canceled.Details(&res); e != nil {
			s.fail("the Canceled error's details do not decode: %v", e)
			return
		}
	case errors.As(err, &appErr):
		s.endKind = "failed " + appErr.Type()
		return
	default:
		s.endKind = "error"
		s.fail("invariant 7: the workflow ended with %T: %v", err, err)
		return
	}
	s.result = &res
	s.report = slices.Clone(res.Connections)
	if res.ReportTruncated {
		s.stats.truncatedReports++
		s.report = nil
		for p := range res.ReportPages {
			v, qerr := env.QueryWorkflow(ac.ReportQuery, p)
			var page ac.ReportPage
			if qerr == nil {
				qerr = v.Get(&page)
			}
			if !s.check(qerr == nil, "report page %d: %v", p, qerr) {
				return
			}
			s.check(page.Page == p && page.Pages == res.ReportPages, "report page %d says page %d of %d, the result says %d pages", p, page.Page, page.Pages, res.ReportPages)
			if p == 0 {
				s.check(len(page.Connections) == len(res.Connections), "report page 0 has %d entries, the result %d", len(page.Connections), len(res.Connections))
			}
			s.report = append(s.report, page.Connections...)
		}
	}
}

// checkSchedule checks the invariants once everything has stopped.
func (s *simRun) checkSchedule() {
	sch := s.sch
	s.stats.ends = map[string]int{s.endKind: 1}
	s.stats.outcomes = map[string]int{}
	s.stats.largestPayload = int(s.obs.largest.Load())
	s.stats.pagedStates = s.pagedStates

	cp := s.cp
	cp.mu.Lock()
	defer cp.mu.Unlock()
	byConn := map[string][]*simDelete{}
	teardownSent := map[string]bool{}
	got := map[string]map[int]bool{} // answers the client got, per connection, by status
	served429 := false
	for _, d := range cp.order {
		byConn[d.conn] = append(byConn[d.conn], d)
		if d.attempt != nil {
			teardownSent[d.conn] = true
			s.stats.deletes++
		}
		if got[d.conn] == nil {
			got[d.conn] = map[int]bool{}
		}
		got[d.conn][d.status] = true
		if d.status == http.StatusTooManyRequests {
			served429 = true
		}
	}
	// The teardown's own listing is every list before the first DELETE (when it listed); the
	// verifying lists come after. Every 200 returns the whole set, so the first of each says it.
	var firstListed, lastListed []string
	listedAtStart, verifyListed := false, false
	for _, l := range cp.lists {
		if l.status != http.StatusOK {
			continue
		}
		if !l.verifying && !listedAtStart {
			listedAtStart, firstListed = true, l.ids
		}
		if l.verifying {
			verifyListed, lastListed = true, l.ids
		}
	}
	// How the workflow ended (invariant 7, and the cancel's contract).
	elapsed := s.virtualEnd.Sub(s.virtualStart)
	s.check(elapsed <= simMaxVirtualTime, "invariant 7: the teardown took %s of workflow time, the bound is %s", elapsed, simMaxVirtualTime)
	switch {
	case s.endKind == "failed "+ac.ErrAgentNotFound:
		s.check(sch.list404First && !listedAtStart, "the workflow failed AgentNotFound, but the first list was not answered 404")
		s.check(s.stats.deletes == 0, "invariant 1: the workflow failed AgentNotFound after sending %d DELETEs", s.stats.deletes)
		return
	case s.endKind == "failed "+ac.ErrUnauthorized:
		s.check(!listedAtStart && cp.refused, "the workflow failed Unauthorized, but the key was not refused before the first list")
		return
	case strings.HasPrefix(s.endKind, "failed"):
		s.fail("invariant 7: the workflow failed (%s): %v", s.endKind, s.finalErr)
		return
	case s.result == nil:
		return
	}
	if sch.list404First {
		s.fail("the first list was answered 404, but the workflow ended %s instead of failing AgentNotFound", s.endKind)
	}
	res := *s.result
	switch {
	case s.endKind == "canceled":
		s.check(s.temporalSent, "the workflow ended Canceled without a Temporal cancel")
		s.check(res.Cancelled, "the workflow ended Canceled with a result that does not say cancelled")
	case s.temporalSent && !s.temporalImprecise:
		s.fail("a Temporal cancel reached the running workflow, but it ended %s (cancelled=%t)", s.endKind, res.Cancelled)
	case s.temporalSent:
		// Sent as a batch completed: the workflow completed in that batch's task, before the
		// cancel landed.
		s.stats.ignoredCancels++
	}
	if last := time.Unix(0, s.obs.lastBatchAt.Load()); !s.updateAcceptAt.IsZero() {
		s.check(!last.After(s.updateAcceptAt), "a batch was scheduled %s after the cancel update was accepted", last.Sub(s.updateAcceptAt))
	}
	if last := time.Unix(0, s.obs.lastBatchAt.Load()); !s.refusalSeenAt.IsZero() {
		s.check(!last.After(s.refusalSeenAt), "invariant 4: a batch was scheduled %s after the workflow got a refused batch's result", last.Sub(s.refusalSeenAt))
	}
	if s.updateSaidCanc {
		s.check(res.Cancelled, "the cancel update answered cancelled, but the result does not say cancelled")
	}
	if res.Cancelled {
		s.check(s.updateAccepted || s.temporalSent, "the result says cancelled, but no cancel was sent")
	}
	s.check(res.Runs == s.gen+1, "the result says %d runs, there were %d", res.Runs, s.gen+1)

	// Invariant 2: one entry per connection, counts add up.
	counts := map[string]int{}
	entries := map[string]ac.ConnectionOutcome{}
	for i, o := range s.report {
		s.check(i == 0 || s.report[i-1].ConnectionID < o.ConnectionID, "invariant 2: report entries %d and %d are not sorted or repeat (%.40q)", i-1, i, o.ConnectionID)
		_, dup := entries[o.ConnectionID]
		s.check(!dup, "invariant 2: connection %.40q has two report entries", o.ConnectionID)
		entries[o.ConnectionID] = o
		counts[o.Outcome]++
		s.stats.outcomes[o.Outcome]++
		if o.Outcome == ac.OutcomeFailed {
			if s.failedWith == nil {
				s.failedWith = map[string]bool{}
			}
			s.failedWith[o.FailureType] = true
		}
		s.check(len(o.Message) <= ac.MaxOutcomeMessageBytes && utf8.ValidString(o.Message), "connection %.40q has a message of %d bytes (or not UTF-8)", o.ConnectionID, len(o.Message))
	}
	s.checkSnapshots(entries, listedAtStart, firstListed)
	sum := res.Removed + res.AlreadyAbsent + res.Failed + res.Remained + res.Reappeared + res.Skipped
	s.check(sum == res.Total && res.Total == len(s.report), "invariant 2: counts sum to %d, total %d, %d report entries", sum, res.Total, len(s.report))
	s.check(counts[ac.OutcomeRemoved] == res.Removed && counts[ac.OutcomeAlreadyAbsent] == res.AlreadyAbsent &&
		counts[ac.OutcomeFailed] == res.Failed && counts[ac.OutcomeRemained] == res.Remained &&
		counts[ac.OutcomeReappeared] == res.Reappeared && counts[ac.OutcomeSkipped] == res.Skipped,
		"invariant 2: the result's counts %+v differ from the report's %v", res, counts)
	var want map[string]bool
	if sch.given != nil {
		want = map[string]bool{}
		for _, id := range sch.given {
			want[id] = true
		}
	} else if listedAtStart {
		want = map[string]bool{}
		for _, id := range firstListed {
			want[id] = true
		}
	}
	for id := range want {
		_, ok := entries[id]
		s.check(ok, "invariant 2: connection %.40q has no report entry", id)
	}
	for id, o := range entries {
		if !want[id] {
			s.check(o.Outcome == ac.OutcomeReappeared, "invariant 2: connection %.40q is reported %s but was neither given nor listed at the start", id, o.Outcome)
		}
	}

	// Invariant 3: every outcome is backed by what the control plane answered.
	listedAtEnd := map[string]bool{}
	for _, id := range lastListed {
		listedAtEnd[id] = true
	}
	missingOK := sch.missingOK == nil || *sch.missingOK
	maybeSent := map[string]bool{} // held by a lost batch attempt, or sent a request that was cut off
	for _, d := range cp.order {
		if d.cutOff || (d.attempt != nil && (d.attempt.lost || d.attempt.cancelled)) {
			maybeSent[d.conn] = true
		}
	}
	for _, a := range s.attempts {
		if a.lost || a.cancelled {
			for _, id := range a.items {
				maybeSent[id] = true
			}
		}
	}
	for id, sa := range sch.standalone {
		if sa.kind == saTerminated {
			maybeSent[id] = true // its request's answer never reached the teardown
		}
	}
	inBatch := map[string]bool{}
	s.obs.scheduled.Range(func(k, _ any) bool {
		inBatch[k.(string)] = true
		return true
	})
	for id, o := range entries {
		answers := got[id]
		sent := 0
		for _, d := range byConn[id] {
			if d.attempt != nil {
				sent++
			}
		}
		s.check(o.Attempts <= sent, "%.40q is reported with %d attempts, the teardown sent it %d DELETEs", id, o.Attempts, sent)
		switch o.Outcome {
		case ac.OutcomeRemoved:
			s.check(answers[http.StatusNoContent], "invariant 3: %.40q reported removed, but no DELETE of it was answered 204", id)
		case ac.OutcomeAlreadyAbsent:
			s.check(answers[http.StatusNotFound], "invariant 3: %.40q reported already_absent, but no DELETE of it was answered 404", id)
			// With missing_ok false, a connection absent before any request is NotFound, unless a
			// lost batch may have sent a request nobody counted.
			if ds := byConn[id]; !missingOK && len(ds) > 0 && ds[0].status == http.StatusNotFound && !maybeSent[id] {
				s.fail("invariant 3: %.40q reported already_absent with missing_ok false, but its first DELETE was answered 404 (%s)", id, simDescribe(ds))
			}
		case ac.OutcomeSkipped:
			s.check(!teardownSent[id], "invariant 3: %.40q reported skipped, but the teardown sent it %d DELETE(s)", id, len(byConn[id]))
		case ac.OutcomeRemained:
			s.check(res.Verified && verifyListed && listedAtEnd[id], "invariant 3: %.40q reported remained, but the verifying list did not show it", id)
		case ac.OutcomeReappeared:
			s.check(sch.given == nil && !want[id] && listedAtEnd[id], "invariant 3: %.40q reported reappeared, but it was listed at the start or not at the end", id)
		case ac.OutcomeFailed:
			wantStatus := map[string][]int{
				ac.ErrValidation:   {http.StatusUnprocessableEntity},
				ac.ErrBadRequest:   {http.StatusBadRequest},
				ac.ErrUnauthorized: {http.StatusUnauthorized, http.StatusForbidden},
				ac.ErrServerError:  {500, 502, 503, 504},
			}[o.FailureType]
			switch {
			case wantStatus != nil:
				s.check(slices.ContainsFunc(wantStatus, func(st int) bool { return answers[st] }), "invariant 3: %.40q failed %s, but no DELETE of it was answered %v", id, o.FailureType, wantStatus)
			case o.FailureType == ac.ErrNotFound:
				ds := byConn[id]
				s.check(!missingOK && len(ds) > 0 && ds[0].status == http.StatusNotFound,
					"invariant 3: %.40q failed NotFound, but missing_ok is true or its first DELETE was not answered 404 (%s)", id, simDescribe(ds))
			case o.FailureType == ac.ErrRateLimited:
				s.check(served429, "invariant 3: %.40q failed RateLimited, but no 429 was served", id)
			case o.FailureType == ac.ErrUnavailable || o.FailureType == ac.ErrInterrupted:
				// A request that got no final answer, or a batch that was lost with it.
				s.check(inBatch[id], "invariant 3: %.40q failed %s, but no batch ever held it", id, o.FailureType)
			default:
				s.fail("invariant 3: %.40q failed with type %s, which this control plane never causes", id, o.FailureType)
			}
		default:
			s.fail("invariant 3: %.40q has the unknown outcome %q", id, o.Outcome)
		}
		// Invariant 9: a restore from the report brings back every connection a DELETE of the
		// teardown removed (the 204 reached the client or not).
		if _, has := o.Snapshot(); has && o.Outcome != ac.OutcomeRemained && slices.ContainsFunc(byConn[id], func(d *simDelete) bool { return d.attempt != nil && d.applied }) {
			s.check(o.Undoable(), "invariant 9: a DELETE of the teardown removed %.40q, but its entry (%s %s, earlier_request %t) is not one RestoreEntries restores (%s)",
				id, o.Outcome, o.FailureType, o.EarlierRequest, simDescribe(byConn[id]))
		}
	}
	if res.Verified {
		s.check(verifyListed, "the result says verified, but no verifying list was answered 200")
		for _, id := range lastListed {
			if o, ok := entries[id]; ok {
				s.check(o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent, "%.40q is reported %s, but the verifying list still showed it", id, o.Outcome)
			}
		}
	}

	// Invariant 1: one DELETE per connection, except where a request was cut off or a batch
	// attempt's completion was lost (or the workflow cancelled the batch: the test environment
	// drops its result) or a standalone removal went away without a result.
	lostAttempts := 0
	for _, a := range s.attempts {
		if a.lost || a.cancelled {
			lostAttempts++
		}
	}
	s.stats.lostAttempts = lostAttempts
	for id, ds := range byConn {
		exempt := false
		finals := 0
		var lastFinal *simDelete
		for _, d := range ds {
			if d.cutOff {
				s.stats.cutOff++
				exempt = true
			}
			if d.attempt != nil && (d.attempt.lost || d.attempt.cancelled) {
				s.stats.lostRequests++
				exempt = true
			}
			if d.final() {
				finals++
				lastFinal = d
			}
		}
		if sa, ok := sch.standalone[id]; ok && sa.kind == saTerminated {
			exempt = true
		}
		// Even then, a retried attempt resumes from the heartbeat its lost attempt left: it never
		// sends a connection an earlier attempt of the same batch finished.
		for _, d := range ds {
			a := d.attempt
			if a == nil || a.number == 1 || a.cancelled {
				continue
			}
			for _, e := range ds {
				if b := e.attempt; b != nil && b.key() == a.key() && b.number < a.number && !b.cancelled && e.final() {
					s.fail("invariant 1: batch %s attempt %d sent %.40q again, which attempt %d had finished (%s)", a.key(), a.number, id, b.number, simDescribe(ds))
				}
			}
		}
		if exempt {
			s.stats.duplicates += max(finals-1, 0)
			continue
		}
		s.check(finals <= 1, "invariant 1: %.40q got %d DELETEs with a final answer (%s)", id, finals, simDescribe(ds))
		if lastFinal != nil {
			for _, d := range ds {
				s.check(!d.start.After(lastFinal.end) || d == lastFinal, "invariant 1: %.40q was sent a DELETE after one answered %d (%s)", id, lastFinal.status, simDescribe(ds))
			}
		}
		for i, d := range ds {
			for _, e := range ds[i+1:] {
				s.check(d.end.IsZero() || e.end.IsZero() || !(d.start.Before(e.end) && e.start.Before(d.end)),
					"invariant 1: %.40q had two DELETEs in flight at once (%s)", id, simDescribe(ds))
			}
		}
	}

	// Invariant 4: a refused key stops every DELETE not already in flight. A batch's workers
	// check its refusal before each request; once the batch has taken a 401/403 in, each worker
	// may still have one request past that check, so at most parallelism-1 of its DELETEs may
	// start after that. Between the answer's arrival and the batch taking it in (reading and
	// classifying it), its other workers may still start requests: those are counted, not failed.
	if !cp.refusedAt.IsZero() {
		afterKnown := map[*simAttempt]int{}
		for _, d := range cp.order {
			a := d.attempt
			if a == nil || !d.start.After(cp.refusedAt) {
				continue
			}
			a.mu.Lock()
			own, knew := a.refusedAt, a.knewAt
			a.mu.Unlock()
			switch {
			case !knew.IsZero() && d.start.After(knew):
				afterKnown[a]++
			case !own.IsZero() && d.start.After(own):
				s.stats.gateWindow++
			case !s.refusalSeenAt.IsZero() && s.started[a.key()].After(s.refusalSeenAt) && a.number == 1:
				s.fail("invariant 4: batch %s started after the workflow learned the key was refused, and sent %.40q", a.key(), d.conn)
			case slices.ContainsFunc(s.byKey[a.key()], func(b *simAttempt) bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return b.number < a.number && !b.refusedAt.IsZero()
			}):
				// A retry of a lost attempt that had been refused: the heartbeat it resumes from
				// holds the refused connection's outcome, not that the key is refused.
				s.stats.retryAfterRefusal++
			default:
				// Sent by another batch that had not seen a refusal yet: it cannot know, until
				// the workflow cancels it.
				s.stats.crossBatchRefused++
			}
		}
		for a, n := range afterKnown {
			s.stats.gateWindow += n
			s.check(n <= a.par-1, "invariant 4: batch %s attempt %d sent %d DELETEs after it had taken in its own 401/403, more than its %d other workers could have had in flight",
				a.key(), a.number, n, a.par-1)
		}
		if !s.refusalSeenAt.IsZero() {
			s.check(res.StopReason != "", "invariant 4: the workflow got a refused batch but the result has no stop_reason")
		}
	}
	if res.StopReason == stopRefused {
		s.check(cp.refused, "the result says the key was refused, but the control plane never refused it")
	}

	// Invariants 5 and 6: payload sizes and the key.
	s.obs.mu.Lock()
	for _, o := range s.obs.oversize {
		s.fail("invariant 5: a payload over %d bytes: %s", simPayloadWarnBytes, o)
	}
	for _, l := range s.obs.leaks {
		s.fail("invariant 6: the API key showed up in a %s", l)
	}
	s.obs.mu.Unlock()
	s.stats.checks += 2
}

// checkSnapshots is invariant 8: an entry of a connection the teardown's own list showed carries
// the snapshot that list gave (bounded as a teardown keeps it), across runs and pages; any other
// entry carries none. A removed entry with a token is a valid restore entry.
func (s *simRun) checkSnapshots(entries map[string]ac.ConnectionOutcome, listedAtStart bool, firstListed []string) {
	listed := map[string]bool{}
	for _, id := range firstListed {
		listed[id] = true
	}
	for id, o := range entries {
		got, has := o.Snapshot()
		want, ok := ac.BoundSnapshot(simSnapshot(id))
		if !listedAtStart || !listed[id] || o.Outcome == ac.OutcomeReappeared {
			s.check(!has && o.ProviderID == "" && o.Scopes == nil, "invariant 8: %.40q (%s) was not in the teardown's list but carries a snapshot %+v", id, o.Outcome, got)
			continue
		}
		if !ok {
			s.check(!has && o.ProviderID == "" && o.Scopes == nil, "invariant 8: %.40q was listed without a usable token but carries %+v", id, got)
			continue
		}
		if !s.check(reflect.DeepEqual(got, want), "invariant 8: %.40q (%s) carries snapshot %+v, the list gave %+v", id, o.Outcome, got, want) {
			continue
		}
		if o.Outcome == ac.OutcomeRemoved {
			s.stats.snapshots++
			in := ac.RestoreAgentConnectionsInput{AgentID: s.sch.agentID, Connections: []ac.ConnectionSnapshot{got}}
			s.check(in.Validate() == nil, "invariant 8: the removed entry %.40q is not a valid restore entry: %v", id, in.Validate())
		}
	}
}

func simDescribe(ds []*simDelete) string {
	var parts []string
	for _, d := range ds {
		src := "standalone"
		if d.attempt != nil {
			src = fmt.Sprintf("batch %s#%d", d.attempt.key(), d.attempt.number)
		}
		ans := fmt.Sprint(d.status)
		if d.cutOff {
			ans = "cut off"
		}
		parts = append(parts, src+": "+ans)
	}
	return strings.Join(parts, ", ")
}

// The simulation cannot pass vacuously: a batch that misbehaves in any of these ways breaks the
// invariant named.
func TestSimulation_CatchesBrokenBatches(t *testing.T) {
	sch := func() *simSchedule {
		s := drawSimSchedule(1)
		s.conns, s.existing, s.given, s.vanish = nil, nil, nil, nil
		for i := range 40 {
			id := fmt.Sprintf("conn-%04d", i)
			s.conns = append(s.conns, id)
			if i%4 != 0 {
				s.existing = append(s.existing, id)
			}
		}
		s.given = slices.Clone(s.conns)
		s.locked, s.standalone = map[string]bool{}, map[string]simStandalone{}
		s.concurrency, s.maxHistory, s.missingOK, s.continueOnError = 5, 0, nil, nil
		s.pHang, s.p429, s.p5xx, s.p400, s.pPhantom, s.refuseAfter, s.echoKey = 0, 0, 0, 0, 0, 0, false
		s.listTransient, s.list404Verify, s.pLoseBatch, s.cancelKind, s.cancelAfter = 0, false, 0, "", 0
		return s
	}
	for _, tt := range []struct {
		name     string
		sabotage func(s *simRun, ctx context.Context, in activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult)
		want     string
	}{
		{"a 404 reported removed", func(_ *simRun, _ context.Context, _ activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult) {
			for i, o := range res.Done {
				if o.Outcome == ac.OutcomeAlreadyAbsent {
					res.Done[i].Outcome = ac.OutcomeRemoved
				}
			}
		}, "invariant 3: \"conn-0000\" reported removed, but no DELETE of it was answered 204"},
		{"a sent connection reported skipped", func(_ *simRun, _ context.Context, _ activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult) {
			res.Done[0].Outcome = ac.OutcomeSkipped
		}, "reported skipped, but the teardown sent it"},
		{"every DELETE sent twice", func(s *simRun, ctx context.Context, in activities.RemoveConnectionsInput, _ *activities.RemoveConnectionsResult) {
			_, _ = s.acts.RemoveConnections(ctx, in)
		}, "DELETEs with a final answer"},
		{"a connection dropped from the result", func(_ *simRun, _ context.Context, _ activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult) {
			res.Done = res.Done[1:]
		}, "has no report entry"},
		{"the key in an outcome message", func(s *simRun, _ context.Context, _ activities.RemoveConnectionsInput, res *activities.RemoveConnectionsResult) {
			res.Done[0].Message = "echoed " + s.obs.key
		}, "invariant 6: the API key showed up"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSimRun(sch())
			s.sabotage = tt.sabotage
			s.run()
			all := strings.Join(s.violations, "\n")
			if !strings.Contains(all, tt.want) {
				t.Errorf("got violations:\n%s\nwant one containing %q", all, tt.want)
			}
		})
	}
}
