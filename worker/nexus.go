package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/agentops/agentconnections/nexusservice"
)

// registerNexus puts the Nexus service (ac.NexusService) on the worker's task queue, so an
// endpoint that targets this namespace and task queue reaches the removal and the teardown.
func registerNexus(r worker.NexusServiceRegistry) {
	svc, err := nexusservice.New()
	if err != nil {
		// Two operations with fixed, distinct names: only a programming error gets here, and a
		// test (TestRegister_UsesContractNames) would have caught it.
		panic(err)
	}
	r.RegisterNexusService(svc)
}
