package fleet

import (
	"errors"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"
)

// Names of the budget workflow and its messages.
const (
	// WorkflowType is the budget workflow's type; the worker registers BudgetWorkflow under it.
	WorkflowType = "AgentConnectionsFleetBudget"
	// LeaseUpdate takes a LeaseRequest, renews the member's lease and answers a LeaseReply.
	LeaseUpdate = "lease"
	// PauseSignal takes a PauseRequest: a member got a 429.
	PauseSignal = "pause"
	// LeaveSignal takes a member name: the member stopped and gives its share back.
	LeaveSignal = "leave"
	// StateQuery answers the State (tests, operators).
	StateQuery = "state"
	// WorkflowIDPrefix starts every budget workflow's ID.
	WorkflowIDPrefix = "agent-connections-budget/"
)

// Bounds of the workflow's own housekeeping.
const (
	// maxLeaseTTL refuses a lease that would keep a dead member counted for long.
	maxLeaseTTL = 5 * time.Minute
	// maxPause bounds a pause, as the client bounds a Retry-After.
	maxPause = time.Hour
	// checkEvery is how often the workflow looks at its history length and whether it is idle.
	checkEvery = 30 * time.Second
	// maxHistory is the history length past which it continues as new, carrying its state.
	maxHistory = 2000
)

// WorkflowID is the budget workflow of a task queue and a credential tag.
func WorkflowID(taskQueue, tag string) string { return WorkflowIDPrefix + taskQueue + "/" + tag }

// LeaseRequest renews Member's lease for TTL. Busy says the member has requests to send: one
// waits for its pacer now, or one asked the pacer for a turn within the last 500 ms.
type LeaseRequest struct {
	Member string        `json:"member"`
	TTL    time.Duration `json:"ttl"`
	Busy   bool          `json:"busy,omitempty"`
}

// LeaseReply is what a renewal learns: how many members hold a live lease (the renewing one
// included), the fraction of the budget this member may use until its next renewal, and how
// long the fleet's requests are still paused by a 429. A Share of 0 (a workflow from before
// shares) means an even split.
type LeaseReply struct {
	Members int           `json:"members"`
	Share   float64       `json:"share,omitempty"`
	Paused  time.Duration `json:"paused"`
}

// IdleShare is the fraction of an even share an idle member keeps while other members are busy:
// enough for a request now and then without waiting a renewal for more.
const IdleShare = 0.1

// PauseRequest pauses every member's requests for For, counted from when the workflow takes it.
type PauseRequest struct {
	For time.Duration `json:"for"`
}

// State is the budget workflow's whole state, carried across continue-as-new. Times are the
// workflow's own clock (the server's), so the members' clocks never meet.
type State struct {
	// Leases maps each member to when its lease lapses.
	Leases map[string]time.Time `json:"leases"`
	// PausedUntil is when the last 429 pause ends.
	PausedUntil time.Time `json:"paused_until"`
	// Busy holds the members whose last renewal said they have requests to send.
	Busy map[string]bool `json:"busy,omitempty"`
	// Grants maps each member to the fraction of the budget its last renewal granted it, which it
	// paces at until its next renewal.
	Grants map[string]float64 `json:"grants,omitempty"`
}

func (s *State) init() {
	if s.Leases == nil {
		s.Leases = map[string]time.Time{}
	}
	if s.Busy == nil {
		s.Busy = map[string]bool{}
	}
	if s.Grants == nil {
		s.Grants = map[string]float64{}
	}
}

// drop forgets a member that left or whose lease lapsed; its grant returns to the others.
func (s *State) drop(m string) {
	delete(s.Leases, m)
	delete(s.Busy, m)
	delete(s.Grants, m)
}

// live drops the lapsed leases and returns how many are left.
func (s *State) live(now time.Time) int {
	for m, until := range s.Leases {
		if !until.After(now) {
			s.drop(m)
		}
	}
	return len(s.Leases)
}

// renew records r at now and answers it with the member's new grant.
func (s *State) renew(now time.Time, r LeaseRequest) LeaseReply {
	s.Leases[r.Member] = now.Add(r.TTL)
	s.Busy[r.Member] = r.Busy
	n := s.live(now)
	share := s.grant(r.Member, n)
	s.Grants[r.Member] = share
	return LeaseReply{Members: n, Share: share, Paused: s.pausedFor(now)}
}

// grant is the fraction of the budget member may use now, of n live members. Its target is an
// even share when no member is busy; when some are, an idle member keeps IdleShare of an even
// share and the busy ones split the rest evenly. A member gets less than its target only when
// the others still hold grants from before: it never takes what they hold, so the grants in
// force never add up to more than the budget, and it gets the rest at a later renewal, after
// theirs shrank. The one exception is the idle share, which a member always gets, even when it
// joins a fleet whose other members hold the whole budget.
func (s *State) grant(member string, n int) float64 {
	floor := IdleShare / float64(n)
	busy, others := 0, 0.0
	for _, m := range slices.Sorted(maps.Keys(s.Leases)) { // sorted: a sum the same on replay
		if s.Busy[m] {
			busy++
		}
		if m != member {
			others += s.Grants[m]
		}
	}
	target := 1 / float64(n)
	switch {
	case busy > 0 && !s.Busy[member]:
		target = floor
	case busy > 0:
		target = (1 - float64(n-busy)*floor) / float64(busy)
	}
	return max(min(target, 1-others), floor)
}

func (s *State) pausedFor(now time.Time) time.Duration { return max(s.PausedUntil.Sub(now), 0) }

func validateLease(r LeaseRequest) error {
	switch {
	case r.Member == "" || len(r.Member) > 200:
		return errors.New("a lease needs a member name of 1 to 200 bytes")
	case r.TTL <= 0 || r.TTL > maxLeaseTTL:
		return errors.New("a lease TTL must be above 0 and at most 5m")
	}
	return nil
}

// BudgetWorkflow holds the leases and the 429 pause of one fleet. It runs as long as some member
// holds a lease or a pause holds, continuing as new when its history grows long, and completes
// when both have lapsed; the next renewal starts it again (update-with-start).
func BudgetWorkflow(ctx workflow.Context, st State) error {
	st.init()
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (State, error) { return st, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, LeaseUpdate, func(ctx workflow.Context, r LeaseRequest) (LeaseReply, error) {
		return st.renew(workflow.Now(ctx), r), nil
	}, workflow.UpdateHandlerOptions{Validator: validateLease})
	if err != nil {
		return err
	}
	pauses := workflow.GetSignalChannel(ctx, PauseSignal)
	leaves := workflow.GetSignalChannel(ctx, LeaveSignal)
	for {
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		checked := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(pauses, func(c workflow.ReceiveChannel, _ bool) { takePause(ctx, c, &st) })
		sel.AddReceive(leaves, func(c workflow.ReceiveChannel, _ bool) { takeLeave(c, &st) })
		sel.AddFuture(workflow.NewTimer(timerCtx, checkEvery), func(workflow.Future) { checked = true })
		sel.Select(ctx)
		cancelTimer()
		if !checked {
			continue
		}
		info := workflow.GetInfo(ctx)
		idle := st.live(workflow.Now(ctx)) == 0 && st.pausedFor(workflow.Now(ctx)) == 0
		if !idle && !info.GetContinueAsNewSuggested() && info.GetCurrentHistoryLength() < maxHistory {
			continue
		}
		// Take what arrived meanwhile, and let every update answer, before ending this run.
		for drain(ctx, pauses, leaves, &st) {
		}
		if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
			return err
		}
		if idle && st.live(workflow.Now(ctx)) == 0 && st.pausedFor(workflow.Now(ctx)) == 0 {
			return nil
		}
		return workflow.NewContinueAsNewError(ctx, WorkflowType, st)
	}
}

func takePause(ctx workflow.Context, c workflow.ReceiveChannel, st *State) {
	var p PauseRequest
	c.Receive(ctx, &p)
	if p.For <= 0 {
		return
	}
	if until := workflow.Now(ctx).Add(min(p.For, maxPause)); until.After(st.PausedUntil) {
		st.PausedUntil = until
	}
}

func takeLeave(c workflow.ReceiveChannel, st *State) {
	var member string
	c.ReceiveAsync(&member)
	st.drop(member)
}

// drain takes one pending signal, if any, and reports whether it did.
func drain(ctx workflow.Context, pauses, leaves workflow.ReceiveChannel, st *State) bool {
	switch {
	case pauses.Len() > 0:
		takePause(ctx, pauses, st)
	case leaves.Len() > 0:
		takeLeave(leaves, st)
	default:
		return false
	}
	return true
}

// Register puts the budget workflow on a worker under WorkflowType.
func Register(r interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(BudgetWorkflow, registerOptions())
}

func registerOptions() workflow.RegisterOptions { return workflow.RegisterOptions{Name: WorkflowType} }
