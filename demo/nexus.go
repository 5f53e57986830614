package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/examples/nexuscaller"
)

// callerNamespace is the other team's namespace in the demo: its workflow reaches the worker only
// through the Nexus endpoint.
const callerNamespace = "agent-lifecycle"

// removeThroughNexus creates the endpoint as an operator would, then runs the example caller
// workflow (examples/nexuscaller) in callerNamespace to remove conn-3 through it, and checks the
// outcome at the control plane.
func (d *demo) removeThroughNexus(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	d.say("\n==> 4. Remove conn-3 through Nexus, from a workflow in namespace %s", callerNamespace)
	d.say("    $ temporal operator nexus endpoint create --name %s --target-namespace default --target-task-queue %s",
		ac.DefaultNexusEndpoint, ac.DefaultTaskQueue)
	if err := d.server.CreateNexusEndpoint(ctx, ac.DefaultNexusEndpoint, "default", ac.DefaultTaskQueue); err != nil {
		d.nexusFailed("%v", err)
		return
	}
	out, err := d.runCaller(ctx, nexuscaller.RemoveInput{Endpoint: ac.DefaultNexusEndpoint,
		Removal: ac.RemoveConnectionInput{AgentID: agentID, ConnectionID: "conn-3"}})
	if err != nil {
		d.nexusFailed("%v", err)
		return
	}
	deletes := d.em.DeleteCount("conn-3")
	if out.Result == nil || out.Result.Outcome != ac.OutcomeRemoved || deletes != 1 || d.em.HasConnection(agentID, "conn-3") {
		d.nexusFailed("result %+v, failure %+v, %d DELETE(s) at the control plane", out.Result, out.Failure, deletes)
		return
	}
	d.say("    caller workflow in %s: operation %s of service %s on endpoint %s answered %s after %d request",
		callerNamespace, ac.RemoveConnectionOperation, ac.NexusService, ac.DefaultNexusEndpoint, out.Result.Outcome, out.Result.Attempts)
	d.say("    -> conn-3 is gone: one DELETE, sent by the same RemoveConnectionWorkflow (ID %s, namespace default) a direct start runs.",
		ac.RemoveConnectionWorkflowID(agentID, "conn-3"))
}

func (d *demo) nexusFailed(format string, args ...any) {
	d.failures++
	d.say("    -> NOT as expected: %s", fmt.Sprintf(format, args...))
}

// runCaller runs nexuscaller.RemoveConnection on a worker of its own in callerNamespace.
func (d *demo) runCaller(ctx context.Context, in nexuscaller.RemoveInput) (nexuscaller.RemoveOutcome, error) {
	var out nexuscaller.RemoveOutcome
	c, err := client.DialContext(ctx, client.Options{HostPort: d.server.Address, Namespace: callerNamespace,
		Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		return out, err
	}
	defer c.Close()
	const queue = "agent-lifecycle"
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(nexuscaller.RemoveConnection)
	if err := w.Start(); err != nil {
		return out, err
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       "remove-through-nexus/" + strings.Join([]string{in.Removal.AgentID, in.Removal.ConnectionID}, "/"),
		TaskQueue:                queue,
		WorkflowExecutionTimeout: 2 * time.Minute,
	}, nexuscaller.RemoveConnection, in)
	if err != nil {
		return out, err
	}
	return out, run.Get(ctx, &out)
}
