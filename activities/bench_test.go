package activities

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
)

func noContentServer(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkRemoveConnection is the activity's hot path: one RemoveConnection call through the
// test activity environment against a local server answering 204.
func BenchmarkRemoveConnection(b *testing.B) {
	srv := noContentServer(b)
	acts, err := New(Config{BaseURL: srv.URL, Credentials: StaticCredentials{APIKey: testKey}, RequestTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(discardLogger{})
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	in := ac.RemoveConnectionActivityInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: true}
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
	c := &http.Client{Transport: newTransport(), Timeout: 5 * time.Second}
	target := srv.URL + "/v2/auth/agents/agent-1/connections/conn-1"
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("X-Api-Key", testKey)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("got status %d, want 204", resp.StatusCode)
		}
	}
}

// discardLogger keeps benchmark output clean.
type discardLogger struct{}

func (discardLogger) Debug(string, ...any) {}
func (discardLogger) Info(string, ...any)  {}
func (discardLogger) Warn(string, ...any)  {}
func (discardLogger) Error(string, ...any) {}
