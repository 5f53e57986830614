//go:build faults

package faults

import (
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// storm answers a fraction of the API requests with a 5xx or a 429: in front of the emulator, it
// queues a fault aimed at exactly the request passing through (its method, route, agent and
// connection), so the emulator itself answers, counts and logs it.
type storm struct {
	em   *emulator.Server
	rate float64

	mu     sync.Mutex
	on     bool
	rng    *mrand.Rand
	counts map[string]int
}

// stormKinds are the answers a storm picks from, with their weights (summing to 1).
var stormKinds = []struct {
	name   string
	weight float64
	fault  emulator.Fault
}{
	{"500", 0.20, emulator.Fault{Status: 500}},
	{"502", 0.15, emulator.Fault{Status: 502, Body: emulator.BodyHTML}},
	{"503", 0.15, emulator.Fault{Status: 503}},
	{"503 Retry-After seconds", 0.10, emulator.Fault{Status: 503, RetryAfter: "1"}},
	{"504", 0.10, emulator.Fault{Status: 504, Body: emulator.BodyText}},
	{"429 Retry-After seconds", 0.15, emulator.Fault{Status: 429, RetryAfter: "1"}},
	{"429 Retry-After HTTP date", 0.15, emulator.Fault{Status: 429, RetryAfter: "2", RetryAfterDate: true}},
}

func (st *storm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/_emulator/") {
		st.mu.Lock()
		if st.on && st.rng.Float64() < st.rate {
			u := st.rng.Float64()
			kind := stormKinds[len(stormKinds)-1]
			for _, k := range stormKinds {
				if u < k.weight {
					kind = k
					break
				}
				u -= k.weight
			}
			f := kind.fault
			f.Method = r.Method
			// /v2/auth/agents/{agent_id}/connections[/{connection_id}]
			parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/auth/agents/"), "/")
			if len(parts) >= 2 {
				f.AgentID = parts[0]
				f.Route = emulator.RouteList
				if len(parts) == 3 {
					f.Route = emulator.RouteRemove
					f.ConnectionID = parts[2]
				}
			}
			st.counts[kind.name]++
			st.em.InjectNext(f)
		}
		st.mu.Unlock()
	}
	st.em.ServeHTTP(w, r)
}

func (st *storm) set(on bool) {
	st.mu.Lock()
	st.on = on
	st.mu.Unlock()
}

func (st *storm) snapshot() map[string]int {
	st.mu.Lock()
	defer st.mu.Unlock()
	m := make(map[string]int, len(st.counts))
	for k, v := range st.counts {
		m[k] = v
	}
	return m
}

// TestFaults_1_Storm answers 30% of the control plane requests with 5xx and 429 (Retry-After in
// seconds and as an HTTP date) while teardowns and single removals are started for a minute.
// Everything ends removed, each connection with one served DELETE.
func TestFaults_1_Storm(t *testing.T) {
	var st *storm
	s := newStack(t, stackOptions{handler: func(em *emulator.Server) http.Handler {
		st = &storm{em: em, rate: 0.30, rng: mrand.New(mrand.NewPCG(1, 2)), counts: map[string]int{}}
		return st
	}})
	s.em.SetLatency(20 * time.Millisecond)
	st.set(true)
	began := time.Now()
	const stormFor = 60 * time.Second

	type teardownRun struct {
		agent string
		ids   []string
		res   ac.RemoveAgentConnectionsResult
		err   error
	}
	var (
		mu        sync.Mutex
		teardowns []*teardownRun
		singles   []string
		singleErr []string
		outcomes  = map[string]int{}
		wg        sync.WaitGroup
	)
	// Teardowns, one after another, 200 connections each.
	wg.Go(func() {
		for k := 0; time.Since(began) < stormFor; k++ {
			tr := &teardownRun{agent: fmt.Sprintf("storm-agent-%02d", k), ids: ids(fmt.Sprintf("st%02d", k), 200)}
			s.em.Seed(tr.agent, tr.ids...)
			mu.Lock()
			teardowns = append(teardowns, tr)
			mu.Unlock()
			run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: tr.agent, Concurrency: 20})
			if err != nil {
				tr.err = err
				return
			}
			tr.res, tr.err = teardownResult(run, 15*time.Minute)
		}
	})
	// Single removals, four at a time.
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for time.Since(began) < stormFor {
				id := fmt.Sprintf("single-%05d", next.Add(1))
				s.em.Seed("storm-single", id)
				mu.Lock()
				singles = append(singles, id)
				mu.Unlock()
				run, err := s.startRemoval(ac.RemoveConnectionInput{AgentID: "storm-single", ConnectionID: id})
				var res ac.RemoveConnectionResult
				if err == nil {
					res, err = removalResult(run, 15*time.Minute)
				}
				mu.Lock()
				if err != nil {
					singleErr = append(singleErr, id+": "+err.Error())
				} else {
					outcomes[res.Outcome]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	st.set(false)

	total, lost, repeated, under := 0, 0, 0, 0
	for _, tr := range teardowns {
		total += len(tr.ids)
		if tr.err != nil {
			t.Errorf("teardown %s: %v", tr.agent, tr.err)
			continue
		}
		if tr.res.Removed+tr.res.AlreadyAbsent != len(tr.ids) || !tr.res.Verified {
			t.Errorf("teardown %s: got %v verified %t, want all %d removed", tr.agent, outcomeCounts(tr.res), tr.res.Verified, len(tr.ids))
			for _, o := range tr.res.Connections {
				if o.Outcome == ac.OutcomeFailed {
					t.Logf("  e.g. %+v", o)
					break
				}
			}
		}
		a := s.auditEmulator(tr.agent, tr.ids, nil, nil)
		a.report(t, "teardown "+tr.agent, nil)
		under += checkOutcomes(t, "teardown "+tr.agent, tr.res, tr.ids, nil, a)
		lost += len(a.Lost)
		repeated += a.Repeated
	}
	total += len(singles)
	for _, e := range first(singleErr, 10) {
		t.Errorf("single removal %s", e)
	}
	a := s.auditEmulator("storm-single", singles, nil, nil)
	a.report(t, "single removals", nil)
	lost += len(a.Lost)
	repeated += a.Repeated

	stats := s.em.Stats()
	injected := map[int]int{}
	for _, e := range s.em.Log() {
		if e.Injected {
			injected[e.Status]++
		}
	}
	var five, four int
	for status, n := range injected {
		if status == 429 {
			four += n
		} else {
			five += n
		}
	}
	kinds := st.snapshot()
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s: %d", k, kinds[k]))
	}
	t.Logf("storm: %d connections (%d teardowns of 200, %d single removals: %v), %d requests in %s, %d injected 5xx, %d injected 429 (%d seconds, %d HTTP date), %d lost, %d duplicate DELETEs, %d outcomes undercounting attempts",
		total, len(teardowns), len(singles), outcomes, stats.Requests, elapsed.Round(time.Second), five, four,
		kinds["429 Retry-After seconds"], kinds["429 Retry-After HTTP date"], lost, repeated, under)
	t.Logf("storm: injected by kind %s; emulator injected %d of %d requests (%.1f%%)", strings.Join(parts, ", "), stats.Injected, stats.Requests, 100*float64(stats.Injected)/float64(max(stats.Requests, 1)))
	if four == 0 || five == 0 {
		t.Errorf("got %d injected 429 and %d 5xx, want both", four, five)
	}
}
