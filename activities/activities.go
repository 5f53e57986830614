// Package activities holds the Temporal activities of the worker: RemoveConnection sends the
// control plane's DELETE for one agent connection and turns the answer into a result or a
// classified failure, as the status table in docs/contract.md says; ListConnections and
// RemoveConnections do the same for a whole agent's teardown; CheckTeardownClaim,
// AwaitTeardownOutcome and AwaitStandaloneRemoval keep a teardown and a standalone removal of the
// same connection from sending DELETEs at the same time. The Activities struct carries its dependencies (HTTP client,
// base URL, credentials, coordinator); the worker registers a pointer to it, so every exported
// method is an activity named after it.
package activities

import (
	"errors"
	"fmt"
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
	// DefaultClaimPollInterval is how often AwaitTeardownOutcome asks the teardown again.
	DefaultClaimPollInterval = time.Second
	// DefaultWaitHeartbeat is how often AwaitStandaloneRemoval heartbeats while it waits (more
	// often when the heartbeat timeout asks for it).
	DefaultWaitHeartbeat = 5 * time.Second
)

// Credentials are what the control plane authenticates a request with. They stay inside the
// worker: never in workflow input, results, errors, heartbeats, logs or metrics.
type Credentials struct {
	APIKey      string // sent as X-Api-Key when set
	TenantID    string // sent as X-Tenant-Id when set
	BearerToken string // sent as Authorization: Bearer when set
}

// String never prints a credential, so a stray %v cannot leak one.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{api_key_set=%t tenant_id_set=%t bearer_token_set=%t}",
		c.APIKey != "", c.TenantID != "", c.BearerToken != "")
}

// GoString keeps %#v as safe as %v.
func (c Credentials) GoString() string { return c.String() }

// CredentialSource returns the credentials to send with the next request. A source may re-read a
// rotated key; it is called once per request.
type CredentialSource interface {
	Credentials() (Credentials, error)
}

// StaticCredentials is a CredentialSource that never changes.
type StaticCredentials Credentials

// Credentials returns the fixed credentials.
func (s StaticCredentials) Credentials() (Credentials, error) { return Credentials(s), nil }

// String never prints a credential.
func (s StaticCredentials) String() string { return Credentials(s).String() }

// GoString keeps %#v as safe as %v.
func (s StaticCredentials) GoString() string { return s.String() }

// HTTPRetry configures the short in-process retries of one Temporal attempt. They cover only what
// is safe and quick: a connection refused or reset, and 502/503/504 without Retry-After. Everything
// slower (429, Retry-After, timeouts) goes back to Temporal, whose schedule is visible in history.
type HTTPRetry struct {
	Max     int           // retries after the first request; 0 means DefaultHTTPRetryMax, negative disables
	WaitMin time.Duration // first wait; 0 means DefaultRetryWaitMin
	WaitMax time.Duration // longest wait; 0 means DefaultRetryWaitMax
}

// Config is what New needs to build the activities.
type Config struct {
	// BaseURL is the control plane's base, such as https://api.host.langchain.com or a
	// self-hosted https://host/api-host; any path prefix is kept.
	BaseURL string
	// Credentials supplies the headers for each request. Required.
	Credentials CredentialSource
	// RequestTimeout bounds one HTTP request (connect, headers and body). 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// UserAgent names the worker and its version.
	UserAgent string
	// HTTPRetry tunes the in-process retries.
	HTTPRetry HTTPRetry
	// MaxRetryAfter caps a Retry-After delay handed to Temporal. 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Logger receives go-retryablehttp's own messages; nil silences them.
	Logger retryablehttp.LeveledLogger
	// RequestsPerSecond caps the requests these activities send, across every removal and batch
	// in this worker (the API allows 2000 a minute per key; split it across replicas). 0 means
	// no steady limit. A 429's Retry-After pauses every request either way.
	RequestsPerSecond float64
	// Burst is how many requests may leave at once under RequestsPerSecond (at least 1).
	Burst int
	// Transport replaces the pooled keep-alive transport (tests, tracing wrappers).
	Transport http.RoundTripper
	// Metrics receives request, removal, Retry-After and pacing measurements; nil records none.
	Metrics Metrics
	// TracerProvider gives the tracer of one client span per control plane request, a child of
	// the activity's span; nil traces nothing.
	TracerProvider trace.TracerProvider
	// Coordinator tells the teardown and standalone removals of the same connection about each
	// other (TemporalCoordinator in a worker). Nil turns coordination off: every activity then
	// behaves as if nothing else removed connections.
	Coordinator Coordinator
}

// Activities implements the worker's activities. Build it with New.
type Activities struct {
	client        *retryablehttp.Client
	base          *url.URL
	creds         CredentialSource
	userAgent     string
	maxRetryAfter time.Duration
	coord         Coordinator
	pacer         *pacer
	metrics       Metrics

	// Tests shorten these; zero means the Default* constant.
	listBodyLimit int64
	pollInterval  time.Duration
	waitHeartbeat time.Duration
}

// New validates cfg and builds the activities with their HTTP client.
func New(cfg Config) (*Activities, error) {
	base, err := ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials == nil {
		return nil, errors.New("activities: no credential source")
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("activities: request timeout %s is negative", cfg.RequestTimeout)
	}
	if cfg.RequestsPerSecond < 0 {
		return nil, fmt.Errorf("activities: requests per second %v is negative", cfg.RequestsPerSecond)
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "agent-connections-worker"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	p := newPacer(cfg.RequestsPerSecond, cfg.Burst)
	return &Activities{
		client:        newHTTPClient(cfg, p),
		metrics:       cfg.Metrics,
		pacer:         p,
		base:          base,
		creds:         cfg.Credentials,
		userAgent:     cfg.UserAgent,
		maxRetryAfter: cfg.MaxRetryAfter,
		coord:         cfg.Coordinator,
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
func (a *Activities) connectionsURL(agentID string) string {
	return a.base.JoinPath("v2", "auth", "agents", url.PathEscape(agentID), "connections").String()
}

// connectionURL is the Remove Connection route under the base, with both IDs path-escaped.
// JoinPath treats its elements as escaped, so each ID is escaped exactly once here.
func (a *Activities) connectionURL(agentID, connectionID string) string {
	return a.base.JoinPath("v2", "auth", "agents", url.PathEscape(agentID), "connections", url.PathEscape(connectionID)).String()
}
