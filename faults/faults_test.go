//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
)

// TestFaults_2_ControlPlaneDown closes the control plane's listener and connections for 20 s in
// the middle of a teardown (and of single removals), then serves the same emulator on the same
// address again. Everything ends removed.
func TestFaults_2_ControlPlaneDown(t *testing.T) {
	s := newStack(t, stackOptions{})
	const agent = "down-agent"
	all := ids("down", 400)
	s.em.Seed(agent, all...)
	singles := ids("down-single", 10)
	s.em.Seed("down-single-agent", singles...)
	s.em.SetLatency(200 * time.Millisecond)

	run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor("100 connections removed", 2*time.Minute, func() bool { return s.em.Stats().Removed >= 100 })
	wentDown := time.Now()
	s.host.down()
	removedAtDown := s.em.Stats().Removed
	// Single removals started while the control plane is down.
	var wg sync.WaitGroup
	singleRes := make([]ac.RemoveConnectionResult, len(singles))
	singleErr := make([]error, len(singles))
	for i, id := range singles {
		wg.Go(func() {
			r, err := s.startRemoval(ac.RemoveConnectionInput{AgentID: "down-single-agent", ConnectionID: id})
			if err == nil {
				singleRes[i], err = removalResult(r, 10*time.Minute)
			}
			singleErr[i] = err
		})
	}
	time.Sleep(20 * time.Second)
	refusedDuring := s.em.Stats().Removed - removedAtDown
	if err := s.host.up(); err != nil {
		t.Fatalf("serve the emulator again on %s: %v", s.host.addr, err)
	}
	cameBack := time.Now()
	res, err := teardownResult(run, 10*time.Minute)
	if err != nil {
		t.Fatalf("teardown: %v", err)
	}
	wg.Wait()
	downFor := cameBack.Sub(wentDown)
	disruptions := []window{{wentDown, cameBack}}

	a := s.auditEmulator(agent, all, nil, disruptions)
	a.report(t, "teardown", disruptions)
	under := checkOutcomes(t, "teardown", res, all, nil, a)
	as := s.auditEmulator("down-single-agent", singles, nil, disruptions)
	as.report(t, "single removals", disruptions)
	singleOutcomes := map[string]int{}
	for i, err := range singleErr {
		if err != nil {
			t.Errorf("single removal %s: %v", singles[i], err)
			continue
		}
		singleOutcomes[singleRes[i].Outcome]++
		if singleRes[i].Attempts < as.PerConnection[singles[i]] {
			under++
			t.Errorf("single removal %s: attempts %d, the emulator saw %d DELETEs", singles[i], singleRes[i].Attempts, as.PerConnection[singles[i]])
		}
	}
	if refusedDuring != 0 {
		t.Errorf("got %d removals while the control plane was down, want 0", refusedDuring)
	}
	t.Logf("outage: %d connections (teardown of %d %v, %d single removals %v), control plane down %s after %d removed, %d DELETEs in all (%d unanswered), %d lost, %d duplicate DELETEs (%d cut off by the outage, %d unexplained), %d outcomes undercounting attempts, requests counted in the teardown's attempts %d, runs %d",
		len(all)+len(singles), len(all), outcomeCounts(res), len(singles), singleOutcomes, downFor.Round(100*time.Millisecond), removedAtDown,
		a.Deletes+as.Deletes, a.NoAnswer+as.NoAnswer, len(a.Lost)+len(as.Lost), a.Repeated+as.Repeated, len(a.CutOff)+len(as.CutOff),
		len(a.Unexplained)+len(as.Unexplained), under, sumAttempts(res), res.Runs)
}

func sumAttempts(res ac.RemoveAgentConnectionsResult) int {
	n := 0
	for _, o := range res.Connections {
		n += o.Attempts
	}
	return n
}

// TestFaults_3_HangsAndBrokenBodies: answers that hang past the request timeout (2 s) or come
// too late, truncated, HTML and text bodies on 5xx, and 422 with broken bodies. The transient
// ones end removed; the 422s fail as ValidationError with a message naming the status and what
// was wrong with the body.
func TestFaults_3_HangsAndBrokenBodies(t *testing.T) {
	s := newStack(t, stackOptions{env: []string{"LANGSMITH_REQUEST_TIMEOUT=2s"}})
	const agent = "hang-agent"
	transient := map[string]emulator.Fault{
		"hang-once":       {Hang: true},
		"hang-twice":      {Hang: true, Count: 2},
		"late-answer":     {Delay: 3 * time.Second}, // served only after the client gave up
		"503-truncated":   {Status: 503, Body: emulator.BodyTruncated},
		"503-trunc-ra":    {Status: 503, Body: emulator.BodyTruncated, RetryAfter: "1"},
		"502-html":        {Status: 502, Body: emulator.BodyHTML},
		"500-text":        {Status: 500, Body: emulator.BodyText},
		"500-truncated":   {Status: 500, Body: emulator.BodyTruncated},
		"504-empty":       {Status: 504, Body: emulator.BodyEmpty},
		"429-html-date":   {Status: 429, Body: emulator.BodyHTML, RetryAfter: "1", RetryAfterDate: true},
		"hang-then-trunc": {Hang: true},
	}
	broken422 := map[string]emulator.Fault{
		"422-truncated": {Status: 422, Body: emulator.BodyTruncated},
		"422-html":      {Status: 422, Body: emulator.BodyHTML},
		"422-text":      {Status: 422, Body: emulator.BodyText, Detail: "locked by policy"},
		"422-empty":     {Status: 422, Body: emulator.BodyEmpty},
	}
	// Wanted in each 422 message, besides the status.
	wantIn422 := map[string]string{
		"422-truncated": "not JSON",
		"422-html":      "not JSON",
		"422-text":      "locked by policy",
		"422-empty":     "empty body",
	}
	var singleIDs []string
	for id := range transient {
		singleIDs = append(singleIDs, "single-"+id)
	}
	for id := range broken422 {
		singleIDs = append(singleIDs, "single-"+id)
	}
	s.em.Seed(agent, singleIDs...)
	inject := func(prefix string) {
		for id, f := range transient {
			f.ConnectionID = prefix + id
			s.em.InjectNext(f)
		}
		s.em.InjectNext(emulator.Fault{Status: 503, Body: emulator.BodyTruncated, ConnectionID: prefix + "hang-then-trunc"})
		for id, f := range broken422 {
			f.ConnectionID = prefix + id
			s.em.InjectNext(f)
		}
	}
	inject("single-")

	// Single removals of each.
	type single struct {
		id  string
		res ac.RemoveConnectionResult
		err error
	}
	results := make([]single, len(singleIDs))
	var wg sync.WaitGroup
	for i, id := range singleIDs {
		wg.Go(func() {
			results[i].id = id
			run, err := s.startRemoval(ac.RemoveConnectionInput{AgentID: agent, ConnectionID: id})
			if err == nil {
				results[i].res, err = removalResult(run, 10*time.Minute)
			}
			results[i].err = err
		})
	}
	wg.Wait()
	keep := map[string]bool{}
	singleRemoved, singleValidation := 0, 0
	for _, r := range results {
		name := strings.TrimPrefix(r.id, "single-")
		if _, ok := broken422[name]; ok {
			keep[r.id] = true
			var appErr *temporal.ApplicationError
			if !errors.As(r.err, &appErr) || appErr.Type() != ac.ErrValidation {
				t.Errorf("%s: got %v, want a %s failure", r.id, r.err, ac.ErrValidation)
				continue
			}
			msg := appErr.Message()
			if !strings.Contains(msg, "422") || !strings.Contains(msg, wantIn422[name]) || len(msg) > 1024 || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("%s: got message %q, want one line naming 422 and %q", r.id, msg, wantIn422[name])
			}
			if n := s.em.DeleteCount(r.id); n != 1 {
				t.Errorf("%s: got %d DELETEs, want 1 (422 is not retried)", r.id, n)
			}
			t.Logf("  %s: %s", r.id, msg)
			singleValidation++
			continue
		}
		if r.err != nil || r.res.Outcome != ac.OutcomeRemoved {
			t.Errorf("%s: got %+v, %v; want removed", r.id, r.res, r.err)
			continue
		}
		singleRemoved++
	}
	as := s.auditEmulator(agent, singleIDs, keep, nil)
	as.report(t, "single removals", nil)

	// The same faults inside a teardown of 100 connections.
	const tAgent = "hang-teardown"
	var tIDs []string
	failing := map[string]string{}
	tKeep := map[string]bool{}
	for id := range transient {
		tIDs = append(tIDs, "td-"+id)
	}
	for id := range broken422 {
		tIDs = append(tIDs, "td-"+id)
		failing["td-"+id] = ac.ErrValidation
		tKeep["td-"+id] = true
	}
	tIDs = append(tIDs, ids("td-plain", 100-len(tIDs))...)
	s.em.Seed(tAgent, tIDs...)
	inject("td-")
	run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: tAgent, ConnectionIDs: tIDs, Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	res, err := teardownResult(run, 10*time.Minute)
	if err != nil {
		t.Fatalf("teardown: %v", err)
	}
	at := s.auditEmulator(tAgent, tIDs, tKeep, nil)
	at.report(t, "teardown", nil)
	checkOutcomes(t, "teardown", res, tIDs, failing, at)
	for _, o := range res.Connections {
		if name := strings.TrimPrefix(o.ConnectionID, "td-"); wantIn422[name] != "" {
			if !strings.Contains(o.Message, "422") || !strings.Contains(o.Message, wantIn422[name]) {
				t.Errorf("teardown %s: got message %q, want 422 and %q", o.ConnectionID, o.Message, wantIn422[name])
			}
		}
	}
	if pending := s.em.Faults().Pending; len(pending) != 0 {
		t.Errorf("got %d faults never reached, want every fault used: %+v", len(pending), pending)
	}
	t.Logf("hangs: %d single removals (%d removed, %d ValidationError), teardown of %d %v; %d DELETEs, %d unanswered (hang or late), %d injected answers, %d lost, %d duplicate DELETEs",
		len(singleIDs), singleRemoved, singleValidation, len(tIDs), outcomeCounts(res), as.Deletes+at.Deletes, as.NoAnswer+at.NoAnswer,
		as.Injected+at.Injected, len(as.Lost)+len(at.Lost), as.Repeated+at.Repeated)
}

// TestFaults_4_WorkerKilled: the worker is SIGKILLed mid-teardown and restarted, twice; then two
// workers share a teardown and one of them is killed. A connection may get a second DELETE only
// when its first was in flight at a kill, and it still ends removed or already_absent.
func TestFaults_4_WorkerKilled(t *testing.T) {
	t.Run("killed twice and restarted", func(t *testing.T) {
		s := newStack(t, stackOptions{})
		const agent = "kill-agent"
		all := ids("kill", 600)
		s.em.Seed(agent, all...)
		singles := ids("kill-single", 20)
		s.em.Seed("kill-single-agent", singles...)
		s.em.SetLatency(100 * time.Millisecond)
		run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 20})
		if err != nil {
			t.Fatal(err)
		}
		var kills []window
		var wg sync.WaitGroup
		singleErr := make([]error, len(singles))
		singleRes := make([]ac.RemoveConnectionResult, len(singles))
		for k, at := range []int{150, 380} {
			s.waitFor(fmt.Sprintf("%d connections removed", at), 5*time.Minute, func() bool { return s.em.Stats().Removed >= at })
			if k == 0 {
				// Single removals in flight at the first kill.
				for i, id := range singles {
					wg.Go(func() {
						r, err := s.startRemoval(ac.RemoveConnectionInput{AgentID: "kill-single-agent", ConnectionID: id})
						if err == nil {
							singleRes[i], err = removalResult(r, 10*time.Minute)
						}
						singleErr[i] = err
					})
				}
				s.waitFor("single removals in flight", time.Minute, func() bool {
					n := 0
					for _, id := range singles {
						n += s.em.DeleteCount(id)
					}
					return n >= 5
				})
			}
			s.mu.Lock()
			w := s.workers[len(s.workers)-1]
			s.mu.Unlock()
			at := time.Now()
			w.Kill()
			kills = append(kills, killWindow(at))
			s.startWorker()
		}
		res, err := teardownResult(run, 10*time.Minute)
		if err != nil {
			t.Fatalf("teardown: %v", err)
		}
		wg.Wait()
		a := s.auditEmulator(agent, all, nil, kills)
		a.report(t, "teardown", kills)
		under := checkOutcomes(t, "teardown", res, all, nil, a)
		as := s.auditEmulator("kill-single-agent", singles, nil, kills)
		as.report(t, "single removals", kills)
		singleOutcomes := map[string]int{}
		for i, err := range singleErr {
			if err != nil {
				t.Errorf("single removal %s: %v", singles[i], err)
				continue
			}
			singleOutcomes[singleRes[i].Outcome]++
			if singleRes[i].Attempts < as.PerConnection[singles[i]] {
				under++
				t.Errorf("single removal %s: attempts %d, the emulator saw %d DELETEs", singles[i], singleRes[i].Attempts, as.PerConnection[singles[i]])
			}
		}
		for _, id := range append(append([]string{}, as.CutOff...), as.Unexplained...) {
			for i := range singles {
				if singles[i] == id && singleRes[i].Outcome != ac.OutcomeRemoved && singleRes[i].Outcome != ac.OutcomeAlreadyAbsent {
					t.Errorf("single %s: repeated and ended %+v", id, singleRes[i])
				}
			}
		}
		t.Logf("kills: %d connections (teardown of %d %v, %d single removals %v), 2 SIGKILLs, %d DELETEs (%d unanswered), %d lost, %d duplicate DELETEs: %d cut off mid-request at a kill, %d after a DELETE that had finished before the kill; %d outcomes undercounting attempts",
			len(all)+len(singles), len(all), outcomeCounts(res), len(singles), singleOutcomes, a.Deletes+as.Deletes, a.NoAnswer+as.NoAnswer,
			len(a.Lost)+len(as.Lost), a.Repeated+as.Repeated, len(a.CutOff)+len(as.CutOff), len(a.Unexplained)+len(as.Unexplained), under)
	})
	t.Run("two workers at once, one killed", func(t *testing.T) {
		s := newStack(t, stackOptions{})
		second := s.startWorker()
		const agent = "pair-agent"
		all := ids("pair", 400)
		s.em.Seed(agent, all...)
		s.em.SetLatency(50 * time.Millisecond)
		run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 40})
		if err != nil {
			t.Fatal(err)
		}
		s.waitFor("100 connections removed", 5*time.Minute, func() bool { return s.em.Stats().Removed >= 100 })
		at := time.Now()
		s.mu.Lock()
		firstWorker := s.workers[0]
		s.mu.Unlock()
		firstWorker.Kill()
		kills := []window{killWindow(at)}
		res, err := teardownResult(run, 10*time.Minute)
		if err != nil {
			t.Fatalf("teardown: %v", err)
		}
		a := s.auditEmulator(agent, all, nil, kills)
		a.report(t, "teardown", kills)
		under := checkOutcomes(t, "teardown", res, all, nil, a)
		if second.Exited() {
			t.Error("the surviving worker exited")
		}
		t.Logf("two workers: %d connections %v, 1 of 2 workers SIGKILLed at %d removed, %d DELETEs (%d unanswered), %d lost, %d duplicate DELETEs: %d cut off mid-request at the kill, %d after a DELETE that had finished before the kill; %d outcomes undercounting attempts",
			len(all), outcomeCounts(res), 100, a.Deletes, a.NoAnswer, len(a.Lost), a.Repeated, len(a.CutOff), len(a.Unexplained), under)
	})
}

// TestFaults_5_TemporalRestarted kills the Temporal dev server (file-backed database) mid-teardown,
// starts it again on the same port and file, and checks the teardown completes; it reports
// whether the worker reconnected by itself or had to be restarted.
func TestFaults_5_TemporalRestarted(t *testing.T) {
	port, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "temporal.db")
	srv, err := devserver.Start(context.Background(), devserver.Options{DBFile: db, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	s := newStack(t, stackOptions{temporalAddr: srv.Address})
	const agent = "restart-agent"
	all := ids("rs", 600)
	s.em.Seed(agent, all...)
	s.em.SetLatency(100 * time.Millisecond)
	run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: agent, Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor("175 connections removed (mid-batch)", 5*time.Minute, func() bool { return s.em.Stats().Removed >= 175 })
	wentDown := time.Now()
	srv.Kill()
	removedAtKill := s.em.Stats().Removed
	time.Sleep(10 * time.Second)
	srv, err = devserver.Start(context.Background(), devserver.Options{DBFile: db, Port: port})
	if err != nil {
		t.Fatalf("restart the dev server on the same port and file: %v", err)
	}
	cameBack := time.Now()
	removedWhileDown := s.em.Stats().Removed - removedAtKill

	// Does the running worker pick the work up again by itself? Give it three minutes (a batch
	// whose completion was lost needs its heartbeat timeout, 30 s, to be retried).
	s.mu.Lock()
	w := s.workers[0]
	s.mu.Unlock()
	res, err := teardownResult(run, 3*time.Minute)
	restarted := false
	if err != nil {
		t.Logf("the teardown did not complete within 3 minutes with the same worker (%v, worker exited: %t); restarting the worker", err, w.Exited())
		restarted = true
		w.Kill()
		s.startWorker()
		res, err = teardownResult(run, 5*time.Minute)
		if err != nil {
			t.Fatalf("teardown after restarting the worker: %v", err)
		}
	}
	if w.Exited() && !restarted {
		t.Errorf("the worker exited during the outage")
	}
	// A batch that finished just before the server died may have lost its completion and its last
	// second of heartbeated progress with it: count from heartbeatLag before the kill.
	disruptions := []window{{wentDown.Add(-heartbeatLag), cameBack}}
	a := s.auditEmulator(agent, all, nil, disruptions)
	a.report(t, "teardown", disruptions)
	under := checkOutcomes(t, "teardown", res, all, nil, a)
	how := "reconnected by itself, no restart"
	if restarted {
		how = "had to be restarted"
	}
	t.Logf("temporal restart: %d connections %v, dev server killed at %d removed and back %s later on the same port and file, %d removed while it was down, worker %s, %d DELETEs, %d lost, %d duplicate DELETEs (%d overlapping the outage, %d unexplained), %d outcomes undercounting attempts, runs %d",
		len(all), outcomeCounts(res), removedAtKill, cameBack.Sub(wentDown).Round(100*time.Millisecond), removedWhileDown, how, a.Deletes,
		len(a.Lost), a.Repeated, len(a.CutOff), len(a.Unexplained), under, res.Runs)
}

// TestFaults_6_DuplicateStarts: the same removal started 5 times at once (same workflow ID,
// UseExisting) is one run and one DELETE; the same teardown started 3 times is one run and one
// DELETE per connection.
func TestFaults_6_DuplicateStarts(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.em.Seed("dup-agent", "dup-conn")
	s.em.SetLatency(500 * time.Millisecond)
	var wg sync.WaitGroup
	runIDs := make([]string, 5)
	results := make([]ac.RemoveConnectionResult, 5)
	errs := make([]error, 5)
	for i := range 5 {
		wg.Go(func() {
			run, err := s.startRemoval(ac.RemoveConnectionInput{AgentID: "dup-agent", ConnectionID: "dup-conn"})
			if err != nil {
				errs[i] = err
				return
			}
			runIDs[i] = run.GetRunID()
			results[i], errs[i] = removalResult(run, 5*time.Minute)
		})
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i := range 5 {
		if errs[i] != nil {
			t.Errorf("start %d: %v", i, errs[i])
		}
		distinct[runIDs[i]] = true
		if !reflect.DeepEqual(results[i], results[0]) {
			t.Errorf("start %d: got %+v, want the same result as start 0 (%+v)", i, results[i], results[0])
		}
	}
	if len(distinct) != 1 {
		t.Errorf("got %d runs for 5 starts, want 1", len(distinct))
	}
	if n := s.em.DeleteCount("dup-conn"); n != 1 {
		t.Errorf("got %d DELETEs of dup-conn, want 1", n)
	}
	if results[0].Outcome != ac.OutcomeRemoved || results[0].Attempts != 1 {
		t.Errorf("got %+v, want removed after 1 request", results[0])
	}
	oneDeletes := s.em.DeleteCount("dup-conn")

	all := ids("dupt", 200)
	s.em.Seed("dup-teardown", all...)
	s.em.SetLatency(50 * time.Millisecond)
	tRunIDs := make([]string, 3)
	tRes := make([]ac.RemoveAgentConnectionsResult, 3)
	tErr := make([]error, 3)
	for i := range 3 {
		wg.Go(func() {
			run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "dup-teardown", Concurrency: 10})
			if err != nil {
				tErr[i] = err
				return
			}
			tRunIDs[i] = run.GetRunID()
			tRes[i], tErr[i] = teardownResult(run, 5*time.Minute)
		})
	}
	wg.Wait()
	tDistinct := map[string]bool{}
	for i := range 3 {
		if tErr[i] != nil {
			t.Errorf("teardown start %d: %v", i, tErr[i])
		}
		tDistinct[tRunIDs[i]] = true
	}
	if len(tDistinct) != 1 {
		t.Errorf("got %d teardown runs for 3 starts, want 1", len(tDistinct))
	}
	a := s.auditEmulator("dup-teardown", all, nil, nil)
	a.report(t, "teardown", nil)
	checkOutcomes(t, "teardown", tRes[0], all, nil, a)
	maxDeletes := 0
	for _, id := range all {
		maxDeletes = max(maxDeletes, s.em.DeleteCount(id))
	}
	if maxDeletes != 1 {
		t.Errorf("got up to %d DELETEs for one connection, want exactly 1 each", maxDeletes)
	}
	t.Logf("duplicate starts: removal started 5 times -> %d run(s), %d DELETE(s), outcome %s attempts %d; teardown of %d started 3 times -> %d run(s), %d DELETEs, at most %d per connection, %v, %d lost",
		len(distinct), oneDeletes, results[0].Outcome, results[0].Attempts, len(all), len(tDistinct), a.Deletes, maxDeletes, outcomeCounts(tRes[0]), len(a.Lost))
}
