package workflows

// What the teardown simulation (sim_test.go) watches besides the control plane: every payload
// and failure Temporal would store (size, and the API key), every log line (the API key), and a
// fake Coordinator that plays standalone RemoveConnectionWorkflow runs racing the teardown.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
)

// Temporal warns at payloads over 512 KB.
const simPayloadWarnBytes = 512 << 10

// simObserver collects what the payload, failure and log recorders saw in one schedule.
type simObserver struct {
	key      string
	payloads atomic.Int64
	largest  atomic.Int64
	logLines atomic.Int64

	// progress, when set, sees every batch heartbeat as it is recorded.
	progress func(activities.RemoveConnectionsProgress)
	// scheduled are the connections the workflow put in a batch (seen as its input is encoded).
	scheduled sync.Map
	// lastBatchAt is when the workflow last scheduled a batch (UnixNano).
	lastBatchAt atomic.Int64

	mu       sync.Mutex
	leaks    []string // where the key showed up
	oversize []string // payloads over the warning size
	what     string   // the largest payload's type
}

func (o *simObserver) leak(where string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.leaks) < 5 {
		o.leaks = append(o.leaks, where)
	}
}

// keyIn reports whether text holds the key or a long enough piece of it to matter.
func (o *simObserver) keyIn(text []byte) bool {
	s := string(text)
	return strings.Contains(s, o.key) || strings.Contains(s, o.key[:16]) || strings.Contains(s, o.key[len(o.key)-16:])
}

func (o *simObserver) payload(p *commonpb.Payload, v any) {
	if p == nil {
		return
	}
	o.payloads.Add(1)
	size := int64(proto.Size(p))
	o.sized(size, v)
	if o.keyIn(p.GetData()) {
		o.leak(fmt.Sprintf("payload of %T", v))
	}
}

func (o *simObserver) sized(size int64, v any) {
	for {
		cur := o.largest.Load()
		if size <= cur {
			break
		}
		if o.largest.CompareAndSwap(cur, size) {
			o.mu.Lock()
			o.what = fmt.Sprintf("%T", v)
			o.mu.Unlock()
			break
		}
	}
	if size > simPayloadWarnBytes {
		o.mu.Lock()
		if len(o.oversize) < 5 {
			o.oversize = append(o.oversize, fmt.Sprintf("%T: %d bytes", v, size))
		}
		o.mu.Unlock()
	}
}

// simConverter is the default data converter, recording every payload it makes.
type simConverter struct {
	converter.DataConverter
	obs *simObserver
}

func (c simConverter) ToPayload(v any) (*commonpb.Payload, error) {
	p, err := c.DataConverter.ToPayload(v)
	c.obs.payload(p, v)
	return p, err
}

func (c simConverter) ToPayloads(vs ...any) (*commonpb.Payloads, error) {
	for _, v := range vs {
		switch v := v.(type) {
		case activities.RemoveConnectionsProgress:
			if c.obs.progress != nil {
				c.obs.progress(v)
			}
		case activities.RemoveConnectionsInput:
			c.obs.lastBatchAt.Store(time.Now().UnixNano())
			for _, it := range v.Items {
				c.obs.scheduled.Store(it.ConnectionID, true)
			}
		}
	}
	ps, err := c.DataConverter.ToPayloads(vs...)
	if ps != nil {
		// Temporal checks the size of the whole Payloads it stores, and of each payload.
		var v any = vs
		if len(vs) == 1 {
			v = vs[0]
		}
		c.obs.sized(int64(proto.Size(ps)), v)
		for i, p := range ps.GetPayloads() {
			if i < len(vs) {
				c.obs.payload(p, vs[i])
			}
		}
	}
	return ps, err
}

// simFailureConverter is the default failure converter (encoding details with simConverter),
// checking every failure it makes for the key and its size.
type simFailureConverter struct {
	converter.FailureConverter
	obs *simObserver
}

func (c simFailureConverter) ErrorToFailure(err error) *failurepb.Failure {
	f := c.FailureConverter.ErrorToFailure(err)
	if f != nil {
		c.obs.sized(int64(proto.Size(f)), f)
		for g := f; g != nil; g = g.GetCause() {
			if c.obs.keyIn([]byte(g.GetMessage())) || c.obs.keyIn([]byte(g.GetStackTrace())) {
				c.obs.leak("failure message: " + g.GetMessage())
			}
		}
	}
	return f
}

// simLogger is the Temporal logger (and go-retryablehttp's) of a schedule: it keeps no lines,
// only counts them and checks each for the key.
type simLogger struct{ obs *simObserver }

// simTrace, when set, gets every log line of level INFO and above (a -sim.trace replay).
var simTrace func(string)

func (l simLogger) line(level, msg string, kv []any) {
	l.obs.logLines.Add(1)
	var b strings.Builder
	b.WriteString(level)
	b.WriteString(" ")
	b.WriteString(msg)
	for _, v := range kv {
		fmt.Fprintf(&b, " %v", v)
	}
	if simTrace != nil && level != "DEBUG" {
		simTrace(b.String())
	}
	if l.obs.keyIn([]byte(b.String())) {
		l.obs.leak("log line: " + b.String())
	}
}

func (l simLogger) Debug(msg string, kv ...any) { l.line("DEBUG", msg, kv) }
func (l simLogger) Info(msg string, kv ...any)  { l.line("INFO", msg, kv) }
func (l simLogger) Warn(msg string, kv ...any)  { l.line("WARN", msg, kv) }
func (l simLogger) Error(msg string, kv ...any) { l.line("ERROR", msg, kv) }

// Kinds of standalone RemoveConnectionWorkflow runs the fake coordinator plays.
const (
	// saCompleted finished (its DELETE answered) after the teardown started, before the batch asked.
	saCompleted = iota
	// saRemoving is sending its DELETE when the batch asks.
	saRemoving
	// saWaiting is "checking" for a few asks, then waits for the teardown (which sends the DELETE).
	saWaiting
	// saLate is "checking" for a few asks (its claim check failed), then removes it itself.
	saLate
	// saTerminated sends its DELETE and is terminated before it reports: no result to take.
	saTerminated
	saKinds
)

// simStandalone is one scripted standalone removal.
type simStandalone struct {
	kind    int
	busyFor int // asks answered "checking"
	// fail makes RemovalState fail (coordination trouble) on these asks.
	failAsk int

	asks    int
	started bool
	done    chan struct{}
	res     ac.RemoveConnectionResult
	err     error
	status  int // the last answer its DELETE got
}

// simCoordinator is the activities' Coordinator: it plays the scripted standalone removals and
// serves the carried state of the previous run.
type simCoordinator struct {
	cp     *simCP
	base   string
	client *http.Client
	wg     *sync.WaitGroup

	mu    sync.Mutex
	runs  map[string]*simStandalone
	pages [][]byte // the previous run's carried state, page by page
	runID string
	// pageAsks counts CarriedStatePage calls.
	pageAsks int
}

var _ activities.Coordinator = (*simCoordinator)(nil)

func (c *simCoordinator) RemovalState(ctx context.Context, agentID, connectionID string, _ time.Time) (string, string, bool, error) {
	c.mu.Lock()
	s := c.runs[connectionID]
	if s == nil {
		c.mu.Unlock()
		return "", "", false, nil
	}
	s.asks++
	asks := s.asks
	if asks == s.failAsk {
		c.mu.Unlock()
		return "", "", false, errors.New("describe workflow: service unavailable (simulated)")
	}
	if s.kind == saTerminated && s.done != nil {
		select {
		case <-s.done:
			// Terminated: Temporal describes it as not running (and not completed).
			c.mu.Unlock()
			return "", "", false, nil
		default:
		}
	}
	var state string
	switch {
	case s.kind == saWaiting && asks <= s.busyFor, s.kind == saLate && asks <= s.busyFor:
		state = ac.RemovalChecking
	case s.kind == saWaiting:
		state = ac.RemovalWaitingForTeardown
	default:
		state = ac.RemovalRemoving
		c.startLocked(connectionID, s)
	}
	done := s.done
	c.mu.Unlock()
	if s.kind == saCompleted && done != nil {
		// It completed before the batch asked: its answer is in.
		select {
		case <-done:
		case <-ctx.Done():
			return "", "", false, ctx.Err()
		}
	}
	return state, "standalone-run-" + connectionID, true, nil
}

// startLocked starts the standalone removal's own DELETE once. Call with c.mu held.
func (c *simCoordinator) startLocked(conn string, s *simStandalone) {
	if s.started {
		return
	}
	s.started = true
	s.done = make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		res, status, err := c.removeAlone(conn)
		c.mu.Lock()
		s.res, s.status, s.err = res, status, err
		c.mu.Unlock()
		close(s.done)
	}()
}

// removeAlone is what the standalone removal does: DELETE until an answer that ends it (a few
// tries), with missing_ok.
func (c *simCoordinator) removeAlone(conn string) (ac.RemoveConnectionResult, int, error) {
	res := ac.RemoveConnectionResult{AgentID: c.cp.agentID, ConnectionID: conn}
	var status int
	for try := 1; try <= 4; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.cp.standaloneDelete(ctx, c.client, c.base, conn)
		cancel()
		res.Attempts = try
		status = st
		switch {
		case err != nil:
		case st == http.StatusNoContent:
			res.Outcome = ac.OutcomeRemoved
			return res, st, nil
		case st == http.StatusNotFound:
			res.Outcome = ac.OutcomeAlreadyAbsent
			return res, st, nil
		case st == http.StatusUnprocessableEntity:
			return res, st, temporal.NewNonRetryableApplicationError("control plane answered 422", ac.ErrValidation, nil)
		case st == http.StatusBadRequest:
			return res, st, temporal.NewNonRetryableApplicationError("control plane answered 400", ac.ErrBadRequest, nil)
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			return res, st, temporal.NewNonRetryableApplicationError(fmt.Sprintf("control plane answered %d", st), ac.ErrUnauthorized, nil)
		}
		time.Sleep(time.Millisecond)
	}
	if status == 0 {
		// Every request was cut off (the client's timeout; on a loaded machine a request can
		// wait that long): no answer, as a real removal reports a network failure.
		return res, status, temporal.NewApplicationError("gave up after 4 requests without an answer", ac.ErrUnavailable)
	}
	return res, status, temporal.NewApplicationError("gave up after 4 requests", ac.ErrServerError)
}

func (c *simCoordinator) AwaitRemoval(ctx context.Context, _, connectionID, _ string) (ac.RemoveConnectionResult, error) {
	c.mu.Lock()
	s := c.runs[connectionID]
	var done chan struct{}
	if s != nil {
		if !s.started {
			c.startLocked(connectionID, s)
		}
		done = s.done
	}
	c.mu.Unlock()
	if s == nil {
		return ac.RemoveConnectionResult{}, fmt.Errorf("%w: no such removal", activities.ErrRemovalNotRunning)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ac.RemoveConnectionResult{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.kind == saTerminated {
		return ac.RemoveConnectionResult{}, fmt.Errorf("%w: terminated", activities.ErrRemovalNotRunning)
	}
	return s.res, s.err
}

func (c *simCoordinator) TeardownClaim(context.Context, string, string) (ac.ConnectionClaim, bool, error) {
	return ac.ConnectionClaim{}, false, nil
}

func (c *simCoordinator) FinishedTeardownOutcome(context.Context, string, string) (*ac.ConnectionOutcome, error) {
	return nil, nil
}

func (c *simCoordinator) CarriedStatePage(_ context.Context, _, runID string, page int) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pageAsks++
	if runID != c.runID {
		return nil, fmt.Errorf("carried state of run %q asked, the previous run is %q", runID, c.runID)
	}
	if page < 0 || page >= len(c.pages) {
		return nil, fmt.Errorf("page %d asked, there are %d", page, len(c.pages))
	}
	return c.pages[page], nil
}
