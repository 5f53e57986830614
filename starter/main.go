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

// run is the whole command; it returns the exit code. environ is in os.Environ form. Each step is
// a function below, in the order they run.
func run(ctx context.Context, args, vars []string, stdout, stderr io.Writer) int {
	env := environ.Env(vars)
	opts, code, ok := parseArgs(args, env, stderr)
	if !ok {
		return code
	}

	clientOpts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: env})
	if err != nil {
		return failf(stderr, exitStarter, "temporal client settings (TEMPORAL_*): %v", err)
	}
	// The SDK's default logger writes to stdout, which would spoil --json; its warnings go to
	// stderr instead.
	zl, err := logging.New(logging.FormatConsole, "warn", stderr)
	if err != nil {
		return failf(stderr, exitStarter, "%v", err)
	}
	defer func() { _ = zl.Sync() }()
	clientOpts.Logger = logging.NewAdapter(zl)

	c, err := dial(ctx, clientOpts)
	if err != nil {
		return failf(stderr, exitStarter, "%v", err)
	}
	defer c.Close()

	if opts.all {
		return runTeardown(ctx, c, opts, stdout, stderr)
	}
	return runRemoval(ctx, c, opts, stdout, stderr)
}

// dial connects to Temporal within dialTimeout; its error names the address and namespace tried.
func dial(ctx context.Context, clientOpts client.Options) (client.Client, error) {
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
		return nil, fmt.Errorf("cannot connect to Temporal at %s (namespace %s): %w", hostPort, namespace, err)
	}
	return c, nil
}

// runRemoval starts or follows the removal of one connection and returns the exit code.
func runRemoval(ctx context.Context, c client.Client, opts options, stdout, stderr io.Writer) int {
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
		return failf(stderr, exitStarter, "start removal %s: %v", workflowID, err)
	}

	if !opts.wait {
		if opts.json {
			return writeJSON(stdout, stderr, startedJSON{WorkflowID: wr.GetID(), RunID: wr.GetRunID()}, exitOK)
		}
		_, _ = fmt.Fprintf(stdout, "workflow_id: %s\nrun_id: %s\n", wr.GetID(), wr.GetRunID())
		return exitOK
	}
	return waitRemoval(ctx, wr, opts, stdout, stderr)
}

// waitRemoval waits for the removal's outcome, prints it, and returns the exit code.
func waitRemoval(ctx context.Context, wr client.WorkflowRun, opts options, stdout, stderr io.Writer) int {
	var result ac.RemoveConnectionResult
	err := wr.Get(ctx, &result)
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
		return failf(stderr, exitStarter, "stopped waiting; removal %s (run %s) goes on", wr.GetID(), wr.GetRunID())
	default:
		return failf(stderr, exitStarter, "waiting for removal %s (run %s): %v", wr.GetID(), wr.GetRunID(), err)
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
	connectionIDs := defineFlags(fs, &opts, defaultTaskQueue(env))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.PrintDefaults()
			return opts, exitOK, false
		}
		// The flag package has printed the problem and the usage line.
		return opts, exitStarter, false
	}
	if err := checkArgs(fs, &opts, *connectionIDs); err != nil {
		_, _ = fmt.Fprintf(stderr, "starter: %s\n", err)
		fs.Usage()
		return opts, exitStarter, false
	}
	return opts, exitOK, true
}

// defaultTaskQueue is the --task-queue default: the worker's own setting when the environment
// has one.
func defaultTaskQueue(env environ.Env) string {
	if v, _ := env.LookupEnv(ac.TaskQueueEnv); v != "" {
		return v
	}
	return ac.DefaultTaskQueue
}

// defineFlags declares every flag on fs, each filling in its part of opts, and returns where
// --connection-ids lands: checkArgs splits it.
func defineFlags(fs *flag.FlagSet, opts *options, defaultQueue string) (connectionIDs *string) {
	fs.StringVar(&opts.agentID, "agent-id", "", "agent whose connection to remove (required)")
	fs.StringVar(&opts.connectionID, "connection-id", "", "connection to remove (required unless --all)")
	fs.BoolVar(&opts.all, "all", false, "remove every connection of the agent (the teardown workflow) instead of one")
	connectionIDs = fs.String("connection-ids", "", "with --all: remove exactly these connections (comma-separated) instead of listing the agent's")
	fs.IntVar(&opts.concurrency, "concurrency", 0, fmt.Sprintf("with --all: DELETE requests in flight at most (0 means the workflow's default, %d; at most %d)", ac.DefaultTeardownConcurrency, ac.MaxTeardownConcurrency))
	fs.BoolVar(&opts.continueOnError, "continue-on-error", true, "with --all: keep removing the other connections after one fails for good")
	fs.BoolVar(&opts.missingOK, "missing-ok", true, "treat a connection that is not there as removed")
	fs.BoolVar(&opts.wait, "wait", true, "wait for the outcome; with --wait=false print the workflow and run IDs")
	fs.BoolVar(&opts.json, "json", false, "print JSON instead of plain words")
	fs.StringVar(&opts.taskQueue, "task-queue", defaultQueue, "task queue of the worker (default from "+ac.TaskQueueEnv+")")
	return connectionIDs
}

// checkArgs refuses a parsed command line that is incomplete, contradicts itself or names an
// invalid ID; its error is the problem to print above the usage line.
func checkArgs(fs *flag.FlagSet, opts *options, connectionIDs string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// The first flag given that means something only with --all.
	teardownOnly := firstSet(set, "connection-ids", "concurrency", "continue-on-error")
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case opts.agentID == "":
		return errors.New("--agent-id is required")
	case opts.all && opts.connectionID != "":
		return errors.New("--connection-id and --all are mutually exclusive: give one connection or all of them")
	case !opts.all && opts.connectionID == "":
		return errors.New("--connection-id is required (or --all for every connection of the agent)")
	case !opts.all && teardownOnly != "":
		return fmt.Errorf("--%s needs --all", teardownOnly)
	case strings.TrimSpace(opts.taskQueue) == "":
		return errors.New("--task-queue is empty")
	}
	// The same checks the workflows make: refuse here, before anything is started.
	if err := ac.ValidateID("agent_id", opts.agentID); err != nil {
		return err
	}
	if !opts.all {
		return ac.ValidateID("connection_id", opts.connectionID)
	}
	return checkTeardownArgs(opts, set["connection-ids"], connectionIDs)
}

// firstSet returns the first of names that set holds, or "".
func firstSet(set map[string]bool, names ...string) string {
	for _, name := range names {
		if set[name] {
			return name
		}
	}
	return ""
}

// checkTeardownArgs checks what --all takes, setting opts.connectionIDs when --connection-ids was
// given, with the same checks the teardown workflow makes of its input.
func checkTeardownArgs(opts *options, idsGiven bool, connectionIDs string) error {
	if opts.concurrency < 0 || opts.concurrency > ac.MaxTeardownConcurrency {
		return fmt.Errorf("--concurrency is %d, want 0 (the workflow's default) to %d", opts.concurrency, ac.MaxTeardownConcurrency)
	}
	if idsGiven {
		ids, err := splitConnectionIDs(connectionIDs)
		if err != nil {
			return err
		}
		opts.connectionIDs = ids
	}
	return teardownInput(*opts).Validate()
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
