// Package devserver starts and stops a real Temporal dev server (the official temporal CLI's
// `server start-dev`, in-memory SQLite unless a database file is given) on free loopback ports,
// for the demo and the integration tests. It is tooling, not part of the worker.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/agentops/agentconnections/internal/proc"
)

// Options says how to start the server.
type Options struct {
	// CLIPath is the temporal binary. Empty means CLIPath() below.
	CLIPath string
	// UI serves the Web UI on a free port when true (headless otherwise).
	UI bool
	// DBFile keeps state in this SQLite file, so the server can be restarted without losing
	// workflows. Empty means in memory.
	DBFile string
	// Port is the gRPC port to use; 0 picks a free one.
	Port int
	// StartTimeout bounds the wait for the server to answer. 0 means one minute.
	StartTimeout time.Duration
	// Namespaces are created at launch besides "default" (a Nexus caller's namespace, say).
	Namespaces []string
}

// Server is a running dev server.
type Server struct {
	// Address is host:port of the gRPC front end.
	Address string
	// UIAddress is the Web UI's URL, empty when headless.
	UIAddress string

	proc *proc.Process
	cli  string
}

// CLIPath finds the temporal binary: $TEMPORAL_CLI, else bin/temporal at the module root.
func CLIPath() (string, error) {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the module root")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("temporal CLI not found at %s (run make bin/temporal, or set TEMPORAL_CLI): %w", p, err)
	}
	return filepath.Clean(p), nil
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start launches the server and returns once it answers a health check.
func Start(ctx context.Context, opts Options) (*Server, error) {
	cli := opts.CLIPath
	if cli == "" {
		p, err := CLIPath()
		if err != nil {
			return nil, err
		}
		cli = p
	}
	port := opts.Port
	if port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--log-level", "error"}
	for _, extra := range []string{"--http-port", "--metrics-port"} {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		args = append(args, extra, strconv.Itoa(p))
	}
	s := &Server{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if opts.UI {
		uiPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--ui-port", strconv.Itoa(uiPort))
		s.UIAddress = fmt.Sprintf("http://127.0.0.1:%d", uiPort)
	} else {
		args = append(args, "--headless")
	}
	if opts.DBFile != "" {
		args = append(args, "--db-filename", opts.DBFile)
	}
	for _, ns := range opts.Namespaces {
		args = append(args, "--namespace", ns)
	}
	// Not tied to ctx: the caller stops the server with Stop, by process id.
	p, err := proc.Start("temporal dev server", cli, args, nil, nil)
	if err != nil {
		return nil, err
	}
	s.proc = p
	s.cli = cli
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	if err := s.waitHealthy(ctx, timeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitHealthy polls the front end until it answers or the time is up.
func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if s.proc.Exited() {
			return fmt.Errorf("temporal dev server exited before it was ready: %s", s.proc.Output())
		}
		c, err := client.DialContext(ctx, client.Options{HostPort: s.Address, Logger: log.NewStructuredLogger(nil)})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal dev server at %s not ready after %s: %w (output: %s)", s.Address, timeout, err, s.proc.Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PID is the server's process id.
func (s *Server) PID() int { return s.proc.PID() }

// Output is what the server printed so far.
func (s *Server) Output() string { return s.proc.Output() }

// Exited reports whether the server process has exited.
func (s *Server) Exited() bool { return s.proc.Exited() }

// Stop ends the server by its process id (SIGTERM, then SIGKILL after five seconds) and waits for
// it to exit. It is safe to call more than once.
func (s *Server) Stop() { s.proc.Stop(5 * time.Second) }

// Kill ends the server at once with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() { s.proc.Kill() }
