// Command worker polls the agent-connections task queue and runs RemoveConnectionWorkflow and its
// RemoveConnection activity against the LangSmith control plane. It reads its settings from the
// environment (see config.go and docs/contract.md), serves /healthz and /readyz, and stops
// gracefully on SIGINT or SIGTERM, giving in-flight removals WORKER_STOP_TIMEOUT to finish.
//
// Exit codes: 0 after a requested stop (or --version, -h), 1 when it cannot connect to Temporal,
// listen on WORKER_HTTP_ADDRESS, start polling, or hits a fatal worker error, 2 for a missing or
// malformed setting or a bad flag. `worker --probe URL` is a health check instead (probe.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	"go.opentelemetry.io/otel"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/logging"
	"github.com/agentops/agentconnections/internal/telemetry"
	"github.com/agentops/agentconnections/workflows"
)

// heartbeatThrottle bounds how long the SDK holds back a heartbeat, and so how much recorded
// progress a crash can lose.
const heartbeatThrottle = time.Second

// dialTimeout bounds the first connection to Temporal, so a wrong address fails the start instead
// of hanging it.
const dialTimeout = 10 * time.Second

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitConfig  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling: a second Ctrl-C ends the process at
	// once instead of waiting for WORKER_STOP_TIMEOUT.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole worker: it returns when ctx is done (after a graceful stop) or when it cannot
// go on, with the process exit code. Each step is a function below, in the order they run.
func run(ctx context.Context, args, vars []string, stdout, stderr io.Writer) int {
	f, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	if f.probeURL != nil {
		return runProbe(ctx, *f.probeURL, stderr) // a health check: no configuration read at all
	}
	env := environ.Env(vars)
	cfg, err := loadConfig(env.LookupEnv, f.logFormat)
	if err != nil {
		return fail(stderr, exitConfig, "%v", err)
	}
	clientOpts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: env})
	if err != nil {
		return fail(stderr, exitConfig, "temporal client settings (TEMPORAL_*): %v", err)
	}
	zl, err := logging.New(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		return fail(stderr, exitConfig, "%v", err)
	}
	defer func() { _ = zl.Sync() }()
	logger := logging.NewAdapter(zl)
	useTemporalKeyFile(&clientOpts, cfg, logger)

	tel, err := startTelemetry(ctx, cfg, f.version, logger)
	if err != nil {
		return fail(stderr, exitFailure, "telemetry: %v", err)
	}
	defer shutdownTelemetry(ctx, tel, logger)

	// Listen before dialing: /healthz answers (and /readyz says 503) while the dial is in progress.
	h := &health{metrics: tel.Handler()}
	stopHTTP, err := serveHTTP(ctx, cfg.HTTPAddress, h.handler(), logger)
	if err != nil {
		return fail(stderr, exitFailure, "%s: %v", envHTTPAddress, err)
	}
	defer stopHTTP()

	c, target, err := dial(ctx, clientOpts, logger, tel)
	switch {
	case err != nil && ctx.Err() != nil:
		return exitOK // asked to stop while still connecting: nothing ran, nothing to hand back
	case err != nil:
		return fail(stderr, exitFailure, "%v", err)
	}
	defer c.Close()
	if cfg.HTTPAddress != "" {
		// /readyz also asks whether the server still answers (ready.go).
		defer h.watchInBackground(ctx, c, logger, target.hostPort)()
	}

	member, err := newFleetMember(cfg, c, logger)
	if err != nil {
		return fail(stderr, exitConfig, "%v", err)
	}
	acts, credMode, err := newActivities(cfg, f.version, logger, tel, c, member)
	if err != nil {
		return fail(stderr, exitConfig, "%v", err)
	}
	fatal := make(chan error, 1)
	w := newWorker(c, cfg, acts, fatal)
	if err := w.Start(); err != nil {
		return fail(stderr, exitFailure, "start polling task queue %s: %v", cfg.TaskQueue, err)
	}
	h.setPolling(true)
	defer member.start(ctx)()
	target.apiKey = temporalKeyMode(clientOpts, cfg)
	logStarted(logger, cfg, f.version, target, credMode)
	return waitForStop(ctx, fatal, logger, cfg, func() {
		// Not ready first, so no new traffic is routed here while the pollers wind down.
		h.setPolling(false)
		w.Stop()
	})
}

// flags are the command line's settings; everything else comes from the environment.
type flags struct {
	logFormat *string // nil unless --log-format was given
	probeURL  *string // nil unless --probe was given
	version   string
}

// parseFlags reads the command line. done is true when run should return code at once (--version,
// -h, a bad flag or argument).
func parseFlags(args []string, stdout, stderr io.Writer) (f flags, code int, done bool) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), "usage: worker [--log-format json|console] [--version] [--probe URL] (settings come from the environment)")
	}
	logFormat := fs.String("log-format", "", "log format, json or console (overrides "+envLogFormat+")")
	showVersion := fs.Bool("version", false, "print the version and exit")
	probeURL := fs.String("probe", "", "GET `URL` once (a health check), exit 0 on a 2xx answer and 1 otherwise; reads no settings")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, exitOK, true
		}
		return f, exitConfig, true
	}
	if fs.NArg() > 0 {
		return f, fail(stderr, exitConfig, "unexpected argument %q; settings come from the environment", fs.Arg(0)), true
	}
	f.version = resolveVersion(version, debug.ReadBuildInfo)
	if *showVersion {
		_, _ = fmt.Fprintln(stdout, "agent-connections-worker", f.version)
		return f, exitOK, true
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "log-format":
			f.logFormat = logFormat
		case "probe":
			f.probeURL = probeURL
		}
	})
	return f, exitOK, false
}

// fail prints one line (whatever the wrapped errors carry) and returns code.
func fail(stderr io.Writer, code int, format string, a ...any) int {
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	_, _ = fmt.Fprintln(stderr, "worker: "+msg)
	return code
}

// startTelemetry sets up metrics and traces before anything that reports to them. Spans and
// metrics hold no credential: the activities label by route template and status class, and their
// spans carry IDs, never headers.
func startTelemetry(ctx context.Context, cfg config, ver string, logger log.Logger) (*telemetry.Telemetry, error) {
	tel, err := telemetry.New(ctx, telemetry.Options{
		ServiceName:    cfg.ServiceName,
		ServiceVersion: ver,
		Metrics:        cfg.HTTPAddress != "",
		Traces:         cfg.Tracing,
		OnError: func(err error) {
			logger.Warn("temporal sdk metric failed", "error", err.Error())
		},
	})
	if err != nil {
		return nil, err
	}
	// The exporters report failures (an unreachable collector) through OpenTelemetry's process-wide
	// handler; route them into this worker's log instead of the standard logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", "error", err.Error())
	}))
	return tel, nil
}

// shutdownTelemetry flushes the spans still buffered; bounded, so an unreachable collector cannot
// hold the exit.
func shutdownTelemetry(ctx context.Context, tel *telemetry.Telemetry, logger log.Logger) {
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tel.Shutdown(shutdownCtx); err != nil {
		logger.Warn("telemetry shutdown failed", "error", err.Error())
	}
}

// serveHTTP serves /metrics, /healthz and /readyz on addr until the returned stop is called; an
// empty addr serves nothing.
func serveHTTP(ctx context.Context, addr string, handler http.Handler, logger log.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health server stopped", "error", err.Error())
		}
	}()
	return func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}, nil
}

// temporalTarget is where the client connects, and with which API key (temporalKeyMode), for
// messages and logs.
type temporalTarget struct{ hostPort, namespace, apiKey string }

// dial connects to Temporal with the envconfig options plus this worker's logger, metrics and
// tracing, bounded by dialTimeout so a wrong address fails the start instead of hanging it.
func dial(ctx context.Context, opts client.Options, logger log.Logger, tel *telemetry.Telemetry) (client.Client, temporalTarget, error) {
	target := temporalTarget{hostPort: opts.HostPort, namespace: opts.Namespace}
	if target.hostPort == "" {
		target.hostPort = client.DefaultHostPort
	}
	if target.namespace == "" {
		target.namespace = client.DefaultNamespace
	}
	tracing, err := tel.TracingInterceptor()
	if err != nil {
		return nil, target, fmt.Errorf("tracing interceptor: %w", err)
	}
	opts.Logger = logger
	opts.MetricsHandler = tel.TemporalMetricsHandler()
	opts.Interceptors = append(opts.Interceptors, tracing)
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := client.DialContext(dialCtx, opts)
	if err != nil {
		return nil, target, fmt.Errorf("cannot connect to Temporal at %s (namespace %s): %w", target.hostPort, target.namespace, err)
	}
	return c, target, nil
}

// newActivities builds the control plane client with the configured credentials (static, or
// re-read from LANGSMITH_API_KEY_FILE) and the activities on it, with a coordinator on client c,
// so a teardown and a standalone removal of the same connection stay out of each other's way.
// credMode names the credential kind for the start-up log. The client's 429s go to member.
func newActivities(cfg config, ver string, logger log.Logger, tel *telemetry.Telemetry, c client.Client, member *fleetMember) (acts *activities.Activities, credMode string, err error) {
	var creds controlplane.CredentialSource = controlplane.StaticCredentials(cfg.Credentials)
	credMode = "api_key"
	if cfg.APIKeyFile != "" {
		creds = controlplane.NewKeyFileSource(cfg.APIKeyFile, cfg.Credentials.APIKey, cfg.keyFileStamp, cfg.Credentials, log.With(logger, "component", "api-key-file"))
		credMode = "api_key_file"
	} else if cfg.Credentials.APIKey == "" {
		credMode = "bearer_token"
	}
	requests, removals := metricsOf(tel)
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:           cfg.ControlPlaneURL.String(),
		Credentials:       creds,
		RequestTimeout:    cfg.RequestTimeout,
		RequestsPerSecond: cfg.RequestsPerSecond,
		Burst:             cfg.RequestBurst,
		UserAgent:         "agent-connections-worker/" + ver,
		Logger:            log.With(logger, "component", "http"),
		Metrics:           requests,
		TracerProvider:    tel.TracerProvider(),
		OnRateLimited:     member.rateLimited,
	})
	if err != nil {
		return nil, credMode, err
	}
	member.cp = cp
	acts, err = activities.New(activities.Config{
		ControlPlane: cp,
		Metrics:      removals,
		Coordinator:  activities.TemporalCoordinator{Client: c},
	})
	return acts, credMode, err
}

// newWorker builds the worker on the task queue with the workflows and activities registered;
// a fatal worker error is sent on fatal.
func newWorker(c client.Client, cfg config, acts *activities.Activities, fatal chan<- error) worker.Worker {
	w := worker.New(c, cfg.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize: cfg.MaxConcurrentActivities,
		TaskQueueActivitiesPerSecond:       cfg.TaskQueueActivitiesPerSecond,
		WorkerStopTimeout:                  cfg.StopTimeout,
		// Heartbeats carry the request counts and a batch's finished connections. The SDK sends
		// the first at once and buffers the rest for up to 80% of the heartbeat timeout (24 s
		// here), so a crash could lose a whole batch's progress; at most a second is lost now.
		MaxHeartbeatThrottleInterval: heartbeatThrottle,
		DeploymentOptions:            deploymentOptions(cfg.Versioning),
		OnFatalError: func(err error) {
			select {
			case fatal <- err:
			default:
			}
		},
	})
	register(w, acts)
	return w
}

// logStarted writes the start-up line: every setting that matters, never a credential; then what
// the configuration noted (a region mismatch, no workspace).
func logStarted(logger log.Logger, cfg config, ver string, target temporalTarget, credMode string) {
	logger.Info("worker started",
		"version", ver,
		"task_queue", cfg.TaskQueue,
		"temporal_address", target.hostPort,
		"namespace", target.namespace,
		"temporal_api_key", target.apiKey,
		"control_plane_host", cfg.ControlPlaneURL.Host,
		"credentials", credMode,
		"tenant_id_set", cfg.Credentials.TenantID != "",
		"request_timeout", cfg.RequestTimeout.String(),
		"max_concurrent_activities", cfg.MaxConcurrentActivities,
		"requests_per_second", cfg.RequestsPerSecond,
		"task_queue_activities_per_second", cfg.TaskQueueActivitiesPerSecond,
		"stop_timeout", cfg.StopTimeout.String(),
		"http_address", cfg.HTTPAddress,
		"metrics", cfg.HTTPAddress != "",
		"tracing", tracingMode(cfg.Tracing),
		"service_name", cfg.ServiceName,
		"deployment_name", cfg.Versioning.DeploymentName,
		"build_id", cfg.Versioning.BuildID,
	)
	logNotes(logger, cfg)
}

// waitForStop blocks until a stop is asked for or the worker fails, then runs stop and returns
// the exit code.
func waitForStop(ctx context.Context, fatal <-chan error, logger log.Logger, cfg config, stop func()) int {
	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("worker stopping: shutdown requested; in-flight removals get the stop timeout to finish",
			"stop_timeout", cfg.StopTimeout.String())
	case err := <-fatal:
		logger.Error("worker stopping: fatal error", "error", err.Error())
		code = exitFailure
	}
	stop()
	logger.Info("worker stopped", "task_queue", cfg.TaskQueue)
	return code
}

// register puts the workflow and activities on a worker under the contract's type names. The
// activities struct is registered whole, so each exported method is an activity type named after
// it (RemoveConnection); TestRegister_UsesContractNames pins those names to the contract. The Nexus
// service goes on the same task queue (nexus.go).
func register(r worker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{
		Name:               ac.RemoveConnectionWorkflowType,
		VersioningBehavior: versioningBehavior(ac.RemoveConnectionWorkflowType),
	})
	r.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{
		Name:               ac.RemoveAgentConnectionsWorkflowType,
		VersioningBehavior: versioningBehavior(ac.RemoveAgentConnectionsWorkflowType),
	})
	r.RegisterWorkflowWithOptions(workflows.RestoreAgentConnectionsWorkflow, workflow.RegisterOptions{
		Name:               ac.RestoreAgentConnectionsWorkflowType,
		VersioningBehavior: versioningBehavior(ac.RestoreAgentConnectionsWorkflowType),
	})
	r.RegisterActivity(acts)
	registerNexus(r)
	registerFleet(r)
}

// metricsOf is the worker's metrics as the control plane client and the activities record
// them: nil interfaces (none) when metrics are off.
func metricsOf(tel *telemetry.Telemetry) (controlplane.Metrics, activities.Metrics) {
	if m := tel.Metrics(); m != nil {
		return m, m
	}
	return nil, nil
}

// tracingMode describes where spans go, for the start-up log: the collector's host, never the
// whole endpoint (it may carry user info).
func tracingMode(c telemetry.TraceConfig) string {
	if !c.Enabled() {
		return "off"
	}
	host := "?"
	if u, err := url.Parse(c.Endpoint); err == nil {
		host = u.Host
	}
	return "otlp " + c.Protocol + " to " + host
}
