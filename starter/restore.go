package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/agentops/agentconnections/internal/environ"

	ac "github.com/agentops/agentconnections"
)

// restoreCommand is the name of the subcommand that undoes a teardown: `starter restore FILE`.
const restoreCommand = "restore"

const restoreUsageLine = "usage: starter restore (FILE | -) [flags]; starter restore -h lists them"

// maxRestoreFileBytes bounds what the starter reads of a saved teardown result: 10,000 entries
// with the largest snapshots the teardown keeps take about 13 MB.
const maxRestoreFileBytes = 32 << 20

// restoreArgs is the parsed command line of `starter restore`.
type restoreArgs struct {
	opts options // agentID is filled in from the input
	// file is the path of the saved teardown result (or restore input); "-" is stdin.
	file string
	// concurrency, when above 0, replaces the input's concurrency.
	concurrency int
}

// runRestoreCommand is `starter restore`: it reads the input, then starts or follows the restore
// as the starter does a teardown, and returns the exit code.
func runRestoreCommand(ctx context.Context, args []string, env environ.Env, con console) int {
	ra, code, ok := parseRestoreArgs(args, env, con.stdout, con.stderr)
	if !ok {
		return code
	}
	in, err := readRestoreInput(ra.file, con.stdin)
	if err == nil && ra.concurrency > 0 {
		in.Concurrency = ra.concurrency
	}
	if err == nil {
		err = in.Validate()
	}
	if err != nil {
		return failf(con.stderr, exitStarter, "%s: %v; nothing started", restoreSource(ra.file), err)
	}
	ra.opts.agentID = in.AgentID
	clientOpts, err := loadClientOptions(env, ra.opts)
	if err != nil {
		return failf(con.stderr, exitStarter, "temporal client settings (TEMPORAL_*): %v", err)
	}
	p := newRestorePlan(ra.opts, clientOpts, in)
	if ra.opts.dryRun {
		return printRestoreDryRun(con.stdout, con.stderr, ra.opts, p, in)
	}
	if con.interactive && !ra.opts.yes {
		if code, ok := confirm(ctx, con, p); !ok {
			return code
		}
	}
	c, code, ok := connect(ctx, clientOpts, con.stderr)
	if !ok {
		return code
	}
	defer c.Close()
	wr, code, ok := startOrFollow(ctx, c, ra.opts, "restore", p.WorkflowID, p.WorkflowType, in, con.stderr)
	if !ok {
		return code
	}
	if code, ok := sameRestore(ctx, c, wr, in, con.stderr); !ok {
		return code
	}
	return waitOrPrint(ctx, wr, ra.opts, con.stdout, con.stderr, func(waitCtx context.Context) int {
		return followRestore(ctx, waitCtx, c, wr, ra.opts, con.stdout, con.stderr)
	})
}

// sameRestore checks that the restore under the agent's workflow ID (the one just started, or one
// already running that the start followed) re-creates the tokens of in: following a restore of
// other tokens would report its result as this input's. It reads the run's input from its first
// history event, which the Temporal server answers with no worker.
func sameRestore(ctx context.Context, c client.Client, wr client.WorkflowRun, in ac.RestoreAgentConnectionsInput, stderr io.Writer) (int, bool) {
	running, err := startedInput(ctx, c, wr)
	switch {
	case err != nil && ctx.Err() != nil:
		return interruptedf(ctx, stderr, "interrupted while checking restore %s (run %s); it goes on: run the same command to follow it", wr.GetID(), wr.GetRunID()), false
	case err != nil:
		return failf(stderr, exitStarter, "read the input of restore %s (run %s): %v; it goes on: run the same command to follow it", wr.GetID(), wr.GetRunID(), err), false
	case ac.RestoreInputDigest(running.Connections) != ac.RestoreInputDigest(in.Connections):
		return failf(stderr, exitStarter, "a restore of agent %s with other entries is already running as %s (run %s): wait for it to end or cancel it, then run this again; nothing started",
			in.AgentID, wr.GetID(), wr.GetRunID()), false
	}
	return 0, true
}

// startedInput is the input of wr's run, from its WorkflowExecutionStarted event.
func startedInput(ctx context.Context, c client.Client, wr client.WorkflowRun) (ac.RestoreAgentConnectionsInput, error) {
	var in ac.RestoreAgentConnectionsInput
	iter := c.GetWorkflowHistory(ctx, wr.GetID(), wr.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !iter.HasNext() {
		return in, errors.New("the run has no history")
	}
	ev, err := iter.Next()
	if err != nil {
		return in, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return in, fmt.Errorf("its first event is %s, not the start", ev.GetEventType())
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return in, fmt.Errorf("decode it: %w", err)
	}
	return in, nil
}

// restoreSource names the input in messages.
func restoreSource(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// parseRestoreArgs reads the command line of `starter restore`: the flags the teardown takes
// about how and where, --concurrency, and one FILE (or -), before or among the flags.
func parseRestoreArgs(args []string, env environ.Env, stdout, stderr io.Writer) (ra restoreArgs, code int, ok bool) {
	fs := flag.NewFlagSet("starter restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	raw := defineRestoreFlags(fs, &ra, defaultTaskQueue(env))
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printRestoreHelp(stdout, fs)
				return ra, exitOK, false
			}
			_, _ = fmt.Fprintln(stderr, restoreUsageLine)
			return ra, exitStarter, false
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if err := checkRestoreArgs(setFlags(fs), &ra, raw, files); err != nil {
		_, _ = fmt.Fprintf(stderr, "starter: %s\n%s\n", err, restoreUsageLine)
		return ra, exitStarter, false
	}
	return ra, exitOK, true
}

// defineRestoreFlags declares the flags of `starter restore`: those of the teardown about how to
// wait and where Temporal is, with the same names and meanings, and --concurrency.
func defineRestoreFlags(fs *flag.FlagSet, ra *restoreArgs, defaultQueue string) *flagValues {
	raw := &flagValues{}
	opts := &ra.opts
	fs.IntVar(&ra.concurrency, "concurrency", 0, fmt.Sprintf("POST requests in flight at most, `N` (0: the input's, else the workflow's default, %d; at most %d)", ac.DefaultTeardownConcurrency, ac.MaxTeardownConcurrency))
	fs.BoolVar(&opts.wait, "wait", true, "wait for the outcome; with --wait=false print the workflow and run IDs")
	fs.DurationVar(&opts.timeout, "timeout", 0, "stop waiting after `DURATION` (e.g. 10m) and exit 124; the workflow goes on (0: no limit)")
	fs.BoolVar(&opts.dryRun, "dry-run", false, "print what would be restored and the workflow that would be started; start nothing and contact nothing")
	fs.BoolVar(&opts.yes, "yes", false, "do not ask before starting (the starter asks only when stdin and stdout are terminals)")
	fs.BoolVar(&opts.yes, "y", false, "")
	fs.StringVar(&raw.output, "output", outputText, "`FORMAT` of the output: text, or json (the result alone on stdout)")
	fs.StringVar(&raw.output, "o", outputText, "")
	fs.StringVar(&opts.address, "address", "", "Temporal frontend `HOST:PORT` (default from TEMPORAL_ADDRESS or the profile, else localhost:7233)")
	fs.StringVar(&opts.namespace, "namespace", "", "Temporal `NAMESPACE` (default from TEMPORAL_NAMESPACE or the profile, else default)")
	fs.StringVar(&opts.namespace, "n", "", "")
	fs.StringVar(&raw.profile, "profile", "", "`NAME` of the profile to use from the Temporal config file (default TEMPORAL_PROFILE, else default)")
	fs.StringVar(&raw.env, "env", "", "")
	fs.StringVar(&opts.configFile, "config-file", "", "Temporal config file (TOML) `PATH` (default TEMPORAL_CONFIG_FILE, else temporalio/temporal.toml in the user config directory)")
	fs.StringVar(&opts.taskQueue, "task-queue", defaultQueue, "task `QUEUE` the worker polls; "+ac.TaskQueueEnv+", when set, is the default")
	return raw
}

// checkRestoreArgs refuses a command line of `starter restore` that is incomplete or contradicts
// itself.
func checkRestoreArgs(set map[string]bool, ra *restoreArgs, raw *flagValues, files []string) error {
	if err := checkOutputAndProfile(set, &ra.opts, raw); err != nil {
		return err
	}
	opts := ra.opts
	switch {
	case len(files) == 0:
		return errors.New("the saved teardown result is required: a FILE, or - for stdin")
	case len(files) > 1:
		return fmt.Errorf("unexpected argument %q: one FILE at a time", files[1])
	case files[0] == "":
		return errors.New("the FILE name is empty")
	case ra.concurrency < 0 || ra.concurrency > ac.MaxTeardownConcurrency:
		return fmt.Errorf("--concurrency is %d, want 0 (the input's or the workflow's default) to %d", ra.concurrency, ac.MaxTeardownConcurrency)
	case strings.TrimSpace(opts.taskQueue) == "":
		return errors.New("--task-queue is empty")
	case opts.timeout < 0:
		return fmt.Errorf("--timeout is %s, want 0 (no limit) or more", opts.timeout)
	case opts.timeout > 0 && !opts.wait:
		return errors.New("--timeout bounds the wait; it means nothing with --wait=false")
	case set["address"] && strings.TrimSpace(opts.address) == "":
		return errors.New("--address is empty")
	case set["namespace"] && strings.TrimSpace(opts.namespace) == "":
		return errors.New("--namespace is empty")
	}
	ra.file = files[0]
	return nil
}

// readRestoreInput reads the restore's input from file ("-": stdin): a teardown's result as the
// starter prints it with -o json (the connections to restore are ac.RestoreEntries of its
// report), or a restore input ({"agent_id", "connections", "concurrency"}) as it is.
func readRestoreInput(file string, stdin io.Reader) (ac.RestoreAgentConnectionsInput, error) {
	var in ac.RestoreAgentConnectionsInput
	data, err := readAtMost(file, stdin)
	if err != nil {
		return in, err
	}
	var top map[string]json.RawMessage
	if err := decodeOne(data, &top); err != nil {
		return in, fmt.Errorf("not a JSON object: %w", err)
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := top[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("error") && !has("connections"):
		return in, errors.New("a failed workflow's output (it has an error and no connections): there is nothing to restore from it")
	case has("restored", "already_present"):
		return in, errors.New("a restore's result, not a teardown's: give the teardown's result (starter --all -o json)")
	case has("removed", "already_absent", "remained"):
		return teardownRestoreInput(data)
	case !has("connections"):
		return in, errors.New(`neither a teardown's result nor a restore input: it has no "connections"`)
	}
	if err := decodeOne(data, &in); err != nil {
		return in, fmt.Errorf("not a restore input: %w", err)
	}
	return in, nil
}

// teardownRestoreInput is the restore of a teardown's result: its removed entries, and those a
// request may have removed, with their snapshots. A result whose report was cut holds only part of
// the entries; the starter's own -o json output always holds them all.
func teardownRestoreInput(data []byte) (ac.RestoreAgentConnectionsInput, error) {
	var r ac.RemoveAgentConnectionsResult
	if err := decodeOne(data, &r); err != nil {
		return ac.RestoreAgentConnectionsInput{}, fmt.Errorf("not a teardown's result: %w", err)
	}
	if r.ReportTruncated || len(r.Connections) < r.Total {
		return ac.RestoreAgentConnectionsInput{}, fmt.Errorf("the teardown's result holds %d of its %d entries (report_truncated): save the output of starter --all -o json, which holds them all",
			len(r.Connections), r.Total)
	}
	// An entry the teardown removed, or may have, without a snapshot (a teardown on a worker older
	// than snapshots, or one given an ID the agent did not list) cannot be restored from here: say
	// so rather than restore the rest and report success.
	var bare []string
	for _, o := range r.Connections {
		if _, has := o.Snapshot(); !has && o.MayHaveBeenRemoved() {
			bare = append(bare, o.ConnectionID)
		}
	}
	if len(bare) > 0 {
		return ac.RestoreAgentConnectionsInput{}, fmt.Errorf("%d removed %s no snapshot (oauth_token_id), so the result cannot restore %s (%s): "+
			"give a restore input ({\"agent_id\",\"connections\":[{\"connection_id\",\"oauth_token_id\"}]}) instead",
			len(bare), plural(len(bare), "entry has", "entries have"), plural(len(bare), "it", "them"), listSome(bare, 3))
	}
	return ac.RestoreAgentConnectionsInput{AgentID: r.AgentID, Connections: ac.RestoreEntries(r.Connections)}, nil
}

// listSome is the first n of ids, comma-separated, with how many more there are.
func listSome(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:n], ", "), len(ids)-n)
}

// readAtMost reads all of file ("-": stdin), up to maxRestoreFileBytes.
func readAtMost(file string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	} else if r == nil {
		return nil, errors.New("no stdin to read")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxRestoreFileBytes+1))
	switch {
	case err != nil:
		return nil, err
	case len(data) > maxRestoreFileBytes:
		return nil, fmt.Errorf("larger than %d MiB", maxRestoreFileBytes>>20)
	case len(bytes.TrimSpace(data)) == 0:
		return nil, errors.New("empty")
	}
	return data, nil
}

// decodeOne decodes data into v, refusing anything after the first JSON value.
func decodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more after the first JSON value")
	}
	return nil
}

// newRestorePlan is what --dry-run prints and the question says for a restore.
func newRestorePlan(opts options, clientOpts client.Options, in ac.RestoreAgentConnectionsInput) plan {
	ids := make([]string, len(in.Connections))
	for i, s := range in.Connections {
		ids[i] = s.ConnectionID
	}
	return plan{
		WorkflowType:  ac.RestoreAgentConnectionsWorkflowType,
		WorkflowID:    ac.RestoreAgentConnectionsWorkflowID(in.AgentID),
		TaskQueue:     opts.taskQueue,
		Namespace:     clientOpts.Namespace,
		Address:       clientOpts.HostPort,
		AgentID:       in.AgentID,
		ConnectionIDs: ids,
		Input:         in,
	}
}

// printRestoreDryRun prints what the restore would re-create and starts nothing.
func printRestoreDryRun(stdout, stderr io.Writer, opts options, p plan, in ac.RestoreAgentConnectionsInput) int {
	if opts.json {
		return writeJSON(stdout, stderr, struct {
			DryRun bool `json:"dry_run"`
			plan
		}{true, p}, exitOK)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dry run: nothing started; neither Temporal nor the control plane was asked anything\n")
	fmt.Fprintf(&b, "would restore these %d %s of agent %s (removed connection, OAuth token):\n",
		len(in.Connections), plural(len(in.Connections), "connection", "connections"), in.AgentID)
	for _, s := range in.Connections {
		fmt.Fprintf(&b, "    %s  %s\n", s.ConnectionID, s.OAuthTokenID)
	}
	b.WriteString(p.where())
	_, _ = io.WriteString(stdout, b.String())
	return exitOK
}

// followRestore shows the restore's progress until it ends, prints its outcome, and returns the
// exit code, as followTeardown does for a teardown.
func followRestore(ctx, waitCtx context.Context, c client.Client, wr client.WorkflowRun, opts options, stdout, stderr io.Writer) int {
	var progress *progressPrinter
	switch {
	case !opts.json:
		progress = newProgressPrinter(stdout, isTerminal(stdout))
		_, _ = fmt.Fprintf(stdout, "restore of agent %s: workflow %s, run %s\n", opts.agentID, wr.GetID(), wr.GetRunID())
	case isTerminal(stderr):
		progress = newProgressPrinter(stderr, true)
	}
	result, err := waitWithProgress[ac.RestoreAgentConnectionsResult](waitCtx, c, wr, progress)
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) && canceled.HasDetails() && canceled.Details(&result) == nil {
		err = nil
	}
	if err == nil {
		if progress != nil && progress.tty {
			progress.show(ac.TeardownProgress{AgentID: result.AgentID, Listed: true, Total: result.Total,
				Done: result.Restored + result.AlreadyPresent, Failed: result.Failed, Cancelled: result.Cancelled})
		}
		result, err = withFullRestoreReport(waitCtx, c, wr.GetID(), result)
	}
	progress.finish()
	if err != nil {
		return waitFailed(ctx, waitCtx, err, wr, opts, "restore", stdout, stderr, func(f failureJSON) any {
			return teardownFailedJSON{AgentID: opts.agentID, WorkflowID: wr.GetID(), Error: f}
		})
	}
	code := exitFailed
	if restoreComplete(result) {
		code = exitOK
	}
	if opts.json {
		return writeJSON(stdout, stderr, result, code)
	}
	_, _ = io.WriteString(stdout, renderRestoreSummary(result))
	return code
}

// withFullRestoreReport fills in the entries a large restore's result leaves to its report query.
func withFullRestoreReport(ctx context.Context, c client.Client, workflowID string, r ac.RestoreAgentConnectionsResult) (ac.RestoreAgentConnectionsResult, error) {
	if !r.ReportTruncated {
		return r, nil
	}
	all := make([]ac.RestoreOutcome, 0, r.Total)
	for page := range r.ReportPages {
		v, err := c.QueryWorkflow(ctx, workflowID, "", ac.ReportQuery, page)
		var p ac.RestoreReportPage
		if err == nil {
			err = v.Get(&p)
		}
		if err != nil {
			return r, fmt.Errorf("read page %d of %d of the restore's report: %w", page+1, r.ReportPages, err)
		}
		all = append(all, p.Connections...)
	}
	r.Connections, r.ReportTruncated = all, false
	return r, nil
}

// restoreComplete is the exit-0 rule of a restore: every entry ended restored or already present,
// and the restore was not cancelled. An outcome this starter does not know counts against it.
func restoreComplete(r ac.RestoreAgentConnectionsResult) bool {
	if r.Cancelled || r.Failed+r.Skipped > 0 || r.Restored+r.AlreadyPresent != r.Total {
		return false
	}
	for _, o := range r.Connections {
		if o.Outcome != ac.OutcomeRestored && o.Outcome != ac.OutcomeAlreadyPresent {
			return false
		}
	}
	return true
}

// renderRestoreSummary is what the starter prints when the restore has returned: a verdict, the
// count of each outcome, and each entry that was tried (the first maxListed) with its new
// connection, or its failure type and message.
func renderRestoreSummary(r ac.RestoreAgentConnectionsResult) string {
	var b strings.Builder
	notRestored := r.Total - r.Restored - r.AlreadyPresent
	switch {
	case restoreComplete(r):
		fmt.Fprintf(&b, "restore of agent %s complete: %d %s restored or already present\n", r.AgentID, r.Total, plural(r.Total, "connection", "connections"))
	case r.Cancelled:
		fmt.Fprintf(&b, "restore of agent %s cancelled: %d of %d connections not restored\n", r.AgentID, notRestored, r.Total)
	default:
		fmt.Fprintf(&b, "restore of agent %s incomplete: %d of %d connections not restored\n", r.AgentID, notRestored, r.Total)
	}
	fmt.Fprintf(&b, "  restored         %3d\n  already present  %3d\n  failed           %3d\n  skipped          %3d\n  cancelled        %3s\n",
		r.Restored, r.AlreadyPresent, r.Failed, r.Skipped, yesNo(r.Cancelled))
	if r.StopReason != "" {
		fmt.Fprintf(&b, "stopped early: %s\n", r.StopReason)
	}
	var listed []ac.RestoreOutcome
	for _, o := range r.Connections {
		if o.Outcome != ac.OutcomeSkipped {
			listed = append(listed, o)
		}
	}
	if len(listed) == 0 {
		return b.String()
	}
	b.WriteString("connections:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  REMOVED\tOUTCOME\tNEW CONNECTION\tFAILURE TYPE\tMESSAGE")
	for i, o := range listed {
		if i == maxListed {
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", o.ConnectionID, orDash(o.Outcome), orDash(o.NewConnectionID), orDash(o.FailureType), orDash(oneLine(o.Message)))
	}
	_ = tw.Flush()
	if len(listed) > maxListed {
		fmt.Fprintf(&b, "  ... and %d more (-o json lists them all)\n", len(listed)-maxListed)
	}
	return b.String()
}

// printRestoreHelp writes `starter restore -h`.
func printRestoreHelp(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString(`starter restore undoes a teardown: it re-creates the connections a saved teardown result
reports removed (RestoreAgentConnectionsWorkflow, one connection per OAuth token), or follows the
restore already running for the agent, and waits for the outcome.

usage:
  starter --agent-id A --all -o json > teardown.json
  starter restore teardown.json [flags]
  starter restore - [flags]          (the teardown's result, or a restore input, on stdin)

Flags:
`)
	shortOf := map[string]string{}
	for alias, name := range aliases {
		shortOf[name] = alias
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := aliases[f.Name]; !isAlias {
			writeFlag(&b, f, shortOf[f.Name])
		}
	})
	b.WriteString(`
Exit codes:
  0    every connection restored or already present, and not cancelled (--wait=false: started or attached to; --dry-run: valid)
  1    the restore failed, was cancelled, or left a connection failed or skipped
  2    bad usage, a bad input file, Temporal unreachable, or the question not answered yes: nothing started
  124  --timeout ran out while waiting; the workflow goes on
  130  interrupted (Ctrl-C; 143 on SIGTERM) while waiting; the workflow goes on
`)
	_, _ = io.WriteString(w, b.String())
}
