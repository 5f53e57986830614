package devserver

import (
	"context"
	"testing"
)

// ForTest starts a server for a test and stops it when the test ends. A missing temporal CLI fails
// the test: `make test` installs it, and a test that cannot run must not pass quietly.
func ForTest(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("start temporal dev server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}
