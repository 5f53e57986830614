package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/agentops/agentconnections/internal/environ"

	ac "github.com/agentops/agentconnections"
)

const usageLine = "usage: starter --agent-id A (--connection-id C | --all [--connection-ids C1,C2]) [flags]; starter -h lists them"

// Output formats of -o, as the temporal CLI names them.
const (
	outputText = "text"
	outputJSON = "json"
)

// options are the parsed command line.
type options struct {
	agentID, connectionID string
	missingOK, wait       bool
	json                  bool // -o json (or the deprecated --json)
	taskQueue             string

	// The teardown of every connection (--all) and its settings.
	all             bool
	connectionIDs   []string // empty: the teardown lists the agent's connections itself
	concurrency     int      // 0: the workflow's default
	continueOnError bool

	// The Temporal connection, over what the environment and the config file say; empty: as they say.
	address, namespace, profile, configFile string

	dryRun  bool
	yes     bool
	timeout time.Duration // 0: wait as long as it takes
}

// flagValues are the flags whose raw values checkArgs turns into options.
type flagValues struct {
	output, profile, env string
	jsonDeprecated       bool
	connectionIDs        string
}

// aliases maps each other name of a flag to its main name: the short ones the temporal CLI also
// has, and --env, another name for --profile.
var aliases = map[string]string{"o": "output", "n": "namespace", "y": "yes", "env": "profile"}

// deprecated maps a flag kept for one more release to what replaces it.
var deprecated = map[string]string{"json": "-o json"}

// parseArgs reads and checks the command line. On bad usage it prints the problem and the usage
// line on stderr; for -h it prints the help on stdout; either way it returns ok false with the exit
// code. A deprecated flag gets its notice on stderr and still works.
func parseArgs(args []string, env environ.Env, stdout, stderr io.Writer) (opts options, code int, ok bool) {
	fs := flag.NewFlagSet("starter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The flag package calls Usage for -h too, which gets the help on stdout instead; after a bad
	// flag, the usage line follows the problem the flag package printed.
	fs.Usage = func() {}
	raw := defineFlags(fs, &opts, defaultTaskQueue(env))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return opts, exitOK, false
		}
		_, _ = fmt.Fprintln(stderr, usageLine)
		return opts, exitStarter, false
	}
	set := setFlags(fs)
	if err := checkArgs(fs, set, &opts, raw); err != nil {
		_, _ = fmt.Fprintf(stderr, "starter: %s\n%s\n", err, usageLine)
		return opts, exitStarter, false
	}
	for _, name := range slices.Sorted(maps.Keys(deprecated)) {
		if set[name] {
			_, _ = fmt.Fprintf(stderr, "starter: --%s is deprecated and will be removed in the next release; use %s\n", name, deprecated[name])
		}
	}
	return opts, exitOK, true
}

// defaultTaskQueue is the --task-queue default: the worker's own setting when the environment
// has one.
func defaultTaskQueue(env environ.Env) string {
	if v, _ := env.LookupEnv(ac.TaskQueueEnv); v != "" {
		return v
	}
	return ac.DefaultTaskQueue
}

// defineFlags declares every flag on fs, each filling in its part of opts or of the raw values it
// returns, which checkArgs reads. A name in backquotes in a usage is the value's name in -h.
func defineFlags(fs *flag.FlagSet, opts *options, defaultQueue string) *flagValues {
	raw := &flagValues{}
	// What to remove.
	fs.StringVar(&opts.agentID, "agent-id", "", "`ID` of the agent whose connections to remove (required)")
	fs.StringVar(&opts.connectionID, "connection-id", "", "`ID` of the connection to remove (required unless --all)")
	fs.BoolVar(&opts.all, "all", false, "remove every connection of the agent (the teardown workflow) instead of one")
	fs.StringVar(&raw.connectionIDs, "connection-ids", "", "with --all: remove exactly these connections (comma-separated `IDs`) instead of listing the agent's")
	fs.IntVar(&opts.concurrency, "concurrency", 0, fmt.Sprintf("with --all: DELETE requests in flight at most, `N` (0 means the workflow's default, %d; at most %d)", ac.DefaultTeardownConcurrency, ac.MaxTeardownConcurrency))
	fs.BoolVar(&opts.continueOnError, "continue-on-error", true, "with --all: keep removing the other connections after one fails for good")
	fs.BoolVar(&opts.missingOK, "missing-ok", true, "treat a connection that is not there as removed")
	// How.
	fs.BoolVar(&opts.wait, "wait", true, "wait for the outcome; with --wait=false print the workflow and run IDs")
	fs.DurationVar(&opts.timeout, "timeout", 0, "stop waiting after `DURATION` (e.g. 10m) and exit 124; the workflow goes on (0: no limit)")
	fs.BoolVar(&opts.dryRun, "dry-run", false, "print the workflow that would be started, and its input; start nothing and contact nothing, "+
		"except that with --all and a LangSmith key set it lists the agent's connections (one read-only GET) to show what it would remove now")
	fs.BoolVar(&opts.yes, "yes", false, "do not ask before starting (the starter asks only when stdin and stdout are terminals)")
	fs.BoolVar(&opts.yes, "y", false, "")
	fs.StringVar(&raw.output, "output", outputText, "`FORMAT` of the output: text, or json (the result alone on stdout)")
	fs.StringVar(&raw.output, "o", outputText, "")
	fs.BoolVar(&raw.jsonDeprecated, "json", false, "deprecated: use -o json")
	// Where.
	fs.StringVar(&opts.address, "address", "", "Temporal frontend `HOST:PORT` (default from TEMPORAL_ADDRESS or the profile, else localhost:7233)")
	fs.StringVar(&opts.namespace, "namespace", "", "Temporal `NAMESPACE` (default from TEMPORAL_NAMESPACE or the profile, else default)")
	fs.StringVar(&opts.namespace, "n", "", "")
	fs.StringVar(&raw.profile, "profile", "", "`NAME` of the profile to use from the Temporal config file (default TEMPORAL_PROFILE, else default)")
	fs.StringVar(&raw.env, "env", "", "")
	fs.StringVar(&opts.configFile, "config-file", "", "Temporal config file (TOML) `PATH` (default TEMPORAL_CONFIG_FILE, else temporalio/temporal.toml in the user config directory)")
	fs.StringVar(&opts.taskQueue, "task-queue", defaultQueue, "task `QUEUE` the worker polls; "+ac.TaskQueueEnv+", when set, is the default")
	return raw
}

// setFlags is the set of flags the command line gave, each under its main name.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if main, ok := aliases[name]; ok && name != "env" {
			name = main
		}
		set[name] = true
	})
	return set
}

// checkArgs refuses a parsed command line that is incomplete, contradicts itself or names an
// invalid ID; its error is the problem to print above the usage line.
func checkArgs(fs *flag.FlagSet, set map[string]bool, opts *options, raw *flagValues) error {
	if err := checkOutputAndProfile(set, opts, raw); err != nil {
		return err
	}
	// The first flag given that means something only with --all.
	teardownOnly := firstSet(set, "connection-ids", "concurrency", "continue-on-error")
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case opts.agentID == "":
		return errors.New("--agent-id is required")
	case opts.all && opts.connectionID != "":
		return errors.New("--connection-id and --all are mutually exclusive: give one connection or all of them")
	case !opts.all && opts.connectionID == "":
		return errors.New("--connection-id is required (or --all for every connection of the agent)")
	case !opts.all && teardownOnly != "":
		return fmt.Errorf("--%s needs --all", teardownOnly)
	case strings.TrimSpace(opts.taskQueue) == "":
		return errors.New("--task-queue is empty")
	case opts.timeout < 0:
		return fmt.Errorf("--timeout is %s, want 0 (no limit) or more", opts.timeout)
	case opts.timeout > 0 && !opts.wait:
		return errors.New("--timeout bounds the wait; it means nothing with --wait=false")
	case set["address"] && strings.TrimSpace(opts.address) == "":
		return errors.New("--address is empty")
	case set["namespace"] && strings.TrimSpace(opts.namespace) == "":
		return errors.New("--namespace is empty")
	}
	// The same checks the workflows make: refuse here, before anything is started.
	if err := ac.ValidateID("agent_id", opts.agentID); err != nil {
		return err
	}
	if !opts.all {
		return ac.ValidateID("connection_id", opts.connectionID)
	}
	return checkTeardownArgs(opts, set["connection-ids"], raw.connectionIDs)
}

// checkOutputAndProfile reads -o (and the deprecated --json) and --profile (and --env).
func checkOutputAndProfile(set map[string]bool, opts *options, raw *flagValues) error {
	switch raw.output {
	case outputText, outputJSON:
	default:
		return fmt.Errorf("-o %q: want %s or %s", raw.output, outputText, outputJSON)
	}
	if raw.jsonDeprecated && set["output"] && raw.output != outputJSON {
		return fmt.Errorf("--json and -o %s contradict each other", raw.output)
	}
	opts.json = raw.output == outputJSON || raw.jsonDeprecated

	if set["profile"] && set["env"] && raw.profile != raw.env {
		return fmt.Errorf("--profile %q and --env %q name different profiles; --env is another name for --profile", raw.profile, raw.env)
	}
	opts.profile = raw.profile
	if set["env"] {
		opts.profile = raw.env
	}
	if (set["profile"] || set["env"]) && strings.TrimSpace(opts.profile) == "" {
		return errors.New("--profile is empty")
	}
	return nil
}

// firstSet returns the first of names that set holds, or "".
func firstSet(set map[string]bool, names ...string) string {
	for _, name := range names {
		if set[name] {
			return name
		}
	}
	return ""
}

// checkTeardownArgs checks what --all takes, setting opts.connectionIDs when --connection-ids was
// given, with the same checks the teardown workflow makes of its input.
func checkTeardownArgs(opts *options, idsGiven bool, connectionIDs string) error {
	if opts.concurrency < 0 || opts.concurrency > ac.MaxTeardownConcurrency {
		return fmt.Errorf("--concurrency is %d, want 0 (the workflow's default) to %d", opts.concurrency, ac.MaxTeardownConcurrency)
	}
	if idsGiven {
		ids, err := splitConnectionIDs(connectionIDs)
		if err != nil {
			return err
		}
		opts.connectionIDs = ids
	}
	return teardownInput(*opts).Validate()
}

// splitConnectionIDs reads --connection-ids. An empty list, an empty entry or a repeated ID is
// refused rather than guessed at: "remove exactly these" should not quietly mean "list them all"
// or hide a typo.
func splitConnectionIDs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--connection-ids is empty (leave it out to remove every connection)")
	}
	parts := strings.Split(s, ",")
	seen := make(map[string]bool, len(parts))
	ids := make([]string, 0, len(parts))
	for i, p := range parts {
		id := strings.TrimSpace(p)
		switch {
		case id == "":
			return nil, fmt.Errorf("--connection-ids has an empty entry at position %d", i+1)
		case seen[id]:
			return nil, fmt.Errorf("--connection-ids names %q twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}
