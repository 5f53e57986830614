package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
)

// Defaults of Options.
const (
	// DefaultRefresh is how often a member renews its lease, and so how soon it sees a member
	// join or another's 429 pause.
	DefaultRefresh = 5 * time.Second
	// DefaultTTL is how long a lease lasts unrenewed: a member that died stops counting within
	// DefaultTTL, and the others take its share with their next renewal, within DefaultTTL +
	// DefaultRefresh (20 s) of its last renewal.
	DefaultTTL = 15 * time.Second
	// TagLabel is what the credential tag hashes; changing it moves every fleet to new workflows.
	TagLabel = "agent-connections fleet budget v1"
)

// Pacer is the part of the control plane client a member steers (*controlplane.Client).
type Pacer interface {
	SetPace(perSecond float64, burst int)
	PauseFor(d time.Duration)
	CredentialTag(label string) (string, error)
	// Demand is how many requests have asked for a turn so far, and how many wait for one now.
	Demand() (asked uint64, waiting int)
}

// Options configure a Member.
type Options struct {
	// Client reaches the Temporal namespace the worker polls. Required.
	Client client.Client
	// TaskQueue is the worker's task queue; the budget workflow runs there. Required.
	TaskQueue string
	// RequestsPerSecond and Burst are the whole fleet's budget. With RequestsPerSecond 0 there is
	// no steady limit to share, and only 429 pauses are.
	RequestsPerSecond float64
	Burst             int
	// Refresh and TTL default to DefaultRefresh and DefaultTTL; TTL must exceed Refresh.
	Refresh, TTL time.Duration
	// Name names this member in the workflow; empty means host/pid/random, unique per process.
	Name string
	// Logger receives the member's few lines; nil logs nothing.
	Logger log.Logger
}

// Member is one replica's place in its fleet. Build it with New, give RateLimited to the control
// plane client as its OnRateLimited, and Run it once the worker polls.
type Member struct {
	o       Options
	members atomic.Int64
	pauses  chan time.Duration

	// Run's own: set when it starts, used only by its goroutine.
	pacer    Pacer
	tag      string
	lastErr  string
	asked    uint64    // the pacer's count at the last look
	activeAt time.Time // when a request last asked for a turn or waited for one
	busy     bool      // what the last renewal said
	renewed  time.Time // when the last renewal was sent
}

// New checks o and builds a member.
func New(o Options) (*Member, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("fleet: no Temporal client")
	case o.TaskQueue == "":
		return nil, errors.New("fleet: no task queue")
	case o.RequestsPerSecond < 0 || math.IsNaN(o.RequestsPerSecond) || math.IsInf(o.RequestsPerSecond, 0):
		return nil, fmt.Errorf("fleet: budget %v requests per second is not a rate", o.RequestsPerSecond)
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL <= o.Refresh {
		return nil, fmt.Errorf("fleet: lease TTL %s must exceed the refresh %s", o.TTL, o.Refresh)
	}
	if o.Burst < 1 {
		o.Burst = 1
	}
	if o.Name == "" {
		o.Name = defaultName()
	}
	if o.Logger == nil {
		o.Logger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	m := &Member{o: o, pauses: make(chan time.Duration, 1)}
	m.members.Store(1)
	return m, nil
}

// defaultName is host/pid/8 random hex digits: a restarted process is a new member, so its old
// lease lapses rather than being mistaken for it.
func defaultName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Name is this member's name in the workflow.
func (m *Member) Name() string { return m.o.Name }

// Members is the number of live members the last renewal reported (1 before the first).
func (m *Member) Members() int { return int(m.members.Load()) }

// RateLimited passes a 429's Retry-After on to the fleet. It never blocks; a pause not yet sent
// is replaced by a longer one.
func (m *Member) RateLimited(retryAfter time.Duration) {
	if retryAfter <= 0 {
		return
	}
	for {
		select {
		case m.pauses <- retryAfter:
			return
		default:
		}
		select {
		case old := <-m.pauses:
			retryAfter = max(retryAfter, old)
		default:
		}
	}
}

// Share is the steady limit and burst of one of n members under a budget of perSecond and burst:
// the budget divided evenly, the burst rounded down but at least 1.
func Share(perSecond float64, burst, n int) (float64, int) {
	n = max(n, 1)
	return perSecond / float64(n), max(burst/n, 1)
}

// ShareOf is the steady limit and burst of a member granted the fraction f of a budget of
// perSecond and burst: the burst rounded down but at least 1.
func ShareOf(perSecond float64, burst int, f float64) (float64, int) {
	f = min(max(f, 0), 1)
	return perSecond * f, max(int(float64(burst)*f), 1)
}

// observe reads the pacer's demand and says whether this member is busy: a request waits for a
// turn now, or one asked for a turn within the last two looks (half a step). A busy member's
// share is as large as every other busy member's; an idle member keeps IdleShare of an even
// share.
func (m *Member) observe(now time.Time) bool {
	asked, waiting := m.pacer.Demand()
	if waiting > 0 || asked != m.asked {
		m.activeAt = now
	}
	m.asked = asked
	return !m.activeAt.IsZero() && now.Sub(m.activeAt) < 2*m.look()
}

// step is how often a busy member renews: a fifth of the refresh, 1 s by default.
func (m *Member) step() time.Duration { return max(m.o.Refresh/5, time.Millisecond) }

// look is how often a member looks at its demand, renewing at once when it changed: a quarter
// step, 250 ms by default.
func (m *Member) look() time.Duration { return max(m.step()/4, time.Millisecond) }

// Run keeps the lease until ctx ends, pacing p at this member's share of the budget and passing
// 429 pauses both ways, then signals that the member leaves. Call it once, after the worker
// polls the task queue (the budget workflow runs on the fleet's own workers).
func (m *Member) Run(ctx context.Context, p Pacer) {
	m.pacer = p
	m.asked, _ = p.Demand()
	ticker := time.NewTicker(m.look())
	defer ticker.Stop()
	m.renew(ctx, m.observe(time.Now()))
	for {
		select {
		case <-ctx.Done():
			m.leave(context.WithoutCancel(ctx))
			return
		case d := <-m.pauses:
			m.sendPause(ctx, d)
		case now := <-ticker.C:
			// An idle member renews every Refresh, a busy one every step, and one whose demand
			// changed at once: the budget follows the replicas' demand within a step or two.
			busy := m.observe(now)
			due := m.o.Refresh
			if busy {
				due = m.step()
			}
			if busy != m.busy || now.Sub(m.renewed) >= due-m.look()/2 {
				m.renew(ctx, busy)
			}
		}
	}
}

// workflowID names this member's fleet from the credential in use now: a rotated key is a new
// fleet.
func (m *Member) workflowID() (string, error) {
	tag, err := m.pacer.CredentialTag(TagLabel)
	if err != nil {
		return "", err
	}
	if tag != m.tag && m.tag != "" {
		m.o.Logger.Info("fleet budget: the credential changed; joining its fleet", "workflow_id", WorkflowID(m.o.TaskQueue, tag))
	}
	m.tag = tag
	return WorkflowID(m.o.TaskQueue, tag), nil
}

func (m *Member) startOptions(id string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                m.o.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
}

// renew renews the lease (starting the workflow if it is not running) and applies the answer. A
// failed renewal keeps the last share: a replica that cannot reach Temporal does not take more.
func (m *Member) renew(ctx context.Context, busy bool) {
	m.busy, m.renewed = busy, time.Now()
	id, err := m.workflowID()
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, m.o.Refresh)
		defer cancel()
		var reply LeaseReply
		if reply, err = m.lease(rctx, id, busy); err == nil {
			m.apply(reply)
		}
	}
	m.noteResult(ctx, err)
}

func (m *Member) lease(ctx context.Context, id string, busy bool) (LeaseReply, error) {
	var reply LeaseReply
	h, err := m.o.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: m.o.Client.NewWithStartWorkflowOperation(m.startOptions(id), WorkflowType, State{}),
		UpdateOptions: client.UpdateWorkflowOptions{
			WorkflowID:   id,
			UpdateName:   LeaseUpdate,
			Args:         []any{LeaseRequest{Member: m.o.Name, TTL: m.o.TTL, Busy: busy}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err == nil {
		err = h.Get(ctx, &reply)
	}
	return reply, err
}

func (m *Member) apply(r LeaseReply) {
	n := max(r.Members, 1)
	if old := m.members.Swap(int64(n)); old != int64(n) {
		m.o.Logger.Info("fleet budget: members changed", "members", n, "was", old)
	}
	switch {
	case m.o.RequestsPerSecond <= 0:
	case r.Share > 0:
		m.pacer.SetPace(ShareOf(m.o.RequestsPerSecond, m.o.Burst, r.Share))
	default: // a budget workflow from before shares: an even split
		m.pacer.SetPace(Share(m.o.RequestsPerSecond, m.o.Burst, n))
	}
	if r.Paused > 0 {
		m.pacer.PauseFor(r.Paused)
	}
}

// noteResult logs a failure once per run of failures, and the recovery.
func (m *Member) noteResult(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case msg != "" && m.lastErr == "":
		m.o.Logger.Warn("fleet budget: lease renewal failed; keeping the last share", "members", m.Members(), "error", msg)
	case msg == "" && m.lastErr != "":
		m.o.Logger.Info("fleet budget: lease renewed again", "members", m.Members())
	}
	m.lastErr = msg
}

// sendPause signals a 429's pause to the fleet (starting the workflow if need be).
func (m *Member) sendPause(ctx context.Context, d time.Duration) {
	id, err := m.workflowID()
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, m.o.Refresh)
		defer cancel()
		_, err = m.o.Client.SignalWithStartWorkflow(sctx, id, PauseSignal, PauseRequest{For: d}, m.startOptions(id), WorkflowType, State{})
	}
	if err != nil && ctx.Err() == nil {
		m.o.Logger.Warn("fleet budget: could not pass a 429 pause on", "retry_after", d.String(), "error", err.Error())
	}
}

// leave gives the share back at once instead of after the TTL; best effort, bounded.
func (m *Member) leave(ctx context.Context) {
	id, err := m.workflowID()
	if err != nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := m.o.Client.SignalWorkflow(lctx, id, "", LeaveSignal, m.o.Name); err != nil {
		m.o.Logger.Debug("fleet budget: leave signal failed; the lease lapses instead", "error", err.Error())
	}
}
