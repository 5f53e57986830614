package nexusservice

import (
	"testing"

	enumspb "go.temporal.io/api/enums/v1"

	ac "github.com/agentops/agentconnections"
)

func TestNew_UsesTheContractNames(t *testing.T) {
	svc, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if svc.Name != ac.NexusService {
		t.Errorf("got service %q, want %q", svc.Name, ac.NexusService)
	}
	for _, op := range []string{ac.RemoveConnectionOperation, ac.RemoveAgentConnectionsOperation, ac.RestoreAgentConnectionsOperation} {
		if svc.Operation(op) == nil {
			t.Errorf("got no operation %q", op)
		}
	}
}

// The operations start their workflows as the starter does, so the two converge on one run.
func TestStartOptions_AreADirectStarts(t *testing.T) {
	o := startOptions(ac.RemoveConnectionWorkflowID("a1", "c1"))
	if o.ID != "remove-connection/a1/c1" || o.TaskQueue != "" ||
		o.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING ||
		o.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE {
		t.Errorf("got %+v, want the contract's ID, UseExisting, AllowDuplicate, and the operation's own task queue", o)
	}
}
