package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/examples/teardownsaga"
)

// sagaFailure runs the saga in the caller namespace and returns its ErrSagaFailed error and the
// SagaResult it carries; the test fails when the saga completes.
func (cs *callerSide) sagaFailure(in teardownsaga.SagaInput) (teardownsaga.SagaResult, error) {
	cs.t.Helper()
	var res teardownsaga.SagaResult
	err := cs.get(cs.run(teardownsaga.AgentTeardownSaga, in), &res)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed {
		cs.t.Fatalf("got %v (result %+v), want the saga failed", err, res)
	}
	if derr := appErr.Details(&res); derr != nil {
		cs.t.Fatal(derr)
	}
	return res, err
}

// The saga's Nexus operation attaches to a direct teardown of two chosen connections; that run
// answers with connections_given, and the saga fails and compensates instead of deleting the
// deployment while c3 and c4 are still there.
func TestNexus_SagaRefusesATeardownGivenConnectionIDs(t *testing.T) {
	s := newStack(t, "agent-given", "c1", "c2", "c3", "c4")
	s.em.InjectNext(emulator.Fault{Hang: true, ConnectionID: "c1", Count: 100})
	cs := newCallerSide(t, s)
	direct := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "agent-given", ConnectionIDs: []string{"c1", "c2"}})
	s.waitFor("c1's DELETE to hang", func() bool { return s.em.Faults().Pending[0].Count < 100 })
	run := cs.run(teardownsaga.AgentTeardownSaga, teardownsaga.SagaInput{AgentID: "agent-given", DeploymentID: "dep-1", NexusEndpoint: cs.endpoint})
	s.waitFor("the saga's operation to attach to the direct run", func() bool {
		d, err := s.client.DescribeWorkflow(context.Background(), direct.GetID(), direct.GetRunID())
		return err == nil && len(d.RawResponse.GetCallbacks()) > 0
	})
	s.em.Reset()
	var res teardownsaga.SagaResult
	err := cs.get(run, &res)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != teardownsaga.ErrSagaFailed || !hasType(err, teardownsaga.ErrTeardownNotOfTheAgent) {
		t.Fatalf("got %v (result %+v), want the saga failed with %s", err, res, teardownsaga.ErrTeardownNotOfTheAgent)
	}
	if derr := appErr.Details(&res); derr != nil {
		t.Fatal(derr)
	}
	if res.FailedStep != teardownsaga.StepRemoveConnections || res.DeploymentDeleted || !slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) {
		t.Errorf("got %+v, want failed at %s, the deployment kept, the agent re-enabled", res, teardownsaga.StepRemoveConnections)
	}
	if !cs.platform.DeploymentExists("dep-1") || !cs.platform.AgentEnabled("agent-given") {
		t.Error("got the deployment deleted or the agent left disabled")
	}
	if got := s.teardownResult(direct); !got.ConnectionsGiven || got.Total != 2 {
		t.Errorf("got %+v from the direct run, want connections_given and its two connections", got)
	}
	if left := s.em.Connections("agent-given"); len(left) != 2 {
		t.Errorf("got %v left, want c3 and c4", left)
	}
}

// IDs the contract accepts but whose workflow ID makes too large an operation token are refused
// typed, and start nothing; 200 bytes of the same characters still go through.
func TestNexus_TooLargeAnOperationTokenIsRefusedTyped(t *testing.T) {
	agent, conn := strings.Repeat("&", 200), strings.Repeat("<", 200)
	s := newStack(t, agent, conn)
	cs := newCallerSide(t, s)

	bigAgent, bigConn := strings.Repeat("&", 256), strings.Repeat("<", 256)
	if err := (ac.RemoveConnectionInput{AgentID: bigAgent, ConnectionID: bigConn}).Validate(); err != nil {
		t.Fatalf("the contract refuses the IDs (%v), want them valid", err)
	}
	out := cs.remove(ac.RemoveConnectionInput{AgentID: bigAgent, ConnectionID: bigConn})
	if out.Failure == nil || out.Failure.Type != ac.ErrInvalidRequest || !strings.Contains(out.Failure.Message, "operation token") {
		t.Fatalf("got %+v / %+v, want an %s failure naming the operation token", out.Result, out.Failure, ac.ErrInvalidRequest)
	}
	if _, err := s.client.DescribeWorkflow(context.Background(), ac.RemoveConnectionWorkflowID(bigAgent, bigConn), ""); err == nil {
		t.Error("got a removal workflow started, want none")
	}

	out = cs.remove(ac.RemoveConnectionInput{AgentID: agent, ConnectionID: conn})
	if out.Failure != nil || out.Result == nil || out.Result.Outcome != ac.OutcomeRemoved {
		t.Fatalf("got %+v / %+v, want the 200-byte IDs removed", out.Result, out.Failure)
	}
	if s.em.HasConnection(agent, conn) || s.em.DeleteCount(conn) != 1 || s.em.DeleteCount(bigConn) != 0 {
		t.Errorf("got %d DELETEs of the removed connection and %d of the refused one, want 1 and 0", s.em.DeleteCount(conn), s.em.DeleteCount(bigConn))
	}
}

// An endpoint name the server does not know makes it fail the saga's workflow task again and
// again, so the operation never starts (nor its timeout); the saga's deadline, started with
// step 1, ends it: the saga fails at the teardown step and compensates.
func TestNexus_SagaWithAnUnknownEndpointEndsAndCompensates(t *testing.T) {
	s := newStack(t, "agent-noep", "c1")
	cs := newCallerSide(t, s)
	res, err := cs.sagaFailure(teardownsaga.SagaInput{AgentID: "agent-noep", DeploymentID: "dep-1",
		NexusEndpoint: "no-such-endpoint", TeardownTimeout: ac.Duration(5 * time.Second)})
	if !hasType(err, teardownsaga.ErrTeardownTimedOut) || !strings.Contains(err.Error(), "no-such-endpoint") {
		t.Errorf("got %v, want %s naming the endpoint", err, teardownsaga.ErrTeardownTimedOut)
	}
	if res.FailedStep != teardownsaga.StepRemoveConnections || res.TeardownFinished || res.DeploymentDeleted ||
		!slices.Equal(res.Compensated, []string{teardownsaga.EnableAgentActivity}) {
		t.Errorf("got %+v, want failed at %s and the agent re-enabled", res, teardownsaga.StepRemoveConnections)
	}
	if !cs.platform.DeploymentExists("dep-1") || !cs.platform.AgentEnabled("agent-noep") {
		t.Error("got the deployment deleted or the agent left disabled")
	}
	if !s.em.HasConnection("agent-noep", "c1") || len(s.em.Log()) != 0 {
		t.Errorf("got %d requests at the control plane, want none", len(s.em.Log()))
	}
}
