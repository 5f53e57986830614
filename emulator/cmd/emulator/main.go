// Command emulator serves a local LangSmith Deployment Control Plane (the agent-connection routes)
// for trying the worker without an account, for tests and for the demo. See package emulator for
// the routes, the faults it can inject and its control API under /_emulator/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentops/agentconnections/emulator"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := emulator.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emulator: %v\n", err)
		return 2
	}
	cfg.Options.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := emulator.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "emulator: %v\n", err)
		return 1
	}
	return 0
}
