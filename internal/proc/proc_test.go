package proc

import (
	"strings"
	"testing"
	"time"
)

func TestStopEndsAProcessThatIgnoresNothing(t *testing.T) {
	p, err := Start("sleep", "sleep", []string{"60"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("got the process running after Stop, want it gone")
	}
	p.Stop(time.Second) // harmless twice
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p, err := Start("stubborn", "sh", []string{"-c", "trap '' TERM; echo ready; sleep 60"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.Output(), "ready") {
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop(100 * time.Millisecond)
	if !p.Exited() {
		t.Fatal("got the process running after Stop, want it killed")
	}
}

func TestOutputAndExitCode(t *testing.T) {
	p, err := Start("echo", "sh", []string{"-c", "echo hello; exit 3"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if got := p.Output(); got != "hello\n" {
		t.Errorf("got output %q, want hello", got)
	}
	if got := p.ExitCode(); got != 3 {
		t.Errorf("got exit code %d, want 3", got)
	}
}

func TestBufferKeepsTheFirstMegabyte(t *testing.T) {
	var b Buffer
	chunk := strings.Repeat("x", 300<<10)
	for range 5 {
		if n, err := b.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("got (%d, %v), want (%d, nil)", n, err, len(chunk))
		}
	}
	if got := len(b.String()); got != 1<<20 {
		t.Errorf("got %d bytes, want %d", got, 1<<20)
	}
}
