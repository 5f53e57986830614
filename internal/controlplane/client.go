package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/trace"
)

// Defaults for Config fields left zero.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultHTTPRetryMax   = 2
	DefaultRetryWaitMin   = 200 * time.Millisecond
	DefaultRetryWaitMax   = 1 * time.Second
	DefaultMaxRetryAfter  = 5 * time.Minute
	// DefaultBodyLimit bounds how much of an error body is read; the rest is discarded.
	DefaultBodyLimit = 64 << 10
	// DefaultListBodyLimit bounds a List Connections body; a longer one fails the listing.
	DefaultListBodyLimit = 32 << 20
	// DefaultUserAgent is sent when Config.UserAgent is empty.
	DefaultUserAgent = "agent-connections-worker"
)

// Logger is what the client logs through: go-retryablehttp's LeveledLogger and Temporal's
// log.Logger both have these methods, so either can be passed without an adapter. keyvals
// alternate keys and values; the client never puts a credential in them.
type Logger interface {
	Debug(msg string, keyvals ...any)
	Info(msg string, keyvals ...any)
	Warn(msg string, keyvals ...any)
	Error(msg string, keyvals ...any)
}

// nopLogger is the Logger of a call without one.
type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}

func loggerOrNop(l Logger) Logger {
	if l == nil {
		return nopLogger{}
	}
	return l
}

// HTTPRetry configures the short in-process retries of one call. They cover only what is safe
// and quick: a connection refused or reset, and 502/503/504 without Retry-After. Everything
// slower (429, Retry-After, timeouts) goes back to the caller as a retryable *Error with the
// delay, so Temporal's schedule, visible in history, does the waiting.
type HTTPRetry struct {
	Max     int           // retries after the first request; 0 means DefaultHTTPRetryMax, negative disables
	WaitMin time.Duration // first wait; 0 means DefaultRetryWaitMin
	WaitMax time.Duration // longest wait; 0 means DefaultRetryWaitMax
}

// Config is what New needs to build a Client.
type Config struct {
	// BaseURL is the control plane's base, such as https://api.host.langchain.com or a
	// self-hosted https://host/api-host; any path prefix is kept.
	BaseURL string
	// Credentials supplies the headers for each request. Required.
	Credentials CredentialSource
	// RequestTimeout bounds one HTTP request (connect, headers and body). 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// UserAgent names the worker and its version. Empty means DefaultUserAgent.
	UserAgent string
	// HTTPRetry tunes the in-process retries.
	HTTPRetry HTTPRetry
	// MaxRetryAfter caps a Retry-After delay handed back in an *Error. 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Logger receives go-retryablehttp's own messages; nil silences them. Each call logs its own
	// lines through the logger it is given.
	Logger Logger
	// RequestsPerSecond caps the requests this client sends, across every call (the API allows
	// 2000 a minute per key; the worker sets each replica's share with SetPace, internal/fleet).
	// 0 means no steady limit. A 429's Retry-After pauses every request either way.
	RequestsPerSecond float64
	// Burst is how many requests may leave at once under RequestsPerSecond (at least 1).
	Burst int
	// OnRateLimited, when set, is called with the Retry-After of every 429 after it paused this
	// client (internal/fleet passes the pause on to the other replicas). It must not block.
	OnRateLimited func(retryAfter time.Duration)
	// Transport replaces the pooled keep-alive transport (tests, tracing wrappers).
	Transport http.RoundTripper
	// Metrics receives request, Retry-After and pacing measurements; nil records none.
	Metrics Metrics
	// TracerProvider gives the tracer of one client span per request, a child of the span in the
	// call's context; nil traces nothing.
	TracerProvider trace.TracerProvider
}

// Client sends the control plane's requests. It is safe for concurrent use; one Client shares
// its connection pool, pacing and 429 pause across every call. Build it with New.
type Client struct {
	http          *retryablehttp.Client
	base          *url.URL
	baseURL       string // base.String(), for the hot path's URL
	creds         CredentialSource
	userAgent     string
	maxRetryAfter time.Duration
	timeout       time.Duration // RequestTimeout
	pacer         *pacer
	metrics       Metrics
	onRateLimited func(time.Duration)

	// listBodyLimit is DefaultListBodyLimit; tests shorten it.
	listBodyLimit int64
}

// New validates cfg and builds the client.
func New(cfg Config) (*Client, error) {
	base, err := ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials == nil {
		return nil, errors.New("control plane client: no credential source")
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("control plane client: request timeout %s is negative", cfg.RequestTimeout)
	}
	if cfg.RequestsPerSecond < 0 {
		return nil, fmt.Errorf("control plane client: requests per second %v is negative", cfg.RequestsPerSecond)
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	p := newPacer(cfg.RequestsPerSecond, cfg.Burst)
	return &Client{
		http:          newHTTPClient(cfg, p),
		base:          base,
		baseURL:       base.String(),
		creds:         cfg.Credentials,
		userAgent:     cfg.UserAgent,
		maxRetryAfter: cfg.MaxRetryAfter,
		timeout:       cfg.RequestTimeout,
		pacer:         p,
		metrics:       cfg.Metrics,
		onRateLimited: cfg.OnRateLimited,
		listBodyLimit: DefaultListBodyLimit,
	}, nil
}

// ParseBaseURL checks a control-plane base URL: absolute http(s), no credentials, query or
// fragment. A trailing slash is dropped; a path prefix (EU or self-hosted installs) is kept.
func ParseBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("control plane URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input; it carries no credential we could not also refuse below,
		// but keep the message short and free of it all the same.
		return nil, errors.New("control plane URL does not parse")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("control plane URL must start with http:// or https://, got scheme %q", u.Scheme)
	case u.Host == "":
		return nil, errors.New("control plane URL has no host")
	case u.User != nil:
		return nil, errors.New("control plane URL must not carry credentials; set LANGSMITH_API_KEY instead")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("control plane URL must not have a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// connectionsURL is the List Connections route under the base, with the agent ID path-escaped.
func (c *Client) connectionsURL(agentID string) string {
	return c.base.JoinPath("v2", "auth", "agents", url.PathEscape(agentID), "connections").String()
}

// connectionURL is the Remove Connection route under the base, with both IDs path-escaped.
// JoinPath treats its elements as escaped, so each ID is escaped exactly once here.
func (c *Client) connectionURL(agentID, connectionID string) string {
	// The same URL as JoinPath gives: the base has no trailing slash, and ValidateID refuses the
	// "." and ".." that JoinPath would clean; built by concatenation, it is one allocation.
	return c.baseURL + "/v2/auth/agents/" + url.PathEscape(agentID) + "/connections/" + url.PathEscape(connectionID)
}

// errNoCredentials marks a credential source that failed; it is not retried.
var errNoCredentials = errors.New("no control plane credentials")

// ErrTooLateToSend is the error of a detached POST that was not sent because the call's deadline
// is nearer than the request timeout. Sent, it could outlive the call: a Temporal attempt that
// timed out would be retried while its POST is still in flight, and the retry's check for the
// token would miss the connection that POST is creating.
var ErrTooLateToSend = errors.New("not sent: the call's deadline is nearer than the request timeout")

// tooLateToSend is ErrTooLateToSend when the request in reqCtx must end by the call's deadline
// (requestInfo.endByDeadline) and call's deadline is nearer than timeout; nil otherwise.
func tooLateToSend(call, reqCtx context.Context, timeout time.Duration) error {
	info, ok := reqCtx.Value(requestInfoKey{}).(*requestInfo)
	if !ok || !info.endByDeadline {
		return nil
	}
	if deadline, ok := call.Deadline(); ok && time.Until(deadline) < timeout {
		return ErrTooLateToSend
	}
	return nil
}

// send builds one request with the credential headers and runs it through the retrying client.
// info names the route and IDs for the metrics and spans of its requests.
func (c *Client) send(ctx context.Context, tracker *requestTracker, method, target string, info *requestInfo) (*http.Response, error) {
	return c.sendBody(ctx, tracker, method, target, info, nil)
}

// sendBody is send with a JSON body (nil: none). The body is bytes, so an in-process retry
// sends it again whole.
func (c *Client) sendBody(ctx context.Context, tracker *requestTracker, method, target string, info *requestInfo, body []byte) (*http.Response, error) {
	creds, err := c.creds.Credentials()
	if err != nil {
		// The source's error names a file or variable, never a key.
		return nil, fmt.Errorf("%w: %v", errNoCredentials, err)
	}
	if creds.APIKey == "" && creds.BearerToken == "" {
		return nil, fmt.Errorf("%w: neither an API key nor a bearer token is set", errNoCredentials)
	}
	info.tracker = tracker
	reqCtx := context.WithValue(ctx, requestInfoKey{}, info)
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(reqCtx, method, target, raw)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.userAgent)
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
	if err := timedWait(ctx, c.pacer, c.metrics); err != nil {
		return nil, err
	}
	if info.detach {
		if err := ctx.Err(); err != nil {
			return nil, err // ended while it waited: nothing was sent
		}
		if err := tooLateToSend(ctx, reqCtx, c.timeout); err != nil {
			return nil, err
		}
		info.stop = ctx
		req = req.WithContext(context.WithoutCancel(reqCtx))
	}
	return c.http.Do(req)
}

// Redact removes the current credentials from text that came from the server (or from another
// worker's failure message), in case a proxy or a misbehaving server echoes a header back.
func (c *Client) Redact(s string) string {
	creds, err := c.creds.Credentials()
	if err != nil {
		return s
	}
	return redactSecrets(s, creds.APIKey, creds.BearerToken)
}

// readRedacted reads a response body (bounded, as readBody) and removes the credentials from all
// of it before anything clips or quotes it, so a key echoed across an excerpt's cut never leaves a
// prefix behind.
func (c *Client) readRedacted(body io.Reader, limit int64) ([]byte, bool, error) {
	data, truncated, err := readBody(body, limit)
	return []byte(c.Redact(string(data))), truncated, err
}

// drainAndClose reads what is left of a body (bounded) so the keep-alive connection is reused.
func drainAndClose(resp *http.Response) {
	_, _, _ = readBody(resp.Body, DefaultBodyLimit)
	_ = resp.Body.Close()
}
