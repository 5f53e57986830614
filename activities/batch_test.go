package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// perID answers each connection's DELETE with its own handler (def for the rest), counts the
// requests per connection, and notes any two requests for one connection in flight at once.
type perID struct {
	handlers map[string]http.HandlerFunc
	def      http.HandlerFunc

	mu       sync.Mutex
	counts   map[string]int
	inFlight map[string]int
	overlap  []string
}

func newPerID(def http.HandlerFunc, handlers map[string]http.HandlerFunc) *perID {
	return &perID{handlers: handlers, def: def, counts: map[string]int{}, inFlight: map[string]int{}}
}

func (p *perID) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := path.Base(r.URL.Path)
	p.mu.Lock()
	p.counts[id]++
	p.inFlight[id]++
	if p.inFlight[id] > 1 {
		p.overlap = append(p.overlap, id)
	}
	h, ok := p.handlers[id]
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight[id]--
		p.mu.Unlock()
	}()
	if !ok {
		h = p.def
	}
	h(w, r)
}

func (p *perID) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[id]
}

func (f *fixture) removeBatch(t *testing.T, in RemoveConnectionsInput) (RemoveConnectionsResult, error) {
	t.Helper()
	val, err := f.env.ExecuteActivity(f.acts.RemoveConnections, in)
	var res RemoveConnectionsResult
	if err == nil {
		if gerr := val.Get(&res); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return res, err
}

func items(ids ...string) []BatchItem {
	out := make([]BatchItem, len(ids))
	for i, id := range ids {
		out[i] = BatchItem{ConnectionID: id}
	}
	return out
}

func outcomesByID(res RemoveConnectionsResult) map[string]ac.ConnectionOutcome {
	m := make(map[string]ac.ConnectionOutcome, len(res.Done))
	for _, o := range res.Done {
		m[o.ConnectionID] = o
	}
	return m
}

func TestRemoveConnections_AllRemoved(t *testing.T) {
	f := newFixture(t, status(204, ""))
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Items: items("c1", "c2", "c3", "c4", "c5"), Parallelism: 3})
	if err != nil {
		t.Fatalf("got error %v, want success", err)
	}
	var got []string
	for _, o := range res.Done {
		got = append(got, o.ConnectionID)
		if o.Outcome != ac.OutcomeRemoved || o.Attempts != 1 {
			t.Errorf("got %+v, want removed with 1 attempt", o)
		}
	}
	if want := []string{"c1", "c2", "c3", "c4", "c5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got done %q, want %q in input order", got, want)
	}
	if len(res.Transient)+len(res.Deferred)+len(res.Busy) != 0 {
		t.Errorf("got %+v, want only done", res)
	}
	if got := f.requests.Load(); got != 5 {
		t.Errorf("got %d requests, want 5", got)
	}
	logs := f.logs.String()
	for _, want := range []string{"connection batch finished", "agent_id agent-1", "connections 5", "removed 5", "latency_ms"} {
		if !strings.Contains(logs, want) {
			t.Errorf("got logs %q, want them to contain %q", logs, want)
		}
	}
}

func TestRemoveConnections_Emulator(t *testing.T) {
	em := emulator.New(emulator.Options{APIKey: testKey, TenantID: testTenant})
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	t.Cleanup(em.Close)
	em.Seed("agent-1", "c1", "c2", "c3")
	em.MarkInvalid("c3")
	f := newFixtureAt(t, srv.URL, nil, srv)
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Items: items("c1", "c2", "c3", "c9"), Parallelism: 2})
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	got := outcomesByID(res)
	want := map[string]string{"c1": ac.OutcomeRemoved, "c2": ac.OutcomeRemoved, "c3": ac.OutcomeFailed, "c9": ac.OutcomeFailed}
	for id, w := range want {
		if got[id].Outcome != w {
			t.Errorf("got %s %+v, want outcome %s", id, got[id], w)
		}
	}
	if got["c9"].FailureType != ac.ErrNotFound || got["c3"].FailureType != ac.ErrValidation {
		t.Errorf("got c9 %q and c3 %q, want NotFound and ValidationError", got["c9"].FailureType, got["c3"].FailureType)
	}
	if left := em.Connections("agent-1"); !reflect.DeepEqual(left, []string{"c3"}) {
		t.Errorf("got %q left at the emulator, want [c3]", left)
	}
}

func TestRemoveConnections_MixedOutcomes(t *testing.T) {
	long422 := `{"detail":"` + strings.Repeat("é", 2000) + `"}`
	handlers := map[string]http.HandlerFunc{
		"gone":       status(404, `{"detail":"not found"}`),
		"gone-prior": status(404, `{"detail":"not found"}`),
		"bad-prior":  status(422, `{"detail":"locked"}`),
		"invalid":    status(422, `{"detail":[{"loc":["path","connection_id"],"msg":"bad id","type":"t"}]}`),
		"long":       status(422, long422),
		"down":       status(503, ""),
		"down-after": status(503, "", "Retry-After", "12"),
		"flaky":      sequence(status(503, ""), status(404, `{"detail":"gone"}`)),
	}
	type want struct {
		list     string // done, transient
		outcome  string
		errType  string
		attempts int
		delay    time.Duration
		inMsg    string
		earlier  bool // EarlierRequest: the 404 followed a request of this teardown with no final answer
	}
	tests := []struct {
		name      string
		missingOK bool
		want      map[string]want
	}{
		{name: "missing_ok false", want: map[string]want{
			"ok":         {list: "done", outcome: ac.OutcomeRemoved, attempts: 1},
			"gone":       {list: "done", outcome: ac.OutcomeFailed, errType: ac.ErrNotFound, attempts: 1, inMsg: "not found"},
			"gone-prior": {list: "done", outcome: ac.OutcomeAlreadyAbsent, attempts: 3, earlier: true},
			// A 422 after an earlier round's request with no final answer: that one may have removed it.
			"bad-prior":  {list: "done", outcome: ac.OutcomeFailed, errType: ac.ErrValidation, attempts: 3, inMsg: "locked", earlier: true},
			"invalid":    {list: "done", outcome: ac.OutcomeFailed, errType: ac.ErrValidation, attempts: 1, inMsg: "path.connection_id: bad id"},
			"long":       {list: "done", outcome: ac.OutcomeFailed, errType: ac.ErrValidation, attempts: 1},
			"down":       {list: "transient", errType: ac.ErrServerError, attempts: 3},
			"down-after": {list: "transient", errType: ac.ErrServerError, attempts: 1, delay: 12 * time.Second},
			"flaky":      {list: "done", outcome: ac.OutcomeAlreadyAbsent, attempts: 2, earlier: true},
			"bad/id":     {list: "done", outcome: ac.OutcomeFailed, errType: ac.ErrInvalidRequest, attempts: 0},
		}},
		{name: "missing_ok true", missingOK: true, want: map[string]want{
			"ok":   {list: "done", outcome: ac.OutcomeRemoved, attempts: 1},
			"gone": {list: "done", outcome: ac.OutcomeAlreadyAbsent, attempts: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPerID(status(204, ""), handlers)
			f := newFixture(t, srv.ServeHTTP)
			in := RemoveConnectionsInput{AgentID: "agent-1", MissingOK: tt.missingOK, Parallelism: 4}
			for id := range tt.want {
				it := BatchItem{ConnectionID: id}
				if id == "gone-prior" || id == "bad-prior" {
					it.PriorRequests = 2
				}
				in.Items = append(in.Items, it)
			}
			res, err := f.removeBatch(t, in)
			if err != nil {
				t.Fatalf("got error %v, want a result", err)
			}
			done := outcomesByID(res)
			transient := map[string]TransientFailure{}
			for _, tf := range res.Transient {
				transient[tf.ConnectionID] = tf
			}
			if len(done)+len(transient) != len(tt.want) || len(res.Deferred)+len(res.Busy) != 0 {
				t.Errorf("got %d done, %d transient, %d deferred, %d busy, want %d in all", len(done), len(transient), len(res.Deferred), len(res.Busy), len(tt.want))
			}
			for id, w := range tt.want {
				var gotType, gotMsg string
				var gotAttempts int
				switch w.list {
				case "done":
					o, ok := done[id]
					if !ok {
						t.Errorf("%s: got it not in done, want it there", id)
						continue
					}
					if o.Outcome != w.outcome {
						t.Errorf("%s: got outcome %q, want %q (%+v)", id, o.Outcome, w.outcome, o)
					}
					if o.EarlierRequest != w.earlier {
						t.Errorf("%s: got earlier_request %t, want %t", id, o.EarlierRequest, w.earlier)
					}
					gotType, gotMsg, gotAttempts = o.FailureType, o.Message, o.Attempts
				case "transient":
					tf, ok := transient[id]
					if !ok {
						t.Errorf("%s: got it not in transient, want it there", id)
						continue
					}
					if tf.RetryAfter.D() != w.delay {
						t.Errorf("%s: got retry_after %s, want %s", id, tf.RetryAfter, w.delay)
					}
					gotType, gotMsg, gotAttempts = tf.FailureType, tf.Message, tf.Attempts
				}
				if gotType != w.errType {
					t.Errorf("%s: got failure type %q, want %q", id, gotType, w.errType)
				}
				if gotAttempts != w.attempts {
					t.Errorf("%s: got attempts %d, want %d", id, gotAttempts, w.attempts)
				}
				if !strings.Contains(gotMsg, w.inMsg) {
					t.Errorf("%s: got message %q, want it to contain %q", id, gotMsg, w.inMsg)
				}
				if len(gotMsg) > ac.MaxOutcomeMessageBytes {
					t.Errorf("%s: got a %d-byte message, want at most %d", id, len(gotMsg), ac.MaxOutcomeMessageBytes)
				}
				if newRequests := gotAttempts - map[string]int{"gone-prior": 2, "bad-prior": 2}[id]; srv.count(path.Base(id)) != newRequests && id != "bad/id" {
					t.Errorf("%s: got %d requests at the server, want %d", id, srv.count(id), newRequests)
				}
			}
			if srv.count("id") != 0 || srv.count("bad") != 0 {
				t.Errorf("got a request for the invalid ID, want none")
			}
		})
	}
}

func TestRemoveConnections_ParallelismBound(t *testing.T) {
	for _, tt := range []struct{ parallelism, items, wantMax int }{
		{parallelism: 4, items: 20, wantMax: 4},
		{parallelism: 0, items: 5, wantMax: 1},
		{parallelism: 8, items: 3, wantMax: 3},
	} {
		t.Run(fmt.Sprintf("parallelism %d items %d", tt.parallelism, tt.items), func(t *testing.T) {
			var inFlight, maxInFlight, arrived atomic.Int64
			full := make(chan struct{})
			var once sync.Once
			f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for {
					m := maxInFlight.Load()
					if n <= m || maxInFlight.CompareAndSwap(m, n) {
						break
					}
				}
				// The first wantMax requests wait for each other, so the bound is reached for sure.
				if arrived.Add(1) == int64(tt.wantMax) {
					once.Do(func() { close(full) })
				}
				select {
				case <-full:
				case <-time.After(5 * time.Second):
				}
				w.WriteHeader(http.StatusNoContent)
			})
			var ids []string
			for i := range tt.items {
				ids = append(ids, fmt.Sprintf("c%d", i))
			}
			res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Items: items(ids...), Parallelism: tt.parallelism})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Done) != tt.items {
				t.Errorf("got %d done, want %d", len(res.Done), tt.items)
			}
			if got := maxInFlight.Load(); got != int64(tt.wantMax) {
				t.Errorf("got at most %d requests in flight, want exactly %d", got, tt.wantMax)
			}
		})
	}
}

func TestRemoveConnections_DuplicateItemsAreOneConnection(t *testing.T) {
	srv := newPerID(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusNotFound)
	}, nil)
	f := newFixture(t, srv.ServeHTTP)
	in := RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 8, Items: []BatchItem{
		{ConnectionID: "c1"}, {ConnectionID: "c1", PriorRequests: 2}, {ConnectionID: "c2"}, {ConnectionID: "c1"}, {ConnectionID: "c2"},
	}}
	res, err := f.removeBatch(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 2 || res.Done[0].ConnectionID != "c1" || res.Done[1].ConnectionID != "c2" {
		t.Fatalf("got done %+v, want c1 then c2 once each", res.Done)
	}
	// The merged c1 keeps the largest PriorRequests, so its 404 follows an earlier request.
	if o := res.Done[0]; o.Outcome != ac.OutcomeAlreadyAbsent || o.Attempts != 3 {
		t.Errorf("got c1 %+v, want already_absent with 3 attempts", o)
	}
	if o := res.Done[1]; o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrNotFound || o.Attempts != 1 {
		t.Errorf("got c2 %+v, want failed NotFound with 1 attempt", o)
	}
	if srv.count("c1") != 1 || srv.count("c2") != 1 {
		t.Errorf("got %d and %d requests for c1 and c2, want 1 each", srv.count("c1"), srv.count("c2"))
	}
	if len(srv.overlap) != 0 {
		t.Errorf("got concurrent requests for %q, want none", srv.overlap)
	}
}

func TestRemoveConnections_429StopsTheBatch(t *testing.T) {
	srv := newPerID(status(204, ""), map[string]http.HandlerFunc{
		"c2": status(429, `{"detail":"slow down"}`, "Retry-After", "7"),
	})
	f := newFixture(t, srv.ServeHTTP)
	in := RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 1, Items: []BatchItem{
		{ConnectionID: "c1"}, {ConnectionID: "c2"}, {ConnectionID: "c3"}, {ConnectionID: "c4", PriorRequests: 2}, {ConnectionID: "c5"},
	}}
	res, err := f.removeBatch(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 1 || res.Done[0].ConnectionID != "c1" || res.Done[0].Outcome != ac.OutcomeRemoved {
		t.Errorf("got done %+v, want c1 removed only", res.Done)
	}
	wantAttempts := map[string]int{"c2": 1, "c3": 0, "c4": 2, "c5": 0}
	var got []string
	for _, tf := range res.Transient {
		got = append(got, tf.ConnectionID)
		if tf.FailureType != ac.ErrRateLimited || tf.RetryAfter.D() != 7*time.Second {
			t.Errorf("got %+v, want RateLimited with retry_after 7s", tf)
		}
		if tf.Attempts != wantAttempts[tf.ConnectionID] {
			t.Errorf("got %s attempts %d, want %d", tf.ConnectionID, tf.Attempts, wantAttempts[tf.ConnectionID])
		}
	}
	if want := []string{"c2", "c3", "c4", "c5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got transient %q, want %q", got, want)
	}
	if n := f.requests.Load(); n != 2 {
		t.Errorf("got %d requests, want 2 (nothing after the 429)", n)
	}
}

func TestRemoveConnections_429LetsRequestsInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	srv := newPerID(status(204, ""), map[string]http.HandlerFunc{
		"slow": func(w http.ResponseWriter, _ *http.Request) {
			<-release
			w.WriteHeader(http.StatusNoContent)
		},
		"limited": func(w http.ResponseWriter, r *http.Request) {
			// The slow request answers well after the batch has read the 429.
			defer time.AfterFunc(200*time.Millisecond, func() { close(release) })
			status(429, "", "Retry-After", "3")(w, r)
		},
	})
	f := newFixture(t, srv.ServeHTTP)
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 2, Items: items("slow", "limited", "c3", "c4")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 1 || res.Done[0].ConnectionID != "slow" || res.Done[0].Outcome != ac.OutcomeRemoved {
		t.Errorf("got done %+v, want the in-flight request to finish as removed", res.Done)
	}
	if len(res.Transient) != 3 {
		t.Errorf("got transient %+v, want limited, c3, c4", res.Transient)
	}
	if srv.count("c3")+srv.count("c4") != 0 {
		t.Errorf("got requests after the 429, want none")
	}
}

func TestRemoveConnections_ResumesFromHeartbeat(t *testing.T) {
	srv := newPerID(status(404, `{"detail":"not found"}`), nil)
	f := newFixture(t, srv.ServeHTTP)
	f.env.SetHeartbeatDetails(RemoveConnectionsProgress{
		Requests: map[string]int{"c1": 1, "c2": 1},
		Done:     []ac.ConnectionOutcome{{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1}, {ConnectionID: "other", Outcome: ac.OutcomeRemoved}},
	})
	in := RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 2, Items: []BatchItem{
		{ConnectionID: "c1"}, {ConnectionID: "c2", PriorRequests: 1}, {ConnectionID: "c3"},
	}}
	res, err := f.removeBatch(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []ac.ConnectionOutcome{
		{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
		// 1 from an earlier round, 1 from the crashed attempt, 1 now: the 404 follows earlier requests.
		{ConnectionID: "c2", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 3, EarlierRequest: true},
	}
	got := res.Done
	if len(got) != 3 || !reflect.DeepEqual(got[:2], want) {
		t.Fatalf("got done %+v, want %+v then c3", got, want)
	}
	if o := got[2]; o.ConnectionID != "c3" || o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrNotFound || o.Attempts != 1 {
		t.Errorf("got c3 %+v, want failed NotFound with 1 attempt", o)
	}
	if srv.count("c1") != 0 {
		t.Errorf("got %d requests for the finished c1, want 0", srv.count("c1"))
	}
	if srv.count("other") != 0 {
		t.Errorf("got a request for an ID not in the batch")
	}
}

// lastHeartbeat records every RemoveConnectionsProgress heartbeat.
type heartbeats struct {
	mu  sync.Mutex
	all []RemoveConnectionsProgress
}

func (h *heartbeats) listen(t *testing.T, f *fixture) {
	f.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p RemoveConnectionsProgress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
			return
		}
		h.mu.Lock()
		h.all = append(h.all, p)
		h.mu.Unlock()
	})
}

func (h *heartbeats) last() RemoveConnectionsProgress {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.all) == 0 {
		return RemoveConnectionsProgress{}
	}
	return h.all[len(h.all)-1]
}

func TestRemoveConnections_HeartbeatsCountBeforeTheRequestLeaves(t *testing.T) {
	var hb heartbeats
	var seenAtFirstRequest *RemoveConnectionsProgress
	var mu sync.Mutex
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		if seenAtFirstRequest == nil {
			last := hb.last()
			seenAtFirstRequest = &last
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	hb.listen(t, f)
	if _, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 1, Items: items("c1", "c2")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The first heartbeat of an attempt goes out at once (later ones are batched by the SDK).
	if seenAtFirstRequest == nil || seenAtFirstRequest.Requests["c1"] != 1 {
		t.Errorf("got heartbeat %+v when the first request arrived, want c1 counted", seenAtFirstRequest)
	}
}

// A cancelled batch (the teardown stopped, or the worker stops) starts nothing new, lets the
// request in flight finish so its outcome is known, and returns what it did.
func TestRemoveConnections_CancelLetsInFlightFinish(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := newPerID(status(204, ""), map[string]http.HandlerFunc{
		"c3": func(w http.ResponseWriter, _ *http.Request) {
			cancel()
			time.Sleep(50 * time.Millisecond) // answers after the activity context ended
			w.WriteHeader(http.StatusNoContent)
		},
	})
	f := newFixture(t, srv.ServeHTTP)
	f.env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	in := RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 1, Items: items("c1", "c2", "c3", "c4", "c5")}
	res, err := f.removeBatch(t, in)
	if err != nil {
		t.Fatalf("got error %v, want the batch's result", err)
	}
	for id, want := range map[string]int{"c1": 1, "c2": 1, "c3": 1, "c4": 0, "c5": 0} {
		if got := srv.count(id); got != want {
			t.Errorf("got %d requests for %s, want %d (none after the cancellation)", got, id, want)
		}
	}
	wantDone := []ac.ConnectionOutcome{
		{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
		{ConnectionID: "c2", Outcome: ac.OutcomeRemoved, Attempts: 1},
		{ConnectionID: "c3", Outcome: ac.OutcomeRemoved, Attempts: 1}, // in flight at the cancel
	}
	if !reflect.DeepEqual(res.Done, wantDone) {
		t.Errorf("got done %+v, want %+v", res.Done, wantDone)
	}
	if len(res.Transient) != 2 || !res.Transient[0].NotSent || !res.Transient[1].NotSent {
		t.Errorf("got transient %+v, want c4 and c5 not sent", res.Transient)
	}
}

// A worker killed mid-batch leaves the progress in its last heartbeat; the next attempt resumes
// from it.
func TestRemoveConnections_ResumesFromLastHeartbeat(t *testing.T) {
	in := RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 1, Items: items("c1", "c2", "c3", "c4", "c5")}
	last := RemoveConnectionsProgress{
		Requests: map[string]int{"c1": 1, "c2": 1, "c3": 1},
		Done: []ac.ConnectionOutcome{
			{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
			{ConnectionID: "c2", Outcome: ac.OutcomeRemoved, Attempts: 1},
		},
	}

	// The next attempt, on a control plane where everything is gone.
	srv2 := newPerID(status(404, `{"detail":"not found"}`), nil)
	f2 := newFixture(t, srv2.ServeHTTP)
	f2.env.SetHeartbeatDetails(last)
	res, err := f2.removeBatch(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []ac.ConnectionOutcome{
		{ConnectionID: "c1", Outcome: ac.OutcomeRemoved, Attempts: 1},
		{ConnectionID: "c2", Outcome: ac.OutcomeRemoved, Attempts: 1},
		// Its DELETE was in flight when the attempt stopped: the 404 follows an earlier request.
		{ConnectionID: "c3", Outcome: ac.OutcomeAlreadyAbsent, Attempts: 2, EarlierRequest: true},
		{ConnectionID: "c4", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrNotFound},
		{ConnectionID: "c5", Outcome: ac.OutcomeFailed, Attempts: 1, FailureType: ac.ErrNotFound},
	}
	for i := range res.Done {
		res.Done[i].Message = ""
	}
	if !reflect.DeepEqual(res.Done, want) {
		t.Errorf("got done %+v, want %+v", res.Done, want)
	}
	if srv2.count("c1")+srv2.count("c2") != 0 {
		t.Errorf("got requests for finished connections, want none")
	}
}

// A 401 or 403 refuses the key for every connection: the batch starts nothing more and says so.
func TestRemoveConnections_RefusedKeyStopsTheBatch(t *testing.T) {
	srv := newPerID(status(204, ""), map[string]http.HandlerFunc{
		"c2": status(403, `{"detail":"forbidden"}`),
	})
	f := newFixture(t, srv.ServeHTTP)
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 1, Items: items("c1", "c2", "c3", "c4")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Refused {
		t.Error("got refused false, want true")
	}
	done := outcomesByID(res)
	if o := done["c2"]; o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrUnauthorized || !strings.Contains(o.Message, "LANGSMITH_TENANT_ID") {
		t.Errorf("got c2 %+v, want failed Unauthorized naming the credential to check", o)
	}
	for _, id := range []string{"c3", "c4"} {
		if n := srv.count(id); n != 0 {
			t.Errorf("got %d requests for %s after the 403, want 0", n, id)
		}
	}
	if len(res.Transient) != 2 || !res.Transient[0].NotSent || res.Transient[0].FailureType != ac.ErrUnauthorized {
		t.Errorf("got transient %+v, want c3 and c4 not sent, type Unauthorized", res.Transient)
	}
}

func TestRemoveConnections_InvalidAgentSendsNothing(t *testing.T) {
	f := newFixture(t, status(204, ""))
	_, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "a/b", Items: items("c1")})
	appErr := appError(t, err)
	if appErr.Type() != ac.ErrInvalidRequest || !appErr.NonRetryable() {
		t.Errorf("got type %q non-retryable %t, want %q non-retryable", appErr.Type(), appErr.NonRetryable(), ac.ErrInvalidRequest)
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("got %d requests, want 0", n)
	}
}

func TestRemoveConnections_EmptyBatch(t *testing.T) {
	f := newFixture(t, status(204, ""))
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done == nil || len(res.Done) != 0 {
		t.Errorf("got done %#v, want an empty list", res.Done)
	}
}

func TestRemoveConnections_CredentialsNeverLogged(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"detail":"bad key %s and %s"}`, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
	}
	srv := newPerID(status(204, ""), map[string]http.HandlerFunc{"echo": echo, "down": status(503, ""), "deny": status(401, "")})
	f := newFixture(t, srv.ServeHTTP)
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 2, Items: items("ok", "echo", "down", "deny")})
	if err != nil {
		t.Fatal(err)
	}
	text := f.logs.String() + fmt.Sprintf("%+v", res)
	for _, secret := range []string{testKey, testBearer} {
		if strings.Contains(text, secret) {
			t.Errorf("got a credential in logs or result:\n%s", text)
		}
	}
	if !strings.Contains(text, "connection removal failed") || !strings.Contains(text, "connection_id echo") {
		t.Errorf("got logs %q, want one line per failure", text)
	}
}

// fakeCoordinator answers from fixed tables and counts its calls.
type fakeCoordinator struct {
	mu sync.Mutex
	// states maps a connection ID to its standalone removal's state; absent means not running.
	states   map[string]string
	stateErr error
	// claims are TeardownClaim's answers in turn (the last one repeats).
	claims     []claimAnswer
	claimCalls int
	// finished answers FinishedTeardownOutcome (nil: the teardown did not complete with it).
	finished *ac.ConnectionOutcome
	// await answers AwaitRemoval.
	await      func(ctx context.Context) (ac.RemoveConnectionResult, error)
	awaitCalls atomic.Int64
	awaitedRun string // the run ID AwaitRemoval was last asked for
}

type claimAnswer struct {
	claim   ac.ConnectionClaim
	running bool
	err     error
}

func (c *fakeCoordinator) RemovalState(_ context.Context, _, connectionID string, _ time.Time) (string, string, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stateErr != nil {
		return "", "", false, c.stateErr
	}
	st, ok := c.states[connectionID]
	if !ok {
		return "", "", false, nil
	}
	return st, "run-" + connectionID, true, nil
}

func (c *fakeCoordinator) AwaitRemoval(ctx context.Context, _, _, runID string) (ac.RemoveConnectionResult, error) {
	c.awaitCalls.Add(1)
	c.mu.Lock()
	c.awaitedRun = runID
	c.mu.Unlock()
	return c.await(ctx)
}

func (c *fakeCoordinator) CarriedStatePage(context.Context, string, string, int) ([]byte, error) {
	return nil, errors.New("no carried state here")
}

func (c *fakeCoordinator) TeardownClaim(_ context.Context, _, _ string) (ac.ConnectionClaim, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := min(c.claimCalls, len(c.claims)-1)
	c.claimCalls++
	a := c.claims[i]
	return a.claim, a.running, a.err
}

func (c *fakeCoordinator) FinishedTeardownOutcome(context.Context, string, string) (*ac.ConnectionOutcome, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finished, nil
}

func withCoordinator(c Coordinator) fixtureOption {
	return func(cfg *fixtureConfig) { cfg.acts.Coordinator = c }
}

func TestRemoveConnections_Coordination(t *testing.T) {
	coord := &fakeCoordinator{states: map[string]string{
		"waiting":  ac.RemovalWaitingForTeardown,
		"removing": ac.RemovalRemoving,
		"checking": ac.RemovalChecking,
		"unknown":  "something-new",
	}}
	srv := newPerID(status(204, ""), nil)
	f := newFixture(t, srv.ServeHTTP, withCoordinator(coord))
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 3, Items: items("alone", "waiting", "removing", "checking", "unknown")})
	if err != nil {
		t.Fatal(err)
	}
	var done []string
	for _, o := range res.Done {
		done = append(done, o.ConnectionID)
	}
	if want := []string{"alone", "waiting"}; !reflect.DeepEqual(done, want) {
		t.Errorf("got done %q, want %q", done, want)
	}
	if want := []DeferredRemoval{{ConnectionID: "removing", RunID: "run-removing"}}; !reflect.DeepEqual(res.Deferred, want) {
		t.Errorf("got deferred %q, want %q", res.Deferred, want)
	}
	if want := []string{"checking", "unknown"}; !reflect.DeepEqual(res.Busy, want) {
		t.Errorf("got busy %q, want %q", res.Busy, want)
	}
	for id, want := range map[string]int{"alone": 1, "waiting": 1, "removing": 0, "checking": 0, "unknown": 0} {
		if got := srv.count(id); got != want {
			t.Errorf("got %d requests for %s, want %d", got, id, want)
		}
	}
}

func TestRemoveConnections_CoordinatorErrorSendsNothing(t *testing.T) {
	coord := &fakeCoordinator{stateErr: errors.New("temporal unavailable")}
	f := newFixture(t, status(204, ""), withCoordinator(coord))
	res, err := f.removeBatch(t, RemoveConnectionsInput{AgentID: "agent-1", Parallelism: 2, Items: []BatchItem{{ConnectionID: "c1", PriorRequests: 1}, {ConnectionID: "c2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Transient) != 2 {
		t.Fatalf("got transient %+v, want c1 and c2", res.Transient)
	}
	for i, tf := range res.Transient {
		if tf.FailureType != ac.ErrUnavailable || !strings.Contains(tf.Message, "temporal unavailable") || tf.Attempts != 1-i {
			t.Errorf("got %+v, want Unavailable naming the cause with attempts %d", tf, 1-i)
		}
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("got %d requests, want 0", n)
	}
}
