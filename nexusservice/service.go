// Package nexusservice is the worker's Nexus service, ac.NexusService: the operations
// ac.RemoveConnectionOperation, ac.RemoveAgentConnectionsOperation and
// ac.RestoreAgentConnectionsOperation, each backed by its workflow. The worker registers it on its task queue, so a Nexus endpoint that targets the
// worker's namespace and task queue reaches it.
//
// Each operation starts its workflow exactly as the starter does: the contract's workflow ID, the
// ID-conflict policy UseExisting and the reuse policy AllowDuplicate, on the task queue the
// operation arrived on. A Nexus call and a direct start of the same removal or teardown therefore
// converge on one run; the one that comes second attaches to the run and gets its result. The same
// holds for a restore.
package nexusservice

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/nexus-rpc/sdk-go/nexus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/temporalnexus"

	ac "github.com/agentops/agentconnections"
)

// New returns the service with its three operations registered.
func New() (*nexus.Service, error) {
	svc := nexus.NewService(ac.NexusService)
	if err := svc.Register(removeConnection(), removeAgentConnections(), restoreAgentConnections()); err != nil {
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

// MaxOperationTokenBytes bounds the operation token of a start. The SDK makes the token from the
// workflow ID (base64 of {"t":1,"ns":<namespace>,"wid":<workflow ID>}, where JSON writes '&', '<'
// and '>' as six bytes each) and puts it twice in the callback's header, which the server caps at
// 8 KiB, and the caller's server caps a token at 4 KiB. Twice 3.5 KiB leaves 1 KiB of the header
// for the rest. Only a removal whose IDs are long and full of those characters reaches it.
const MaxOperationTokenBytes = 3584

// operationTokenBytes is the size of the SDK's workflow-run operation token for workflowID in
// namespace.
func operationTokenBytes(namespace, workflowID string) int {
	return base64.RawURLEncoding.EncodedLen(len(`{"t":1,"ns":,"wid":}`) + ac.JSONBytes(namespace) + ac.JSONBytes(workflowID))
}

// tokenFits refuses a start whose operation token would pass MaxOperationTokenBytes: the server
// would refuse it with an untyped error, after the caller's retries.
func tokenFits(ctx context.Context, workflowID string) error {
	n := operationTokenBytes(temporalnexus.GetOperationInfo(ctx).Namespace, workflowID)
	if n <= MaxOperationTokenBytes {
		return nil
	}
	return refused(fmt.Errorf("the IDs (agent_id, and connection_id for a removal) make a %d-byte Nexus operation token, the limit is %d "+
		"(IDs count as JSON, where '&', '<' and '>' take six bytes each): start this one directly, not through Nexus",
		n, MaxOperationTokenBytes))
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
			id := ac.RemoveConnectionWorkflowID(in.AgentID, in.ConnectionID)
			if err := tokenFits(ctx, id); err != nil {
				return nil, err
			}
			return temporalnexus.ExecuteUntypedWorkflow[ac.RemoveConnectionResult](ctx, opts, startOptions(id), ac.RemoveConnectionWorkflowType, in)
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
			id := ac.RemoveAgentConnectionsWorkflowID(in.AgentID)
			if err := tokenFits(ctx, id); err != nil {
				return nil, err
			}
			return temporalnexus.ExecuteUntypedWorkflow[ac.RemoveAgentConnectionsResult](ctx, opts, startOptions(id), ac.RemoveAgentConnectionsWorkflowType, in)
		},
	})
}

// restoreAgentConnections is ac.RestoreAgentConnectionsOperation: RestoreAgentConnectionsWorkflow
// under ac.RestoreAgentConnectionsWorkflowID.
func restoreAgentConnections() nexus.Operation[ac.RestoreAgentConnectionsInput, ac.RestoreAgentConnectionsResult] {
	return temporalnexus.MustNewWorkflowRunOperationWithOptions(temporalnexus.WorkflowRunOperationOptions[ac.RestoreAgentConnectionsInput, ac.RestoreAgentConnectionsResult]{
		Name: ac.RestoreAgentConnectionsOperation,
		Handler: func(ctx context.Context, in ac.RestoreAgentConnectionsInput, opts nexus.StartOperationOptions) (temporalnexus.WorkflowHandle[ac.RestoreAgentConnectionsResult], error) {
			if err := in.Validate(); err != nil {
				return nil, refused(err)
			}
			id := ac.RestoreAgentConnectionsWorkflowID(in.AgentID)
			if err := tokenFits(ctx, id); err != nil {
				return nil, err
			}
			return temporalnexus.ExecuteUntypedWorkflow[ac.RestoreAgentConnectionsResult](ctx, opts, startOptions(id), ac.RestoreAgentConnectionsWorkflowType, in)
		},
	})
}
