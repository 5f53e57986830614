package devserver

import (
	"context"
	"testing"

	"go.temporal.io/sdk/client"
)

func TestStartAndStop(t *testing.T) {
	s := ForTest(t, Options{})
	c, err := client.Dial(client.Options{HostPort: s.Address})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckHealth(context.Background(), &client.CheckHealthRequest{}); err != nil {
		t.Errorf("got %v from a started server, want healthy", err)
	}
	c.Close()
	s.Stop()
	if !s.Exited() {
		t.Error("got the process still running after Stop, want it gone")
	}
	s.Stop() // a second Stop is harmless
}

func TestStartFailsClearlyWithoutCLI(t *testing.T) {
	_, err := Start(context.Background(), Options{CLIPath: "/nonexistent/temporal"})
	if err == nil {
		t.Fatal("got no error for a missing CLI, want one")
	}
}
