package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	ac "github.com/agentops/agentconnections"
)

// notRepeatableKey marks a request go-retryablehttp must not send again unless it cannot have
// left (a refused connection): a POST creates a connection, so repeating one whose answer was lost
// could create two.
type notRepeatableKey struct{}

// notRepeatable reports whether the request of ctx carries notRepeatableKey.
func notRepeatable(ctx context.Context) bool {
	v, _ := ctx.Value(notRepeatableKey{}).(bool)
	return v
}

// CreateRequest is one connection re-created from its OAuth token.
type CreateRequest struct {
	AgentID      string
	OAuthTokenID string
	// PriorRequests counts the POSTs sent for this token before this call (earlier attempts,
	// earlier batches). When it is not zero the call first looks for a connection with the token,
	// as with MaybeSent: one of those POSTs may have created it.
	PriorRequests int
	// MaybeSent is set when an earlier attempt may have sent a POST for this token that no count
	// holds (heartbeats are throttled, a worker was killed mid-request).
	MaybeSent bool
	// OnSent runs as each POST leaves, with the number this call has sent so far.
	OnSent func(sent int)
	// Detach lets a POST that has left finish after ctx ends, so its outcome is known. A detached
	// POST is not sent when ctx's deadline is nearer than the request timeout: Create then
	// returns ErrTooLateToSend, with nothing sent.
	Detach bool
	// Logger receives this call's lines (IDs, never a credential); nil logs nothing.
	Logger Logger
	// Quiet logs a success at debug level.
	Quiet bool
}

// CreateResult is a connection that now holds the token, and the POST count of any call.
type CreateResult struct {
	// Outcome is agentconnections.OutcomeRestored on success, empty otherwise.
	Outcome string
	// ConnectionID is the connection that holds the token: the 201's, or the one the check found.
	ConnectionID string
	// Requests counts the POSTs of this token, PriorRequests included (the lists are not counted).
	Requests int
	// Unknown is set on failure when a POST of this call, or an earlier one, got no final answer:
	// it may have created the connection, so the next try must set MaybeSent.
	Unknown bool
}

// createBody is CreateAgentConnectionRequest.
type createBody struct {
	OAuthTokenID string `json:"oauth_token_id"`
}

// Create sends POST /v2/auth/agents/{agent_id}/connections with {"oauth_token_id": ...} and maps
// the answer as the create table in docs/contract.md says: 201 is restored, with the new ID; a 404
// is AgentNotFound; 422, 400, 401 and 403 fail as for Delete; 408, 429, 5xx and no answer are
// retryable *Errors with Unknown set, since the POST may have created the connection.
//
// It never creates two connections for one token by repeating itself: a POST is sent again in
// process only after a refused connection (it cannot have left). Whenever an earlier POST's outcome
// is unknown (PriorRequests, MaybeSent, or a 201 whose body cannot be read), it lists the agent
// first and takes a connection with the token when there is one, sending no POST.
func (c *Client) Create(ctx context.Context, r CreateRequest) (CreateResult, error) {
	logger := loggerOrNop(r.Logger)
	res := CreateResult{Requests: r.PriorRequests}
	if err := ac.ValidateID("agent_id", r.AgentID); err != nil {
		return res, refused(logger, "connection create", err, res.Requests)
	}
	if err := ac.ValidateID("oauth_token_id", r.OAuthTokenID); err != nil {
		return res, refused(logger, "connection create", err, res.Requests)
	}
	fields := []any{"agent_id", r.AgentID, "oauth_token_id", r.OAuthTokenID}
	if r.PriorRequests > 0 || r.MaybeSent {
		res.Unknown = true
		if id, found, err := c.findToken(ctx, r, logger); err != nil || found {
			return c.taken(res, id, err, logger, r.Quiet, fields)
		}
	}
	id, unreadable, err := c.post(ctx, r, &res, logger, fields)
	switch {
	case err != nil:
		return res, err
	case unreadable != "":
		res.Unknown = true
		found := false
		if id, found, err = c.findToken(ctx, r, logger); err != nil || found {
			return c.taken(res, id, err, logger, r.Quiet, fields)
		}
		e := &Error{Status: http.StatusCreated, Type: ac.ErrUnexpectedStatus, Requests: res.Requests,
			Message: "control plane answered 201 with " + unreadable + ", and no connection with the token is listed"}
		logger.Warn("connection create unreadable", append(fields, "failure_type", e.Type)...)
		return res, e
	}
	res.Outcome, res.ConnectionID, res.Unknown = ac.OutcomeRestored, id, false
	logSuccess(logger, r.Quiet, "connection created", append(fields, "connection_id", id, "requests", res.Requests)...)
	return res, nil
}

// taken ends a call whose check for the token failed (err) or found the connection id.
func (c *Client) taken(res CreateResult, id string, err error, logger Logger, quiet bool, fields []any) (CreateResult, error) {
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Requests = res.Requests
			e.Message = "checking for a connection with the token before a POST is sent again: " + e.Message
		}
		return res, err
	}
	res.Outcome, res.ConnectionID, res.Unknown = ac.OutcomeRestored, id, false
	logSuccess(logger, quiet, "connection found by its token after a POST with no final answer",
		append(fields, "connection_id", id, "requests", res.Requests)...)
	return res, nil
}

// findToken lists the agent and returns the ID of a connection with r's token.
func (c *Client) findToken(ctx context.Context, r CreateRequest, logger Logger) (string, bool, error) {
	conns, err := c.Connections(ctx, r.AgentID, logger)
	if err != nil {
		return "", false, err
	}
	for _, conn := range conns {
		if conn.OAuthTokenID == r.OAuthTokenID {
			return conn.ID, true, nil
		}
	}
	return "", false, nil
}

// post sends the POST and reads its answer: the new connection's ID; or, for a 201 whose body
// does not give one, what is wrong with it (unreadable); or the failure, with res.Unknown set when
// the POST may have created the connection.
func (c *Client) post(ctx context.Context, r CreateRequest, res *CreateResult, logger Logger, fields []any) (id, unreadable string, err error) {
	body, err := json.Marshal(createBody{OAuthTokenID: r.OAuthTokenID})
	if err != nil {
		return "", "", fmt.Errorf("encode the create body: %w", err)
	}
	tracker := &requestTracker{onSent: r.OnSent}
	start := time.Now()
	info := &requestInfo{route: RouteConnections, agentID: r.AgentID, detach: r.Detach, endByDeadline: r.Detach}
	resp, err := c.sendBody(context.WithValue(ctx, notRepeatableKey{}, true), tracker, http.MethodPost, c.connectionsURL(r.AgentID), info, body)
	prior := res.Requests
	res.Requests = prior + tracker.total()
	fields = append(fields, "requests", res.Requests, "latency_ms", time.Since(start).Milliseconds())
	if err != nil {
		res.Unknown = res.Unknown || tracker.total() > 0
		return "", "", unanswered(ctx, err, res.Requests, logger, "connection create", fields)
	}
	defer drainAndClose(resp)
	fields = append(fields, "status", resp.StatusCode)
	switch resp.StatusCode {
	case http.StatusCreated:
		id, unreadable := c.readCreated(resp, r.OAuthTokenID)
		return id, unreadable, nil
	case http.StatusNotFound:
		b, truncated, _ := c.readRedacted(resp.Body, DefaultBodyLimit)
		logger.Warn("agent not found", append(fields, "failure_type", ac.ErrAgentNotFound)...)
		return "", "", &Error{Status: resp.StatusCode, Type: ac.ErrAgentNotFound, Requests: res.Requests,
			Message: fmt.Sprintf("control plane answered 404 Not Found to POST %s after %d request(s): agent %q not found; "+
				"if it exists, check that LANGSMITH_CONTROL_PLANE_URL carries the install's path prefix: %s",
				RouteConnections, res.Requests, r.AgentID, c.Redact(describeErrorBody(b, truncated)))}
	}
	e := c.classify(resp, res.Requests)
	res.Unknown = res.Unknown || e.Retryable
	logger.Warn("connection create failed", append(fields, "failure_type", e.Type, "retryable", e.Retryable, "unknown", res.Unknown)...)
	return "", "", e
}

// createdBody is the part of AgentConnectionResponse a restore needs.
type createdBody struct {
	ID           *string `json:"id"`
	OAuthTokenID string  `json:"oauth_token_id"`
}

// readCreated reads a 201's connection ID; unreadable says why there is none.
func (c *Client) readCreated(resp *http.Response, tokenID string) (id, unreadable string) {
	b, truncated, err := c.readRedacted(resp.Body, DefaultBodyLimit)
	switch {
	case err != nil:
		return "", "a body cut off"
	case truncated:
		return "", "a body over the size limit"
	}
	var parsed createdBody
	if json.Unmarshal(b, &parsed) != nil || parsed.ID == nil {
		return "", "a body that has no connection id: " + excerpt(b)
	}
	if err := ac.ValidateID("id", *parsed.ID); err != nil {
		return "", "a connection id the worker cannot use (" + err.Error() + ")"
	}
	if parsed.OAuthTokenID != "" && parsed.OAuthTokenID != tokenID {
		return "", "a connection of another token"
	}
	return *parsed.ID, ""
}
