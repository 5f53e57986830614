//go:build faults

package faults

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

// apiKey is the key every stack's worker sends and its emulator accepts.
const apiKey = "faults-suite-key-Hq7Wd2Lx9Pz4"

// logLimit bounds the emulator's request log; each case checks it stayed under it, so the
// per-connection DELETE counts below come from the whole log.
const logLimit = 1_000_000

var (
	shared    *devserver.Server
	workerBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	return devserver.RunWithWorker(m.Run, func(s *devserver.Server, bin string) { shared, workerBin = s, bin })
}

// emuHost serves an emulator from an http.Server on a fixed loopback address, so a case can take
// the control plane down (connections refused) and bring it back on the same address with the
// same emulator state.
type emuHost struct {
	em      *emulator.Server
	handler http.Handler
	addr    string
	URL     string

	mu  sync.Mutex
	srv *http.Server
}

func newEmuHost(t *testing.T, em *emulator.Server, handler http.Handler) *emuHost {
	t.Helper()
	if handler == nil {
		handler = em
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &emuHost{em: em, handler: handler, addr: ln.Addr().String()}
	h.URL = "http://" + h.addr
	h.serve(ln)
	t.Cleanup(func() {
		em.Close() // releases hanging requests first
		h.down()
	})
	return h
}

func (h *emuHost) serve(ln net.Listener) {
	srv := &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every open connection: new requests are refused, requests in
// flight lose their connection.
func (h *emuHost) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up serves the same emulator on the same address again.
func (h *emuHost) up() error {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			h.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// workerProc is one running worker binary with its whole log in a file.
type workerProc struct {
	*proc.Process
	httpAddr string
	logPath  string
	started  time.Time
}

func (w *workerProc) log(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stack is one case's emulator, workers and client, on a task queue of its own.
type stack struct {
	t            *testing.T
	em           *emulator.Server
	host         *emuHost
	temporalAddr string
	taskQueue    string
	client       client.Client
	key          string
	env          []string // extra worker environment, later entries win

	mu      sync.Mutex
	workers []*workerProc
	started []string // workflow IDs this case started
}

type stackOptions struct {
	temporalAddr string                              // default: the shared dev server
	key          string                              // default: apiKey
	env          []string                            // extra worker environment
	handler      func(*emulator.Server) http.Handler // wraps the emulator (storms)
	noWorker     bool
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	key := opts.key
	if key == "" {
		key = apiKey
	}
	addr := opts.temporalAddr
	if addr == "" {
		addr = shared.Address
	}
	em := emulator.New(emulator.Options{APIKey: key, LogLimit: logLimit})
	var handler http.Handler
	if opts.handler != nil {
		handler = opts.handler(em)
	}
	host := newEmuHost(t, em, handler)
	c, err := client.Dial(client.Options{HostPort: addr, Logger: log.NewStructuredLogger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &stack{
		t: t, em: em, host: host, temporalAddr: addr, client: c, key: key, env: opts.env,
		taskQueue: "faults-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10),
	}
	if !opts.noWorker {
		s.startWorker()
	}
	return s
}

// startWorker runs the worker binary and waits until /readyz says 200.
func (s *stack) startWorker(extraEnv ...string) *workerProc {
	s.t.Helper()
	port, err := devserver.FreePort()
	if err != nil {
		s.t.Fatal(err)
	}
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.t.TempDir(),
		"TEMPORAL_ADDRESS=" + s.temporalAddr,
		"TEMPORAL_NAMESPACE=default",
		"TEMPORAL_TASK_QUEUE=" + s.taskQueue,
		"LANGSMITH_API_KEY=" + s.key,
		"LANGSMITH_CONTROL_PLANE_URL=" + s.host.URL,
		"LANGSMITH_REQUEST_TIMEOUT=5s",
		"LANGSMITH_REQUESTS_PER_SECOND=0",
		"WORKER_HTTP_ADDRESS=" + httpAddr,
		"WORKER_STOP_TIMEOUT=5s",
		"LOG_LEVEL=debug",
	}
	env = append(env, s.env...)
	env = append(env, extraEnv...)
	s.mu.Lock()
	n := len(s.workers)
	s.mu.Unlock()
	// FAULTS_LOG_DIR keeps the worker logs after the run, for a closer look at a failure.
	dir := os.Getenv("FAULTS_LOG_DIR")
	if dir == "" {
		dir = s.t.TempDir()
	}
	logPath := filepath.Join(dir, fmt.Sprintf("%s-worker-%d.log", strings.ReplaceAll(s.t.Name(), "/", "-"), n))
	f, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := proc.Start(fmt.Sprintf("worker %d", n), workerBin, nil, env, f)
	if err != nil {
		s.t.Fatal(err)
	}
	w := &workerProc{Process: p, httpAddr: httpAddr, logPath: logPath, started: time.Now()}
	s.mu.Lock()
	s.workers = append(s.workers, w)
	s.mu.Unlock()
	s.t.Cleanup(func() {
		p.Stop(10 * time.Second)
		_ = f.Close()
		if bytes.Contains(w.log(s.t), []byte(s.key)) {
			s.t.Errorf("worker %d logged the API key", n)
		}
		if s.t.Failed() {
			out := w.log(s.t)
			if len(out) > 20_000 {
				out = out[len(out)-20_000:]
			}
			s.t.Logf("worker %d log (last 20 kB):\n%s", n, out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			s.t.Fatalf("worker exited at start: %s", w.log(s.t))
		}
		if code := probe(httpAddr, "/readyz"); code == http.StatusOK {
			return w
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("worker not ready within 30s: %s", w.log(s.t))
	return nil
}

func probe(addr, path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (s *stack) remember(id string) {
	s.mu.Lock()
	s.started = append(s.started, id)
	s.mu.Unlock()
}

// start starts workflow id of type wtype as a calling service does (the contract's ID,
// UseExisting), remembering the ID for the checks at the end.
func (s *stack) start(id, wtype string, timeout time.Duration, in any) (client.WorkflowRun, error) {
	s.remember(id)
	return s.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                s.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowExecutionTimeout: timeout,
	}, wtype, in)
}

func (s *stack) startRemoval(in ac.RemoveConnectionInput) (client.WorkflowRun, error) {
	return s.start(ac.RemoveConnectionWorkflowID(in.AgentID, in.ConnectionID), ac.RemoveConnectionWorkflowType, 15*time.Minute, in)
}

func (s *stack) startTeardown(in ac.RemoveAgentConnectionsInput) (client.WorkflowRun, error) {
	return s.start(ac.RemoveAgentConnectionsWorkflowID(in.AgentID), ac.RemoveAgentConnectionsWorkflowType, 20*time.Minute, in)
}

func (s *stack) startRestore(in ac.RestoreAgentConnectionsInput) (client.WorkflowRun, error) {
	return s.start(ac.RestoreAgentConnectionsWorkflowID(in.AgentID), ac.RestoreAgentConnectionsWorkflowType, 15*time.Minute, in)
}

// resultOf waits up to timeout for run's result.
func resultOf[T any](run client.WorkflowRun, timeout time.Duration) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res T
	err := run.Get(ctx, &res)
	return res, err
}

func removalResult(run client.WorkflowRun, timeout time.Duration) (ac.RemoveConnectionResult, error) {
	return resultOf[ac.RemoveConnectionResult](run, timeout)
}

func teardownResult(run client.WorkflowRun, timeout time.Duration) (ac.RemoveAgentConnectionsResult, error) {
	return resultOf[ac.RemoveAgentConnectionsResult](run, timeout)
}

func restoreResult(run client.WorkflowRun, timeout time.Duration) (ac.RestoreAgentConnectionsResult, error) {
	return resultOf[ac.RestoreAgentConnectionsResult](run, timeout)
}

func (s *stack) waitFor(what string, limit time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// window is a disruption: a kill or an outage. A DELETE in flight during one may have been cut
// off, so its connection may see a second DELETE.
type window struct{ from, to time.Time }

// heartbeatLag is how far a batch's recorded progress may trail what it did: the worker sets the
// SDK's MaxHeartbeatThrottleInterval to one second (worker/main.go), and a heartbeat RPC takes a
// little longer. A DELETE that finished that close before a kill may not be recorded, so the
// retried batch sends it again, and its attempts count one request fewer.
const heartbeatLag = 1500 * time.Millisecond

// arrivalLag is how long after a SIGKILL a request the worker sent just before it can still
// reach the emulator: the bytes are on the loopback already, and a loaded machine may schedule the
// emulator's handler late. Seen: a DELETE logged as sent at the kill, recorded by the emulator as
// starting after it, counted as a plain undercount.
const arrivalLag = 250 * time.Millisecond

// killWindow is the disruption a SIGKILL at `at` makes.
func killWindow(at time.Time) window { return window{at.Add(-heartbeatLag), at.Add(arrivalLag)} }

// connLog is what the emulator saw for one connection.
type connLog struct {
	agent, id string
	deletes   []emulator.LogEntry
}

// served are the DELETEs that reached the route (not answered by a fault, not abandoned): the
// ones that could remove the connection.
func (c connLog) served() []emulator.LogEntry {
	var out []emulator.LogEntry
	for _, e := range c.deletes {
		if !e.Injected && e.Status != emulator.StatusNoAnswer {
			out = append(out, e)
		}
	}
	return out
}

// audit is the check at the emulator for one case.
type audit struct {
	Connections int // connections the case asked to remove
	Deletes     int // DELETE requests for them, whatever the answer
	Injected    int // DELETEs answered by a fault
	NoAnswer    int // DELETEs that got no answer (status 499)
	Lost        []string
	// Repeated are connections whose DELETE reached the route more than once.
	Repeated int
	// CutOff are the repeated ones whose first served DELETE was in flight during a disruption.
	CutOff []string
	// Unexplained are the repeated ones whose first served DELETE ended before any disruption
	// touched it: a second DELETE the contract does not allow.
	Unexplained []string
	// Detail maps a repeated connection to a description of its DELETEs, for the report.
	Detail map[string]string
	// PerConnection counts the DELETEs the emulator saw for each connection, whatever the answer.
	PerConnection map[string]int
	// Disrupted are the connections with a DELETE in flight during a disruption (answered or
	// not): the crash may have lost the record of that request.
	Disrupted map[string]bool
}

// auditEmulator checks the emulator's log for agent's connections: each in want must be gone
// (unless in keep, the ones expected to fail and stay), and none may have a second served DELETE
// unless its first was in flight during one of the disruptions.
func (s *stack) auditEmulator(agent string, want []string, keep map[string]bool, disruptions []window) audit {
	s.t.Helper()
	st := s.em.Stats()
	if st.Requests >= logLimit {
		s.t.Fatalf("the emulator saw %d requests, over its log limit %d: the audit would be partial", st.Requests, logLimit)
	}
	prefix := "/v2/auth/agents/" + agent + "/connections/"
	byID := map[string]*connLog{}
	for _, id := range want {
		byID[id] = &connLog{agent: agent, id: id}
	}
	for _, e := range s.em.Log() {
		if e.Method != http.MethodDelete || !strings.HasPrefix(e.Path, prefix) {
			continue
		}
		c := byID[strings.TrimPrefix(e.Path, prefix)]
		if c == nil {
			continue
		}
		c.deletes = append(c.deletes, e)
	}
	a := audit{Connections: len(want), Detail: map[string]string{}, PerConnection: map[string]int{}, Disrupted: map[string]bool{}}
	present := map[string]bool{}
	for _, id := range s.em.Connections(agent) {
		present[id] = true
	}
	for _, id := range want {
		c := byID[id]
		a.Deletes += len(c.deletes)
		a.PerConnection[id] = len(c.deletes)
		for _, e := range c.deletes {
			if e.Injected {
				a.Injected++
			}
			if e.Status == emulator.StatusNoAnswer {
				a.NoAnswer++
			}
			for _, w := range disruptions {
				if !e.Time.Add(-e.Duration).After(w.to) && !e.Time.Before(w.from) {
					a.Disrupted[id] = true
				}
			}
		}
		if present[id] != keep[id] {
			if present[id] {
				a.Lost = append(a.Lost, id)
			} else {
				s.t.Errorf("%s/%s: got it removed, want it kept (its removal should have failed)", agent, id)
			}
		}
		served := c.served()
		if len(served) <= 1 {
			continue
		}
		a.Repeated++
		first := served[0]
		start, end := first.Time.Add(-first.Duration), first.Time
		cut := false
		for _, w := range disruptions {
			if !start.After(w.to) && !end.Before(w.from) {
				cut = true
			}
		}
		// An abandoned DELETE before the first served one means a cut-off attempt too.
		var desc []string
		for _, e := range c.deletes {
			desc = append(desc, fmt.Sprintf("%d%s %s-%s", e.Status, map[bool]string{true: "(injected)"}[e.Injected],
				e.Time.Add(-e.Duration).Format("15:04:05.000"), e.Time.Format("15:04:05.000")))
		}
		a.Detail[id] = strings.Join(desc, ", ")
		if cut {
			a.CutOff = append(a.CutOff, id)
		} else {
			a.Unexplained = append(a.Unexplained, id)
		}
	}
	sort.Strings(a.Lost)
	return a
}

// report fails the test on lost connections and unexplained second DELETEs, and logs details.
func (a audit) report(t *testing.T, what string, disruptions []window) {
	t.Helper()
	if len(a.Lost) > 0 {
		t.Errorf("%s: %d connections still at the control plane, want none: %v", what, len(a.Lost), first(a.Lost, 20))
	}
	if len(a.Unexplained) > 0 {
		var ws []string
		for _, w := range disruptions {
			ws = append(ws, w.from.UTC().Format("15:04:05.000")+"-"+w.to.UTC().Format("15:04:05.000"))
		}
		t.Errorf("%s: %d connections got a second served DELETE although their first one ended outside every disruption %v, want 0:", what, len(a.Unexplained), ws)
		for _, id := range first(a.Unexplained, 10) {
			t.Logf("  %s: %s", id, a.Detail[id])
		}
	}
	for _, id := range first(a.CutOff, 5) {
		t.Logf("  cut off by a disruption, DELETEs of %s: %s", id, a.Detail[id])
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// outcomeCounts tallies teardown outcomes by outcome (and failure type).
func outcomeCounts(res ac.RemoveAgentConnectionsResult) map[string]int {
	m := map[string]int{}
	for _, o := range res.Connections {
		k := o.Outcome
		if o.FailureType != "" {
			k += "/" + o.FailureType
		}
		m[k]++
	}
	return m
}

// checkOutcomes requires every repeated connection of the audit to have ended as success in the
// teardown result, every connection to be removed or already_absent unless in failing, and each
// outcome's attempts to count at least the DELETEs the emulator saw for it (docs/contract.md:
// attempts counts the requests sent, across attempts). It returns how many outcomes undercount.
func checkOutcomes(t *testing.T, what string, res ac.RemoveAgentConnectionsResult, want []string, failing map[string]string, a audit) int {
	t.Helper()
	got := map[string]ac.ConnectionOutcome{}
	for _, o := range res.Connections {
		got[o.ConnectionID] = o
	}
	bad := 0
	for _, id := range want {
		o, ok := got[id]
		switch {
		case !ok:
			bad++
			if bad <= 10 {
				t.Errorf("%s: no outcome for %s", what, id)
			}
		case failing[id] != "":
			if o.Outcome != ac.OutcomeFailed || o.FailureType != failing[id] {
				bad++
				if bad <= 10 {
					t.Errorf("%s: %s got %+v, want failed %s", what, id, o, failing[id])
				}
			}
		case o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent:
			bad++
			if bad <= 10 {
				t.Errorf("%s: %s got %+v, want removed or already_absent", what, id, o)
			}
		}
	}
	for _, id := range append(append([]string{}, a.CutOff...), a.Unexplained...) {
		if o := got[id]; o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent {
			t.Errorf("%s: %s had a second DELETE and ended %+v, want success", what, id, o)
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d connections with a wrong outcome in all", what, bad)
	}
	under := 0
	for _, id := range want {
		// A connection with a DELETE in flight during a disruption may count one request fewer:
		// the one whose record the crash lost. Any other shortfall breaks the contract.
		if o, ok := got[id]; ok && o.Attempts < a.PerConnection[id] && (!a.Disrupted[id] || o.Attempts < a.PerConnection[id]-1) {
			under++
			if under <= 5 {
				t.Errorf("%s: %s reports attempts %d, but the emulator saw %d DELETEs for it", what, id, o.Attempts, a.PerConnection[id])
			}
		}
	}
	if under > 5 {
		t.Errorf("%s: %d outcomes count fewer attempts than the DELETEs the emulator saw", what, under)
	}
	return under
}
