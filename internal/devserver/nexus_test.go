package devserver

import (
	"context"
	"os/exec"
	"testing"
)

// The endpoint command as operators and the compose stack run it: create works once, a second
// create of the same name fails, and get finds it.
func TestCreateNexusEndpoint(t *testing.T) {
	s := ForTest(t, Options{Namespaces: []string{CallerNamespace}})
	ctx := context.Background()
	if err := s.CreateNexusEndpoint(ctx, "agent-connections", "default", "agent-connections"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNexusEndpoint(ctx, "agent-connections", "default", "agent-connections"); err == nil {
		t.Error("got a second create of the same name accepted, want it refused")
	}
	out, err := exec.CommandContext(ctx, s.cli, "operator", "nexus", "endpoint", "get", "--address", s.Address, "--name", "agent-connections").CombinedOutput()
	if err != nil {
		t.Errorf("get: %v: %s", err, out)
	}
	if err := exec.CommandContext(ctx, s.cli, "operator", "nexus", "endpoint", "get", "--address", s.Address, "--name", "absent").Run(); err == nil {
		t.Error("got get of an absent endpoint succeeding, want it to fail")
	}
	if err := exec.CommandContext(ctx, s.cli, "operator", "namespace", "describe", "--address", s.Address, "--namespace", CallerNamespace).Run(); err != nil {
		t.Errorf("got %v describing %s, want it created at launch", err, CallerNamespace)
	}
}
