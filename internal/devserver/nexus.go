package devserver

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// CallerNamespace is the namespace RunWithWorker creates besides "default", for workflows that
// call the worker's Nexus service from a namespace of their own.
const CallerNamespace = "nexus-caller"

// CreateNexusEndpoint creates a Nexus endpoint named name that routes to targetTaskQueue in
// targetNamespace, with the command an operator runs: `temporal operator nexus endpoint create`.
func (s *Server) CreateNexusEndpoint(ctx context.Context, name, targetNamespace, targetTaskQueue string) error {
	return CreateNexusEndpoint(ctx, s.cli, s.Address, name, targetNamespace, targetTaskQueue)
}

// CreateNexusEndpoint runs `temporal operator nexus endpoint create` with the CLI at cli against
// the frontend at address.
func CreateNexusEndpoint(ctx context.Context, cli, address, name, targetNamespace, targetTaskQueue string) error {
	cmd := exec.CommandContext(ctx, cli, "operator", "nexus", "endpoint", "create",
		"--address", address,
		"--name", name,
		"--target-namespace", targetNamespace,
		"--target-task-queue", targetTaskQueue)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("temporal operator nexus endpoint create --name %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
