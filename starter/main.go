// Command starter asks the worker to remove one agent connection, or with --all every connection of
// one agent: it starts RemoveConnectionWorkflow (or RemoveAgentConnectionsWorkflow) under the
// workflow ID docs/contract.md gives it, or attaches to the one already running under that ID, and
// by default waits for the outcome, showing the teardown's progress as it goes. Its flags follow the
// temporal CLI's: -o json|text, --address, --namespace, --profile (or --env), --yes; `starter -h`
// lists them all with the environment variables it reads.
//
//	starter --agent-id A --connection-id C [--missing-ok=true] [--wait=true] [--timeout D] [-o json|text]
//	starter --agent-id A --all [--connection-ids C1,C2] [--concurrency N] [--continue-on-error=true] ...
//	starter ... --dry-run         print what would be started; start nothing, contact nothing
//	starter --all ... --dry-run   the same; with a LangSmith key set, list the agent's connections first
//	starter restore FILE|- [...]  undo a teardown: restore the connections its saved result removed
//
// The Temporal connection comes from the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE) through the SDK's
// envconfig, as for the worker; --address, --namespace, --profile and --config-file override it.
//
// With --all --dry-run and a LangSmith key in the environment (LANGSMITH_API_KEY or
// LANGSMITH_API_KEY_FILE, the workspace and control plane URL: the worker's settings, names and
// aliases, read through internal/langsmithenv), the starter lists the agent's connections with one
// read-only GET and prints them, so the operator sees what the teardown would remove now; it still
// contacts no Temporal and sends no DELETE.
//
// When stdin and stdout are both terminals, the starter asks before it starts anything, unless
// --yes; in scripts and pipes it does not ask.
//
// Exit codes: 0 when the connection is removed or already absent, or with --all when every
// connection ended removed or already absent and the teardown was not cancelled (with
// --wait=false: when the workflow is started or attached to; with --dry-run: when the command
// line is valid, and the list, if asked for, answered); 1 when the removal failed, or the teardown
// failed, was cancelled or left any connection failed, remained, reappeared or skipped, or a dry
// run's list failed (agent not found, key refused, control plane unreachable); 2 when the starter
// could not start or follow it (bad usage or settings, Temporal unreachable, the question not
// answered yes); 124 when --timeout ran out while waiting (the workflow goes on); 130 when
// interrupted (Ctrl-C), 143 on SIGTERM (the workflow goes on either way).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/term"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/logging"
)

// dialTimeout bounds the connection to Temporal, so a wrong address fails instead of hanging.
const dialTimeout = 10 * time.Second

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1   // the removal or teardown ran and failed, or left connections behind
	exitStarter     = 2   // the starter could not start or follow the workflow
	exitTimedOut    = 124 // --timeout ran out while waiting, as timeout(1) reports it
	exitInterrupted = 130 // 128 + SIGINT
	exitTerminated  = 143 // 128 + SIGTERM
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		// A second Ctrl-C ends the process at once.
		signal.Stop(signals)
		cancel(interrupted{sig})
	}()
	code := runConsole(ctx, os.Args[1:], os.Environ(), console{
		stdin:       os.Stdin,
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		interactive: isTerminal(os.Stdin) && isTerminal(os.Stdout),
	})
	os.Exit(code)
}

// interrupted is the cause main cancels the run's context with when a signal arrives.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// console is where the starter talks: stdin only for its question before starting.
type console struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// interactive is true when stdin and stdout are both terminals: a person can be asked.
	interactive bool
}

// isTerminal reports whether f is a terminal. A character device is not enough: /dev/null is one.
func isTerminal(f any) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(fd.Fd()))
}

// run is the starter without a terminal: it never asks. environ is in os.Environ form.
func run(ctx context.Context, args, vars []string, stdout, stderr io.Writer) int {
	return runConsole(ctx, args, vars, console{stdout: stdout, stderr: stderr})
}

// runConsole is the whole command; it returns the exit code. Each step is a function below, in the
// order they run.
func runConsole(ctx context.Context, args, vars []string, con console) int {
	env := environ.Env(vars)
	if len(args) > 0 && args[0] == restoreCommand {
		return runRestoreCommand(ctx, args[1:], env, con)
	}
	opts, code, ok := parseArgs(args, env, con.stdout, con.stderr)
	if !ok {
		return code
	}
	clientOpts, err := loadClientOptions(env, opts)
	if err != nil {
		return failf(con.stderr, exitStarter, "temporal client settings (TEMPORAL_*): %v", err)
	}
	p := newPlan(opts, clientOpts)
	if opts.dryRun {
		return runDryRun(ctx, env, con, opts, p)
	}
	if con.interactive && !opts.yes {
		if code, ok := confirm(ctx, con, p); !ok {
			return code
		}
	}
	c, code, ok := connect(ctx, clientOpts, con.stderr)
	if !ok {
		return code
	}
	defer c.Close()

	if opts.all {
		return runTeardown(ctx, c, opts, con.stdout, con.stderr)
	}
	return runRemoval(ctx, c, opts, con.stdout, con.stderr)
}

// connect dials Temporal with the SDK's log on stderr; ok is false when it could not, with the exit
// code to return.
func connect(ctx context.Context, clientOpts client.Options, stderr io.Writer) (client.Client, int, bool) {
	// The SDK's default logger writes to stdout, which would spoil -o json; its warnings go to
	// stderr instead.
	zl, err := logging.New(logging.FormatConsole, "warn", stderr)
	if err != nil {
		return nil, failf(stderr, exitStarter, "%v", err), false
	}
	clientOpts.Logger = logging.NewAdapter(zl)
	c, err := dial(ctx, clientOpts)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, interruptedf(ctx, stderr, "interrupted while connecting to Temporal; nothing started"), false
	case err != nil:
		return nil, failf(stderr, exitStarter, "%v", err), false
	}
	return c, 0, true
}

// loadClientOptions reads the Temporal connection as every Temporal tool does (envconfig: the
// profile of the config file, then TEMPORAL_* over it), then applies --address and --namespace.
func loadClientOptions(env environ.Env, opts options) (client.Options, error) {
	if opts.configFile != "" {
		// envconfig quietly skips a missing file; one named on the command line must exist.
		if _, err := os.Stat(opts.configFile); err != nil {
			return client.Options{}, fmt.Errorf("--config-file: %w", err)
		}
	}
	clientOpts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{
		ConfigFilePath:    opts.configFile,
		ConfigFileProfile: opts.profile,
		EnvLookup:         env,
	})
	if err != nil {
		return client.Options{}, err
	}
	if opts.address != "" {
		clientOpts.HostPort = opts.address
	}
	if opts.namespace != "" {
		clientOpts.Namespace = opts.namespace
	}
	if clientOpts.HostPort == "" {
		clientOpts.HostPort = client.DefaultHostPort
	}
	if clientOpts.Namespace == "" {
		clientOpts.Namespace = client.DefaultNamespace
	}
	return clientOpts, nil
}

// dial connects to Temporal within dialTimeout; its error names the address and namespace tried.
func dial(ctx context.Context, clientOpts client.Options) (client.Client, error) {
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := client.DialContext(dialCtx, clientOpts)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cannot connect to Temporal at %s (namespace %s): %w", clientOpts.HostPort, clientOpts.Namespace, err)
	}
	return c, nil
}

// removalInput is the workflow input the command line asks for. MissingOK is always sent, so the
// flag's default, not the workflow's, is what the user was shown.
func removalInput(opts options) ac.RemoveConnectionInput {
	missingOK := opts.missingOK
	return ac.RemoveConnectionInput{AgentID: opts.agentID, ConnectionID: opts.connectionID, MissingOK: &missingOK}
}

// runRemoval starts or follows the removal of one connection and returns the exit code.
func runRemoval(ctx context.Context, c client.Client, opts options, stdout, stderr io.Writer) int {
	// One removal per connection at a time: a second starter follows the running one.
	wr, code, ok := startOrFollow(ctx, c, opts, "removal", ac.RemoveConnectionWorkflowID(opts.agentID, opts.connectionID),
		ac.RemoveConnectionWorkflowType, removalInput(opts), stderr)
	if !ok {
		return code
	}
	return waitOrPrint(ctx, wr, opts, stdout, stderr, func(waitCtx context.Context) int {
		return waitRemoval(ctx, waitCtx, wr, opts, stdout, stderr)
	})
}

// waitOrPrint prints the started run for --wait=false, or runs wait with a context bounded by
// --timeout.
func waitOrPrint(ctx context.Context, wr client.WorkflowRun, opts options, stdout, stderr io.Writer, wait func(waitCtx context.Context) int) int {
	if !opts.wait {
		return printStarted(stdout, stderr, opts, wr)
	}
	waitCtx, cancel := withTimeout(ctx, opts.timeout)
	defer cancel()
	return wait(waitCtx)
}

// startOrFollow starts workflowID, or follows the run already going under that ID (whose own
// input then applies); after a run has closed, however it ended, the same ID may start again. ok
// is false when it could not, with the exit code to return.
func startOrFollow(ctx context.Context, c client.Client, opts options, what, workflowID, workflowType string, input any, stderr io.Writer) (client.WorkflowRun, int, bool) {
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflowID,
		TaskQueue:                opts.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflowType, input)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, interruptedf(ctx, stderr, "interrupted while starting %s %s; it may have started: run the same command to follow it", what, workflowID), false
	case err != nil:
		return nil, failf(stderr, exitStarter, "start %s %s: %v", what, workflowID, err), false
	}
	return wr, 0, true
}

// printStarted says which workflow was started or attached to, for --wait=false.
func printStarted(stdout, stderr io.Writer, opts options, wr client.WorkflowRun) int {
	if opts.json {
		return writeJSON(stdout, stderr, startedJSON{WorkflowID: wr.GetID(), RunID: wr.GetRunID()}, exitOK)
	}
	_, _ = fmt.Fprintf(stdout, "workflow_id: %s\nrun_id: %s\n", wr.GetID(), wr.GetRunID())
	return exitOK
}

// errTimedOut is the cause of a wait that --timeout ended.
var errTimedOut = errors.New("--timeout ran out")

// withTimeout bounds ctx by the --timeout value; 0 leaves it unbounded.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, errTimedOut)
}

// waitRemoval waits for the removal's outcome, prints it, and returns the exit code. ctx is the
// run's (cancelled on interrupt), waitCtx the wait's (bounded by --timeout too).
// waitFailed is the exit code of a wait for what ("removal", "teardown") that ended in err: the
// workflow's failure (printed, or as asJSON's value with -o json), a cut wait, or an error
// waiting.
func waitFailed(ctx, waitCtx context.Context, err error, wr client.WorkflowRun, opts options, what string, stdout, stderr io.Writer, asJSON func(failureJSON) any) int {
	var wfErr *temporal.WorkflowExecutionError
	switch {
	case errors.As(err, &wfErr):
		failureType, message := describeFailure(wfErr)
		if opts.json {
			return writeJSON(stdout, stderr, asJSON(failureJSON{Type: failureType, Message: message}), exitFailed)
		}
		_, _ = fmt.Fprintf(stderr, "%s failed: %s: %s\n", what, failureType, message)
		return exitFailed
	case waitCut(waitCtx, err):
		return stoppedWaiting(ctx, opts, stderr, what, wr)
	default:
		return failf(stderr, exitStarter, "waiting for %s %s (run %s): %v", what, wr.GetID(), wr.GetRunID(), err)
	}
}

func waitRemoval(ctx, waitCtx context.Context, wr client.WorkflowRun, opts options, stdout, stderr io.Writer) int {
	var result ac.RemoveConnectionResult
	err := wr.Get(waitCtx, &result)
	if err != nil {
		return waitFailed(ctx, waitCtx, err, wr, opts, "removal", stdout, stderr, func(f failureJSON) any {
			return failedJSON{AgentID: opts.agentID, ConnectionID: opts.connectionID, Error: f}
		})
	}

	if opts.json {
		return writeJSON(stdout, stderr, result, exitOK)
	}
	_, _ = fmt.Fprintln(stdout, describeResult(result))
	return exitOK
}

// waitCut reports whether a wait ended because its context did: an interrupt, or --timeout. The
// SDK may give up a moment before the deadline it was given, so a deadline error counts too.
func waitCut(waitCtx context.Context, err error) bool {
	if waitCtx.Err() != nil {
		return true
	}
	_, bounded := waitCtx.Deadline()
	var deadline *serviceerror.DeadlineExceeded
	return bounded && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &deadline))
}

// stoppedWaiting reports a wait that ended before the workflow did, on an interrupt (ctx done) or
// on --timeout, and returns the exit code for it. The workflow goes on either way.
func stoppedWaiting(ctx context.Context, opts options, stderr io.Writer, what string, wr client.WorkflowRun) int {
	rest := fmt.Sprintf("%s %s (run %s) goes on; run the same command to follow it again", what, wr.GetID(), wr.GetRunID())
	if ctx.Err() != nil {
		return interruptedf(ctx, stderr, "stopped waiting; %s", rest)
	}
	return failf(stderr, exitTimedOut, "timed out after %s waiting; %s", opts.timeout, rest)
}

// interruptedf prints one "starter: ..." line and returns the exit code for the signal that
// cancelled ctx: 143 for SIGTERM, 130 otherwise.
func interruptedf(ctx context.Context, stderr io.Writer, format string, a ...any) int {
	code := exitInterrupted
	var in interrupted
	if errors.As(context.Cause(ctx), &in) && in.sig == syscall.SIGTERM {
		code = exitTerminated
	}
	return failf(stderr, code, format, a...)
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
