// Command bench measures the worker against baselines measured in the same run, on the same
// Temporal dev server and control plane emulator, and writes the figures as markdown:
//
//	go run ./bench --out docs/benchmarks.md
//
// Every figure is a ratio to a baseline of that run:
//
//  1. end-to-end removals/s of RemoveConnectionWorkflow versus a no-op workflow running one no-op
//     activity, at the same client-side concurrency;
//  2. (a) RemoveAgentConnectionsWorkflow connections/s versus a naive teardown (one plain
//     RemoveConnection activity per connection), and (b) the request rate a teardown sustains
//     under the API's limit of 2000 requests a minute, with the worker paced to match;
//     (c) the same under one budget shared by a fleet of worker binaries, and (d) a restore of
//     every connection a teardown removed, beside that teardown, on the worker binary;
//  3. peak RSS and CPU seconds of the real worker binary for teardowns of growing size.
//
// The no-op and naive baselines are workflows the worker binary does not register, so they run
// on an in-process worker (worker.New); the real workflows are measured on that same in-process
// worker for the ratios, and on the worker binary as well. --quick is the small smoke run that
// bench's own test uses; --only (comma-separated section names: --only restore) runs some sections
// and prints them, and is refused with --out. Everything it starts is stopped when it ends, fails,
// or gets SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainRun(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func mainRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts options
	fs.StringVar(&opts.out, "out", "", "write the markdown report to this file (its hot path section is kept)")
	fs.BoolVar(&opts.quick, "quick", false, "tiny sizes: a smoke run of every section")
	fs.StringVar(&opts.profileDir, "profile-dir", "bench/profiles", "where CPU profiles go when a goal is missed")
	fs.BoolVar(&opts.noProfile, "no-profile", false, "do not profile a missed goal")
	only := fs.String("only", "", "run only these sections, comma-separated (e2e, teardown, pace, fleet, restore, footprint;\n"+
		"or 1, 2a, 2b, 2c, 2d, 3) and print them; refused with --out, which would drop the others' figures")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *only != "" {
		var err error
		if opts.only, err = parseOnly(*only); err != nil {
			_, _ = fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		if opts.out != "" {
			// The report is written whole: a partial run would replace the other sections' figures.
			_, _ = fmt.Fprintln(stderr, "bench: --only prints to stdout and cannot be used with --out, which would drop the other sections' figures; run without --only to write the report")
			return 2
		}
	}
	opts.command = strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
	rep, err := run(ctx, opts, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	md := rep.markdown()
	_, _ = io.WriteString(stdout, md)
	if opts.out != "" {
		if err := writeReport(opts.out, md); err != nil {
			_, _ = fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		_, _ = fmt.Fprintf(stderr, "bench: wrote %s\n", opts.out)
	}
	return 0
}
