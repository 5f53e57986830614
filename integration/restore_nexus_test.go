package integration

import (
	"context"
	"errors"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/examples/nexuscaller"
	"github.com/agentops/agentconnections/examples/teardownsaga"
)

// A restore through the endpoint: it runs in the worker's namespace under the contract's workflow
// ID, re-creates one connection per token, and reports a revoked token as a typed failed entry.
func TestNexus_RestoreRestoresAndARevokedTokenIsTyped(t *testing.T) {
	s := newStack(t, "agent-nxr")
	s.em.RevokeTokens("tok-gone")
	cs := newCallerSide(t, s)
	entries := []ac.ConnectionSnapshot{{ConnectionID: "c1", OAuthTokenID: "tok-ok"}, {ConnectionID: "c2", OAuthTokenID: "tok-gone"}}
	var res ac.RestoreAgentConnectionsResult
	err := cs.get(cs.run(nexuscaller.Restore, nexuscaller.RestoreInput{Endpoint: cs.endpoint,
		Restore: ac.RestoreAgentConnectionsInput{AgentID: "agent-nxr", Connections: entries}}), &res)
	if err != nil {
		t.Fatalf("caller workflow: %v", err)
	}
	if res.Total != 2 || res.Restored != 1 || res.Failed != 1 {
		t.Fatalf("got %+v, want one restored and one failed", res)
	}
	for _, o := range res.Connections {
		switch o.ConnectionID {
		case "c1":
			if o.Outcome != ac.OutcomeRestored || !s.em.HasConnection("agent-nxr", o.NewConnectionID) {
				t.Errorf("got %+v, want c1 restored as a connection the agent has", o)
			}
		case "c2":
			if o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrValidation || !strings.Contains(o.Message, "OAuth token tok-gone is revoked") {
				t.Errorf("got %+v, want a %s failure with the 422's detail", o, ac.ErrValidation)
			}
		}
	}
	if per := s.em.ConnectionsPerToken("agent-nxr"); per["tok-ok"] != 1 || per["tok-gone"] != 0 || len(s.em.TokenConnections("agent-nxr")) != 1 {
		t.Errorf("got connections per token %v, want exactly one for tok-ok and none for tok-gone", per)
	}
	desc, err := s.client.DescribeWorkflow(context.Background(), ac.RestoreAgentConnectionsWorkflowID("agent-nxr"), "")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED || desc.RawResponse.GetWorkflowExecutionInfo().GetType().GetName() != ac.RestoreAgentConnectionsWorkflowType {
		t.Errorf("got %s %s, want a completed %s", desc.RawResponse.GetWorkflowExecutionInfo().GetType().GetName(), desc.Status, ac.RestoreAgentConnectionsWorkflowType)
	}
}

// The saga's Nexus variant, its last step failing: it restores the removed connections through the
// endpoint, one per token, re-enables the agent and maps old IDs to new ones.
func TestNexus_SagaFailureRestoresAndReEnables(t *testing.T) {
	s := newStack(t, "agent-sr", "c1", "c2", "c3")
	entries := snapshotOf(s.em, "agent-sr")
	cs := newCallerSide(t, s)
	cs.platform.FailDeleteDeployment(errors.New("deployment is locked"))
	err := cs.get(cs.run(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "agent-sr", DeploymentID: "dep-1", NexusEndpoint: cs.endpoint}), nil)
	wantSagaRestored(t, s, cs.platform, "agent-sr", entries, sagaFailure(t, err))
}
