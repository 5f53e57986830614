// Command worker polls the agent-connections task queue and runs RemoveConnectionWorkflow and its
// RemoveConnection activity against the LangSmith control plane. It reads its settings from the
// environment (see config.go and the README), serves /healthz and /readyz, and stops gracefully on
// SIGINT or SIGTERM, giving in-flight removals WORKER_STOP_TIMEOUT to finish.
//
// Exit codes: 0 after a requested stop (or --version, -h), 1 when it cannot connect to Temporal,
// listen on WORKER_HTTP_ADDRESS, start polling, or hits a fatal worker error, 2 for a missing or
// malformed setting or a bad flag.
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
// go on, with the process exit code.
func run(ctx context.Context, args, vars []string, stdout, stderr io.Writer) int {
	env := environ.Env(vars)
	fail := func(code int, format string, a ...any) int {
		// One line, whatever the wrapped errors carry.
		msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
		_, _ = fmt.Fprintln(stderr, "worker: "+msg)
		return code
	}

	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), "usage: worker [--log-format json|console] [--version] (settings come from the environment)")
	}
	logFormat := fs.String("log-format", "", "log format, json or console (overrides "+envLogFormat+")")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		return fail(exitConfig, "unexpected argument %q; settings come from the environment", fs.Arg(0))
	}
	ver := resolveVersion(version, debug.ReadBuildInfo)
	if *showVersion {
		_, _ = fmt.Fprintln(stdout, "agent-connections-worker", ver)
		return exitOK
	}
	var formatFlag *string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "log-format" {
			formatFlag = logFormat
		}
	})

	cfg, err := loadConfig(env.LookupEnv, formatFlag)
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	clientOpts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: env})
	if err != nil {
		return fail(exitConfig, "temporal client settings (TEMPORAL_*): %v", err)
	}
	zl, err := logging.New(cfg.LogFormat, cfg.LogLevel, stderr)
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	defer func() { _ = zl.Sync() }()
	logger := logging.NewAdapter(zl)

	// Telemetry before anything that reports to it. Spans and metrics hold no credential: the
	// activities label by route template and status class, and their spans carry IDs, never
	// headers.
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
		return fail(exitFailure, "telemetry: %v", err)
	}
	defer func() {
		// Flush the spans still buffered; bounded, so an unreachable collector cannot hold the exit.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(shutdownCtx); err != nil {
			logger.Warn("telemetry shutdown failed", "error", err.Error())
		}
	}()
	// The exporters report failures (an unreachable collector) through OpenTelemetry's process-wide
	// handler; route them into this worker's log instead of the standard logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", "error", err.Error())
	}))
	tracing, err := tel.TracingInterceptor()
	if err != nil {
		return fail(exitFailure, "tracing interceptor: %v", err)
	}

	var creds activities.CredentialSource = activities.StaticCredentials(cfg.Credentials)
	credMode := "api_key"
	if cfg.APIKeyFile != "" {
		rest := cfg.Credentials
		rest.APIKey = ""
		creds = newKeyFileSource(cfg.APIKeyFile, cfg.Credentials.APIKey, cfg.keyFileStamp, rest, log.With(logger, "component", "api-key-file"), nil)
		credMode = "api_key_file"
	} else if cfg.Credentials.APIKey == "" {
		credMode = "bearer_token"
	}
	// The coordinator lets a teardown and a standalone removal of the same connection stay out of
	// each other's way; it gets its client once the dial below succeeds, before any polling.
	coordinator := &activities.TemporalCoordinator{}
	acts, err := activities.New(activities.Config{
		Coordinator:       coordinator,
		BaseURL:           cfg.ControlPlaneURL.String(),
		Credentials:       creds,
		RequestTimeout:    cfg.RequestTimeout,
		RequestsPerSecond: cfg.RequestsPerSecond,
		Burst:             cfg.RequestBurst,
		UserAgent:         "agent-connections-worker/" + ver,
		Logger:            log.With(logger, "component", "http"),
		Metrics:           activityMetrics(tel),
		TracerProvider:    tel.TracerProvider(),
	})
	if err != nil {
		return fail(exitConfig, "%v", err)
	}

	// Listen before dialing: /healthz answers (and /readyz says 503) while the dial is in progress.
	h := &health{metrics: tel.Handler()}
	if cfg.HTTPAddress != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddress)
		if err != nil {
			return fail(exitFailure, "%s: %v", envHTTPAddress, err)
		}
		srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("health server stopped", "error", err.Error())
			}
		}()
		defer func() {
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
	}

	hostPort, namespace := clientOpts.HostPort, clientOpts.Namespace
	if hostPort == "" {
		hostPort = client.DefaultHostPort
	}
	if namespace == "" {
		namespace = client.DefaultNamespace
	}
	clientOpts.Logger = logger
	clientOpts.MetricsHandler = tel.TemporalMetricsHandler()
	clientOpts.Interceptors = append(clientOpts.Interceptors, tracing)
	dialCtx, cancelDial := context.WithTimeout(ctx, dialTimeout)
	c, err := client.DialContext(dialCtx, clientOpts)
	cancelDial()
	if err != nil {
		if ctx.Err() != nil {
			// Asked to stop while still connecting: nothing ran, nothing to hand back.
			return exitOK
		}
		return fail(exitFailure, "cannot connect to Temporal at %s (namespace %s): %v", hostPort, namespace, err)
	}
	defer c.Close()
	coordinator.Client = c
	if cfg.HTTPAddress != "" {
		// /readyz also asks whether the server still answers (ready.go).
		stopWatch := h.watchInBackground(ctx, c, logger, hostPort)
		defer stopWatch()
	}

	fatal := make(chan error, 1)
	w := worker.New(c, cfg.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize: cfg.MaxConcurrentActivities,
		TaskQueueActivitiesPerSecond:       cfg.TaskQueueActivitiesPerSecond,
		WorkerStopTimeout:                  cfg.StopTimeout,
		// Heartbeats carry the request counts and a batch's finished connections. The SDK sends
		// the first at once and buffers the rest for up to 80% of the heartbeat timeout (24 s
		// here), so a crash could lose a whole batch's progress; at most a second is lost now.
		MaxHeartbeatThrottleInterval: heartbeatThrottle,
		OnFatalError: func(err error) {
			select {
			case fatal <- err:
			default:
			}
		},
	})
	register(w, acts)
	if err := w.Start(); err != nil {
		return fail(exitFailure, "start polling task queue %s: %v", cfg.TaskQueue, err)
	}
	h.setPolling(true)
	logger.Info("worker started",
		"version", ver,
		"task_queue", cfg.TaskQueue,
		"temporal_address", hostPort,
		"namespace", namespace,
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
	)

	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("worker stopping: shutdown requested; in-flight removals get the stop timeout to finish",
			"stop_timeout", cfg.StopTimeout.String())
	case err := <-fatal:
		logger.Error("worker stopping: fatal error", "error", err.Error())
		code = exitFailure
	}
	// Not ready first, so no new traffic is routed here while the pollers wind down.
	h.setPolling(false)
	w.Stop()
	logger.Info("worker stopped", "task_queue", cfg.TaskQueue)
	return code
}

// register puts the workflow and activities on a worker under the contract's type names. The
// activities struct is registered whole, so each exported method is an activity type named after
// it (RemoveConnection); TestRegister_UsesContractNames pins those names to the contract.
func register(r worker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	r.RegisterActivity(acts)
}

// activityMetrics is the activities' Metrics: nil (none) when metrics are off.
func activityMetrics(tel *telemetry.Telemetry) activities.Metrics {
	if m := tel.Metrics(); m != nil {
		return m
	}
	return nil
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
