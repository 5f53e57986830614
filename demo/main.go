// Command demo runs the whole worker end to end on this machine, with no Docker and no network:
// a Temporal dev server, the control plane emulator seeded with an agent and a few connections,
// and the real worker; then it starts three removals with the real starter (one that succeeds,
// one the control plane refuses with a 422, one that gets a 503 first), and a fourth through the
// Nexus endpoint from a workflow in another namespace, and says what happened to each in plain
// words. It stops everything it started, also on Ctrl-C or failure. `make run`
// builds the binaries it needs and runs it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

const agentID = "agent-demo"

func main() {
	os.Exit(run())
}

func run() int {
	bin := flag.String("bin", "bin", "folder holding the temporal, worker and starter binaries")
	teardown := flag.Int("teardown", 0, "instead of the three removals, tear down an agent with this many connections (and one the control plane refuses) and show its progress")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{bin: *bin, out: os.Stdout, teardown: *teardown}
	err := d.run(ctx)
	interrupted := ctx.Err() != nil
	d.cleanup()
	switch {
	case err == nil:
		return 0
	case interrupted:
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it started is stopped")
		return 130
	}
	fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	if d.worker != nil {
		fmt.Fprintf(os.Stderr, "worker output (last lines):\n%s\n", tail(d.worker.Output(), 20))
	}
	return 1
}

type demo struct {
	bin      string
	teardown int
	out      io.Writer
	dir      string
	server   *devserver.Server
	em       *emulator.Server
	emHTTP   *http.Server
	emURL    string
	worker   *proc.Process
	stops    []func()
	failures int
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// cleanup stops what was started, the last first.
func (d *demo) cleanup() {
	if len(d.stops) > 0 {
		d.say("\n==> Stopping the worker, the emulator and the dev server")
	}
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	d.stops = nil
}

func (d *demo) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "agent-connections-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	for _, name := range []string{"temporal", "worker", "starter"} {
		if _, err := os.Stat(filepath.Join(d.bin, name)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make run`, which builds it", name, d.bin)
		}
	}

	d.say("==> Starting a Temporal dev server (in-memory)")
	d.server, err = devserver.Start(ctx, devserver.Options{CLIPath: filepath.Join(d.bin, "temporal"), UI: true, Namespaces: []string{callerNamespace}})
	if err != nil {
		return err
	}
	d.stops = append(d.stops, d.server.Stop)
	d.say("    gRPC %s, Web UI %s", d.server.Address, d.server.UIAddress)

	// A fresh key for each run: the emulator accepts only it, the worker sends it, nothing prints it.
	key := randomKey()
	if err := d.startEmulator(key); err != nil {
		return err
	}
	if err := d.startWorker(ctx, key); err != nil {
		return err
	}
	if d.teardown > 0 {
		return d.runTeardown(ctx)
	}

	d.say("\n==> 1. Remove conn-1: the control plane answers 204")
	d.remove(ctx, "conn-1", 0, func(code int, deletes int) string {
		if code == 0 && deletes == 1 && !d.em.HasConnection(agentID, "conn-1") {
			return "conn-1 is gone: one DELETE, answered 204."
		}
		return ""
	})

	d.say("\n==> 2. Remove conn-locked: the control plane refuses it with a 422")
	d.remove(ctx, "conn-locked", 1, func(code int, deletes int) string {
		if code == 1 && deletes == 1 {
			return "the 422 failed the removal at once: one DELETE, no retry (ValidationError is non-retryable)."
		}
		return ""
	})

	d.say("\n==> 3. Remove conn-2: the control plane answers 503 (Retry-After: 2) first, then 204")
	d.em.InjectNext(emulator.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "2", ConnectionID: "conn-2", Detail: "maintenance"})
	d.remove(ctx, "conn-2", 0, func(code int, deletes int) string {
		if code == 0 && deletes == 2 && !d.em.HasConnection(agentID, "conn-2") {
			return "the 503 was retried by Temporal after the asked 2 s: two DELETEs (503, then 204), conn-2 is gone."
		}
		return ""
	})

	d.removeThroughNexus(ctx)

	if ctx.Err() != nil {
		return ctx.Err()
	}
	d.say("\n==> Left on agent %s: %s", agentID, strings.Join(d.em.Connections(agentID), ", "))
	d.say("    Each removal is a workflow with ID remove-connection/%s/<connection>; see them in %s", agentID, d.server.UIAddress)
	if d.failures > 0 {
		return fmt.Errorf("%d of 4 removals did not end as expected", d.failures)
	}
	d.say("==> All four removals ended as expected.")
	return nil
}

func (d *demo) startEmulator(key string) error {
	seed := map[string][]string{agentID: {"conn-1", "conn-2", "conn-3", "conn-locked"}}
	var latency time.Duration
	if d.teardown > 0 {
		ids := make([]string, 0, d.teardown+1)
		for i := range d.teardown {
			ids = append(ids, fmt.Sprintf("conn-%05d", i))
		}
		seed = map[string][]string{teardownAgentID: append(ids, "conn-locked")}
		// Slow enough to watch the progress, as fast as the real API answers.
		latency = 100 * time.Millisecond
	}
	d.em = emulator.New(emulator.Options{
		APIKey:               key,
		Seed:                 seed,
		InvalidConnectionIDs: []string{"conn-locked"},
		Latency:              latency,
		LogLimit:             2*d.teardown + 100,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.emURL = "http://" + ln.Addr().String()
	d.emHTTP = &http.Server{Handler: d.em, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.emHTTP.Serve(ln) }()
	d.stops = append(d.stops, func() {
		d.em.Close()
		_ = d.emHTTP.Close()
	})
	d.say("==> Control plane emulator at %s", d.emURL)
	if d.teardown > 0 {
		d.say("    agent %s has %d connections; the control plane refuses to remove conn-locked (422) and answers each request in 100 ms", teardownAgentID, d.teardown+1)
		return nil
	}
	d.say("    agent %s has connections %s", agentID, strings.Join(d.em.Connections(agentID), ", "))
	return nil
}

const teardownAgentID = "agent-teardown"

// runTeardown runs `starter --all` with the terminal attached, so its progress bar shows, and
// checks the end state at the control plane.
func (d *demo) runTeardown(ctx context.Context) error {
	args := []string{"--agent-id", teardownAgentID, "--all", "--concurrency", "5"}
	d.say("\n==> Tear down every connection of %s", teardownAgentID)
	d.say("    $ starter %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "starter"), args...)
	cmd.Env = d.clientEnv()
	cmd.Stdout, cmd.Stderr = d.out, os.Stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	code := cmd.ProcessState.ExitCode()
	left := d.em.Connections(teardownAgentID)
	st := d.em.Stats()
	if code == 1 && len(left) == 1 && left[0] == "conn-locked" && st.Removed == d.teardown {
		d.say("\n    -> %d connections removed, one DELETE each (%d DELETEs answered 204); conn-locked is reported and left; the starter exits 1 because not everything is gone.", d.teardown, st.ByMethodStatus["DELETE 204"])
		return nil
	}
	return fmt.Errorf("teardown did not end as expected: starter exit %d (%v), %d connections left, %d removed", code, err, len(left), st.Removed)
}

func (d *demo) startWorker(ctx context.Context, key string) error {
	port, err := devserver.FreePort()
	if err != nil {
		return err
	}
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(d.dir, "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	d.stops = append(d.stops, func() { _ = logFile.Close() })
	env := append(d.clientEnv(),
		"LANGSMITH_API_KEY="+key,
		"LANGSMITH_CONTROL_PLANE_URL="+d.emURL,
		"WORKER_HTTP_ADDRESS="+httpAddr,
		"LOG_FORMAT=console",
	)
	d.worker, err = proc.Start("worker", filepath.Join(d.bin, "worker"), nil, env, logFile)
	if err != nil {
		return err
	}
	d.stops = append(d.stops, func() { d.worker.Stop(10 * time.Second) })
	if err := waitReady(ctx, "http://"+httpAddr+"/readyz", d.worker, 30*time.Second); err != nil {
		return err
	}
	d.say("==> Worker polling task queue %s (pid %d, logs in %s)", ac.DefaultTaskQueue, d.worker.PID(), logPath)
	return nil
}

// clientEnv is this process's environment pointed at the dev server, without any Temporal or
// LangSmith setting the user's shell may carry.
func (d *demo) clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TEMPORAL_") || strings.HasPrefix(kv, "LANGSMITH_") || strings.HasPrefix(kv, "WORKER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TEMPORAL_ADDRESS="+d.server.Address, "TEMPORAL_NAMESPACE=default")
}

// remove runs the starter for one connection, shows what it printed, and checks the outcome with
// judge (given the starter's exit code and the DELETEs the emulator saw for the connection).
func (d *demo) remove(ctx context.Context, connectionID string, wantCode int, judge func(code, deletes int) string) {
	if ctx.Err() != nil {
		return
	}
	args := []string{"--agent-id", agentID, "--connection-id", connectionID}
	d.say("    $ starter %s", strings.Join(args, " "))
	p, err := proc.Start("starter", filepath.Join(d.bin, "starter"), args, d.clientEnv(), nil)
	if err != nil {
		d.say("    could not run the starter: %v", err)
		d.failures++
		return
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(time.Second)
		return
	case <-time.After(2 * time.Minute):
		p.Stop(time.Second)
		d.say("    the starter did not finish within 2 minutes")
		d.failures++
		return
	}
	for _, line := range strings.Split(strings.TrimRight(p.Output(), "\n"), "\n") {
		d.say("    %s", line)
	}
	code := p.ExitCode()
	if verdict := judge(code, d.em.DeleteCount(connectionID)); verdict != "" && code == wantCode {
		d.say("    -> %s", verdict)
		return
	}
	d.failures++
	d.say("    -> NOT as expected: starter exit code %d (want %d), %d DELETE(s) at the control plane",
		code, wantCode, d.em.DeleteCount(connectionID))
}

func waitReady(ctx context.Context, url string, p *proc.Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return errors.New("the worker exited at start (see its output below)")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the worker was not ready within %s", timeout)
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "demo-" + hex.EncodeToString(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
