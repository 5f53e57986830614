package main

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/fleet"
)

// fleetMember is this replica's place among the replicas sharing its task queue and key: they
// divide LANGSMITH_REQUESTS_PER_SECOND and LANGSMITH_REQUEST_BURST among themselves, and a 429
// any of them gets pauses them all (internal/fleet, docs/fleet-budget.md).
type fleetMember struct {
	m  *fleet.Member
	cp *controlplane.Client // set by newActivities
}

func newFleetMember(cfg config, c client.Client, logger log.Logger) (*fleetMember, error) {
	m, err := fleet.New(fleet.Options{
		Client:            c,
		TaskQueue:         cfg.TaskQueue,
		RequestsPerSecond: cfg.RequestsPerSecond,
		Burst:             cfg.RequestBurst,
		Logger:            log.With(logger, "component", "fleet-budget"),
	})
	if err != nil {
		return nil, err
	}
	return &fleetMember{m: m}, nil
}

// rateLimited is the control plane client's OnRateLimited.
func (f *fleetMember) rateLimited(d time.Duration) { f.m.RateLimited(d) }

// start keeps the lease in the background once the worker polls; the returned stop ends it and
// gives the share back. It is deferred, so it runs after the worker stopped and its last requests
// left: not at the signal, when in-flight removals may still send.
func (f *fleetMember) start(ctx context.Context) (stop func()) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.m.Run(runCtx, f.cp)
	}()
	return func() {
		cancel()
		<-done
	}
}

// registerFleet puts the budget workflow on the worker; it follows new worker versions.
func registerFleet(r worker.Registry) {
	r.RegisterWorkflowWithOptions(fleet.BudgetWorkflow, workflow.RegisterOptions{
		Name:               fleet.WorkflowType,
		VersioningBehavior: versioningBehavior(fleet.WorkflowType),
	})
}
