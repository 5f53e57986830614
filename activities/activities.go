// Package activities holds the Temporal activities of the worker: RemoveConnection removes one
// agent connection; ListConnections and RemoveConnections do the same for a whole agent's
// teardown; CheckTeardownClaim, AwaitTeardownOutcome and AwaitStandaloneRemoval keep a teardown
// and a standalone removal of the same connection from sending DELETEs at the same time.
//
// It is the Temporal layer over internal/controlplane, which sends the requests and classifies
// the answers: here are the heartbeats that carry request counts and a batch's progress across
// attempts, the ApplicationError each failure becomes (failures.go, the one place that builds
// one), the batch engine and the coordination through Temporal. The Activities struct carries
// its dependencies; the worker registers a pointer to it, so every exported method is an
// activity named after it.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"

	"github.com/agentops/agentconnections/internal/controlplane"
)

// Defaults for the waits of the coordination activities.
const (
	// DefaultClaimPollInterval is how often AwaitTeardownOutcome asks the teardown again.
	DefaultClaimPollInterval = time.Second
	// DefaultWaitHeartbeat is how often AwaitStandaloneRemoval heartbeats while it waits (more
	// often when the heartbeat timeout asks for it).
	DefaultWaitHeartbeat = 5 * time.Second
)

// Config is what New needs to build the activities.
type Config struct {
	// ControlPlane sends the control plane's requests. Required. Give it the same metrics as
	// Metrics below to count requests as well as removals.
	ControlPlane *controlplane.Client
	// Metrics receives the outcome of each finished removal; nil records none.
	Metrics Metrics
	// Coordinator tells the teardown and standalone removals of the same connection about each
	// other (TemporalCoordinator in a worker). Nil turns coordination off: every activity then
	// behaves as if nothing else removed connections.
	Coordinator Coordinator
}

// Activities implements the worker's activities. Build it with New.
type Activities struct {
	cp      *controlplane.Client
	coord   Coordinator
	metrics Metrics

	// Tests shorten these; zero means the Default* constant.
	pollInterval  time.Duration
	waitHeartbeat time.Duration
}

// New checks cfg and builds the activities.
func New(cfg Config) (*Activities, error) {
	if cfg.ControlPlane == nil {
		return nil, errors.New("activities: no control plane client")
	}
	return &Activities{cp: cfg.ControlPlane, coord: cfg.Coordinator, metrics: cfg.Metrics}, nil
}

// callLogger is the activity's logger with its attempt, for the control plane client to log each
// call through.
func callLogger(ctx context.Context) log.Logger {
	return log.With(activity.GetLogger(ctx), "attempt", activity.GetInfo(ctx).Attempt)
}
