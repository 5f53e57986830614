// Command starter asks the worker to remove one agent connection: it starts RemoveConnectionWorkflow
// under the contract's workflow ID, or attaches to the removal of the same connection already
// running, and by default waits for the outcome.
//
//	starter --agent-id A --connection-id C [--missing-ok=true] [--wait=true] [--json] [--task-queue Q]
//
// The Temporal connection comes from the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE) through the SDK's envconfig, as for the worker.
//
// Exit codes: 0 when the connection is removed or already absent (or, with --wait=false, when the
// removal is started or attached to); 1 when the removal failed; 2 when the starter could not
// start or follow it (bad usage or settings, Temporal unreachable, interrupted while waiting).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/logging"
)

const usageLine = "usage: starter --agent-id A --connection-id C [--missing-ok=true] [--wait=true] [--json] [--task-queue Q]"

// dialTimeout bounds the connection to Temporal, so a wrong address fails instead of hanging.
const dialTimeout = 10 * time.Second

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the removal ran and failed
	exitStarter = 2 // the starter could not start or follow the removal
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	agentID, connectionID string
	missingOK, wait, json bool
	taskQueue             string
}

// run is the whole command; it returns the exit code. environ is in os.Environ form.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	env := environment(environ)
	fail := func(code int, format string, a ...any) int {
		msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
		_, _ = fmt.Fprintln(stderr, "starter: "+msg)
		return code
	}

	opts, code, ok := parseArgs(args, env, stderr)
	if !ok {
		return code
	}

	clientOpts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: env})
	if err != nil {
		return fail(exitStarter, "temporal client settings (TEMPORAL_*): %v", err)
	}
	// The SDK's default logger writes to stdout, which would spoil --json; its warnings go to
	// stderr instead.
	zl, err := logging.New(logging.FormatConsole, "warn", stderr)
	if err != nil {
		return fail(exitStarter, "%v", err)
	}
	defer func() { _ = zl.Sync() }()
	clientOpts.Logger = logging.NewAdapter(zl)

	hostPort, namespace := clientOpts.HostPort, clientOpts.Namespace
	if hostPort == "" {
		hostPort = client.DefaultHostPort
	}
	if namespace == "" {
		namespace = client.DefaultNamespace
	}
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := client.DialContext(dialCtx, clientOpts)
	cancel()
	if err != nil {
		return fail(exitStarter, "cannot connect to Temporal at %s (namespace %s): %v", hostPort, namespace, err)
	}
	defer c.Close()

	workflowID := ac.RemoveConnectionWorkflowID(opts.agentID, opts.connectionID)
	missingOK := opts.missingOK
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflowID,
		TaskQueue: opts.taskQueue,
		// One removal per connection at a time: a second starter follows the running one.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		// After a removal has closed, however it ended, the same connection may be removed again.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{
		AgentID:      opts.agentID,
		ConnectionID: opts.connectionID,
		MissingOK:    &missingOK,
	})
	if err != nil {
		return fail(exitStarter, "start removal %s: %v", workflowID, err)
	}

	if !opts.wait {
		if opts.json {
			return writeJSON(stdout, stderr, startedJSON{WorkflowID: wr.GetID(), RunID: wr.GetRunID()}, exitOK)
		}
		_, _ = fmt.Fprintf(stdout, "workflow_id: %s\nrun_id: %s\n", wr.GetID(), wr.GetRunID())
		return exitOK
	}

	var result ac.RemoveConnectionResult
	err = wr.Get(ctx, &result)
	var wfErr *temporal.WorkflowExecutionError
	switch {
	case err == nil:
	case errors.As(err, &wfErr):
		failureType, message := describeFailure(wfErr)
		if opts.json {
			return writeJSON(stdout, stderr, failedJSON{
				AgentID: opts.agentID, ConnectionID: opts.connectionID,
				Error: failureJSON{Type: failureType, Message: message},
			}, exitFailed)
		}
		_, _ = fmt.Fprintf(stderr, "removal failed: %s: %s\n", failureType, message)
		return exitFailed
	case ctx.Err() != nil:
		return fail(exitStarter, "stopped waiting; removal %s (run %s) goes on", wr.GetID(), wr.GetRunID())
	default:
		return fail(exitStarter, "waiting for removal %s (run %s): %v", wr.GetID(), wr.GetRunID(), err)
	}

	if opts.json {
		return writeJSON(stdout, stderr, result, exitOK)
	}
	_, _ = fmt.Fprintln(stdout, describeResult(result))
	return exitOK
}

// parseArgs reads and checks the command line. On bad usage it prints the problem and the usage
// line and returns ok false with the exit code.
func parseArgs(args []string, env environment, stderr io.Writer) (opts options, code int, ok bool) {
	fs := flag.NewFlagSet("starter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, usageLine)
	}
	defaultQueue := ac.DefaultTaskQueue
	if v, _ := env.LookupEnv(ac.TaskQueueEnv); v != "" {
		defaultQueue = v
	}
	fs.StringVar(&opts.agentID, "agent-id", "", "agent whose connection to remove (required)")
	fs.StringVar(&opts.connectionID, "connection-id", "", "connection to remove (required)")
	fs.BoolVar(&opts.missingOK, "missing-ok", true, "treat a connection that is not there as removed")
	fs.BoolVar(&opts.wait, "wait", true, "wait for the outcome; with --wait=false print the workflow and run IDs")
	fs.BoolVar(&opts.json, "json", false, "print JSON instead of plain words")
	fs.StringVar(&opts.taskQueue, "task-queue", defaultQueue, "task queue of the worker (default from "+ac.TaskQueueEnv+")")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.PrintDefaults()
			return opts, exitOK, false
		}
		// The flag package has printed the problem and the usage line.
		return opts, exitStarter, false
	}
	usage := func(format string, a ...any) (options, int, bool) {
		_, _ = fmt.Fprintf(stderr, "starter: "+format+"\n", a...)
		fs.Usage()
		return opts, exitStarter, false
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case opts.agentID == "":
		return usage("--agent-id is required")
	case opts.connectionID == "":
		return usage("--connection-id is required")
	case strings.TrimSpace(opts.taskQueue) == "":
		return usage("--task-queue is empty")
	}
	// The same check the workflow makes: refuse here, before anything is started.
	if err := ac.ValidateID("agent_id", opts.agentID); err != nil {
		return usage("%v", err)
	}
	if err := ac.ValidateID("connection_id", opts.connectionID); err != nil {
		return usage("%v", err)
	}
	return opts, exitOK, true
}

// describeFailure names what ended a failed removal: the ApplicationError's type (the contract's
// failure types), or the kind of a timeout, cancellation or termination.
func describeFailure(err *temporal.WorkflowExecutionError) (failureType, message string) {
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	var canceledErr *temporal.CanceledError
	var terminatedErr *temporal.TerminatedError
	switch {
	case errors.As(err, &appErr):
		return appErr.Type(), appErr.Message()
	case errors.As(err, &timeoutErr):
		return "Timeout", timeoutErr.Error()
	case errors.As(err, &canceledErr):
		return "Canceled", canceledErr.Error()
	case errors.As(err, &terminatedErr):
		return "Terminated", terminatedErr.Error()
	default:
		return "WorkflowFailed", err.Error()
	}
}

// describeResult says a successful outcome in plain words.
func describeResult(r ac.RemoveConnectionResult) string {
	switch r.Outcome {
	case ac.OutcomeRemoved:
		noun := "requests"
		if r.Attempts == 1 {
			noun = "request"
		}
		return fmt.Sprintf("removed connection %s of agent %s (%d %s)", r.ConnectionID, r.AgentID, r.Attempts, noun)
	case ac.OutcomeAlreadyAbsent:
		return fmt.Sprintf("connection %s of agent %s was already absent", r.ConnectionID, r.AgentID)
	default:
		return fmt.Sprintf("connection %s of agent %s: outcome %q", r.ConnectionID, r.AgentID, r.Outcome)
	}
}

type startedJSON struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

type failureJSON struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type failedJSON struct {
	AgentID      string      `json:"agent_id"`
	ConnectionID string      `json:"connection_id"`
	Error        failureJSON `json:"error"`
}

func writeJSON(stdout, stderr io.Writer, v any, code int) int {
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		_, _ = fmt.Fprintf(stderr, "starter: write result: %v\n", err)
		return exitStarter
	}
	return code
}

// environment is the process environment in os.Environ form; it implements envconfig.EnvLookup so
// tests can pass their own.
type environment []string

// Environ returns the variables in os.Environ form.
func (e environment) Environ() []string { return e }

// LookupEnv finds a variable; the last definition wins.
func (e environment) LookupEnv(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
