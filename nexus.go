package agentconnections

// The Nexus service: how a workflow in another namespace calls the removal, the teardown and the
// restore through a Nexus endpoint, without knowing this worker's namespace, task queue or workflow IDs.
// A caller passes these names to workflow.NewNexusClient(endpoint, NexusService) and
// ExecuteOperation; the operations' inputs and results are the workflows' own types:
//
//	operation                         input                         result
//	RemoveConnectionOperation         RemoveConnectionInput         RemoveConnectionResult
//	RemoveAgentConnectionsOperation   RemoveAgentConnectionsInput   RemoveAgentConnectionsResult
//	RestoreAgentConnectionsOperation  RestoreAgentConnectionsInput  RestoreAgentConnectionsResult
//
// Every operation is asynchronous: each starts (or attaches to) the workflow under the workflow
// ID a direct start uses, so a Nexus call and a direct start of the same removal, teardown or
// restore converge on one run. A failed run reaches the caller as a Nexus operation error whose cause
// chain holds the run's ApplicationError (its Type() one of the Err* failure types, its details as
// for a direct start); a cancelled teardown as one whose cause is a canceled error carrying the
// RemoveAgentConnectionsResult as its details.
//
// The names are plain strings rather than typed operation references so that this package keeps
// depending on the standard library only; ExecuteOperation takes an operation name.
const (
	// NexusService is the Nexus service the worker registers on its task queue.
	NexusService = "agent-connections"
	// RemoveConnectionOperation removes one connection (RemoveConnectionWorkflow).
	RemoveConnectionOperation = "remove-connection"
	// RemoveAgentConnectionsOperation removes every connection of one agent (the teardown,
	// RemoveAgentConnectionsWorkflow).
	RemoveAgentConnectionsOperation = "remove-agent-connections"
	// RestoreAgentConnectionsOperation re-creates removed connections of one agent from their
	// snapshot entries (the restore, RestoreAgentConnectionsWorkflow).
	RestoreAgentConnectionsOperation = "restore-agent-connections"
	// DefaultNexusEndpoint is the endpoint name the demo, the compose stack and the docs create.
	// An endpoint's name is the operator's choice: callers take it from their own configuration.
	DefaultNexusEndpoint = "agent-connections"
)
