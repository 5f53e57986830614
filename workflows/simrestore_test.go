package workflows

// A seeded simulation of the restore, in the style of the teardown's (sim_test.go). Each seed
// draws one schedule: entries (some sharing a token with an earlier entry), tokens whose connection
// is on the agent already, revoked tokens (422), and the control plane's answer to every POST:
// 201, created then 5xx, created then the connection cut, created then a hang past the request
// timeout, a hang or a 503/408 that created nothing, 429 with Retry-After, and from some request on
// 401/403 for everything; lists that fail with 503; batch attempts whose completion is lost (the
// last one maybe as a heartbeat timeout with a stale heartbeat); a cancel (the update, Temporal's,
// or both) at a random moment. It runs the real RestoreAgentConnectionsWorkflow and the real
// RestoreConnections (and controlplane Create) in Temporal's test environment against that control
// plane, then checks in checkRestore:
//
//  1. never two connections for one token at the control plane;
//  2. an entry reported restored or already_present has exactly one connection for its token, the
//     one it names;
//  3. every outcome is backed by what the control plane answered: restored by a POST of this
//     restore that created the connection (or, for a token that was there before, a batch attempt
//     that failed, was cancelled or had its completion lost: the next cannot know what it sent),
//     already_present by a
//     connection there before and no POST for the token, failed ValidationError by a 422,
//     Unauthorized by a 401/403, Interrupted only after the restore stopped or after its last
//     round's POST got no final answer, skipped only after it stopped and only for a token no POST
//     was sent for; one outcome per distinct token, counts adding up;
//  4. no payload or failure Temporal would store is over 512 KB;
//  5. the API key is in no payload, failure or log line;
//  6. the restore ends completed, or Canceled only after a Temporal cancel (with its result in the
//     details); cancelled is set only after a cancel was sent.
//
// Run it:
//
//	go test ./workflows -run 'TestRestoreSimulation$' -simrestore.seeds=2000       # more seeds (make faults)
//	go test ./workflows -run 'TestRestoreSimulation$' -simrestore.seed=12345 -v    # one seed, with its schedule

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
)

var (
	simRestoreSeed  = flag.Uint64("simrestore.seed", 0, "run only this restore simulation seed")
	simRestoreSeeds = flag.Int("simrestore.seeds", 60, "how many restore simulation seeds TestRestoreSimulation runs")
	simRestoreFirst = flag.Uint64("simrestore.first", 1, "the first seed TestRestoreSimulation runs")
)

// simRestoreRegressions are seeds that found a defect in the restore; they run on every go test.
var simRestoreRegressions = []struct {
	seed  uint64
	draws string
	found string
}{
	{1856, "52 entries (9 tokens present, 2 revoked)",
		"an entry whose POSTs were answered 408 or lost (hangs) for every round was reported failed Unavailable " +
			"after the last round, though its last POST had created the connection: the report said failed " +
			"while the control plane held it (fixed with this test: such an entry is failed Interrupted, maybe created)"},
	{1888, "46 entries (1 tokens present, 0 revoked)",
		"the same, the last POST created then cut off (EOF): failed Unavailable with a connection for the token"},
}

// simRestoreStats are the figures the summary line adds up over the seeds run.
type simRestoreStats struct {
	seeds, entries, checks, posts, lostAnswers, lostAttempts, refused, cancels, canceledEnds atomic.Int64
	restored, alreadyPresent, failed, skipped, interrupted                                   atomic.Int64
	largest, late, doubles                                                                   atomic.Int64
}

func (st *simRestoreStats) add(s *simRestoreRun) {
	st.seeds.Add(1)
	st.entries.Add(int64(len(s.sch.entries)))
	st.checks.Add(s.checks)
	st.posts.Add(int64(len(s.cp.posts)))
	for _, p := range s.cp.posts {
		if p.created != "" && p.status != http.StatusCreated {
			st.lostAnswers.Add(1)
		}
	}
	st.lostAttempts.Add(s.lostAttempts.Load())
	st.late.Add(int64(s.lateCreates))
	st.doubles.Add(int64(s.doubles))
	if s.cp.refused {
		st.refused.Add(1)
	}
	if s.cancelSent {
		st.cancels.Add(1)
	}
	if s.err != nil {
		st.canceledEnds.Add(1)
	}
	r := s.result
	st.restored.Add(int64(r.Restored))
	st.alreadyPresent.Add(int64(r.AlreadyPresent))
	st.failed.Add(int64(r.Failed))
	st.skipped.Add(int64(r.Skipped))
	for _, o := range s.pages {
		if o.FailureType == ac.ErrInterrupted {
			st.interrupted.Add(1)
		}
	}
	for {
		cur, l := st.largest.Load(), s.obs.largest.Load()
		if l <= cur || st.largest.CompareAndSwap(cur, l) {
			break
		}
	}
}

func (st *simRestoreStats) String() string {
	return fmt.Sprintf("%d seeds, %d entries, %d invariant checks, %d POSTs (%d created with the answer lost), %d lost batch attempts, "+
		"%d connections created after the client gave up on their POST (%d of them a second connection for a token: the API's open case), "+
		"%d schedules with a refused key, %d cancels (%d ended Canceled); outcomes %d restored, %d already_present, %d failed (%d Interrupted), %d skipped; largest payload %d bytes",
		st.seeds.Load(), st.entries.Load(), st.checks.Load(), st.posts.Load(), st.lostAnswers.Load(), st.lostAttempts.Load(), st.late.Load(), st.doubles.Load(),
		st.refused.Load(), st.cancels.Load(), st.canceledEnds.Load(), st.restored.Load(), st.alreadyPresent.Load(), st.failed.Load(),
		st.interrupted.Load(), st.skipped.Load(), st.largest.Load())
}

// POST answers the scripted control plane draws.
const (
	rsCreated     = "201"
	rsCreated5xx  = "created then 5xx"
	rsCreatedCut  = "created then cut off"
	rsCreatedHang = "created then hang"
	rsHang        = "hang"
	rs503         = "503"
	rs408         = "408"
	rs429         = "429"
)

type simRestoreSchedule struct {
	seed        uint64
	entries     []ac.ConnectionSnapshot
	present     map[string]bool // tokens with a connection on the agent before the restore
	revoked     map[string]bool
	answers     []string // drawn from, weighted by repetition
	refuseAfter int      // the POST after which every request is refused (0: never)
	refuse      int      // 401 or 403
	listFail    float64
	loseBatch   float64
	concurrency int
	timeout     time.Duration
	cancelKind  string        // "", "update", "temporal", "both"
	cancelAt    time.Duration // workflow time
	cancelAfter int           // or after this many activity completions (0: by time)
}

func (s *simRestoreSchedule) String() string {
	return fmt.Sprintf("%d entries (%d tokens present, %d revoked), answers %v, refuse after %d (%d), list fail %.2f, lose batch %.2f, concurrency %d, timeout %s, cancel %q at %s or after %d activities",
		len(s.entries), len(s.present), len(s.revoked), s.answers, s.refuseAfter, s.refuse, s.listFail, s.loseBatch, s.concurrency, s.timeout,
		s.cancelKind, s.cancelAt, s.cancelAfter)
}

func drawRestoreSchedule(seed uint64) *simRestoreSchedule {
	r := rand.New(rand.NewPCG(seed, 0x7265))
	s := &simRestoreSchedule{seed: seed, present: map[string]bool{}, revoked: map[string]bool{},
		concurrency: 1 + r.IntN(20), timeout: time.Duration(20+r.IntN(40)) * time.Millisecond}
	n := 1 + r.IntN(60)
	pDup, pPresent, pRevoked := r.Float64()*0.2, r.Float64()*0.3, r.Float64()*0.15
	for i := range n {
		tok := fmt.Sprintf("tok-%d", i)
		if i > 0 && r.Float64() < pDup {
			tok = s.entries[r.IntN(i)].OAuthTokenID
		}
		switch {
		case r.Float64() < pPresent:
			s.present[tok] = true
		case r.Float64() < pRevoked:
			s.revoked[tok] = true
		}
		s.entries = append(s.entries, ac.ConnectionSnapshot{ConnectionID: fmt.Sprintf("old-%d", i), OAuthTokenID: tok, ProviderID: "github", Scopes: []string{"repo"}})
	}
	all := []string{rsCreated, rsCreated5xx, rsCreatedCut, rsCreatedHang, rsHang, rs503, rs408, rs429}
	s.answers = []string{rsCreated, rsCreated, rsCreated}
	for _, a := range all[1:] {
		if r.IntN(3) == 0 {
			s.answers = append(s.answers, a)
		}
	}
	if r.IntN(6) == 0 {
		s.refuseAfter, s.refuse = 1+r.IntN(n+5), []int{http.StatusUnauthorized, http.StatusForbidden}[r.IntN(2)]
	}
	if r.IntN(3) == 0 {
		s.listFail = r.Float64() * 0.3
	}
	if r.IntN(3) == 0 {
		s.loseBatch = r.Float64() * 0.5
	}
	if r.IntN(2) == 0 {
		s.cancelKind = []string{"update", "temporal", "both"}[r.IntN(3)]
		if r.IntN(2) == 0 {
			s.cancelAfter = 1 + r.IntN(3)
		} else {
			s.cancelAt = time.Duration(r.IntN(20_000)) * time.Millisecond
		}
	}
	return s
}

// simPost is one POST the control plane got.
type simPost struct {
	token   string
	answer  string
	status  int    // what the control plane answered (0: none, cut off or hung)
	created string // the connection it created, if any
	// late is set when the client had given up on this POST before the control plane created its
	// connection: the API's open case (docs/contract.md), which no check by the client can see.
	late bool
}

// simRestoreCP is the scripted control plane of one restore schedule.
type simRestoreCP struct {
	sch *simRestoreSchedule
	key string

	mu      sync.Mutex
	conns   map[string][]string // token -> connection IDs on the agent
	posts   []*simPost
	perTok  map[string]int
	sent    map[string]int // POSTs that left the client, per token
	nextReq int
	gaveUp  map[int]bool // client-side POSTs that returned, by X-Sim-Post
	lists   int
	refused bool
	seq     int
}

const simRestoreAgent = "agent-restore"

func (cp *simRestoreCP) draw(what string, n int) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(what))
	return rand.New(rand.NewPCG(cp.sch.seed, h.Sum64()^uint64(n)*0x9e3779b97f4a7c15))
}

func (cp *simRestoreCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != cp.key {
		simJSON(w, http.StatusUnauthorized, `{"detail":"missing or wrong X-Api-Key"}`)
		return
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(segs) != 5 || segs[0] != "v2" || segs[2] != "agents" || segs[4] != "connections" {
		simJSON(w, http.StatusNotFound, `{"detail":"Not Found"}`)
		return
	}
	if agent, _ := url.PathUnescape(segs[3]); agent != simRestoreAgent {
		simJSON(w, http.StatusNotFound, `{"detail":"Agent not found."}`)
		return
	}
	cp.mu.Lock()
	if cp.refused {
		cp.mu.Unlock()
		// A misbehaving control plane echoes the key: it must be redacted before anything keeps it.
		simJSON(w, cp.sch.refuse, `{"detail":"Invalid API key `+cp.key+`"}`)
		return
	}
	cp.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		cp.serveList(w)
	case http.MethodPost:
		cp.servePost(w, r)
	default:
		simJSON(w, http.StatusMethodNotAllowed, `{"detail":"Method Not Allowed"}`)
	}
}

func (cp *simRestoreCP) serveList(w http.ResponseWriter) {
	cp.mu.Lock()
	rnd := cp.draw("\x00list", cp.lists)
	cp.lists++
	if rnd.Float64() < cp.sch.listFail {
		cp.mu.Unlock()
		simJSON(w, http.StatusServiceUnavailable, `{"detail":"list unavailable"}`)
		return
	}
	type entry struct {
		ID           string `json:"id"`
		OAuthTokenID string `json:"oauth_token_id"`
		ProviderID   string `json:"provider_id"`
	}
	data := []entry{}
	for _, tok := range slices.Sorted(maps.Keys(cp.conns)) {
		for _, id := range cp.conns[tok] {
			data = append(data, entry{ID: id, OAuthTokenID: tok, ProviderID: "github"})
		}
	}
	cp.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"data": data})
	simJSON(w, http.StatusOK, string(b))
}

func (cp *simRestoreCP) servePost(w http.ResponseWriter, r *http.Request) {
	var body struct {
		OAuthTokenID string `json:"oauth_token_id"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.OAuthTokenID == "" {
		simJSON(w, http.StatusBadRequest, `{"detail":"bad body"}`)
		return
	}
	tok := body.OAuthTokenID
	cp.mu.Lock()
	p := &simPost{token: tok}
	n0, _ := strconv.Atoi(r.Header.Get("X-Sim-Post"))
	cp.posts = append(cp.posts, p)
	n := cp.perTok[tok]
	cp.perTok[tok]++
	rnd := cp.draw(tok, n)
	p.answer = cp.sch.answers[rnd.IntN(len(cp.sch.answers))]
	if cp.sch.revoked[tok] {
		p.answer, p.status = "422", http.StatusUnprocessableEntity
	}
	if cp.sch.refuseAfter > 0 && len(cp.posts) >= cp.sch.refuseAfter {
		cp.refused = true
		p.answer, p.status = "refused", cp.sch.refuse
	}
	switch p.answer {
	case rsCreated, rsCreated5xx, rsCreatedCut, rsCreatedHang:
		cp.seq++
		p.created = fmt.Sprintf("new-%d", cp.seq)
		cp.conns[tok] = append(cp.conns[tok], p.created)
		p.late = cp.gaveUp[n0]
	}
	switch p.answer {
	case rsCreated:
		p.status = http.StatusCreated
	case rsCreated5xx:
		p.status = []int{500, 502, 503, 504}[rnd.IntN(4)]
	case rs503:
		p.status = http.StatusServiceUnavailable
	case rs408:
		p.status = http.StatusRequestTimeout
	case rs429:
		p.status = http.StatusTooManyRequests
	}
	cp.mu.Unlock()
	switch p.answer {
	case rsCreatedCut:
		panic(http.ErrAbortHandler)
	case rsCreatedHang, rsHang:
		<-r.Context().Done()
		return
	case rs429:
		w.Header().Set("Retry-After", fmt.Sprint(rnd.IntN(3)))
	}
	switch p.status {
	case http.StatusCreated:
		b, _ := json.Marshal(map[string]any{"id": p.created, "agent_id": simRestoreAgent, "oauth_token_id": tok, "provider_id": "github"})
		simJSON(w, p.status, string(b))
	case http.StatusUnprocessableEntity:
		simJSON(w, p.status, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"OAuth token `+tok+` is revoked","type":"value_error"}]}`)
	case cp.sch.refuse:
		simJSON(w, p.status, `{"detail":"Invalid API key `+cp.key+`"}`)
	default:
		simJSON(w, p.status, `<html><body>upstream error</body></html>`)
	}
}

// simRestoreTransport notes, on the client's side, each POST that leaves for a token: one the
// client gave up on may never reach the control plane, yet its outcome is unknown to the restore.
type simRestoreTransport struct {
	cp   *simRestoreCP
	next http.RoundTripper
}

func (t *simRestoreTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost {
		t.cp.mu.Lock()
		t.cp.nextReq++
		n := t.cp.nextReq
		t.cp.mu.Unlock()
		req = req.Clone(req.Context())
		req.Header.Set("X-Sim-Post", strconv.Itoa(n))
		defer func() {
			t.cp.mu.Lock()
			t.cp.gaveUp[n] = true
			t.cp.mu.Unlock()
		}()
	}
	if req.Method == http.MethodPost && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			var b struct {
				OAuthTokenID string `json:"oauth_token_id"`
			}
			if json.NewDecoder(body).Decode(&b) == nil {
				t.cp.mu.Lock()
				t.cp.sent[b.OAuthTokenID]++
				t.cp.mu.Unlock()
			}
		}
	}
	return t.next.RoundTrip(req)
}

// simRestoreConverter is simConverter, also noting the tokens of every batch the workflow
// schedules (as its input is encoded).
type simRestoreConverter struct {
	converter.DataConverter
	scheduled *sync.Map
}

func (c simRestoreConverter) ToPayloads(vs ...any) (*commonpb.Payloads, error) {
	for _, v := range vs {
		if in, ok := v.(activities.RestoreConnectionsInput); ok {
			for _, it := range in.Items {
				c.scheduled.Store(it.Entry.OAuthTokenID, true)
			}
		}
	}
	return c.DataConverter.ToPayloads(vs...)
}

// simRestoreRun is one restore schedule being run.
type simRestoreRun struct {
	sch   *simRestoreSchedule
	cp    *simRestoreCP
	srv   *httptest.Server
	obs   *simObserver
	acts  *activities.Activities
	conv  converter.DataConverter
	fconv converter.FailureConverter

	mu           sync.Mutex
	lost         map[string]bool // tokens in a batch attempt that failed, was cancelled or was lost
	scheduled    sync.Map        // tokens the workflow put in a batch
	strays       sync.WaitGroup
	ended        bool
	done         int // activity completions
	cancelSent   bool
	temporal     bool // a Temporal cancel was sent
	violations   []string
	checks       int64        // invariant checks made
	lateCreates  int          // connections created after the client had given up on their POST
	doubles      int          // second connections for a token (each after such a late create)
	lostAttempts atomic.Int64 // batch attempts whose completion the sim threw away

	result ac.RestoreAgentConnectionsResult
	pages  []ac.RestoreOutcome
	err    error
}

func newSimRestoreRun(sch *simRestoreSchedule) *simRestoreRun {
	kr := rand.New(rand.NewPCG(sch.seed, 0x6b6579))
	key := fmt.Sprintf("lsv2_sk_SIMKEY%016x%016x", kr.Uint64(), kr.Uint64())
	obs := &simObserver{key: key}
	cp := &simRestoreCP{sch: sch, key: key, conns: map[string][]string{}, perTok: map[string]int{}, sent: map[string]int{}, gaveUp: map[int]bool{}}
	for tok := range sch.present {
		cp.conns[tok] = []string{"pre-" + tok}
	}
	s := &simRestoreRun{sch: sch, cp: cp, obs: obs, lost: map[string]bool{}}
	s.srv = httptest.NewServer(cp)
	client, err := controlplane.New(controlplane.Config{
		BaseURL:        s.srv.URL,
		Credentials:    controlplane.StaticCredentials{APIKey: key},
		RequestTimeout: sch.timeout,
		HTTPRetry:      controlplane.HTTPRetry{WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond},
		MaxRetryAfter:  20 * time.Millisecond,
		Transport:      &simRestoreTransport{cp: cp, next: http.DefaultTransport.(*http.Transport).Clone()},
		Logger:         simLogger{obs: obs},
	})
	if err != nil {
		panic(err)
	}
	if s.acts, err = activities.New(activities.Config{ControlPlane: client}); err != nil {
		panic(err)
	}
	s.conv = simRestoreConverter{DataConverter: simConverter{DataConverter: converter.GetDefaultDataConverter(), obs: obs}, scheduled: &s.scheduled}
	s.fconv = simFailureConverter{FailureConverter: temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: s.conv}), obs: obs}
	return s
}

// check counts one invariant check and reports it when it fails.
func (s *simRestoreRun) check(ok bool, format string, args ...any) {
	s.checks++
	if !ok {
		s.fail(format, args...)
	}
}

func (s *simRestoreRun) fail(format string, args ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func (s *simRestoreRun) run() {
	env := s.newEnv()
	env.ExecuteWorkflow(RestoreAgentConnectionsWorkflow, ac.RestoreAgentConnectionsInput{
		AgentID: simRestoreAgent, Connections: s.sch.entries, Concurrency: s.sch.concurrency})
	s.collect(env)
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	waited := make(chan struct{})
	go func() {
		s.strays.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		s.fail("batch activities still running 30s after the restore ended")
	}
	s.srv.Close()
	s.cp.mu.Lock()
	defer s.cp.mu.Unlock()
	s.checkRestore()
}

func (s *simRestoreRun) newEnv() *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(simLogger{obs: s.obs})
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: 60 * time.Second})
	env.SetDataConverter(s.conv)
	env.SetFailureConverter(s.fconv)
	env.RegisterWorkflow(RestoreAgentConnectionsWorkflow)
	env.RegisterActivity(s.acts)
	env.OnActivity(ac.RestoreConnectionsActivityType, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.RestoreConnectionsInput) (activities.RestoreConnectionsResult, error) {
			s.mu.Lock()
			if s.ended {
				s.mu.Unlock()
				return activities.RestoreConnectionsResult{}, errors.New("simulated: the restore ended before this activity started")
			}
			s.strays.Add(1)
			s.mu.Unlock()
			defer s.strays.Done()
			return s.batch(ctx, in)
		})
	// A batch cancelled in flight reaches the workflow at once in the test environment, as one
	// whose completion was lost: what it sent is unknown to the workflow.
	batches := map[string][]string{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		var in activities.RestoreConnectionsInput
		if args.Get(&in) == nil {
			for _, it := range in.Items {
				batches[info.ActivityID] = append(batches[info.ActivityID], it.Entry.OAuthTokenID)
			}
		}
	})
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, tok := range batches[info.ActivityID] {
			s.lost[tok] = true
		}
	})
	env.SetOnActivityCompletedListener(func(*activity.Info, converter.EncodedValue, error) {
		s.done++
		if s.sch.cancelAfter > 0 && s.done == s.sch.cancelAfter {
			s.deliverCancel(env)
		}
	})
	if s.sch.cancelKind != "" && s.sch.cancelAfter == 0 {
		env.RegisterDelayedCallback(func() { s.deliverCancel(env) }, max(s.sch.cancelAt, time.Millisecond))
	}
	return env
}

func (s *simRestoreRun) deliverCancel(env *testsuite.TestWorkflowEnvironment) {
	if s.cancelSent {
		return
	}
	s.cancelSent = true
	kind := s.sch.cancelKind
	if kind == "update" || kind == "both" {
		env.UpdateWorkflow(ac.CancelUpdate, "sim-cancel", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {}})
	}
	switch kind {
	case "temporal":
		s.temporal = true
		env.CancelWorkflow()
	case "both":
		env.RegisterDelayedCallback(func() {
			s.temporal = true
			env.CancelWorkflow()
		}, time.Millisecond)
	}
}

// batch runs the real RestoreConnections, then maybe loses its completion.
func (s *simRestoreRun) batch(ctx context.Context, in activities.RestoreConnectionsInput) (activities.RestoreConnectionsResult, error) {
	info := activity.GetInfo(ctx)
	h := fnv.New64a()
	_, _ = h.Write([]byte(info.ActivityID))
	r := rand.New(rand.NewPCG(s.sch.seed^0x1055, h.Sum64()))
	lose := 0
	if r.Float64() < s.sch.loseBatch {
		lose = []int{1, 1, 2, 5}[r.IntN(4)]
	}
	if info.Attempt > 1 {
		// An earlier attempt failed (its list, a heartbeat timeout under load, or a lost
		// completion): this one cannot know what that one sent.
		s.mu.Lock()
		for _, it := range in.Items {
			s.lost[it.Entry.OAuthTokenID] = true
		}
		s.mu.Unlock()
	}
	res, err := s.acts.RestoreConnections(ctx, in)
	if err != nil || int(info.Attempt) > lose {
		return res, err
	}
	s.lostAttempts.Add(1)
	s.mu.Lock()
	for _, it := range in.Items {
		s.lost[it.Entry.OAuthTokenID] = true
	}
	s.mu.Unlock()
	if info.Attempt < batchActivityOptions().RetryPolicy.MaximumAttempts || r.IntN(2) == 0 {
		return activities.RestoreConnectionsResult{}, temporal.NewApplicationError("simulated: the worker lost this attempt's completion", "SimulatedLoss")
	}
	// The last attempt times out; its last heartbeat holds part of what it finished.
	stale := activities.RestoreConnectionsProgress{Done: res.Done[:r.IntN(len(res.Done)+1)]}
	return activities.RestoreConnectionsResult{}, temporal.NewHeartbeatTimeoutError(stale)
}

func (s *simRestoreRun) collect(env *testsuite.TestWorkflowEnvironment) {
	if !env.IsWorkflowCompleted() {
		s.fail("the restore did not complete")
		return
	}
	s.err = env.GetWorkflowError()
	var canceled *temporal.CanceledError
	switch {
	case s.err == nil:
		if err := env.GetWorkflowResult(&s.result); err != nil {
			s.fail("decode the result: %v", err)
			return
		}
	case errors.As(s.err, &canceled):
		if !s.temporal {
			s.fail("ended Canceled without a Temporal cancel: %v", s.err)
		}
		if !canceled.HasDetails() || canceled.Details(&s.result) != nil {
			s.fail("ended Canceled without its result in the details")
			return
		}
	default:
		s.fail("ended with %v", s.err)
		return
	}
	for page := 0; page < max(s.result.ReportPages, 1); page++ {
		v, err := env.QueryWorkflow(ac.ReportQuery, page)
		var p ac.RestoreReportPage
		if err == nil {
			err = v.Get(&p)
		}
		if err != nil {
			s.fail("report page %d: %v", page, err)
			return
		}
		s.pages = append(s.pages, p.Connections...)
	}
}

// checkRestore checks the invariants of the file comment.
func (s *simRestoreRun) checkRestore() {
	cp, res := s.cp, s.result
	if s.err != nil && s.result.AgentID == "" {
		return // already reported
	}
	// 1. Never two connections for one token.
	for tok, ids := range cp.conns {
		late := 0
		for _, p := range cp.posts {
			if p.token == tok && p.late && p.created != "" {
				late++
			}
		}
		s.lateCreates += late
		s.doubles += max(len(ids)-1, 0)
		s.check(len(ids) <= 1+late, "token %s has %d connections at the control plane: %v (%d created after the client gave up)", tok, len(ids), ids, late)
	}
	sentTotal := 0
	for _, n := range cp.sent {
		sentTotal += n
	}
	s.check(sentTotal >= len(cp.posts), "harness: %d POSTs arrived, the client noted %d leaving", len(cp.posts), sentTotal)
	// Per token: the POSTs and what they did.
	posts := map[string][]*simPost{}
	for _, p := range cp.posts {
		posts[p.token] = append(posts[p.token], p)
	}
	tokens := map[string]bool{}
	for _, e := range s.sch.entries {
		tokens[e.OAuthTokenID] = true
	}
	s.check(len(s.pages) == len(tokens) && res.Total == len(tokens) &&
		res.Restored+res.AlreadyPresent+res.Failed+res.Skipped == res.Total, "report: %d entries, total %d, counts %d+%d+%d+%d; want one per distinct token (%d)",
		len(s.pages), res.Total, res.Restored, res.AlreadyPresent, res.Failed, res.Skipped, len(tokens))
	s.check(!res.Cancelled || s.cancelSent, "cancelled without a cancel")
	seen := map[string]bool{}
	for _, o := range s.pages {
		s.check(!(seen[o.OAuthTokenID] || !tokens[o.OAuthTokenID]), "entry %s: token %s reported twice or never given", o.ConnectionID, o.OAuthTokenID)
		seen[o.OAuthTokenID] = true
		s.checkOutcome(o, posts[o.OAuthTokenID])
	}
	// 4 and 5.
	s.check(len(s.obs.oversize) == 0, "payloads over 512 KB: %v", s.obs.oversize)
	s.check(len(s.obs.leaks) == 0, "the API key is in: %v", s.obs.leaks)
}

// checkOutcome checks that one entry's outcome is backed by the control plane (invariants 2, 3).
func (s *simRestoreRun) checkOutcome(o ac.RestoreOutcome, posts []*simPost) {
	tok := o.OAuthTokenID
	ids := s.cp.conns[tok]
	created, status := "", map[int]bool{}
	for _, p := range posts {
		if p.created != "" {
			created = p.created
		}
		status[p.status] = true
	}
	stopped, sent := s.result.StopReason != "", s.cp.sent[tok]
	switch o.Outcome {
	case ac.OutcomeRestored, ac.OutcomeAlreadyPresent:
		s.check(len(ids) >= 1 && slices.Contains(ids, o.NewConnectionID), "%s %s (token %s) names %q; the control plane has %v", o.ConnectionID, o.Outcome, tok, o.NewConnectionID, ids)
		s.check(!(o.Outcome == ac.OutcomeAlreadyPresent && (!s.sch.present[tok] || sent > 0)), "%s already_present, but the token was there before: %t, POSTs sent for it: %d", o.ConnectionID, s.sch.present[tok], sent)
		s.check(!(o.Outcome == ac.OutcomeRestored && created == "" && !(s.sch.present[tok] && s.lost[tok])), "%s restored, but no POST created its connection (there before: %t, in a lost attempt: %t, attempts %d, sent %d)", o.ConnectionID, s.sch.present[tok], s.lost[tok], o.Attempts, sent)
	case ac.OutcomeFailed:
		s.check(!(len(ids) > 0 && o.FailureType != ac.ErrInterrupted && o.FailureType != ac.ErrUnauthorized), "%s failed %s, yet its token holds %v", o.ConnectionID, o.FailureType, ids)
		switch o.FailureType {
		case ac.ErrValidation:
			s.check(status[http.StatusUnprocessableEntity], "%s failed ValidationError without a 422", o.ConnectionID)
		case ac.ErrUnauthorized:
			s.check(s.cp.refused, "%s failed Unauthorized, but the key was never refused", o.ConnectionID)
		case ac.ErrInterrupted:
			// The test environment hands the workflow a cancelled batch's error at once, also for
			// a batch that had not started: the workflow cannot know what it sent.
			_, scheduled := s.scheduled.Load(tok)
			// Or the restore gave up on it after its rounds, the last POST's answer lost.
			s.check((stopped && (sent > 0 || s.lost[tok] || scheduled)) || sent > 0, "%s failed Interrupted (stopped: %t) with no POST sent and no lost attempt: %s", o.ConnectionID, stopped, o.Message)
		default:
			s.check(sent > 0 || s.cp.lists > 0, "%s failed %s with nothing sent", o.ConnectionID, o.FailureType)
		}
	case ac.OutcomeSkipped:
		s.check(stopped && sent == 0, "%s skipped (stopped: %t) with %d POSTs sent for its token", o.ConnectionID, stopped, sent)
	default:
		s.fail("%s has outcome %q", o.ConnectionID, o.Outcome)
	}
}

func runRestoreSeed(t *testing.T, seed uint64, verbose bool, st *simRestoreStats) {
	t.Helper()
	sch := drawRestoreSchedule(seed)
	if verbose {
		t.Logf("seed %d: %s", seed, sch)
	}
	s := newSimRestoreRun(sch)
	s.run()
	st.add(s)
	if verbose {
		t.Logf("result: %+v", s.result)
	}
	if len(s.violations) > 0 {
		t.Errorf("restore simulation seed %d broke %d invariant(s); replay with\n\tgo test ./workflows -run 'TestRestoreSimulation$' -simrestore.seed=%d -v\nschedule: %s\n%s",
			seed, len(s.violations), seed, sch, strings.Join(s.violations, "\n"))
	}
}

func TestRestoreSimulation(t *testing.T) {
	t.Parallel()
	var st simRestoreStats
	if *simRestoreSeed != 0 {
		runRestoreSeed(t, *simRestoreSeed, true, &st)
		t.Logf("restore simulation: %s", &st)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *simWorkers * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(*simRestoreSeeds) {
					return
				}
				runRestoreSeed(t, *simRestoreFirst+uint64(i), false, &st)
			}
		})
	}
	wg.Wait()
	t.Logf("restore simulation, seeds %d-%d: %s", *simRestoreFirst, *simRestoreFirst+uint64(*simRestoreSeeds)-1, &st)
}

func TestRestoreSimulationRegressions(t *testing.T) {
	t.Parallel()
	for _, r := range simRestoreRegressions {
		t.Run(fmt.Sprint(r.seed), func(t *testing.T) {
			if got := drawRestoreSchedule(r.seed).String(); !strings.HasPrefix(got, r.draws) {
				t.Fatalf("seed %d now draws %q, not %q: find a seed that draws what it found (%s)", r.seed, got, r.draws, r.found)
			}
			runRestoreSeed(t, r.seed, false, &simRestoreStats{})
		})
	}
}
