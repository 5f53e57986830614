// Package agentconnections is the public contract of the RemoveConnection worker, as
// docs/contract.md describes it: the workflow and activity type names, the default task queue and
// the workflow IDs, the inputs and results, the outcomes and the failure types. Calling services
// import it to start or compose removals and teardowns; it depends on the standard library only.
// The files split it by subject: names, errors, IDs, one removal, a teardown.
package agentconnections

// Names fixed by the contract. Changing one breaks running callers.
const (
	// RemoveConnectionWorkflowType is the workflow type that removes one connection.
	RemoveConnectionWorkflowType = "RemoveConnectionWorkflow"
	// RemoveConnectionActivityType is the activity type that sends the DELETE request.
	RemoveConnectionActivityType = "RemoveConnection"
	// RemoveAgentConnectionsWorkflowType is the teardown workflow type (every connection of one agent).
	RemoveAgentConnectionsWorkflowType = "RemoveAgentConnectionsWorkflow"
	// ListConnectionsActivityType is the activity type that lists an agent's connections.
	ListConnectionsActivityType = "ListConnections"
	// DefaultTaskQueue is the task queue the worker polls unless TEMPORAL_TASK_QUEUE says otherwise.
	DefaultTaskQueue = "agent-connections"
	// TaskQueueEnv names the environment variable that overrides DefaultTaskQueue.
	TaskQueueEnv = "TEMPORAL_TASK_QUEUE"
)

// Names of the teardown (RemoveAgentConnectionsWorkflow) and of what runs around it.
const (
	// RemoveConnectionsActivityType removes a batch of one agent's connections, with bounded
	// parallelism and heartbeated progress, so a retry resumes where the last attempt stopped.
	RemoveConnectionsActivityType = "RemoveConnections"
	// ProgressQuery returns a TeardownProgress while the teardown runs.
	ProgressQuery = "progress"
	// ConnectionStatusQuery takes a connection ID and returns a ConnectionClaim: whether this
	// teardown owns the connection and, once it is done with it, its outcome.
	ConnectionStatusQuery = "connection_status"
	// CancelUpdate stops a teardown cleanly: removals in flight finish, none start, and the
	// workflow returns its result with Cancelled set. The update returns the progress at that moment.
	CancelUpdate = "cancel"
	// RemovalStateQuery returns the RemovalState of a RemoveConnectionWorkflow.
	RemovalStateQuery = "removal_state"
	// ReportQuery takes a page number (from 0) and returns a ReportPage of the teardown's
	// per-connection report. It answers on a running teardown and on its final run after it
	// closed, for as long as Temporal keeps the history.
	ReportQuery = "report"
)

// RemoveConnectionWorkflowID is the workflow ID a starter uses for one removal, so that at most one
// removal of a given connection runs at a time. Validate the IDs first: the ID is only unambiguous
// for IDs that pass ValidateID.
func RemoveConnectionWorkflowID(agentID, connectionID string) string {
	return "remove-connection/" + agentID + "/" + connectionID
}

// RemoveAgentConnectionsWorkflowID is the workflow ID of the teardown of one agent: one teardown
// per agent runs at a time, and standalone removals find it by this ID.
func RemoveAgentConnectionsWorkflowID(agentID string) string {
	return "remove-agent-connections/" + agentID
}
