package devserver

import (
	"context"
	"fmt"
	"os"

	"github.com/agentops/agentconnections/internal/proc"
)

// TB is the part of testing.TB that ForTest uses; taking it as an interface keeps the testing
// package out of this non-test code.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// ForTest starts a server for a test and stops it when the test ends. A missing temporal CLI fails
// the test: `make test` installs it, and a test that cannot run must not pass quietly.
func ForTest(tb TB, opts Options) *Server {
	tb.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("start temporal dev server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// RunWithWorker is the body of a TestMain for packages that run the worker binary against one
// shared dev server: it builds the worker into a temporary folder, starts the server (with
// CallerNamespace besides "default"), hands both
// to setup, calls run (the package's m.Run), and stops and removes everything. It returns the exit
// code for os.Exit.
func RunWithWorker(run func() int, setup func(server *Server, workerBin string)) int {
	dir, err := os.MkdirTemp("", "agent-connections-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := proc.BuildWorker(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := Start(context.Background(), Options{Namespaces: []string{CallerNamespace}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start temporal dev server: %v\n", err)
		return 1
	}
	defer s.Stop()
	setup(s, bin)
	return run()
}
