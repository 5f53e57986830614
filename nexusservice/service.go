// Package nexusservice is the worker's Nexus service, ac.NexusService: the operations
// ac.RemoveConnectionOperation and ac.RemoveAgentConnectionsOperation, each backed by its
// workflow. The worker registers it on its task queue, so a Nexus endpoint that targets the
// worker's namespace and task queue reaches it.
//
// Each operation starts its workflow exactly as the starter does: the contract's workflow ID, the
// ID-conflict policy UseExisting and the reuse policy AllowDuplicate, on the task queue the
// operation arrived on. A Nexus call and a direct start of the same removal or teardown therefore
// converge on one run; the one that comes second attaches to the run and gets its result.
package nexusservice

import (
	"context"

	"github.com/nexus-rpc/sdk-go/nexus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/temporalnexus"

	ac "github.com/agentops/agentconnections"
)

// New returns the service with both operations registered.
func New() (*nexus.Service, error) {
	svc := nexus.NewService(ac.NexusService)
	if err := svc.Register(removeConnection(), removeAgentConnections()); err != nil {
		return nil, err
	}
	return svc, nil
}

// startOptions are a direct start's options for workflowID. The task queue is left empty, so the
// workflow runs on the task queue the operation arrived on: the endpoint's target.
func startOptions(workflowID string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       workflowID,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
}

// refused is what an operation returns for an input the contract refuses: no workflow starts
// (its ID would be ambiguous), and the caller gets a non-retryable error whose cause is the
// InvalidRequest ApplicationError the workflow itself would have failed with.
func refused(err error) error {
	return &nexus.HandlerError{
		Type:          nexus.HandlerErrorTypeBadRequest,
		Message:       "input refused",
		Cause:         temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil),
		RetryBehavior: nexus.HandlerErrorRetryBehaviorNonRetryable,
	}
}

// removeConnection is ac.RemoveConnectionOperation: RemoveConnectionWorkflow under
// ac.RemoveConnectionWorkflowID.
func removeConnection() nexus.Operation[ac.RemoveConnectionInput, ac.RemoveConnectionResult] {
	return temporalnexus.MustNewWorkflowRunOperationWithOptions(temporalnexus.WorkflowRunOperationOptions[ac.RemoveConnectionInput, ac.RemoveConnectionResult]{
		Name: ac.RemoveConnectionOperation,
		Handler: func(ctx context.Context, in ac.RemoveConnectionInput, opts nexus.StartOperationOptions) (temporalnexus.WorkflowHandle[ac.RemoveConnectionResult], error) {
			if err := in.Validate(); err != nil {
				return nil, refused(err)
			}
			return temporalnexus.ExecuteUntypedWorkflow[ac.RemoveConnectionResult](ctx, opts,
				startOptions(ac.RemoveConnectionWorkflowID(in.AgentID, in.ConnectionID)), ac.RemoveConnectionWorkflowType, in)
		},
	})
}

// removeAgentConnections is ac.RemoveAgentConnectionsOperation: RemoveAgentConnectionsWorkflow
// under ac.RemoveAgentConnectionsWorkflowID.
func removeAgentConnections() nexus.Operation[ac.RemoveAgentConnectionsInput, ac.RemoveAgentConnectionsResult] {
	return temporalnexus.MustNewWorkflowRunOperationWithOptions(temporalnexus.WorkflowRunOperationOptions[ac.RemoveAgentConnectionsInput, ac.RemoveAgentConnectionsResult]{
		Name: ac.RemoveAgentConnectionsOperation,
		Handler: func(ctx context.Context, in ac.RemoveAgentConnectionsInput, opts nexus.StartOperationOptions) (temporalnexus.WorkflowHandle[ac.RemoveAgentConnectionsResult], error) {
			if err := in.Validate(); err != nil {
				return nil, refused(err)
			}
			return temporalnexus.ExecuteUntypedWorkflow[ac.RemoveAgentConnectionsResult](ctx, opts,
				startOptions(ac.RemoveAgentConnectionsWorkflowID(in.AgentID)), ac.RemoveAgentConnectionsWorkflowType, in)
		},
	})
}
