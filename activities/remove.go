package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.temporal.io/sdk/activity"
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
func (a *Activities) RemoveConnection(ctx context.Context, in ac.RemoveConnectionActivityInput) (ac.RemoveConnectionResult, error) {
	logger := activity.GetLogger(ctx)
	info := activity.GetInfo(ctx)
	result := ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID}

	if err := validateIDs(in.AgentID, in.ConnectionID); err != nil {
		logger.Warn("refused connection removal before any request", "error", err.Error())
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
	tracker := &requestTracker{onSent: func(total int) {
		activity.RecordHeartbeat(ctx, removeProgress{Requests: prior.Requests + total})
	}}
	stop := keepHeartbeating(ctx, info.HeartbeatTimeout, func() removeProgress {
		return removeProgress{Requests: prior.Requests + tracker.total()}
	})
	defer stop()

	start := time.Now()
	resp, err := a.send(ctx, tracker, http.MethodDelete, a.connectionURL(in.AgentID, in.ConnectionID))
	requests := prior.Requests + tracker.total()
	result.Attempts = requests
	fields := []any{
		"agent_id", in.AgentID, "connection_id", in.ConnectionID,
		"attempt", info.Attempt, "requests", requests, "latency_ms", time.Since(start).Milliseconds(),
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			logger.Info("connection removal stopped: activity context done", append(fields, "error", ctxErr.Error())...)
			return result, ctxErr
		}
		if errors.Is(err, errNoCredentials) {
			logger.Error("connection removal not sent: no credentials", append(fields, "error", err.Error())...)
			return result, failure(err.Error(), ac.ErrUnauthorized, false, 0, requests, 0)
		}
		logger.Warn("control plane unreachable", append(fields, "error", err.Error())...)
		return result, failure("control plane unreachable: "+err.Error(), ac.ErrUnavailable, true, 0, requests, 0)
	}
	defer drainAndClose(resp)
	fields = append(fields, "status", resp.StatusCode)

	switch resp.StatusCode {
	case http.StatusNoContent:
		result.Outcome = ac.OutcomeRemoved
		logger.Info("connection removed", fields...)
		return result, nil
	case http.StatusNotFound:
		// The last response is the last request's: any earlier request of this removal (an
		// in-process retry or an earlier Temporal attempt) may have removed the connection.
		earlier := requests > 1 || info.Attempt > 1
		if in.MissingOK || earlier {
			result.Outcome = ac.OutcomeAlreadyAbsent
			logger.Info("connection already absent", append(fields, "earlier_request", earlier)...)
			return result, nil
		}
	}

	f := a.classify(resp, requests)
	logger.Warn("connection removal failed", append(fields, "failure_type", f.errType, "retryable", f.retryable)...)
	return result, failure(f.message, f.errType, f.retryable, resp.StatusCode, requests, f.nextDelay)
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
func (a *Activities) send(ctx context.Context, tracker *requestTracker, method, target string) (*http.Response, error) {
	creds, err := a.creds.Credentials()
	if err != nil {
		// The source's error names a file or variable, never a key.
		return nil, fmt.Errorf("%w: %v", errNoCredentials, err)
	}
	if creds.APIKey == "" && creds.BearerToken == "" {
		return nil, fmt.Errorf("%w: neither an API key nor a bearer token is set", errNoCredentials)
	}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, trackerKey{}, tracker), method, target, nil)
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
	body, truncated, readErr := readBody(resp.Body, DefaultBodyLimit)
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
		delay, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), a.maxRetryAfter)
		return classified{errType: ac.ErrRateLimited, message: fmt.Sprintf("%s: rate limited%s: %s", prefix, delayNote(delay), detail), retryable: true, nextDelay: delay}
	case status == http.StatusRequestTimeout:
		delay, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), a.maxRetryAfter)
		return classified{errType: ac.ErrUnavailable, message: fmt.Sprintf("%s: %s", prefix, detail), retryable: true, nextDelay: delay}
	case status >= 500 && status <= 599:
		delay, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), a.maxRetryAfter)
		return classified{errType: ac.ErrServerError, message: fmt.Sprintf("%s%s: %s", prefix, delayNote(delay), detail), retryable: true, nextDelay: delay}
	default:
		return classified{errType: ac.ErrUnexpectedStatus, message: fmt.Sprintf("%s: unexpected status: %s", prefix, detail)}
	}
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

// keepHeartbeating heartbeats the current progress while a request is in flight, so a slow or
// hanging request does not trip the heartbeat timeout and a dead worker is noticed within it.
// The SDK throttles heartbeats, so ticking at a third of the timeout costs little.
func keepHeartbeating(ctx context.Context, timeout time.Duration, progress func() removeProgress) (stop func()) {
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
				activity.RecordHeartbeat(ctx, progress())
			}
		}
	}()
	return func() { close(done) }
}
