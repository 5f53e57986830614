package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
)

// removeProgress is the heartbeat detail of RemoveConnection: how many requests this removal has
// sent, across Temporal attempts. It holds no credential.
type removeProgress struct {
	Requests int `json:"requests"`
}

// RemoveConnection sends DELETE /v2/auth/agents/{agent_id}/connections/{connection_id} and maps
// the answer as the contract's status table says. Each request is counted and heartbeated before
// it leaves, so the count (the result's attempts) and the rule "a 404 after an earlier request is
// already_absent" hold across in-process retries, Temporal attempts and worker restarts.
func (a *Activities) RemoveConnection(ctx context.Context, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID}

	if err := validateIDs(in.AgentID, in.ConnectionID); err != nil {
		logger.Warn("refused connection removal before any request", "error", err.Error())
		a.meter().Removal(ac.OutcomeFailed, ac.ErrInvalidRequest)
		return result, failure(err.Error(), ac.ErrInvalidRequest, false, 0, 0, 0)
	}

	var prior removeProgress
	if activity.HasHeartbeatDetails(ctx) {
		// A broken detail only loses the count, never the removal: start from zero.
		if err := activity.GetHeartbeatDetails(ctx, &prior); err != nil {
			logger.Warn("could not read the previous attempt's request count", "error", err.Error())
			prior = removeProgress{}
		}
	}
	var sent atomic.Int64
	stop := keepHeartbeating(ctx, info.HeartbeatTimeout, func() {
		activity.RecordHeartbeat(ctx, removeProgress{Requests: prior.Requests + int(sent.Load())})
	})
	defer stop()

	res := a.removeOne(ctx, removal{
		agentID:        in.AgentID,
		connectionID:   in.ConnectionID,
		missingOK:      in.MissingOK,
		prior:          prior.Requests,
		earlierAttempt: info.Attempt > 1,
		onSent: func(n int) {
			sent.Store(int64(n))
			activity.RecordHeartbeat(ctx, removeProgress{Requests: prior.Requests + n})
		},
	})
	result.Attempts = res.requests
	a.recordRemoval(res)
	switch {
	case res.ctxErr != nil:
		return result, res.ctxErr
	case res.outcome != "":
		result.Outcome = res.outcome
		return result, nil
	}
	return result, failure(res.message, res.errType, res.retryable, res.status, res.requests, res.nextDelay)
}

// removal is one connection removal as removeOne runs it, for RemoveConnection and for each
// connection of a RemoveConnections batch.
type removal struct {
	agentID      string
	connectionID string
	missingOK    bool
	// prior counts the requests sent for this removal before this call: by earlier Temporal
	// attempts (heartbeated) and, in a teardown, by earlier batches.
	prior int
	// earlierAttempt is set when an earlier Temporal attempt may have sent a request that prior
	// does not count: heartbeats are throttled, so the last count may not have reached the server.
	earlierAttempt bool
	// onSent runs as each request leaves (before it is on the wire) with the number of requests
	// this call has sent so far; the caller heartbeats it.
	onSent func(sent int)
	// quiet logs a success at debug level: a batch logs one line for all its successes.
	quiet bool
	// detach lets a request that has left finish after ctx ends (see requestInfo.detach).
	detach bool
}

// removeResult is what one removal came to: an outcome, or a classified failure.
type removeResult struct {
	// outcome is OutcomeRemoved or OutcomeAlreadyAbsent on success, empty otherwise.
	outcome   string
	errType   string
	message   string
	retryable bool
	nextDelay time.Duration
	// requests counts every request of this removal, prior ones included.
	requests int
	// status is the last answer's status, 0 when none came.
	status int
	// ctxErr is the activity context's error when it ended before an answer came.
	ctxErr error
}

// removeOne is the single-connection core shared by RemoveConnection and RemoveConnections: ID
// check, URL, headers, in-process retries, counting, classification, Retry-After, redaction and
// logging. It never returns an error; the caller turns the result into its own shape.
func (a *Activities) removeOne(ctx context.Context, r removal) removeResult {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	res := removeResult{requests: r.prior}

	if err := validateIDs(r.agentID, r.connectionID); err != nil {
		logger.Warn("refused connection removal before any request", "error", err.Error())
		res.errType, res.message = ac.ErrInvalidRequest, err.Error()
		return res
	}

	tracker := &requestTracker{onSent: r.onSent}
	start := time.Now()
	resp, err := a.send(ctx, tracker, http.MethodDelete, a.connectionURL(r.agentID, r.connectionID),
		&requestInfo{route: RouteConnection, agentID: r.agentID, connectionID: r.connectionID, detach: r.detach})
	res.requests = r.prior + tracker.total()
	fields := []any{
		"agent_id", r.agentID, "connection_id", r.connectionID,
		"attempt", info.Attempt, "requests", res.requests, "latency_ms", time.Since(start).Milliseconds(),
	}
	if err != nil {
		f, ctxErr := requestFailure(ctx, err)
		switch {
		case ctxErr != nil:
			logger.Info("connection removal stopped: activity context done", append(fields, "error", ctxErr.Error())...)
			res.ctxErr = ctxErr
			return res
		case f.errType == ac.ErrUnauthorized:
			logger.Error("connection removal not sent: no credentials", append(fields, "error", err.Error())...)
		default:
			logger.Warn("control plane unreachable", append(fields, "error", err.Error())...)
		}
		res.errType, res.message, res.retryable, res.nextDelay = f.errType, f.message, f.retryable, f.nextDelay
		return res
	}
	defer drainAndClose(resp)
	res.status = resp.StatusCode
	fields = append(fields, "status", resp.StatusCode)

	switch resp.StatusCode {
	case http.StatusNoContent:
		res.outcome = ac.OutcomeRemoved
		logSuccess(logger, r.quiet, "connection removed", fields...)
		return res
	case http.StatusNotFound:
		// The last response is the last request's: any earlier request of this removal (an
		// in-process retry, an earlier Temporal attempt or an earlier teardown batch) may have
		// removed the connection.
		earlier := res.requests > 1 || r.earlierAttempt
		if r.missingOK || earlier {
			res.outcome = ac.OutcomeAlreadyAbsent
			logSuccess(logger, r.quiet, "connection already absent", append(fields, "earlier_request", earlier)...)
			return res
		}
	}

	f := a.classify(resp, res.requests)
	logger.Warn("connection removal failed", append(fields, "failure_type", f.errType, "retryable", f.retryable)...)
	res.errType, res.message, res.retryable, res.nextDelay = f.errType, f.message, f.retryable, f.nextDelay
	return res
}

func logSuccess(logger log.Logger, quiet bool, msg string, fields ...any) {
	if quiet {
		logger.Debug(msg, fields...)
		return
	}
	logger.Info(msg, fields...)
}

// requestFailure classifies a request that got no answer. When the activity context ended it
// returns that error instead; a failed credential source is Unauthorized (not retried, no request
// left); anything else is the control plane being unreachable (Unavailable, retried).
func requestFailure(ctx context.Context, err error) (classified, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return classified{}, ctxErr
	}
	if errors.Is(err, errNoCredentials) {
		return classified{errType: ac.ErrUnauthorized, message: err.Error()}, nil
	}
	var paused *pausedError
	if errors.As(err, &paused) {
		return classified{errType: ac.ErrRateLimited, message: "not sent: " + err.Error(), retryable: true, nextDelay: paused.remaining}, nil
	}
	return classified{errType: ac.ErrUnavailable, message: "control plane unreachable: " + err.Error(), retryable: true}, nil
}

// validateIDs applies the contract's ID rules to both IDs.
func validateIDs(agentID, connectionID string) error {
	if err := ac.ValidateID("agent_id", agentID); err != nil {
		return err
	}
	return ac.ValidateID("connection_id", connectionID)
}

// errNoCredentials marks a credential source that failed; it is not retried.
var errNoCredentials = errors.New("no control plane credentials")

// send builds one request with the credential headers and runs it through the retrying client.
// info names the route and IDs for the metrics and spans of its requests.
func (a *Activities) send(ctx context.Context, tracker *requestTracker, method, target string, info *requestInfo) (*http.Response, error) {
	creds, err := a.creds.Credentials()
	if err != nil {
		// The source's error names a file or variable, never a key.
		return nil, fmt.Errorf("%w: %v", errNoCredentials, err)
	}
	if creds.APIKey == "" && creds.BearerToken == "" {
		return nil, fmt.Errorf("%w: neither an API key nor a bearer token is set", errNoCredentials)
	}
	reqCtx := context.WithValue(context.WithValue(ctx, trackerKey{}, tracker), requestInfoKey{}, info)
	req, err := retryablehttp.NewRequestWithContext(reqCtx, method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", a.userAgent)
	req.Header.Set("Accept", "application/json")
	if creds.APIKey != "" {
		req.Header.Set("X-Api-Key", creds.APIKey)
	}
	if creds.TenantID != "" {
		req.Header.Set("X-Tenant-Id", creds.TenantID)
	}
	if creds.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+creds.BearerToken)
	}
	// Wait for the pacer here, outside the request's own timeout.
	if err := timedWait(ctx, a.pacer, a.meter()); err != nil {
		return nil, err
	}
	if info.detach {
		if err := ctx.Err(); err != nil {
			return nil, err // ended while it waited: nothing was sent
		}
		req = req.WithContext(context.WithoutCancel(reqCtx))
	}
	return a.client.Do(req)
}

// classified is a non-success answer turned into a failure.
type classified struct {
	errType   string
	message   string
	retryable bool
	nextDelay time.Duration
}

// classify maps a non-success status to its failure type, per the contract's status table.
func (a *Activities) classify(resp *http.Response, requests int) classified {
	status := resp.StatusCode
	body, truncated, readErr := a.readRedacted(resp.Body, DefaultBodyLimit)
	detail := describeErrorBody(body, truncated)
	if readErr != nil {
		detail = fmt.Sprintf("%s (body cut off: %v)", detail, readErr)
	}
	detail = a.redact(detail)
	prefix := fmt.Sprintf("control plane answered %d %s after %d request(s)", status, http.StatusText(status), requests)

	switch {
	case status == http.StatusNotFound:
		return classified{errType: ac.ErrNotFound, message: fmt.Sprintf("%s: connection not found (missing_ok is false): %s", prefix, detail)}
	case status == http.StatusUnprocessableEntity:
		return classified{errType: ac.ErrValidation, message: fmt.Sprintf("%s: request refused as invalid: %s", prefix, detail)}
	case status == http.StatusBadRequest:
		return classified{errType: ac.ErrBadRequest, message: fmt.Sprintf("%s: %s", prefix, detail)}
	case status == http.StatusUnauthorized:
		return classified{errType: ac.ErrUnauthorized, message: fmt.Sprintf("%s: check LANGSMITH_API_KEY (or LANGSMITH_API_KEY_FILE, LANGSMITH_BEARER_TOKEN): %s", prefix, detail)}
	case status == http.StatusForbidden:
		return classified{errType: ac.ErrUnauthorized, message: fmt.Sprintf("%s: check LANGSMITH_TENANT_ID and the key's access to this workspace: %s", prefix, detail)}
	case status == http.StatusTooManyRequests:
		delay := a.retryAfter(resp)
		a.pacer.pause(delay)
		return classified{errType: ac.ErrRateLimited, message: fmt.Sprintf("%s: rate limited%s: %s", prefix, delayNote(delay), detail), retryable: true, nextDelay: delay}
	case status == http.StatusRequestTimeout:
		delay := a.retryAfter(resp)
		return classified{errType: ac.ErrUnavailable, message: fmt.Sprintf("%s: %s", prefix, detail), retryable: true, nextDelay: delay}
	case status >= 500 && status <= 599:
		delay := a.retryAfter(resp)
		return classified{errType: ac.ErrServerError, message: fmt.Sprintf("%s%s: %s", prefix, delayNote(delay), detail), retryable: true, nextDelay: delay}
	default:
		return classified{errType: ac.ErrUnexpectedStatus, message: fmt.Sprintf("%s: unexpected status: %s", prefix, detail)}
	}
}

// retryAfter reads the answer's Retry-After (0 when absent or unreadable) and reports a readable
// one to the metrics: the activity honours it, as the next attempt's delay and, for a 429, as the
// worker's pause.
func (a *Activities) retryAfter(resp *http.Response) time.Duration {
	delay, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), a.maxRetryAfter)
	if ok {
		a.meter().RetryAfter(resp.StatusCode, delay)
	}
	return delay
}

func delayNote(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf(", retry after %s", d)
}

// redact removes the current credentials from text that came from the server, in case a proxy or
// a misbehaving server echoes a header back in its error body.
func (a *Activities) redact(s string) string {
	creds, err := a.creds.Credentials()
	if err != nil {
		return s
	}
	return redactSecrets(s, creds.APIKey, creds.BearerToken)
}

// readRedacted reads a response body (bounded, as readBody) and removes the credentials from all
// of it before anything clips or quotes it, so a key echoed across an excerpt's cut never leaves a
// prefix behind.
func (a *Activities) readRedacted(body io.Reader, limit int64) ([]byte, bool, error) {
	data, truncated, err := readBody(body, limit)
	return []byte(a.redact(string(data))), truncated, err
}

// failure builds the ApplicationError the contract asks for, with FailureDetails attached.
func failure(msg, errType string, retryable bool, status, requests int, nextDelay time.Duration) error {
	return temporal.NewApplicationErrorWithOptions(msg, errType, temporal.ApplicationErrorOptions{
		NonRetryable:   !retryable,
		NextRetryDelay: nextDelay,
		Details:        []any{ac.FailureDetails{StatusCode: status, Requests: requests}},
	})
}

// drainAndClose reads what is left of a body (bounded) so the keep-alive connection is reused.
func drainAndClose(resp *http.Response) {
	_, _, _ = readBody(resp.Body, DefaultBodyLimit)
	_ = resp.Body.Close()
}

// keepHeartbeating calls beat (which records a heartbeat with the current progress) while a
// request is in flight, so a slow or hanging request does not trip the heartbeat timeout and a
// dead worker is noticed within it. The SDK throttles heartbeats, so ticking at a third of the
// timeout costs little.
func keepHeartbeating(ctx context.Context, timeout time.Duration, beat func()) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	interval := max(timeout/3, 100*time.Millisecond)
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
				beat()
			}
		}
	}()
	return func() { close(done) }
}
