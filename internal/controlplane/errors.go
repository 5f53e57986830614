package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	ac "github.com/agentops/agentconnections"
)

// Error is a call that failed, classified by the status table in docs/contract.md: the one error
// type Delete and List return, apart from the context's own error when the caller's context ended
// first (passed through as it is, so errors.As finds no *Error in it). Its Message holds no
// credential.
type Error struct {
	// Status is the last answer's status code, 0 when no answer came.
	Status int
	// Type is the contract's failure type (agentconnections.ErrValidation and so on).
	Type string
	// Retryable is set for the transient types: RateLimited, ServerError, Unavailable.
	Retryable bool
	// RetryAfter is the delay the control plane asked for (capped), or what is left of the
	// client's 429 pause; 0 when there is none.
	RetryAfter time.Duration
	// Requests counts every request of the call, the request's prior ones included.
	Requests int
	// Message says what happened, for a person.
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// unanswered classifies a request that got no answer and logs it. When ctx ended it returns that
// error instead; a failed credential source is Unauthorized (not retried, no request left); a
// 429 pause past ctx's deadline is RateLimited with what is left of it; anything else is the
// control plane being unreachable (Unavailable, retried).
func unanswered(ctx context.Context, err error, requests int, logger Logger, call string, fields []any) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		logger.Info(call+" stopped: context done", append(fields, "error", ctxErr.Error())...)
		return ctxErr
	}
	if errors.Is(err, ErrTooLateToSend) {
		logger.Info(call+" not sent: the call's deadline is near", fields...)
		return err
	}
	e := &Error{Requests: requests}
	var paused *pausedError
	switch {
	case errors.Is(err, errNoCredentials):
		e.Type, e.Message = ac.ErrUnauthorized, err.Error()
		logger.Error(call+" not sent: no credentials", append(fields, "error", err.Error())...)
		return e
	case errors.As(err, &paused):
		e.Type, e.Message, e.Retryable, e.RetryAfter = ac.ErrRateLimited, "not sent: "+err.Error(), true, paused.remaining
	default:
		e.Type, e.Message, e.Retryable = ac.ErrUnavailable, "control plane unreachable: "+err.Error(), true
	}
	logger.Warn("control plane unreachable", append(fields, "error", err.Error())...)
	return e
}

// classify maps a non-success status to its failure, per the status table in docs/contract.md.
func (c *Client) classify(resp *http.Response, requests int) *Error {
	status := resp.StatusCode
	body, truncated, readErr := c.readRedacted(resp.Body, DefaultBodyLimit)
	detail := describeErrorBody(body, truncated)
	if readErr != nil {
		detail = fmt.Sprintf("%s (body cut off: %v)", detail, readErr)
	}
	detail = c.Redact(detail)
	prefix := fmt.Sprintf("control plane answered %d %s after %d request(s)", status, http.StatusText(status), requests)
	e := &Error{Status: status, Requests: requests}

	switch {
	case status == http.StatusNotFound:
		e.Type, e.Message = ac.ErrNotFound, fmt.Sprintf("%s: connection not found (missing_ok is false): %s", prefix, detail)
	case status == http.StatusUnprocessableEntity:
		e.Type, e.Message = ac.ErrValidation, fmt.Sprintf("%s: request refused as invalid: %s", prefix, detail)
	case status == http.StatusBadRequest:
		e.Type, e.Message = ac.ErrBadRequest, fmt.Sprintf("%s: %s", prefix, detail)
	case status == http.StatusUnauthorized:
		e.Type, e.Message = ac.ErrUnauthorized, fmt.Sprintf("%s: check LANGSMITH_API_KEY (or LANGSMITH_API_KEY_FILE, LANGSMITH_BEARER_TOKEN): %s", prefix, detail)
	case status == http.StatusForbidden:
		e.Type, e.Message = ac.ErrUnauthorized, fmt.Sprintf("%s: check LANGSMITH_TENANT_ID and the key's access to this workspace: %s", prefix, detail)
	case status == http.StatusTooManyRequests:
		e.RetryAfter = c.retryAfter(resp)
		c.pacer.pause(e.RetryAfter)
		if c.onRateLimited != nil {
			c.onRateLimited(e.RetryAfter)
		}
		e.Type, e.Retryable = ac.ErrRateLimited, true
		e.Message = fmt.Sprintf("%s: rate limited%s: %s", prefix, DelayNote(e.RetryAfter), detail)
	case status == http.StatusRequestTimeout:
		e.RetryAfter = c.retryAfter(resp)
		e.Type, e.Retryable, e.Message = ac.ErrUnavailable, true, fmt.Sprintf("%s: %s", prefix, detail)
	case status >= 500 && status <= 599:
		e.RetryAfter = c.retryAfter(resp)
		e.Type, e.Retryable = ac.ErrServerError, true
		e.Message = fmt.Sprintf("%s%s: %s", prefix, DelayNote(e.RetryAfter), detail)
	default:
		e.Type, e.Message = ac.ErrUnexpectedStatus, fmt.Sprintf("%s: unexpected status: %s", prefix, detail)
	}
	return e
}

// retryAfter reads the answer's Retry-After (0 when absent or unreadable) and reports a readable
// one to the metrics: the caller honours it, as the next attempt's delay and, for a 429, as the
// client's pause.
func (c *Client) retryAfter(resp *http.Response) time.Duration {
	delay, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), c.maxRetryAfter)
	if ok {
		c.metrics.RetryAfter(resp.StatusCode, delay)
	}
	return delay
}

// DelayNote is ", retry after <d>" for a positive delay and empty otherwise, for messages that
// mention a Retry-After.
func DelayNote(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", retry after %s", d)
}
