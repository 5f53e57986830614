package main

import (
	"context"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
)

// How often, and how patiently, readiness asks the Temporal server whether it serves. A lost
// server shows as 503 within about temporalCheckEvery+temporalCheckTimeout (4 s).
const (
	temporalCheckEvery   = 2 * time.Second
	temporalCheckTimeout = 2 * time.Second
)

// healthChecker is the part of the Temporal client readiness uses.
type healthChecker interface {
	CheckHealth(ctx context.Context, request *client.CheckHealthRequest) (*client.CheckHealthResponse, error)
}

// readiness is what /readyz reports: ready while the worker polls its task queue and the Temporal
// server answered the last health check. A worker that polls a server that is gone receives no
// work, so it must not count as ready; once the server answers again, the pollers reconnect on
// their own and the worker is ready again.
type readiness struct {
	polling   atomic.Bool
	reachable atomic.Bool
}

func (r *readiness) ready() bool { return r.polling.Load() && r.reachable.Load() }

// setPolling records that the worker started polling, or stopped.
func (r *readiness) setPolling(on bool) { r.polling.Store(on) }

// watchTemporal checks the server at once, then every `every`, each check bounded by timeout,
// until ctx ends. onChange (which may be nil) hears of each change of reachability, the first
// check counting as one only when it fails.
func (r *readiness) watchTemporal(ctx context.Context, c healthChecker, every, timeout time.Duration, onChange func(reachable bool, err error)) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	last := true // just dialed
	for {
		checkCtx, cancel := context.WithTimeout(ctx, timeout)
		_, err := c.CheckHealth(checkCtx, &client.CheckHealthRequest{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil
		r.reachable.Store(ok)
		if ok != last && onChange != nil {
			onChange(ok, err)
		}
		last = ok
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// watchInBackground runs watchTemporal on c, logging each change, until the returned stop is
// called; stop waits for the watch to end.
func (r *readiness) watchInBackground(ctx context.Context, c healthChecker, logger log.Logger, address string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watchTemporal(ctx, c, temporalCheckEvery, temporalCheckTimeout, func(reachable bool, err error) {
			if reachable {
				logger.Info("temporal server answers again: ready", "temporal_address", address)
				return
			}
			logger.Warn("temporal server does not answer: not ready until it does", "temporal_address", address, "error", err.Error())
		})
	}()
	return func() {
		cancel()
		<-done
	}
}
