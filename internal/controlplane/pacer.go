package controlplane

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// pacer spaces out every request a Client sends to the control plane: a token
// bucket for the steady rate (the API allows 2000 requests a minute per key), and a pause that a
// 429's Retry-After sets for the whole client, so one rate-limited answer slows every removal down,
// not only the one that got it. The wait happens before the request's own timeout starts.
type pacer struct {
	limiter *rate.Limiter // nil: no steady limit

	// asked counts the requests that asked for a turn; waiting is how many wait for one now. The
	// fleet budget reads them to tell a replica with requests to send from an idle one.
	asked   atomic.Uint64
	waiting atomic.Int64

	mu    sync.Mutex
	until time.Time // no request leaves before this
}

func newPacer(perSecond float64, burst int) *pacer {
	p := &pacer{}
	if perSecond > 0 {
		if burst < 1 {
			burst = 1
		}
		p.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return p
}

// pausedError says the client is paused by a 429 past the caller's deadline: waiting would only
// time the attempt out, so the caller hands the wait to Temporal instead.
type pausedError struct{ remaining time.Duration }

func (e *pausedError) Error() string {
	return fmt.Sprintf("requests are paused for another %s after a 429 from the control plane", e.remaining.Round(time.Second))
}

// wait blocks until a request may leave, or ctx is done. When a pause outlasts ctx's deadline it
// returns a *pausedError at once.
func (p *pacer) wait(ctx context.Context) error {
	p.asked.Add(1)
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	for {
		if err := p.held(ctx); err != nil {
			return err
		}
		if p.limiter == nil {
			return nil
		}
		if ok, err := p.take(ctx); ok || err != nil {
			return err
		}
		// A 429 paused the client while this request waited for its turn: wait out the pause.
	}
}

// held blocks while a 429's pause holds, or until ctx is done. When the pause outlasts ctx's
// deadline it returns a *pausedError at once.
func (p *pacer) held(ctx context.Context) error {
	for {
		p.mu.Lock()
		until := p.until
		p.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		if deadline, ok := ctx.Deadline(); ok && until.After(deadline) {
			return &pausedError{remaining: d}
		}
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// reserveAhead is the furthest ahead a request books its turn. The limiter's own Wait books a
// turn however far ahead, at the rate in force then: when the fleet budget raises this replica's
// share, the requests queued at the old share would still leave at the old pace, up to many
// seconds later. Booking at most 250 ms ahead lets a new rate hold within 250 ms.
const reserveAhead = 250 * time.Millisecond

// take waits for a token of the steady limit, or for ctx to end. It reports false, and gives its
// turn back, when a 429 paused the client meanwhile.
func (p *pacer) take(ctx context.Context) (bool, error) {
	for {
		if p.pausedFor() > 0 {
			return false, nil
		}
		r := p.limiter.Reserve()
		d := r.Delay()
		if d == 0 {
			return true, nil
		}
		if d <= reserveAhead {
			if err := sleepCtx(ctx, d); err != nil {
				r.Cancel()
				return false, err
			}
			return true, nil
		}
		r.Cancel() // too far ahead: give the turn back and look again
		if err := sleepCtx(ctx, reserveAhead); err != nil {
			return false, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pause holds every request back for d from now (a longer pause already set stays).
func (p *pacer) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if until.After(p.until) {
		p.until = until
	}
}

// setRate changes the steady limit and burst (a fleet share: the budget divided among the
// replicas). It does nothing when the client has no steady limit.
func (p *pacer) setRate(perSecond float64, burst int) {
	if p.limiter == nil || perSecond <= 0 {
		return
	}
	p.limiter.SetLimit(rate.Limit(perSecond))
	p.limiter.SetBurst(max(burst, 1))
}

// rateNow is the steady limit and burst in force; 0, 0 when there is none.
func (p *pacer) rateNow() (float64, int) {
	if p.limiter == nil {
		return 0, 0
	}
	return float64(p.limiter.Limit()), p.limiter.Burst()
}

// demand is how many requests asked for a turn since the pacer was built, and how many wait now.
func (p *pacer) demand() (asked uint64, waiting int) {
	return p.asked.Load(), int(p.waiting.Load())
}

// pausedFor is how long the 429 pause still holds requests back; 0 when there is none.
func (p *pacer) pausedFor() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(time.Until(p.until), 0)
}
