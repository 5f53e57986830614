package proc

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// WorkerPackage is the import path of the worker's main package.
const WorkerPackage = "github.com/agentops/agentconnections/worker"

// BuildWorker builds the worker binary into dir, for the tests and the benchmarks that run it as
// its own process, and returns its path.
func BuildWorker(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, WorkerPackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the worker: %w: %s", err, out)
	}
	return bin, nil
}
