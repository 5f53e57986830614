package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

// TestIntegration_ReadyzFollowsTheTemporalServer runs the worker binary against a dev server of
// its own, kills that server by its process id and starts another on the same port: /readyz says
// 503 within 10 s of the loss (a worker whose server is gone gets no work), /healthz still 200,
// and /readyz 200 again once the new server answers, when the worker runs removals again.
func TestIntegration_ReadyzFollowsTheTemporalServer(t *testing.T) {
	port, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	first := devserver.ForTest(t, devserver.Options{Port: port})

	const taskQueue = "it-readyz-server-loss"
	em := emulator.New(emulator.Options{APIKey: testKey, Seed: map[string][]string{"agent-readyz": {"conn-readyz"}}})
	api := httptest.NewServer(em)
	t.Cleanup(api.Close)
	t.Cleanup(em.Close)

	httpPort, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	w, err := proc.Start("worker", workerBin, nil, []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"TEMPORAL_ADDRESS=" + first.Address,
		"TEMPORAL_NAMESPACE=default",
		"TEMPORAL_TASK_QUEUE=" + taskQueue,
		"LANGSMITH_API_KEY=" + testKey,
		"LANGSMITH_CONTROL_PLANE_URL=" + api.URL,
		"WORKER_HTTP_ADDRESS=" + httpAddr,
		"WORKER_STOP_TIMEOUT=2s",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop(10 * time.Second)
		if strings.Contains(w.Output(), testKey) {
			t.Errorf("the worker logged the API key")
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", w.Output())
		}
	})

	probe := func(path string) int {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + httpAddr + path)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	// waitReadyz polls /readyz until it answers want, failing after within.
	waitReadyz := func(want int, within time.Duration, when string) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(within)
		last := 0
		for {
			if w.Exited() {
				t.Fatalf("the worker exited (code %d) %s", w.ExitCode(), when)
			}
			if last = probe("/readyz"); last == want {
				t.Logf("/readyz %s: %d after %s", when, want, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz %s: got %s, want %d within %s", when, answered(last), want, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	waitReadyz(http.StatusOK, 30*time.Second, "at start")

	first.Kill()
	waitReadyz(http.StatusServiceUnavailable, 10*time.Second, "after the Temporal server was killed")
	if code := probe("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz without a Temporal server: got %s, want 200: the process still serves", answered(code))
	}

	second := devserver.ForTest(t, devserver.Options{Port: port})
	waitReadyz(http.StatusOK, time.Minute, "after a Temporal server was back on the same port")

	// Ready again means working again: the worker runs a removal started on the new server.
	c, err := client.Dial(client.Options{HostPort: second.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:        ac.RemoveConnectionWorkflowID("agent-readyz", "conn-readyz"),
		TaskQueue: taskQueue,
	}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "agent-readyz", ConnectionID: "conn-readyz"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res ac.RemoveConnectionResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("removal after the server came back: %v", err)
	}
	if res.Outcome != ac.OutcomeRemoved {
		t.Errorf("removal after the server came back: got %+v, want removed", res)
	}
	w.Stop(10 * time.Second) // before the server's cleanup stops it
	for _, want := range []string{"temporal server does not answer", "temporal server answers again"} {
		if !strings.Contains(w.Output(), want) {
			t.Errorf("the worker did not log %q", want)
		}
	}
}

func answered(code int) string {
	if code == 0 {
		return "no answer"
	}
	return fmt.Sprint(code)
}
