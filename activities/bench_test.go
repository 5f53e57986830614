package activities

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// noContentServer answers 204 and counts the TCP connections it accepts; each benchmark reports
// them as conns/op-run, which must stay 1 for sequential calls on a keep-alive client.
func noContentServer(b *testing.B) *httptest.Server {
	b.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	b.Cleanup(func() {
		srv.Close()
		b.ReportMetric(float64(conns.Load()), "tcp-conns")
	})
	return srv
}

// bareDelete is the floor: a plain net/http DELETE with the key header, body drained.
func bareDelete(ctx context.Context, c *http.Client, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-Key", testKey)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("got status %d, want 204", resp.StatusCode)
	}
	return nil
}

// BenchmarkRemoveConnection is the activity's hot path: one RemoveConnection call through the
// test activity environment against a local server answering 204.
func BenchmarkRemoveConnection(b *testing.B) {
	srv := noContentServer(b)
	cp, err := controlplane.New(controlplane.Config{BaseURL: srv.URL, Credentials: controlplane.StaticCredentials{APIKey: testKey}, RequestTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	acts, err := New(Config{ControlPlane: cp})
	if err != nil {
		b.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(discardLogger{})
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	in := RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: true}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := env.ExecuteActivity(acts.RemoveConnection, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareHTTPDelete is the floor: a plain net/http DELETE to the same kind of server.
func BenchmarkBareHTTPDelete(b *testing.B) {
	srv := noContentServer(b)
	c := &http.Client{Transport: bareTransport(), Timeout: 5 * time.Second}
	target := srv.URL + "/v2/auth/agents/agent-1/connections/conn-1"
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := bareDelete(ctx, c, target); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareHTTPDeleteActivity is the fair baseline for BenchmarkRemoveConnection: the same
// bare DELETE, run as an activity through the same test activity environment, so the ratio of
// the two is what RemoveConnection itself adds (ID checks, retrying client, pacing,
// classification, logging; a removal answered on its first request records no heartbeat), not the
// harness.
func BenchmarkBareHTTPDeleteActivity(b *testing.B) {
	srv := noContentServer(b)
	c := &http.Client{Transport: bareTransport(), Timeout: 5 * time.Second}
	target := srv.URL + "/v2/auth/agents/agent-1/connections/conn-1"
	bare := func(ctx context.Context, _ RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
		return ac.RemoveConnectionResult{Outcome: ac.OutcomeRemoved, Attempts: 1}, bareDelete(ctx, c, target)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(discardLogger{})
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(bare, activity.RegisterOptions{Name: "BareDelete"})
	in := RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: true}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := env.ExecuteActivity("BareDelete", in); err != nil {
			b.Fatal(err)
		}
	}
}

// bareTransport is a keep-alive transport like the control plane client's: for one request at a
// time the two differ in nothing that shows.
func bareTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}

// discardLogger keeps benchmark output clean.
type discardLogger struct{}

func (discardLogger) Debug(string, ...any) {}
func (discardLogger) Info(string, ...any)  {}
func (discardLogger) Warn(string, ...any)  {}
func (discardLogger) Error(string, ...any) {}
