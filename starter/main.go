// Command starter asks the worker to remove one agent connection, or with --all every connection of
// one agent: it starts RemoveConnectionWorkflow (or RemoveAgentConnectionsWorkflow) under the
// workflow ID docs/contract.md gives it, or attaches to the one already running under that ID, and
// by default waits for the outcome, showing the teardown's progress as it goes.
//
//	starter --agent-id A --connection-id C [--missing-ok=true] [--wait=true] [--json] [--task-queue Q]
//	starter --agent-id A --all [--connection-ids C1,C2] [--concurrency N] [--continue-on-error=true]
//	        [--missing-ok=true] [--wait=true] [--json] [--task-queue Q]
//
// The Temporal connection comes from the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE) through the SDK's envconfig, as for the worker.
//
// Exit codes: 0 when the connection is removed or already absent, or with --all when every
// connection ended removed or already absent and the teardown was not cancelled (with
// --wait=false: when the workflow is started or attached to); 1 when the removal failed, or the
// teardown failed, was cancelled or left any connection failed, remained, reappeared or skipped;
// 2 when the starter could not start or follow it (bad usage or settings, Temporal unreachable,
// interrupted while waiting).
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

	"github.com/agentops/agentconnections/internal/environ"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/logging"
)

const usageLine = "usage: starter --agent-id A (--connection-id C | --all [--connection-ids C1,C2] [--concurrency N] [--continue-on-error=true]) [--missing-ok=true] [--wait=true] [--json] [--task-queue Q]"

// dialTimeout bounds the connection to Temporal, so a wrong address fails instead of hanging.
const dialTimeout = 10 * time.Second

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the removal or teardown ran and failed, or left connections behind
	exitStarter = 2 // the starter could not start or follow the workflow
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

	// The teardown of every connection (--all) and its settings.
	all             bool
	connectionIDs   []string // empty: the teardown lists the agent's connections itself
	concurrency     int      // 0: the workflow's default
	continueOnError bool
}

// run is the whole command; it returns the exit code. environ is in os.Environ form.
func run(ctx context.Context, args, vars []string, stdout, stderr io.Writer) int {
	env := environ.Env(vars)
	fail := func(code int, format string, a ...any) int {
		return failf(stderr, code, format, a...)
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

	if opts.all {
		return runTeardown(ctx, c, opts, stdout, stderr)
	}

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
func parseArgs(args []string, env environ.Env, stderr io.Writer) (opts options, code int, ok bool) {
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
	fs.StringVar(&opts.connectionID, "connection-id", "", "connection to remove (required unless --all)")
	fs.BoolVar(&opts.all, "all", false, "remove every connection of the agent (the teardown workflow) instead of one")
	connectionIDs := fs.String("connection-ids", "", "with --all: remove exactly these connections (comma-separated) instead of listing the agent's")
	fs.IntVar(&opts.concurrency, "concurrency", 0, fmt.Sprintf("with --all: DELETE requests in flight at most (0 means the workflow's default, %d; at most %d)", ac.DefaultTeardownConcurrency, ac.MaxTeardownConcurrency))
	fs.BoolVar(&opts.continueOnError, "continue-on-error", true, "with --all: keep removing the other connections after one fails for good")
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	teardownOnly := "" // the first flag given that means something only with --all
	for _, name := range []string{"connection-ids", "concurrency", "continue-on-error"} {
		if set[name] {
			teardownOnly = name
			break
		}
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case opts.agentID == "":
		return usage("--agent-id is required")
	case opts.all && opts.connectionID != "":
		return usage("--connection-id and --all are mutually exclusive: give one connection or all of them")
	case !opts.all && opts.connectionID == "":
		return usage("--connection-id is required (or --all for every connection of the agent)")
	case !opts.all && teardownOnly != "":
		return usage("--%s needs --all", teardownOnly)
	case strings.TrimSpace(opts.taskQueue) == "":
		return usage("--task-queue is empty")
	}
	// The same checks the workflows make: refuse here, before anything is started.
	if err := ac.ValidateID("agent_id", opts.agentID); err != nil {
		return usage("%v", err)
	}
	if !opts.all {
		if err := ac.ValidateID("connection_id", opts.connectionID); err != nil {
			return usage("%v", err)
		}
		return opts, exitOK, true
	}
	if opts.concurrency < 0 || opts.concurrency > ac.MaxTeardownConcurrency {
		return usage("--concurrency is %d, want 0 (the workflow's default) to %d", opts.concurrency, ac.MaxTeardownConcurrency)
	}
	if set["connection-ids"] {
		ids, err := splitConnectionIDs(*connectionIDs)
		if err != nil {
			return usage("%v", err)
		}
		opts.connectionIDs = ids
	}
	if err := teardownInput(opts).Validate(); err != nil {
		return usage("%v", err)
	}
	return opts, exitOK, true
}

// splitConnectionIDs reads --connection-ids. An empty list, an empty entry or a repeated ID is
// refused rather than guessed at: "remove exactly these" should not quietly mean "list them all"
// or hide a typo.
func splitConnectionIDs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--connection-ids is empty (leave it out to remove every connection)")
	}
	parts := strings.Split(s, ",")
	seen := make(map[string]bool, len(parts))
	ids := make([]string, 0, len(parts))
	for i, p := range parts {
		id := strings.TrimSpace(p)
		switch {
		case id == "":
			return nil, fmt.Errorf("--connection-ids has an empty entry at position %d", i+1)
		case seen[id]:
			return nil, fmt.Errorf("--connection-ids names %q twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
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

// failf prints one "starter: ..." line on stderr and returns code.
func failf(stderr io.Writer, code int, format string, a ...any) int {
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	_, _ = fmt.Fprintln(stderr, "starter: "+msg)
	return code
}

func writeJSON(stdout, stderr io.Writer, v any, code int) int {
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		_, _ = fmt.Fprintf(stderr, "starter: write result: %v\n", err)
		return exitStarter
	}
	return code
}
