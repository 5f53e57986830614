package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/worker"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/langsmithenv"
	"github.com/agentops/agentconnections/internal/logging"
	"github.com/agentops/agentconnections/internal/telemetry"
)

// Names of the worker's own environment variables; the LangSmith ones (the key, the workspace, the
// control plane URL and their aliases) are internal/langsmithenv's. The Temporal connection settings
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE) are read
// by the SDK's envconfig, not here; TEMPORAL_API_KEY is named only to refuse it next to the file.
const (
	envAPIKey                  = langsmithenv.EnvAPIKey
	envAPIKeyFile              = langsmithenv.EnvAPIKeyFile
	envBearerToken             = langsmithenv.EnvBearerToken
	envDeploymentName          = "TEMPORAL_DEPLOYMENT_NAME"
	envWorkerBuildID           = "TEMPORAL_WORKER_BUILD_ID"
	envTemporalAPIKey          = "TEMPORAL_API_KEY"
	envTemporalAPIKeyFile      = "TEMPORAL_API_KEY_FILE"
	envRequestTimeout          = "LANGSMITH_REQUEST_TIMEOUT"
	envHTTPAddress             = "WORKER_HTTP_ADDRESS"
	envStopTimeout             = "WORKER_STOP_TIMEOUT"
	envMaxConcurrentActivities = "WORKER_MAX_CONCURRENT_ACTIVITIES"
	envRequestsPerSecond       = "LANGSMITH_REQUESTS_PER_SECOND"
	envRequestBurst            = "LANGSMITH_REQUEST_BURST"
	envTaskQueueActivitiesRate = "WORKER_TASK_QUEUE_ACTIVITIES_PER_SECOND"
	envLogFormat               = "LOG_FORMAT"
	envLogLevel                = "LOG_LEVEL"
)

// Defaults of the worker's configuration.
const (
	defaultRequestTimeout          = controlplane.DefaultRequestTimeout
	maxRequestTimeout              = 5 * time.Minute
	defaultHTTPAddress             = "127.0.0.1:9090"
	defaultStopTimeout             = 30 * time.Second
	defaultMaxConcurrentActivities = 100
	// defaultRequestsPerSecond keeps the fleet (every replica sharing the task queue and key, which
	// divide it among themselves: internal/fleet) under the API's 2000 requests a minute per key
	// (33.3/s) with room for other clients of the key.
	defaultRequestsPerSecond = 30.0
	defaultRequestBurst      = 10
	defaultLogFormat         = logging.FormatJSON
	defaultLogLevel          = "info"
)

// config is the worker's own configuration, read and checked once at start.
type config struct {
	TaskQueue string
	// Credentials holds the API key (from the variable, or as first read from APIKeyFile), the
	// tenant ID and the bearer token. Its String method prints none of them.
	Credentials controlplane.Credentials
	// APIKeyFile is the file the key is re-read from when it changes; empty when the key came
	// from LANGSMITH_API_KEY or only a bearer token is set.
	APIKeyFile string
	// keyFileStamp is the file's state when Credentials.APIKey was read from it.
	keyFileStamp controlplane.FileStamp

	ControlPlaneURL *url.URL
	RequestTimeout  time.Duration
	// HTTPAddress is where /metrics, /healthz and /readyz are served; empty turns the server, and
	// with it every metric, off.
	HTTPAddress             string
	StopTimeout             time.Duration
	MaxConcurrentActivities int
	// RequestsPerSecond and RequestBurst pace this replica's requests to the control plane.
	RequestsPerSecond float64
	RequestBurst      int
	// TaskQueueActivitiesPerSecond is Temporal's server-side limit for the whole task queue,
	// shared by every replica (0: off).
	TaskQueueActivitiesPerSecond float64
	LogFormat                    string
	LogLevel                     string
	// ServiceName is the OpenTelemetry service.name (OTEL_SERVICE_NAME).
	ServiceName string
	// Tracing says whether spans are exported over OTLP, and how (the standard OTEL_* variables).
	Tracing telemetry.TraceConfig
	// Versioning is the worker deployment version the worker polls as; the zero value runs it
	// unversioned (versioning.go).
	Versioning worker.WorkerDeploymentVersion
	// TemporalAPIKeyFile is the file the Temporal API key is read, and re-read, from; empty when
	// the key (if any) comes from TEMPORAL_API_KEY or a profile (temporalkey.go).
	TemporalAPIKeyFile string
	// TemporalKey holds the key as first read from TemporalAPIKeyFile, in APIKey: exported, so
	// that printing the configuration calls its String method, which shows no key.
	TemporalKey controlplane.Credentials
	// temporalKeyStamp is the file's state when TemporalKey was read from it.
	temporalKeyStamp controlplane.FileStamp

	// langSmith is the environment with the LangSmith aliases resolved (internal/langsmithenv).
	langSmith *langsmithenv.Env
	// notes are logged once the logger exists: choices made and suspicions (langsmith.go).
	notes []note
}

// configError names the variable (or flag) that is missing or malformed. Its message never holds a
// credential.
type configError struct {
	name    string
	problem string
}

func (e *configError) Error() string { return e.name + ": " + e.problem }

func problem(name, format string, args ...any) *configError {
	return &configError{name: name, problem: fmt.Sprintf(format, args...)}
}

// loadConfig reads the worker's configuration from lookup. logFormatFlag, when set, overrides
// LOG_FORMAT.
func loadConfig(lookup func(string) (string, bool), logFormatFlag *string) (config, error) {
	langSmith, err := langsmithenv.Resolve(lookup)
	if err != nil {
		return config{}, asConfigError(err)
	}
	lookup = langSmith.Lookup
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	cfg := config{
		TaskQueue:               ac.DefaultTaskQueue,
		RequestTimeout:          defaultRequestTimeout,
		HTTPAddress:             defaultHTTPAddress,
		StopTimeout:             defaultStopTimeout,
		MaxConcurrentActivities: defaultMaxConcurrentActivities,
		RequestsPerSecond:       defaultRequestsPerSecond,
		RequestBurst:            defaultRequestBurst,
		LogFormat:               defaultLogFormat,
		LogLevel:                defaultLogLevel,
		ServiceName:             telemetry.DefaultServiceName,
		langSmith:               langSmith,
	}
	// Logging first, so that a bad log setting is reported before anything that would log.
	for _, step := range []func() error{
		func() error { return loadLogging(get, logFormatFlag, &cfg) },
		func() error { return loadTaskQueue(get, &cfg) },
		func() error { return loadCredentials(&cfg) },
		func() error { return loadControlPlane(get, &cfg) },
		func() error { return loadServing(lookup, get, &cfg) },
		func() error { return loadLimits(get, &cfg) },
		func() error { return loadTelemetry(lookup, get, &cfg) },
		func() error { return loadVersioning(get, &cfg) },
		func() error { return loadTemporalKeyFile(get, &cfg) },
	} {
		if err := step(); err != nil {
			return config{}, err
		}
	}
	noteNoWorkspace(&cfg)
	return cfg, nil
}

func loadLogging(get func(string) string, logFormatFlag *string, cfg *config) error {
	if v := get(envLogFormat); v != "" {
		cfg.LogFormat = v
	}
	formatSource := envLogFormat
	if logFormatFlag != nil {
		cfg.LogFormat, formatSource = *logFormatFlag, "--log-format"
	}
	if cfg.LogFormat != logging.FormatJSON && cfg.LogFormat != logging.FormatConsole {
		return problem(formatSource, "%q is not one of %s, %s", cfg.LogFormat, logging.FormatJSON, logging.FormatConsole)
	}
	if v := get(envLogLevel); v != "" {
		if _, err := logging.ParseLevel(v); err != nil {
			return problem(envLogLevel, "%q is not one of debug, info, warn, error", v)
		}
		cfg.LogLevel = v
	}
	return nil
}

func loadTaskQueue(get func(string) string, cfg *config) error {
	if v := get(ac.TaskQueueEnv); v != "" {
		if strings.TrimSpace(v) != v {
			return problem(ac.TaskQueueEnv, "%q has leading or trailing whitespace", v)
		}
		cfg.TaskQueue = v
	}
	return nil
}

// loadControlPlane reads where the control plane is and how long one request may take. Unset,
// the URL follows LANGSMITH_ENDPOINT's region; set, it is checked against it.
func loadControlPlane(get func(string) string, cfg *config) error {
	u, notes, err := cfg.langSmith.ControlPlaneURL()
	if err != nil {
		return asConfigError(err)
	}
	addNotes(cfg, notes...)
	cfg.ControlPlaneURL = u
	cfg.RequestTimeout, err = duration(envRequestTimeout, get(envRequestTimeout), defaultRequestTimeout, false)
	if err == nil && cfg.RequestTimeout > maxRequestTimeout {
		// A restore batch sends no POST that could outlive its 15-minute attempt: past this, a
		// long batch would stop sending early, and past 15 minutes it would send nothing.
		err = fmt.Errorf("%s: %s is over the maximum of %s (one request must end well within an activity's timeout)",
			envRequestTimeout, cfg.RequestTimeout, maxRequestTimeout)
	}
	return err
}

// loadServing reads the stop timeout and the HTTP address; set but empty means "no HTTP server",
// so the address tells unset from empty.
func loadServing(lookup func(string) (string, bool), get func(string) string, cfg *config) error {
	var err error
	if cfg.StopTimeout, err = duration(envStopTimeout, get(envStopTimeout), defaultStopTimeout, true); err != nil {
		return err
	}
	if v, ok := lookup(envHTTPAddress); ok {
		if v != "" {
			if err := checkListenAddress(v); err != nil {
				return problem(envHTTPAddress, "%q is not host:port such as %s (%v)", v, defaultHTTPAddress, err)
			}
		}
		cfg.HTTPAddress = v
	}
	return nil
}

// loadLimits reads the concurrency and rate limits.
func loadLimits(get func(string) string, cfg *config) error {
	var err error
	if cfg.MaxConcurrentActivities, err = positive(envMaxConcurrentActivities, get(envMaxConcurrentActivities), cfg.MaxConcurrentActivities); err != nil {
		return err
	}
	if cfg.RequestsPerSecond, err = rate(envRequestsPerSecond, get(envRequestsPerSecond), defaultRequestsPerSecond); err != nil {
		return err
	}
	if cfg.TaskQueueActivitiesPerSecond, err = rate(envTaskQueueActivitiesRate, get(envTaskQueueActivitiesRate), 0); err != nil {
		return err
	}
	cfg.RequestBurst, err = positive(envRequestBurst, get(envRequestBurst), cfg.RequestBurst)
	return err
}

// positive reads a positive integer, or keeps def when raw is empty.
func positive(name, raw string, def int) (int, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n <= 0 {
		return 0, problem(name, "%q is not a positive integer", raw)
	}
	return n, nil
}

func loadTelemetry(lookup func(string) (string, bool), get func(string) string, cfg *config) error {
	if v := strings.TrimSpace(get(telemetry.EnvServiceName)); v != "" {
		cfg.ServiceName = v
	}
	var err error
	if cfg.Tracing, err = telemetry.LoadTraceConfig(lookup); err != nil {
		var setting *telemetry.SettingError
		if errors.As(err, &setting) {
			return problem(setting.Name, "%s", setting.Problem)
		}
		return err
	}
	return nil
}

// rate reads a non-negative number per second; 0 turns the limit off.
func rate(name, raw string, def float64) (float64, error) {
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, problem(name, "%q is not a number of requests per second such as 30 (0 turns the limit off)", raw)
	}
	return v, nil
}

// loadCredentials fills cfg.Credentials and cfg.APIKeyFile. Its errors name variables and the key
// file's path, never a value.
func loadCredentials(cfg *config) error {
	creds, err := cfg.langSmith.Credentials()
	if err != nil {
		return asConfigError(err)
	}
	if !creds.Set() {
		return problem(envAPIKey, "not set; set %s or %s (or %s)", envAPIKey, envAPIKeyFile, envBearerToken)
	}
	cfg.Credentials, cfg.APIKeyFile, cfg.keyFileStamp = creds.Credentials, creds.KeyFile, creds.KeyFileStamp
	return nil
}

// duration parses a Go duration; empty means def.
func duration(name, raw string, def time.Duration, zeroOK bool) (time.Duration, error) {
	if raw == "" {
		return def, nil
	}
	d, err := time.ParseDuration(raw)
	switch {
	case err != nil:
		return 0, problem(name, "%q is not a Go duration such as 30s", raw)
	case d < 0:
		return 0, problem(name, "%q must not be negative", raw)
	case d == 0 && !zeroOK:
		return 0, problem(name, "%q must be greater than zero", raw)
	}
	return d, nil
}

// checkListenAddress accepts host:port with a numeric port (the host may be empty for all
// interfaces).
func checkListenAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}
