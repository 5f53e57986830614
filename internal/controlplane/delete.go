package controlplane

import (
	"context"
	"net/http"
	"time"

	ac "github.com/agentops/agentconnections"
)

// DeleteRequest is one connection removal.
type DeleteRequest struct {
	AgentID      string
	ConnectionID string
	// MissingOK makes a 404 on the first request of the removal already_absent instead of a
	// NotFound *Error.
	MissingOK bool
	// PriorRequests counts the requests sent for this removal before this call (by earlier
	// Temporal attempts, earlier teardown batches); the result's count includes them.
	PriorRequests int
	// MaybeSent is set when an earlier attempt may have sent a request that PriorRequests does
	// not count (heartbeats are throttled, so the last count may not have reached the server): a
	// 404 then reads as already_absent too.
	MaybeSent bool
	// OnSent runs as each request leaves (before it is on the wire) with the number of requests
	// this call has sent so far, so the caller can record the count before the request can have
	// any effect.
	OnSent func(sent int)
	// Detach lets a request that has left finish after ctx ends, so its outcome is known and
	// nothing is sent twice (a cancelled teardown waits for it instead of cutting it off). The
	// pacer wait before it, and any request not yet sent, still end with ctx.
	Detach bool
	// Logger receives this call's lines (with the IDs, never a credential); nil logs nothing.
	Logger Logger
	// Quiet logs a success at debug level: a batch logs one line for all its successes.
	Quiet bool
}

// DeleteResult is a removal that succeeded, and the request count of any removal.
type DeleteResult struct {
	// Outcome is agentconnections.OutcomeRemoved or OutcomeAlreadyAbsent on success, empty
	// otherwise.
	Outcome string
	// Requests counts every request of this removal, PriorRequests included; it is set on
	// failure too.
	Requests int
	// AfterEarlierRequest is set when the last request followed an earlier request of this removal
	// (PriorRequests, MaybeSent, an in-process retry), on an already_absent outcome and on a
	// failure alike: that earlier request may have removed the connection.
	AfterEarlierRequest bool
}

// Delete sends DELETE /v2/auth/agents/{agent_id}/connections/{connection_id} and maps the answer
// as the status table in docs/contract.md says: 204 is removed; a 404 is already_absent with
// MissingOK or after any earlier request of this removal (PriorRequests, MaybeSent, an in-process
// retry), and NotFound otherwise; every other answer, and a request that got none, is an *Error.
// IDs that agentconnections.ValidateID refuses are an InvalidRequest *Error with no request sent.
// When ctx ends before an answer, the error is ctx's own.
func (c *Client) Delete(ctx context.Context, r DeleteRequest) (DeleteResult, error) {
	logger := loggerOrNop(r.Logger)
	res := DeleteResult{Requests: r.PriorRequests}
	if err := ac.ValidateID("agent_id", r.AgentID); err != nil {
		return res, refused(logger, "connection removal", err, res.Requests)
	}
	if err := ac.ValidateID("connection_id", r.ConnectionID); err != nil {
		return res, refused(logger, "connection removal", err, res.Requests)
	}

	tracker := &requestTracker{onSent: r.OnSent}
	start := time.Now()
	resp, err := c.send(ctx, tracker, http.MethodDelete, c.connectionURL(r.AgentID, r.ConnectionID),
		&requestInfo{route: RouteConnection, agentID: r.AgentID, connectionID: r.ConnectionID, detach: r.Detach})
	res.Requests = r.PriorRequests + tracker.total()
	res.AfterEarlierRequest = res.Requests > 1 || r.MaybeSent
	// Room for the status and a failure's two fields, so that appending them allocates nothing.
	fields := append(make([]any, 0, 14),
		"agent_id", r.AgentID, "connection_id", r.ConnectionID,
		"requests", res.Requests, "latency_ms", time.Since(start).Milliseconds(),
	)
	if err != nil {
		return res, unanswered(ctx, err, res.Requests, logger, "connection removal", fields)
	}
	defer drainAndClose(resp)
	fields = append(fields, "status", resp.StatusCode)

	switch resp.StatusCode {
	case http.StatusNoContent:
		res.Outcome = ac.OutcomeRemoved
		logSuccess(logger, r.Quiet, "connection removed", fields...)
		return res, nil
	case http.StatusNotFound:
		// The last response is the last request's: any earlier request of this removal (an
		// in-process retry, an earlier Temporal attempt or an earlier teardown batch) may have
		// removed the connection.
		earlier := res.AfterEarlierRequest
		if r.MissingOK || earlier {
			res.Outcome = ac.OutcomeAlreadyAbsent
			logSuccess(logger, r.Quiet, "connection already absent", append(fields, "earlier_request", earlier)...)
			return res, nil
		}
	}

	e := c.classify(resp, res.Requests)
	logger.Warn("connection removal failed", append(fields, "failure_type", e.Type, "retryable", e.Retryable)...)
	return res, e
}

// refused is the InvalidRequest failure of a call whose input was refused before any request.
func refused(logger Logger, call string, err error, requests int) *Error {
	logger.Warn("refused "+call+" before any request", "error", err.Error())
	return &Error{Type: ac.ErrInvalidRequest, Message: err.Error(), Requests: requests}
}

func logSuccess(logger Logger, quiet bool, msg string, fields ...any) {
	if quiet {
		logger.Debug(msg, fields...)
		return
	}
	logger.Info(msg, fields...)
}
