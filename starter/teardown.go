package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
)

const (
	// pollInterval is how often the progress query is asked while waiting.
	pollInterval = 500 * time.Millisecond
	// queryTimeout bounds one progress query: with no worker polling, a query waits on the server,
	// and the starter should ask again rather than show nothing for long.
	queryTimeout = 5 * time.Second
	// plainProgressEvery is the least time between two plain progress lines, so a log that
	// captures them is not flooded by a fast teardown.
	plainProgressEvery = time.Second
	// progressBarWidth is the number of cells in the terminal progress bar.
	progressBarWidth = 20
	// maxListed bounds the connections the summary lists one by one; -o json has them all.
	maxListed = 50
)

// teardownInput is the teardown's workflow input the command line asks for. MissingOK and ContinueOnError
// are always sent, so the flags' defaults, not the workflow's, are what the user was shown.
func teardownInput(opts options) ac.RemoveAgentConnectionsInput {
	missingOK, continueOnError := opts.missingOK, opts.continueOnError
	return ac.RemoveAgentConnectionsInput{
		AgentID:         opts.agentID,
		ConnectionIDs:   opts.connectionIDs,
		Concurrency:     opts.concurrency,
		MissingOK:       &missingOK,
		ContinueOnError: &continueOnError,
	}
}

// runTeardown starts or follows the teardown of one agent and returns the exit code.
func runTeardown(ctx context.Context, c client.Client, opts options, stdout, stderr io.Writer) int {
	// One teardown per agent at a time: a second starter, or this command run again after Ctrl-C,
	// follows the running teardown.
	wr, code, ok := startOrFollow(ctx, c, opts, "teardown", ac.RemoveAgentConnectionsWorkflowID(opts.agentID),
		ac.RemoveAgentConnectionsWorkflowType, teardownInput(opts), stderr)
	if !ok {
		return code
	}
	return waitOrPrint(ctx, wr, opts, stdout, stderr, func(waitCtx context.Context) int {
		return followTeardown(ctx, waitCtx, c, wr, opts, stdout, stderr)
	})
}

// followTeardown shows the teardown's progress until it ends, prints its outcome, and returns the
// exit code. ctx is the run's (cancelled on interrupt), waitCtx the wait's (bounded by --timeout too).
func followTeardown(ctx, waitCtx context.Context, c client.Client, wr client.WorkflowRun, opts options, stdout, stderr io.Writer) int {
	// stdout carries only the result with -o json; a person watching a terminal still sees
	// the bar on stderr, a script capturing stderr gets no progress noise.
	var progress *progressPrinter
	switch {
	case !opts.json:
		progress = newProgressPrinter(stdout, isTerminal(stdout))
		_, _ = fmt.Fprintf(stdout, "teardown of agent %s: workflow %s, run %s\n", opts.agentID, wr.GetID(), wr.GetRunID())
	case isTerminal(stderr):
		progress = newProgressPrinter(stderr, true)
	}

	result, err := waitTeardown(waitCtx, c, wr, progress)
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) && canceled.HasDetails() && canceled.Details(&result) == nil {
		// Cancelled (CLI, a parent, an external request): it stopped and reported what it did.
		err = nil
	}
	if err == nil {
		progress.showResult(result)
		result, err = withFullReport(waitCtx, c, wr.GetID(), result)
	}
	progress.finish()
	return reportTeardown(ctx, waitCtx, wr, opts, result, err, stdout, stderr)
}

// reportTeardown prints how the wait for the teardown ended (its result, its failure, or why the
// starter stopped waiting) and returns the exit code.
func reportTeardown(ctx, waitCtx context.Context, wr client.WorkflowRun, opts options, result ac.RemoveAgentConnectionsResult, err error, stdout, stderr io.Writer) int {
	if err != nil {
		return waitFailed(ctx, waitCtx, err, wr, opts, "teardown", stdout, stderr, func(f failureJSON) any {
			return teardownFailedJSON{AgentID: opts.agentID, WorkflowID: wr.GetID(), Error: f}
		})
	}

	code := exitFailed
	if teardownComplete(result) {
		code = exitOK
	}
	if opts.json {
		return writeJSON(stdout, stderr, result, code)
	}
	_, _ = io.WriteString(stdout, renderSummary(result))
	return code
}

// withFullReport fills in the entries a large teardown's result leaves to its report query, so
// the starter always prints (and -o json always holds) every connection.
func withFullReport(ctx context.Context, c client.Client, workflowID string, r ac.RemoveAgentConnectionsResult) (ac.RemoveAgentConnectionsResult, error) {
	if !r.ReportTruncated {
		return r, nil
	}
	all := make([]ac.ConnectionOutcome, 0, r.Total)
	for page := range r.ReportPages {
		v, err := c.QueryWorkflow(ctx, workflowID, "", ac.ReportQuery, page)
		var p ac.ReportPage
		if err == nil {
			err = v.Get(&p)
		}
		if err != nil {
			return r, fmt.Errorf("read page %d of %d of the teardown's report: %w", page+1, r.ReportPages, err)
		}
		all = append(all, p.Connections...)
	}
	r.Connections, r.ReportTruncated = all, false
	return r, nil
}

// waitTeardown waits for the teardown's result (following continue-as-new) and, when progress is
// not nil, asks the progress query about every pollInterval meanwhile.
func waitTeardown(ctx context.Context, c client.Client, wr client.WorkflowRun, progress *progressPrinter) (ac.RemoveAgentConnectionsResult, error) {
	return waitWithProgress[ac.RemoveAgentConnectionsResult](ctx, c, wr, progress)
}

// waitWithProgress waits for a teardown's or a restore's result, R, and, when progress is not nil,
// asks the progress query about every pollInterval meanwhile.
func waitWithProgress[R any](ctx context.Context, c client.Client, wr client.WorkflowRun, progress *progressPrinter) (R, error) {
	type outcome struct {
		result R
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		var r R
		err := wr.Get(ctx, &r)
		done <- outcome{r, err}
	}()
	if progress == nil {
		o := <-done
		return o.result, o.err
	}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		// An error is expected while the workflow starts (no worker has run it yet, or it has not
		// set its query handler) and harmless later (a worker restarting): the next tick asks
		// again, and the result, not the query, decides the outcome.
		if p, err := queryProgress(ctx, c, wr.GetID()); err == nil {
			progress.show(p)
		}
		select {
		case o := <-done:
			return o.result, o.err
		case <-ticker.C:
		}
	}
}

// queryProgress asks the latest run of the workflow (an empty run ID follows continue-as-new)
// for its progress.
func queryProgress(ctx context.Context, c client.Client, workflowID string) (ac.TeardownProgress, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var p ac.TeardownProgress
	v, err := c.QueryWorkflow(ctx, workflowID, "", ac.ProgressQuery)
	if err != nil {
		return p, fmt.Errorf("query %s: %w", ac.ProgressQuery, err)
	}
	if err := v.Get(&p); err != nil {
		return p, fmt.Errorf("decode %s: %w", ac.ProgressQuery, err)
	}
	return p, nil
}

// teardownComplete is the exit-0 rule: every connection ended removed or already absent, and the
// teardown was not cancelled. Unknown outcomes count against it, so a newer workflow's outcome
// this starter does not know cannot pass for success.
func teardownComplete(r ac.RemoveAgentConnectionsResult) bool {
	if r.Cancelled || r.Failed+r.Remained+r.Reappeared+r.Skipped > 0 || r.Removed+r.AlreadyAbsent != r.Total {
		return false
	}
	for _, o := range r.Connections {
		if o.Outcome != ac.OutcomeRemoved && o.Outcome != ac.OutcomeAlreadyAbsent {
			return false
		}
	}
	return true
}

// progressPrinter shows the progress: on a terminal one line rewritten in place, elsewhere (a
// pipe, a file, a CI log) plain lines, only when the numbers change and at most one per
// plainProgressEvery. A nil printer shows nothing.
type progressPrinter struct {
	w       io.Writer
	tty     bool
	now     func() time.Time
	last    string    // the line last written
	lastAt  time.Time // when it was written
	onLine  int       // bytes of the bar line on screen, 0 when none
	written bool
}

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, now: time.Now}
}

func (pp *progressPrinter) show(p ac.TeardownProgress) {
	if pp == nil {
		return
	}
	if pp.tty {
		line := renderProgressBar(p, progressBarWidth)
		if line == pp.last {
			return
		}
		// Blank out what a longer previous line leaves behind, without relying on escape codes.
		pad := max(pp.onLine-len(line), 0)
		_, _ = fmt.Fprintf(pp.w, "\r%s%s", line, strings.Repeat(" ", pad))
		pp.last, pp.onLine = line, len(line)
		return
	}
	line := "progress: " + renderProgressCounts(p)
	now := pp.now()
	if line == pp.last || (pp.written && now.Sub(pp.lastAt) < plainProgressEvery) {
		return
	}
	_, _ = fmt.Fprintln(pp.w, line)
	pp.last, pp.lastAt, pp.written = line, now, true
}

// showResult draws the bar once more from the result, so a terminal does not keep showing the last
// progress polled before the end. Plain lines need no last one: the summary follows at once.
func (pp *progressPrinter) showResult(r ac.RemoveAgentConnectionsResult) {
	if pp == nil || !pp.tty {
		return
	}
	pp.show(ac.TeardownProgress{
		AgentID: r.AgentID, Listed: true, Total: r.Total,
		Done: r.Removed + r.AlreadyAbsent, Failed: r.Failed, Cancelled: r.Cancelled,
	})
}

// finish ends the bar line, so what follows starts on a line of its own.
func (pp *progressPrinter) finish() {
	if pp != nil && pp.tty && pp.onLine > 0 {
		_, _ = fmt.Fprintln(pp.w)
		pp.onLine = 0
	}
}

// renderProgressCounts says the progress in words: "120/500 done, 3 failed, 10 in flight".
func renderProgressCounts(p ac.TeardownProgress) string {
	if !p.Listed {
		return "listing connections"
	}
	s := fmt.Sprintf("%d/%d done, %d failed, %d in flight", p.Done, p.Total, p.Failed, p.InFlight)
	if p.Cancelled {
		s += ", cancelling"
	}
	return s
}

// renderProgressBar is the terminal line: "[#####.....] 120/500 done, 3 failed, 10 in flight".
// The bar counts failed connections as finished, so it fills up whatever the outcomes.
func renderProgressBar(p ac.TeardownProgress, width int) string {
	filled := 0
	switch {
	case !p.Listed:
	case p.Total <= 0:
		filled = width
	default:
		filled = min(max((p.Done+p.Failed)*width/p.Total, 0), width)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " + renderProgressCounts(p)
}

// renderSummary is what the starter prints when the teardown has returned: a verdict, the count of
// each outcome, and the connections not removed (all but the skipped ones, which can be many and
// carry no reason of their own), with their failure type and message.
func renderSummary(r ac.RemoveAgentConnectionsResult) string {
	var b strings.Builder
	notRemoved := r.Total - r.Removed - r.AlreadyAbsent
	switch {
	case teardownComplete(r):
		fmt.Fprintf(&b, "teardown of agent %s complete: %d %s removed or already absent\n", r.AgentID, r.Total, plural(r.Total, "connection", "connections"))
	case r.Cancelled:
		fmt.Fprintf(&b, "teardown of agent %s cancelled: %d of %d connections not removed\n", r.AgentID, notRemoved, r.Total)
	default:
		fmt.Fprintf(&b, "teardown of agent %s incomplete: %d of %d connections not removed\n", r.AgentID, notRemoved, r.Total)
	}
	rows := []struct{ name, value string }{
		{"removed", fmt.Sprint(r.Removed)},
		{"already absent", fmt.Sprint(r.AlreadyAbsent)},
		{"failed", fmt.Sprint(r.Failed)},
		{"remained", fmt.Sprint(r.Remained)},
		{"reappeared", fmt.Sprint(r.Reappeared)},
		{"skipped", fmt.Sprint(r.Skipped)},
		{"cancelled", yesNo(r.Cancelled)},
		// Whether the teardown listed the agent's connections again afterwards: only then does
		// "reappeared 0" mean none came back.
		{"verified", yesNo(r.Verified)},
	}
	valueWidth := 0
	for _, row := range rows {
		valueWidth = max(valueWidth, len(row.value))
	}
	for _, row := range rows {
		fmt.Fprintf(&b, "  %-14s  %*s\n", row.name, valueWidth, row.value)
	}

	if r.StopReason != "" {
		fmt.Fprintf(&b, "stopped early: %s\n", r.StopReason)
	}
	var listed []ac.ConnectionOutcome
	for _, o := range r.Connections {
		switch o.Outcome {
		case ac.OutcomeRemoved, ac.OutcomeAlreadyAbsent, ac.OutcomeSkipped:
		default:
			listed = append(listed, o)
		}
	}
	if len(listed) == 0 {
		return b.String()
	}
	b.WriteString("connections not removed:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  CONNECTION\tOUTCOME\tFAILURE TYPE\tMESSAGE")
	for i, o := range listed {
		if i == maxListed {
			break
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", o.ConnectionID, orDash(o.Outcome), orDash(o.FailureType), orDash(oneLine(o.Message)))
	}
	_ = tw.Flush()
	if len(listed) > maxListed {
		fmt.Fprintf(&b, "  ... and %d more (-o json lists them all)\n", len(listed)-maxListed)
	}
	return b.String()
}

// oneLine keeps a message from the control plane on one table row, and keeps its control
// characters (escape sequences included) away from the terminal.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)), " ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

type teardownFailedJSON struct {
	AgentID    string      `json:"agent_id"`
	WorkflowID string      `json:"workflow_id"`
	Error      failureJSON `json:"error"`
}
