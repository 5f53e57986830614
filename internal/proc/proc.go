// Package proc runs the child processes of the demo and the integration tests (the Temporal dev
// server, the worker) and stops them by process id: SIGTERM, then SIGKILL after a grace period.
// On Linux a child also dies with its parent, so a crashed demo or test leaves nothing behind.
package proc

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a started child process.
type Process struct {
	Name string

	cmd    *exec.Cmd
	output *Buffer
	done   chan struct{}
	err    error
	once   sync.Once
}

// Start runs path with args and env (nil env inherits this process's). Its stdout and stderr go
// to the process's Output buffer and, when extra is not nil, to extra as well.
func Start(name, path string, args, env []string, extra io.Writer) (*Process, error) {
	p := &Process{Name: name, output: &Buffer{}, done: make(chan struct{})}
	var out io.Writer = p.output
	if extra != nil {
		out = io.MultiWriter(p.output, extra)
	}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	p.cmd.SysProcAttr = sysProcAttr()
	// A grandchild holding the output pipe open must not keep Wait from returning.
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status once the process has exited (-1 when killed by a signal or still
// running).
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Output is what the process printed so far (its first megabyte).
func (p *Process) Output() string { return p.output.String() }

// Stop sends SIGTERM to the process group, waits up to grace for the process to exit, then sends
// SIGKILL. It returns
// once the process is gone and is safe to call more than once.
func (p *Process) Stop(grace time.Duration) {
	p.once.Do(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
	})
}

// Kill sends SIGKILL, as a crash would, and waits for the process to exit.
func (p *Process) Kill() {
	p.once.Do(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
	})
}

// signal sends sig to the process's whole group (it leads one, see sysProcAttr).
func (p *Process) signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Buffer is a goroutine-safe buffer that keeps the first megabyte written to it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 1<<20 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
