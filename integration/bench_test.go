package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	tlog "go.temporal.io/sdk/log"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/workflows"
)

// naiveTeardown is the baseline shape: one RemoveConnection activity per connection, at most
// concurrency of them at once.
func naiveTeardown(ctx workflow.Context, agentID string, ids []string, concurrency int) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(nil))
	var a *activities.Activities
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
			err := workflow.ExecuteActivity(ctx, a.RemoveConnection, ac.RemoveConnectionActivityInput{AgentID: agentID, ConnectionID: id, MissingOK: true}).Get(ctx, &res)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil {
				removed++
			}
		})
	}
	wg.Wait(ctx)
	return removed, firstErr
}

// BenchmarkTeardown compares the teardown's batched shape with the naive one, on the same dev
// server, emulator (20 ms per request) and in-process worker, in one run:
//
//	go test -run XXX -bench Teardown -benchtime 1x ./integration/
func BenchmarkTeardown(b *testing.B) {
	const n = 1000
	for _, concurrency := range []int{10, 50} {
		for _, shape := range []string{"naive", "batched"} {
			b.Run(fmt.Sprintf("%s/concurrency=%d", shape, concurrency), func(b *testing.B) {
				em := emulator.New(emulator.Options{APIKey: testKey, Latency: 20 * time.Millisecond})
				srv := httptest.NewServer(em)
				defer srv.Close()
				defer em.Close()
				c, err := client.Dial(client.Options{HostPort: server.Address, Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				acts, err := activities.New(activities.Config{BaseURL: srv.URL, Credentials: activities.StaticCredentials{APIKey: testKey}, Coordinator: activities.TemporalCoordinator{Client: c}})
				if err != nil {
					b.Fatal(err)
				}
				tq := fmt.Sprintf("bench-%s-%d-%d", shape, concurrency, time.Now().UnixNano())
				w := worker.New(c, tq, worker.Options{MaxConcurrentActivityExecutionSize: 200})
				w.RegisterWorkflowWithOptions(workflows.RemoveAgentConnectionsWorkflow, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
				w.RegisterWorkflow(naiveTeardown)
				w.RegisterActivity(acts)
				if err := w.Start(); err != nil {
					b.Fatal(err)
				}
				defer w.Stop()
				ids := connectionIDs(n)
				var elapsed time.Duration
				for i := range b.N {
					agent := fmt.Sprintf("bench-%d", i)
					em.Seed(agent, ids...)
					start := time.Now()
					var run client.WorkflowRun
					if shape == "naive" {
						run, err = c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: tq}, naiveTeardown, agent, ids, concurrency)
					} else {
						run, err = c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: tq, ID: ac.RemoveAgentConnectionsWorkflowID(agent)},
							ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: agent, ConnectionIDs: ids, Concurrency: concurrency})
					}
					if err != nil {
						b.Fatal(err)
					}
					if err := run.Get(context.Background(), nil); err != nil {
						b.Fatal(err)
					}
					elapsed += time.Since(start)
					if left := em.Connections(agent); len(left) != 0 {
						b.Fatalf("got %d connections left, want 0", len(left))
					}
				}
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "connections/s")
			})
		}
	}
}
