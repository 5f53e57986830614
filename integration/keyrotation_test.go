package integration

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
)

// The key is rotated by rewriting LANGSMITH_API_KEY_FILE; the running worker picks the new one up
// without a restart.
func TestIntegration_KeyFileRotationWithoutRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "langsmith_api_key")
	if err := os.WriteFile(keyFile, []byte("revoked-old-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStackWithEnv(t, []string{"LANGSMITH_API_KEY=", "LANGSMITH_API_KEY_FILE=" + keyFile}, "a1", "c1", "c2")

	_, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c1"}))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ac.ErrUnauthorized {
		t.Fatalf("got %v with the old key, want %s", err, ac.ErrUnauthorized)
	}

	// Rotate: the emulator accepts only testKey.
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The worker checks the file at most once a second.
	time.Sleep(1100 * time.Millisecond)
	res, err := s.result(s.start(ac.RemoveConnectionInput{AgentID: "a1", ConnectionID: "c2"}))
	if err != nil {
		t.Fatalf("got %v after the rotation, want the removal to go through", err)
	}
	if res.Outcome != ac.OutcomeRemoved {
		t.Errorf("got %+v, want removed", res)
	}
	if s.worker.Exited() {
		t.Error("got the worker restarted or gone, want the same process")
	}
}
