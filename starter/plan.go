package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"go.temporal.io/sdk/client"

	ac "github.com/agentops/agentconnections"
)

// maxAsked bounds the connection IDs the question before starting names one by one.
const maxAsked = 10

// plan is what the starter is about to start: what --dry-run prints and the question before
// starting says.
type plan struct {
	WorkflowType string `json:"workflow_type"`
	WorkflowID   string `json:"workflow_id"`
	TaskQueue    string `json:"task_queue"`
	Namespace    string `json:"namespace"`
	Address      string `json:"address"`
	AgentID      string `json:"agent_id"`
	// ConnectionIDs are the connections it removes when they are known beforehand: the one of a
	// removal, or --connection-ids.
	ConnectionIDs []string `json:"connection_ids,omitempty"`
	// ListsConnections is true when the teardown lists the agent's connections itself, when it
	// runs; a dry run with a LangSmith key lists them beforehand too, to show what it would remove
	// now.
	ListsConnections bool `json:"lists_connections"`
	Input            any  `json:"input"`
}

func newPlan(opts options, clientOpts client.Options) plan {
	p := plan{
		TaskQueue: opts.taskQueue,
		Namespace: clientOpts.Namespace,
		Address:   clientOpts.HostPort,
		AgentID:   opts.agentID,
	}
	if !opts.all {
		p.WorkflowType, p.WorkflowID = ac.RemoveConnectionWorkflowType, ac.RemoveConnectionWorkflowID(opts.agentID, opts.connectionID)
		p.ConnectionIDs, p.Input = []string{opts.connectionID}, removalInput(opts)
		return p
	}
	p.WorkflowType, p.WorkflowID = ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsWorkflowID(opts.agentID)
	p.ConnectionIDs, p.ListsConnections, p.Input = opts.connectionIDs, len(opts.connectionIDs) == 0, teardownInput(opts)
	return p
}

// what says in words what the plan removes.
func (p plan) what(limit int) string {
	switch {
	case p.ListsConnections:
		return fmt.Sprintf("every connection of agent %s (as the control plane lists them when the teardown runs)", p.AgentID)
	case p.WorkflowType == ac.RemoveConnectionWorkflowType:
		return fmt.Sprintf("connection %s of agent %s", p.ConnectionIDs[0], p.AgentID)
	}
	ids := p.ConnectionIDs
	more := ""
	if limit > 0 && len(ids) > limit {
		ids, more = ids[:limit], fmt.Sprintf(" and %d more", len(ids)-limit)
	}
	return fmt.Sprintf("%d %s of agent %s: %s%s", len(p.ConnectionIDs), plural(len(p.ConnectionIDs), "connection", "connections"),
		p.AgentID, strings.Join(ids, ", "), more)
}

// where says which workflow, on which queue, in which namespace at which address.
func (p plan) where() string {
	return fmt.Sprintf("  workflow %s, ID %s (a running one with this ID is followed instead)\n  task queue %s, namespace %s at %s\n",
		p.WorkflowType, p.WorkflowID, p.TaskQueue, p.Namespace, p.Address)
}

// printDryRun prints the plan and starts nothing. listed is nil when nothing was asked of anyone
// (whether a run under the workflow ID exists, which connections an agent has); for --all with a
// LangSmith key, it is the agent's connections as the control plane listed them just now.
func printDryRun(stdout, stderr io.Writer, opts options, p plan, listed *[]string) int {
	if opts.json {
		return writeJSON(stdout, stderr, struct {
			DryRun bool `json:"dry_run"`
			plan
			Connections *[]string `json:"connections,omitempty"`
		}{true, p, listed}, exitOK)
	}
	input, err := json.Marshal(p.Input)
	if err != nil {
		return failf(stderr, exitStarter, "encode the input: %v", err)
	}
	var b strings.Builder
	switch {
	case listed == nil:
		b.WriteString("dry run: nothing started; neither Temporal nor the control plane was asked anything\n")
	default:
		fmt.Fprintf(&b, "dry run: nothing started or removed; Temporal was not contacted, and the control plane was only asked for the connections of agent %s (GET)\n", p.AgentID)
	}
	switch {
	case listed != nil && p.ListsConnections:
		writeListed(&b, p, *listed)
	case listed != nil:
		writeGivenListed(&b, p, *listed)
	case p.ListsConnections || len(p.ConnectionIDs) == 1:
		fmt.Fprintf(&b, "would remove %s\n", p.what(0))
	default:
		fmt.Fprintf(&b, "would remove these %d connections of agent %s:\n", len(p.ConnectionIDs), p.AgentID)
		for _, id := range p.ConnectionIDs {
			fmt.Fprintf(&b, "    %s\n", id)
		}
	}
	b.WriteString(p.where())
	fmt.Fprintf(&b, "  input %s\n", input)
	if listed == nil && p.WorkflowType == ac.RemoveAgentConnectionsWorkflowType {
		b.WriteString(noKeyHint + "\n")
	}
	_, _ = io.WriteString(stdout, b.String())
	return exitOK
}

// writeListed writes what a teardown that lists would remove now: the agent's connections as the
// control plane listed them.
func writeListed(b *strings.Builder, p plan, listed []string) {
	fmt.Fprintf(b, "would remove every connection of agent %s, as the control plane lists them when the teardown runs; it lists %d %s now",
		p.AgentID, len(listed), plural(len(listed), "connection", "connections"))
	if len(listed) == 0 {
		b.WriteString(": the teardown would remove nothing\n")
		return
	}
	b.WriteString(":\n")
	for _, id := range listed {
		fmt.Fprintf(b, "    %s\n", id)
	}
}

// writeGivenListed writes the given connections, each marked listed or not listed by the control
// plane now (one not listed is absent: the teardown finds it gone).
func writeGivenListed(b *strings.Builder, p plan, listed []string) {
	now := make(map[string]bool, len(listed))
	for _, id := range listed {
		now[id] = true
	}
	found := 0
	for _, id := range p.ConnectionIDs {
		if now[id] {
			found++
		}
	}
	fmt.Fprintf(b, "would remove these %d %s of agent %s; the control plane lists %d of them now (%d %s of the agent in all):\n",
		len(p.ConnectionIDs), plural(len(p.ConnectionIDs), "connection", "connections"), p.AgentID,
		found, len(listed), plural(len(listed), "connection", "connections"))
	for _, id := range p.ConnectionIDs {
		mark := "listed"
		if !now[id] {
			mark = "not listed"
		}
		fmt.Fprintf(b, "    %s  %s\n", id, mark)
	}
}

// confirm asks on the terminal before anything is started, and returns ok true on a yes. Anything
// else, an empty line and end of input included, is a no; an interrupt while asking is one too.
func confirm(ctx context.Context, con console, p plan) (code int, ok bool) {
	verb := "remove"
	if p.WorkflowType == ac.RestoreAgentConnectionsWorkflowType {
		verb = "restore"
	}
	_, _ = fmt.Fprintf(con.stdout, "About to %s %s.\n%sContinue? [y/N] ", verb, p.what(maxAsked), p.where())
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(con.stdin).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		_, _ = fmt.Fprintln(con.stdout)
		return interruptedf(ctx, con.stderr, "interrupted; nothing started"), false
	case a := <-answer:
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "y", "yes":
			return exitOK, true
		}
		if !strings.HasSuffix(a, "\n") {
			_, _ = fmt.Fprintln(con.stdout)
		}
		return failf(con.stderr, exitStarter, "not confirmed; nothing started"), false
	}
}
