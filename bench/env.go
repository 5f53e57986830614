package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	tlog "go.temporal.io/sdk/log"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
	"github.com/agentops/agentconnections/workflows"
)

// apiKey is the only key the emulators accept; it is a local stand-in, not a credential.
const apiKey = "bench-local-key-7c1e"

// options are the command's flags.
type options struct {
	out        string
	quick      bool
	profileDir string
	noProfile  bool
	command    string
	// only names the sections to run (sectionNames); empty runs them all.
	only []string
}

// Sections of the report, by the names --only takes, in the order they run.
const (
	sectionE2E       = "e2e"       // 1
	sectionTeardown  = "teardown"  // 2a
	sectionPace      = "pace"      // 2b
	sectionFleet     = "fleet"     // 2c
	sectionRestore   = "restore"   // 2d
	sectionFootprint = "footprint" // 3
)

// sectionNames are the sections in report order, with the numbers --only also takes for them.
var sectionNames = []struct{ name, number string }{
	{sectionE2E, "1"}, {sectionTeardown, "2a"}, {sectionPace, "2b"}, {sectionFleet, "2c"}, {sectionRestore, "2d"}, {sectionFootprint, "3"},
}

// parseOnly reads --only: comma-separated section names (or numbers), each known, in report
// order without repeats.
func parseOnly(v string) ([]string, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		found := false
		for _, s := range sectionNames {
			if f == s.name || f == s.number {
				want[s.name], found = true, true
			}
		}
		if !found {
			names := make([]string, len(sectionNames))
			for i, s := range sectionNames {
				names[i] = s.name
			}
			return nil, fmt.Errorf("--only: unknown section %q (sections: %s, or their numbers 1, 2a, 2b, 2c, 2d, 3)", f, strings.Join(names, ", "))
		}
	}
	if len(want) == 0 {
		return nil, errors.New("--only: no section named")
	}
	var out []string
	for _, s := range sectionNames {
		if want[s.name] {
			out = append(out, s.name)
		}
	}
	return out, nil
}

// runs reports whether the run includes section.
func (o options) runs(section string) bool {
	return len(o.only) == 0 || slices.Contains(o.only, section)
}

// harness is one run: the dev server, a client, the worker binary, and a counter for unique names.
type harness struct {
	ctx       context.Context
	opts      options
	sz        sizes
	progress  io.Writer
	server    *devserver.Server
	client    client.Client
	workerBin string
	seq       int
}

func quietLogger() tlog.Logger { return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)) }

func (h *harness) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(h.progress, "bench: "+format+"\n", args...)
}

// name returns a name unique in this run (task queues, agents).
func (h *harness) name(prefix string) string {
	h.seq++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().Unix(), h.seq)
}

// controlPlane is an emulator served on a loopback port.
type controlPlane struct {
	em  *emulator.Server
	srv *httptest.Server
}

func newControlPlane(o emulator.Options) *controlPlane {
	o.APIKey = apiKey
	em := emulator.New(o)
	return &controlPlane{em: em, srv: httptest.NewServer(em)}
}

func (c *controlPlane) close() {
	c.em.Close() // first: releases waiting requests so the server's Close does not wait on them
	c.srv.Close()
}

func connectionIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("conn-%05d", i)
	}
	return ids
}

// workerProc is the worker binary, running.
type workerProc struct {
	p    *proc.Process
	addr string
}

// startWorker runs the worker binary on taskQueue against baseURL and waits until /readyz says
// it polls. extra entries override the defaults.
func (h *harness) startWorker(taskQueue, baseURL string, extra ...string) (*workerProc, error) {
	// A free port can be taken by another process between the check and the worker's listen
	// (seen when test packages run in parallel): try again on another one.
	for try := 1; ; try++ {
		w, err := h.startWorkerOnce(taskQueue, baseURL, extra...)
		if err == nil || try == 3 || !strings.Contains(err.Error(), "address already in use") {
			return w, err
		}
	}
}

func (h *harness) startWorkerOnce(taskQueue, baseURL string, extra ...string) (*workerProc, error) {
	port, err := devserver.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	home, err := os.MkdirTemp("", "bench-worker-home-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TEMPORAL_ADDRESS=" + h.server.Address,
		"TEMPORAL_NAMESPACE=default",
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
		"LANGSMITH_API_KEY=" + apiKey,
		"LANGSMITH_CONTROL_PLANE_URL=" + baseURL,
		"LANGSMITH_REQUEST_TIMEOUT=5s",
		"LANGSMITH_REQUESTS_PER_SECOND=0",
		"WORKER_HTTP_ADDRESS=" + addr,
		"WORKER_STOP_TIMEOUT=5s",
		"LOG_LEVEL=warn",
	}
	env = append(env, extra...)
	p, err := proc.Start("worker", h.workerBin, nil, env, nil)
	if err != nil {
		return nil, err
	}
	w := &workerProc{p: p, addr: addr}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return nil, fmt.Errorf("worker exited at start: %s", p.Output())
		}
		if err := h.ctx.Err(); err != nil {
			p.Stop(10 * time.Second)
			return nil, err
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop(10 * time.Second)
	return nil, fmt.Errorf("worker not ready within 30s: %s", p.Output())
}

// usage is what a worker process used.
type usage struct {
	peakRSSKiB int64
	cpuSeconds float64
}

// stop reads the worker's peak RSS (VmHWM) just before stopping it, stops it, and reads its CPU
// time after it exited. proc.Process does not expose os.ProcessState, so the CPU time is the
// growth of RUSAGE_CHILDREN across the worker's exit: the same wait4 figure that
// ProcessState.UserTime()+SystemTime() reports, since no other child of this process exits in
// between (the dev server runs on).
func (w *workerProc) stop() (usage, error) {
	var u usage
	hwm, err := vmHWM(w.p.PID())
	if err != nil {
		w.p.Stop(10 * time.Second)
		return u, err
	}
	u.peakRSSKiB = hwm
	before, err := childrenCPU()
	if err != nil {
		w.p.Stop(10 * time.Second)
		return u, err
	}
	w.p.Stop(10 * time.Second)
	after, err := childrenCPU()
	if err != nil {
		return u, err
	}
	u.cpuSeconds = after - before
	if code := w.p.ExitCode(); code != 0 {
		return u, fmt.Errorf("worker exited with code %d: %s", code, lastLines(w.p.Output(), 5))
	}
	return u, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// vmHWM reads a process's peak resident set size in KiB from /proc/<pid>/status.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func rusageSeconds(ru *syscall.Rusage) float64 {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// childrenCPU is the user plus system CPU seconds of this process's waited-for children.
func childrenCPU() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0, err
	}
	return rusageSeconds(&ru), nil
}

// selfCPU is this process's user plus system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return rusageSeconds(&ru)
}

// processCPU reads a running process's user plus system CPU seconds from /proc/<pid>/stat
// (clock ticks of 1/100 s, as on every Linux this runs on).
func processCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after its closing parenthesis do not.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (ut + st) / 100
}

// inProcess is a worker in this process registering the real workflows and activities and the
// baselines the worker binary does not have.
type inProcess struct {
	c client.Client
	w worker.Worker
}

const (
	noopWorkflowName  = "BenchNoopWorkflow"
	noopActivityName  = "BenchNoop"
	naiveWorkflowName = "BenchNaiveTeardown"
)

// startInProcess starts an in-process worker on taskQueue, configured as the binary is by
// startWorker (5 s request timeout, no pacing, 100 activity slots), with its own client
// connection. It has no metrics or tracing, which the binary has.
func (h *harness) startInProcess(taskQueue, baseURL string) (*inProcess, error) {
	c, err := client.Dial(client.Options{HostPort: h.server.Address, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	cp, err := controlplane.New(controlplane.Config{
		BaseURL:        baseURL,
		Credentials:    controlplane.StaticCredentials{APIKey: apiKey},
		RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	acts, err := activities.New(activities.Config{
		ControlPlane: cp,
		Coordinator:  activities.TemporalCoordinator{Client: c},
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	w := worker.New(c, taskQueue, worker.Options{MaxConcurrentActivityExecutionSize: 100})
	w.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	w.RegisterActivity(acts)
	w.RegisterWorkflowWithOptions(noopWorkflow, workflow.RegisterOptions{Name: noopWorkflowName})
	w.RegisterWorkflowWithOptions(naiveTeardown, workflow.RegisterOptions{Name: naiveWorkflowName})
	w.RegisterActivityWithOptions(noopActivity, activity.RegisterOptions{Name: noopActivityName})
	if err := w.Start(); err != nil {
		c.Close()
		return nil, err
	}
	return &inProcess{c: c, w: w}, nil
}

func (p *inProcess) stop() {
	p.w.Stop()
	p.c.Close()
}

// noopWorkflow is the end-to-end baseline: the same input and result as RemoveConnectionWorkflow
// and the same activity options, running one activity that does nothing.
func noopWorkflow(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(nil))
	var res ac.RemoveConnectionResult
	err := workflow.ExecuteActivity(ctx, noopActivityName, activities.RemoveConnectionInput{
		AgentID: in.AgentID, ConnectionID: in.ConnectionID, MissingOK: in.MissingOKOrDefault(),
	}).Get(ctx, &res)
	return res, err
}

func noopActivity(_ context.Context, in activities.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	return ac.RemoveConnectionResult{AgentID: in.AgentID, ConnectionID: in.ConnectionID, Outcome: ac.OutcomeRemoved, Attempts: 1}, nil
}

// naiveTeardown is the teardown baseline: one plain RemoveConnection activity per connection, at
// most concurrency of them at once, in one workflow.
func naiveTeardown(ctx workflow.Context, agentID string, ids []string, concurrency int) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(nil))
	sem := workflow.NewSemaphore(ctx, int64(concurrency))
	wg := workflow.NewWaitGroup(ctx)
	removed := 0
	var firstErr error
	for _, id := range ids {
		if err := sem.Acquire(ctx, 1); err != nil {
			return removed, err
		}
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			defer sem.Release(1)
			var res ac.RemoveConnectionResult
			err := workflow.ExecuteActivity(ctx, ac.RemoveConnectionActivityType,
				activities.RemoveConnectionInput{AgentID: agentID, ConnectionID: id, MissingOK: true}).Get(ctx, &res)
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case err == nil:
				removed++
			}
		})
	}
	wg.Wait(ctx)
	return removed, firstErr
}

var errIncomplete = errors.New("run left connections behind")
