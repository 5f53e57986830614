package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// Coordinator lets a teardown (RemoveAgentConnectionsWorkflow) and a standalone removal
// (RemoveConnectionWorkflow) of the same connection find each other, so the connection is never
// sent two DELETEs at once. TemporalCoordinator is the real one; tests use fakes.
type Coordinator interface {
	// RemovalState reports whether RemoveConnectionWorkflow with ID
	// ac.RemoveConnectionWorkflowID(agentID, connectionID) is running and, if so, its
	// ac.RemovalStateQuery answer and the run that gave it.
	//
	// A removal that completed after since reads as running in state ac.RemovalRemoving: it
	// removed the connection while the teardown ran, so the teardown takes its outcome (through
	// AwaitRemoval, which returns at once) instead of sending a second DELETE.
	RemovalState(ctx context.Context, agentID, connectionID string, since time.Time) (state, runID string, running bool, err error)
	// AwaitRemoval waits for the result of that workflow's run runID (the latest run when runID
	// is empty), so a removal started after the one described is not mistaken for it. A failed removal returns an
	// error from which errors.As finds its *temporal.ApplicationError; a workflow that does not
	// exist or ended without a result (terminated, cancelled, timed out) returns an error wrapping
	// ErrRemovalNotRunning.
	AwaitRemoval(ctx context.Context, agentID, connectionID, runID string) (ac.RemoveConnectionResult, error)
	// TeardownClaim reports whether ac.RemoveAgentConnectionsWorkflowID(agentID) is running and,
	// if so, its ac.ConnectionStatusQuery answer for connectionID.
	TeardownClaim(ctx context.Context, agentID, connectionID string) (claim ac.ConnectionClaim, running bool, err error)
	// FinishedTeardownOutcome reads the connection's outcome from the result of the agent's
	// teardown once it has completed, or ended Canceled with its result in the details; nil when
	// it has not or did not handle the connection. A removal that waited on a teardown uses it when the teardown ends between two
	// polls, so it takes that outcome instead of sending a second DELETE.
	FinishedTeardownOutcome(ctx context.Context, agentID, connectionID string) (*ac.ConnectionOutcome, error)
	// CarriedStatePage returns page `page` of the state teardown run runID of workflowID carried
	// into continue-as-new (that run answers it through its carried-state query after it closed).
	CarriedStatePage(ctx context.Context, workflowID, runID string, page int) ([]byte, error)
}

// ErrRemovalNotRunning is wrapped by AwaitRemoval when there is no standalone removal to take a
// result from: its workflow does not exist or ended without one.
var ErrRemovalNotRunning = errors.New("no standalone removal result")

// TemporalCoordinator is the Coordinator of a worker, asking the Temporal service through Client.
type TemporalCoordinator struct {
	Client client.Client
}

var _ Coordinator = TemporalCoordinator{}

// RemovalState describes the standalone removal's workflow and, when it runs, queries its state.
func (c TemporalCoordinator) RemovalState(ctx context.Context, agentID, connectionID string, since time.Time) (string, string, bool, error) {
	var st ac.RemovalState
	running, desc, err := c.queryRunning(ctx, ac.RemoveConnectionWorkflowID(agentID, connectionID), ac.RemovalStateQuery, &st)
	runID := ""
	if desc != nil {
		runID = desc.WorkflowExecution.RunID
	}
	if err == nil && !running && desc != nil && !since.IsZero() &&
		desc.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED &&
		desc.WorkflowCloseTime != nil && desc.WorkflowCloseTime.After(since) {
		return ac.RemovalRemoving, runID, true, nil
	}
	if err != nil || !running {
		return "", "", false, err
	}
	return st.State, runID, true, nil
}

// TeardownClaim describes the agent's teardown workflow and, when it runs, asks it about the connection.
func (c TemporalCoordinator) TeardownClaim(ctx context.Context, agentID, connectionID string) (ac.ConnectionClaim, bool, error) {
	var claim ac.ConnectionClaim
	running, _, err := c.queryRunning(ctx, ac.RemoveAgentConnectionsWorkflowID(agentID), ac.ConnectionStatusQuery, &claim, connectionID)
	if err != nil || !running {
		return ac.ConnectionClaim{}, false, err
	}
	return claim, true, nil
}

// FinishedTeardownOutcome describes the agent's teardown and, when its last run has completed,
// looks the connection up in its result.
func (c TemporalCoordinator) FinishedTeardownOutcome(ctx context.Context, agentID, connectionID string) (*ac.ConnectionOutcome, error) {
	if c.Client == nil {
		return nil, errNoClient
	}
	id := ac.RemoveAgentConnectionsWorkflowID(agentID)
	desc, err := c.Client.DescribeWorkflow(ctx, id, "")
	if err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("describe workflow %s: %w", id, err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED && desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		return nil, nil
	}
	runID := desc.WorkflowExecution.RunID
	var res ac.RemoveAgentConnectionsResult
	if err := c.Client.GetWorkflow(ctx, id, runID).Get(ctx, &res); err != nil {
		// A teardown cancelled by Temporal carries its result in the canceled error's details.
		var canceled *temporal.CanceledError
		if !errors.As(err, &canceled) || !canceled.HasDetails() || canceled.Details(&res) != nil {
			return nil, fmt.Errorf("read the result of workflow %s: %w", id, err)
		}
	}
	if o := findOutcome(res.Connections, connectionID); o != nil || !res.ReportTruncated {
		return o, nil
	}
	// The result holds the first entries only; the report query pages them all.
	for page := 0; page < res.ReportPages; page++ {
		var rp ac.ReportPage
		resp, err := c.Client.QueryWorkflow(ctx, id, runID, ac.ReportQuery, page)
		if err == nil {
			err = resp.Get(&rp)
		}
		if err != nil {
			return nil, fmt.Errorf("read page %d of the report of workflow %s: %w", page, id, err)
		}
		if o := findOutcome(rp.Connections, connectionID); o != nil {
			return o, nil
		}
	}
	return nil, nil
}

func findOutcome(outcomes []ac.ConnectionOutcome, connectionID string) *ac.ConnectionOutcome {
	for _, o := range outcomes {
		if o.ConnectionID == connectionID {
			return &o
		}
	}
	return nil
}

// CarriedStatePageQuery is the query a closed teardown run answers with a page of the state it
// carried into continue-as-new. Only the next run of the teardown asks it.
const CarriedStatePageQuery = "carried_state_page"

// CarriedStatePage asks the closed run for one page of its carried state.
func (c TemporalCoordinator) CarriedStatePage(ctx context.Context, workflowID, runID string, page int) ([]byte, error) {
	if c.Client == nil {
		return nil, errNoClient
	}
	resp, err := c.Client.QueryWorkflow(ctx, workflowID, runID, CarriedStatePageQuery, page)
	if err != nil {
		return nil, fmt.Errorf("query the carried state of workflow %s run %s: %w", workflowID, runID, err)
	}
	var b []byte
	if err := resp.Get(&b); err != nil {
		return nil, fmt.Errorf("decode the carried state of workflow %s run %s: %w", workflowID, runID, err)
	}
	return b, nil
}

// AwaitRemoval waits for the standalone removal's result.
func (c TemporalCoordinator) AwaitRemoval(ctx context.Context, agentID, connectionID, runID string) (ac.RemoveConnectionResult, error) {
	var res ac.RemoveConnectionResult
	if c.Client == nil {
		return res, errNoClient
	}
	id := ac.RemoveConnectionWorkflowID(agentID, connectionID)
	err := c.Client.GetWorkflow(ctx, id, runID).Get(ctx, &res)
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return res, fmt.Errorf("%w: workflow %s not found", ErrRemovalNotRunning, id)
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return res, err
	}
	var execErr *temporal.WorkflowExecutionError
	if errors.As(err, &execErr) {
		// Terminated, cancelled, timed out, or failed without an application error (a panic, an
		// activity timeout): it ended without an outcome to take.
		return res, fmt.Errorf("%w: workflow %s ended without a result: %v", ErrRemovalNotRunning, id, err)
	}
	return res, fmt.Errorf("wait for workflow %s: %w", id, err)
}

var errNoClient = errors.New("temporal coordinator has no client")

// queryRunning asks the current run of workflow id the query when that run is open, and reports
// whether it was. A workflow that does not exist, is closed, or closes before the query reaches it
// is not running; the query is sent with QUERY_REJECT_CONDITION_NOT_OPEN so a closed run is never
// replayed just to answer it. A run too new to answer leaves out untouched and counts as running.
func (c TemporalCoordinator) queryRunning(ctx context.Context, id, queryType string, out any, args ...any) (bool, *client.WorkflowExecutionDescription, error) {
	if c.Client == nil {
		return false, nil, errNoClient
	}
	desc, err := c.Client.DescribeWorkflow(ctx, id, "")
	if err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return false, nil, nil
		}
		return false, nil, fmt.Errorf("describe workflow %s: %w", id, err)
	}
	if desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return false, desc, nil
	}
	resp, err := c.Client.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID:           id,
		QueryType:            queryType,
		Args:                 args,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return false, c.redescribe(ctx, id, desc), nil
		}
		var notReady *serviceerror.WorkflowNotReady
		if errors.As(err, &notReady) {
			// Started but its first workflow task has not run: it is running and has not decided
			// anything yet, which the zero answer says (state "", not claimed).
			return true, desc, nil
		}
		return false, desc, fmt.Errorf("query %s of workflow %s: %w", queryType, id, err)
	}
	if resp.QueryRejected != nil {
		return false, c.redescribe(ctx, id, desc), nil
	}
	if err := resp.QueryResult.Get(out); err != nil {
		return false, desc, fmt.Errorf("decode %s answer of workflow %s: %w", queryType, id, err)
	}
	return true, desc, nil
}

// redescribe is for a run that closed between the describe and the query: the caller needs to
// know how it ended (a removal that just completed is the outcome to take). On error it keeps
// the earlier description.
func (c TemporalCoordinator) redescribe(ctx context.Context, id string, desc *client.WorkflowExecutionDescription) *client.WorkflowExecutionDescription {
	if d, err := c.Client.DescribeWorkflow(ctx, id, ""); err == nil {
		return d
	}
	return desc
}

// CheckTeardownClaim asks whether a running teardown of the connection's agent owns it. It is
// meant to run as a local activity at the start of RemoveConnectionWorkflow (it sends no HTTP
// request and is quick). Without a coordinator, or when no teardown runs, the answer is
// {Claimed: false}. When the teardown already finished the connection, the answer carries its
// Outcome. Errors are retryable, type Unavailable.
func (a *Activities) CheckTeardownClaim(ctx context.Context, ref ConnectionRef) (ac.ConnectionClaim, error) {
	if err := validateIDs(ref.AgentID, ref.ConnectionID); err != nil {
		return ac.ConnectionClaim{}, invalid(err)
	}
	if a.coord == nil {
		return ac.ConnectionClaim{}, nil
	}
	claim, running, err := a.coord.TeardownClaim(ctx, ref.AgentID, ref.ConnectionID)
	if err != nil {
		return ac.ConnectionClaim{}, a.coordinationFailure(ctx, "ask the agent's teardown about the connection", ref, err)
	}
	if !running {
		return ac.ConnectionClaim{}, nil
	}
	return claim, nil
}

// AwaitTeardownOutcome waits, asking every second and heartbeating, until the teardown that
// claimed the connection reports its outcome, and returns that claim. When the teardown is no
// longer running, or no longer claims the connection and has no outcome for it, it returns
// {Claimed: false}: the caller then removes the connection itself (with missing_ok, since the
// teardown may have removed it already). Run it as a regular activity with a heartbeat timeout
// and a start-to-close timeout as long as a teardown may take. Errors are retryable, type
// Unavailable.
func (a *Activities) AwaitTeardownOutcome(ctx context.Context, ref ConnectionRef) (ac.ConnectionClaim, error) {
	if err := validateIDs(ref.AgentID, ref.ConnectionID); err != nil {
		return ac.ConnectionClaim{}, invalid(err)
	}
	if a.coord == nil {
		return ac.ConnectionClaim{}, nil
	}
	interval := a.pollInterval
	if interval <= 0 {
		interval = DefaultClaimPollInterval
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ac.ConnectionClaim{}, ctx.Err()
		case <-timer.C:
		}
		claim, running, err := a.coord.TeardownClaim(ctx, ref.AgentID, ref.ConnectionID)
		if err != nil {
			return ac.ConnectionClaim{}, a.coordinationFailure(ctx, "ask the agent's teardown for the connection's outcome", ref, err)
		}
		if !running {
			// It may have finished with this connection between two polls: take its final word.
			o, err := a.coord.FinishedTeardownOutcome(ctx, ref.AgentID, ref.ConnectionID)
			if err != nil {
				return ac.ConnectionClaim{}, a.coordinationFailure(ctx, "read the agent's finished teardown", ref, err)
			}
			if o != nil {
				return ac.ConnectionClaim{Claimed: true, Outcome: o}, nil
			}
		}
		switch {
		case claim.Outcome != nil:
			return claim, nil
		case !running || !claim.Claimed:
			activity.GetLogger(ctx).Info("teardown no longer owns the connection and gave no outcome",
				"agent_id", ref.AgentID, "connection_id", ref.ConnectionID, "teardown_running", running)
			return ac.ConnectionClaim{}, nil
		}
		activity.RecordHeartbeat(ctx)
		timer.Reset(interval)
	}
}

// AwaitStandaloneRemoval waits for run in.RunID of the standalone RemoveConnectionWorkflow of the
// connection (the run the batch described; the latest when empty), heartbeating every few
// seconds, and returns its outcome for the teardown: success gives that removal's outcome with
// Attempts 0 (the teardown sent nothing); a failure gives outcome "failed" with the failure's type
// and a clipped message. The teardown's own missing_ok decides what an absent connection is: a
// removal that found it absent on its first request is failed/NotFound for a teardown with
// missing_ok false, and a NotFound failure is already_absent for one with missing_ok true. When
// there is no result to take (no coordinator, the workflow is gone, or it ended terminated,
// cancelled or timed out) the outcome is EMPTY: the teardown must then remove the connection
// itself. Other errors are retryable, type Unavailable.
func (a *Activities) AwaitStandaloneRemoval(ctx context.Context, in ConnectionAwait) (ac.ConnectionOutcome, error) {
	ref := ConnectionRef{AgentID: in.AgentID, ConnectionID: in.ConnectionID}
	out := ac.ConnectionOutcome{ConnectionID: ref.ConnectionID}
	if err := validateIDs(ref.AgentID, ref.ConnectionID); err != nil {
		return out, invalid(err)
	}
	if a.coord == nil {
		return out, nil
	}
	type answer struct {
		res ac.RemoveConnectionResult
		err error
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan answer, 1)
	go func() {
		res, err := a.coord.AwaitRemoval(waitCtx, ref.AgentID, ref.ConnectionID, in.RunID)
		answers <- answer{res, err}
	}()

	every := a.waitHeartbeat
	if every <= 0 {
		every = DefaultWaitHeartbeat
	}
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 {
		every = max(min(every, hb/3), 100*time.Millisecond)
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	activity.RecordHeartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-ticker.C:
			activity.RecordHeartbeat(ctx)
		case ans := <-answers:
			return a.standaloneOutcome(ctx, in, ans.res, ans.err)
		}
	}
}

// standaloneOutcome turns the standalone removal's result into the teardown's outcome.
func (a *Activities) standaloneOutcome(ctx context.Context, in ConnectionAwait, res ac.RemoveConnectionResult, err error) (ac.ConnectionOutcome, error) {
	logger := activity.GetLogger(ctx)
	ref := ConnectionRef{AgentID: in.AgentID, ConnectionID: in.ConnectionID}
	out := ac.ConnectionOutcome{ConnectionID: ref.ConnectionID}
	fields := []any{"agent_id", ref.AgentID, "connection_id", ref.ConnectionID}
	var appErr *temporal.ApplicationError
	switch {
	case err == nil && res.Outcome == ac.OutcomeAlreadyAbsent && !in.MissingOK && res.Attempts == 1:
		// Absent before anyone removed it, and this teardown does not accept that.
		out.Outcome, out.FailureType = ac.OutcomeFailed, ac.ErrNotFound
		out.Message = "a standalone removal found the connection absent on its first request (missing_ok is false)"
		logger.Info("standalone removal found the connection absent", fields...)
	case err == nil && (res.Outcome == ac.OutcomeRemoved || res.Outcome == ac.OutcomeAlreadyAbsent):
		out.Outcome = res.Outcome
		logger.Info("standalone removal finished the connection", append(fields, "outcome", res.Outcome)...)
	case err == nil:
		logger.Warn("standalone removal gave an unknown outcome; the teardown removes the connection itself", append(fields, "outcome", res.Outcome)...)
	case errors.Is(err, ErrRemovalNotRunning):
		logger.Info("no standalone removal result; the teardown removes the connection itself", append(fields, "reason", err.Error())...)
	case errors.As(err, &appErr) && appErr.Type() == ac.ErrNotFound && in.MissingOK:
		out.Outcome = ac.OutcomeAlreadyAbsent
		logger.Info("standalone removal found the connection absent", fields...)
	case errors.As(err, &appErr):
		out.Outcome = ac.OutcomeFailed
		out.FailureType = appErr.Type()
		out.Message = outcomeMessage("standalone removal failed: " + a.cp.Redact(appErr.Message()))
		logger.Warn("standalone removal failed", append(fields, "failure_type", appErr.Type())...)
	default:
		return out, a.coordinationFailure(ctx, "wait for the standalone removal", ref, err)
	}
	return out, nil
}

// LoadCarriedState returns one page of the state a teardown run carried into continue-as-new
// when it was too large for the continue-as-new input (see workflows). Errors are retryable,
// type Unavailable.
func (a *Activities) LoadCarriedState(ctx context.Context, in CarriedStateInput) ([]byte, error) {
	if a.coord == nil {
		return nil, unavailable("no coordinator to read a carried teardown state with")
	}
	b, err := a.coord.CarriedStatePage(ctx, in.WorkflowID, in.RunID, in.Page)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, unavailable(err.Error())
	}
	return b, nil
}

// coordinationFailure is the error of an activity that could not ask Temporal about the other
// workflow: the context's own error when it ended, otherwise retryable, type Unavailable.
func (a *Activities) coordinationFailure(ctx context.Context, what string, ref ConnectionRef, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	activity.GetLogger(ctx).Warn("coordination failed: could not "+what,
		"agent_id", ref.AgentID, "connection_id", ref.ConnectionID, "error", err.Error())
	return unavailable(fmt.Sprintf("could not %s: %v", what, err))
}

// outcomeMessage bounds a per-connection message to ac.MaxOutcomeMessageBytes, so the result of a
// large teardown stays small.
func outcomeMessage(s string) string {
	return controlplane.ClipTo(strings.ToValidUTF8(s, "\uFFFD"), ac.MaxOutcomeMessageBytes)
}

// validateIDs applies the contract's ID rules to both IDs: they name workflows here.
func validateIDs(agentID, connectionID string) error {
	if err := ac.ValidateID("agent_id", agentID); err != nil {
		return err
	}
	return ac.ValidateID("connection_id", connectionID)
}
