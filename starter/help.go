package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpGroups orders the flags in -h by what they are for; every flag is in one.
var helpGroups = []struct {
	title string
	flags []string
}{
	{"What to remove", []string{"agent-id", "connection-id", "all", "connection-ids", "concurrency", "continue-on-error", "missing-ok"}},
	{"How", []string{"wait", "timeout", "dry-run", "yes", "output", "json"}},
	{"Where (flags win over the environment and the config file)", []string{"address", "namespace", "profile", "config-file", "task-queue"}},
}

// helpEnvironment is every environment variable the starter reads, with what it sets.
var helpEnvironment = [][2]string{
	{"TEMPORAL_ADDRESS", "Temporal frontend host:port (--address)"},
	{"TEMPORAL_NAMESPACE", "Temporal namespace (--namespace)"},
	{"TEMPORAL_API_KEY", "API key for Temporal Cloud or a server that asks for one"},
	{"TEMPORAL_TLS", "true or false: TLS on or off"},
	{"TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_CERT_DATA", "mTLS client certificate"},
	{"TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_CLIENT_KEY_DATA", "mTLS client key"},
	{"TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_CA_CERT_DATA", "CA of the server's certificate"},
	{"TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "server name to verify, or no verification"},
	{"TEMPORAL_CLIENT_AUTHORITY, TEMPORAL_GRPC_META_<NAME>", "gRPC :authority and request headers"},
	{"TEMPORAL_PROFILE", "profile of the config file (--profile, --env)"},
	{"TEMPORAL_CONFIG_FILE", "the config file (--config-file)"},
	{"TEMPORAL_TASK_QUEUE", "task queue of the worker, as the worker reads it (--task-queue)"},
}

// helpLangSmithEnvironment is what --all --dry-run reads to list the agent's connections: the
// worker's LangSmith settings, under the same names and aliases. Without a key it lists nothing.
var helpLangSmithEnvironment = [][2]string{
	{"LANGSMITH_API_KEY (or LANGGRAPH_HOST_API_KEY), LANGSMITH_API_KEY_FILE", "the LangSmith key, or the file it is read from (or LANGSMITH_BEARER_TOKEN)"},
	{"LANGSMITH_WORKSPACE_ID (or LANGSMITH_TENANT_ID)", "the workspace, sent as X-Tenant-Id"},
	{"LANGSMITH_CONTROL_PLANE_URL (or LANGGRAPH_HOST_URL)", "the control plane (default https://api.host.langchain.com)"},
	{"LANGSMITH_ENDPOINT", "on the EU host, with no control plane URL set: the EU control plane"},
}

// helpExitCodes are the exit codes, as -h states them.
var helpExitCodes = [][2]string{
	{"0", "removed or already absent; with --all every connection was, and nothing was cancelled (--wait=false: started or attached to; --dry-run: valid, and listed if asked)"},
	{"1", "the removal failed; with --all the teardown failed, was cancelled, or left a connection failed, remained, reappeared or skipped; " +
		"with --all --dry-run the list failed: agent not found, key refused, control plane unreachable"},
	{"2", "bad usage or settings, Temporal unreachable, or the question not answered yes: nothing started, or the outcome unknown"},
	{"124", "--timeout ran out while waiting; the workflow goes on"},
	{"130", "interrupted (Ctrl-C; 143 on SIGTERM) while waiting; the workflow goes on"},
}

// printHelp writes -h: what the starter does, its flags by group, the environment it reads and its
// exit codes.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString(`starter starts the removal of one agent connection (RemoveConnectionWorkflow), or with --all
of every connection of an agent (RemoveAgentConnectionsWorkflow), or follows the one already
running for it, and waits for the outcome.

usage:
  starter --agent-id A --connection-id C [flags]
  starter --agent-id A --all [--connection-ids C1,C2] [flags]
  starter restore (FILE | -) [flags]   undo a teardown from its saved result (starter restore -h)
`)
	shortOf := map[string]string{}
	for alias, name := range aliases {
		shortOf[name] = alias
	}
	listed := map[string]bool{}
	for _, g := range helpGroups {
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, name := range g.flags {
			if f := fs.Lookup(name); f != nil {
				writeFlag(&b, f, shortOf[name])
				listed[name] = true
			}
		}
	}
	var other []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if _, isAlias := aliases[f.Name]; !isAlias && !listed[f.Name] {
			other = append(other, f)
		}
	})
	if len(other) > 0 {
		b.WriteString("\nOther:\n")
		for _, f := range other {
			writeFlag(&b, f, shortOf[f.Name])
		}
	}
	b.WriteString("\nEnvironment (read through the Temporal SDK's envconfig, as every Temporal tool reads it):\n")
	for _, e := range helpEnvironment {
		fmt.Fprintf(&b, "  %s\n        %s\n", e[0], e[1])
	}
	b.WriteString("\nLangSmith (read only by --all --dry-run, to list the agent's connections with one GET; the worker's names):\n")
	for _, e := range helpLangSmithEnvironment {
		fmt.Fprintf(&b, "  %s\n        %s\n", e[0], e[1])
	}
	b.WriteString("\nExit codes:\n")
	for _, e := range helpExitCodes {
		fmt.Fprintf(&b, "  %-4s %s\n", e[0], e[1])
	}
	_, _ = io.WriteString(w, b.String())
}

// writeFlag writes one flag: its names (a one-letter alias with one dash, and --env next to
// --profile), its value's name, its usage and its default.
func writeFlag(b *strings.Builder, f *flag.Flag, alias string) {
	valueName, usage := flag.UnquoteUsage(f)
	names := "--" + f.Name
	switch {
	case len(alias) == 1:
		names = "-" + alias + ", " + names
	case alias != "":
		names += ", --" + alias
	}
	if valueName != "" {
		names += " " + valueName
	}
	fmt.Fprintf(b, "  %s\n        %s", names, usage)
	switch f.DefValue {
	case "", "0", "false", "0s":
	default:
		fmt.Fprintf(b, " (default %s)", f.DefValue)
	}
	b.WriteString("\n")
}
