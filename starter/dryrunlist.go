package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/internal/environ"
	"github.com/agentops/agentconnections/internal/langsmithenv"
)

// starterUserAgent is the User-Agent of the dry run's list request.
const starterUserAgent = "agent-connections-starter"

// noKeyHint is the line a dry run of --all ends with when the environment holds no LangSmith key.
const noKeyHint = "with " + langsmithenv.EnvAPIKey + " (or " + langsmithenv.EnvAPIKeyFile +
	") set, --dry-run would list the agent's connections now (a read-only GET)"

// langSmith is what the starter needs to list an agent's connections: the same settings, under
// the same names and aliases, as the worker reads (internal/langsmithenv).
type langSmith struct {
	env   *langsmithenv.Env
	url   *url.URL
	creds langsmithenv.Credentials
	notes []langsmithenv.Note
}

// loadLangSmith reads the LangSmith settings; ok is false when the environment sets no key (nor
// bearer token), and the dry run cannot list. Its errors name variables, never a value.
func loadLangSmith(env environ.Env) (ls langSmith, ok bool, err error) {
	if ls.env, err = langsmithenv.Resolve(env.LookupEnv); err != nil {
		return ls, false, err
	}
	if ls.creds, err = ls.env.Credentials(); err != nil || !ls.creds.Set() {
		return ls, false, err
	}
	if ls.url, ls.notes, err = ls.env.ControlPlaneURL(); err != nil {
		return ls, false, err
	}
	if n, warn := langsmithenv.NoWorkspace(ls.creds); warn {
		ls.notes = append(ls.notes, n)
	}
	return ls, true, nil
}

// runDryRun prints what the starter would start. For --all with a LangSmith key in the
// environment it first lists the agent's connections (one GET; never a DELETE), so the operator
// sees what the teardown would remove now; Temporal is never contacted.
func runDryRun(ctx context.Context, env environ.Env, con console, opts options, p plan) int {
	if !opts.all {
		return printDryRun(con.stdout, con.stderr, opts, p, nil)
	}
	ls, ok, err := loadLangSmith(env)
	switch {
	case err != nil:
		return failf(con.stderr, exitStarter, "LangSmith settings: %v", err)
	case !ok:
		return printDryRun(con.stdout, con.stderr, opts, p, nil)
	}
	for _, n := range ls.notes {
		prefix := ""
		if n.Warn {
			prefix = "warning: "
		}
		_, _ = fmt.Fprintf(con.stderr, "starter: %s%s\n", prefix, n.Msg)
	}
	listed, code, ok := ls.list(ctx, opts.agentID, con.stderr)
	if !ok {
		return code
	}
	return printDryRun(con.stdout, con.stderr, opts, p, &listed)
}

// list asks the control plane for the agent's connections: a read-only GET, once (with the
// client's short retries of a refused connection). ok is false when it could not, with the exit
// code and its one-line reason printed.
func (ls langSmith) list(ctx context.Context, agentID string, stderr io.Writer) ([]string, int, bool) {
	c, err := controlplane.New(controlplane.Config{
		BaseURL:     ls.url.String(),
		Credentials: controlplane.StaticCredentials(ls.creds.Credentials),
		UserAgent:   starterUserAgent,
	})
	if err != nil {
		return nil, failf(stderr, exitStarter, "LangSmith settings: %v", err), false
	}
	ids, err := c.List(ctx, agentID, nil)
	if err == nil {
		return ids, exitOK, true
	}
	if ctx.Err() != nil {
		return nil, interruptedf(ctx, stderr, "interrupted while listing the connections of agent %s; nothing started", agentID), false
	}
	// Redact once more: no message here should hold the key, and none ever may.
	return nil, failf(stderr, exitFailed, "%s", c.Redact(ls.listFailure(agentID, err))), false
}

// listFailure says in one line why the list failed: the agent not found (the teardown would fail
// AgentNotFound), the key refused, the control plane unreachable, or another answer.
func (ls langSmith) listFailure(agentID string, err error) string {
	var e *controlplane.Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("dry run: could not list the connections of agent %s: %v", agentID, err)
	}
	at := ls.url.String()
	urlVar := ls.env.VarName(langsmithenv.EnvControlPlaneURL)
	switch {
	case e.Type == ac.ErrAgentNotFound:
		return fmt.Sprintf("dry run: agent %s not found: the control plane at %s answered 404 to its connection list, "+
			"so the teardown would fail %s; if the agent exists, check that %s carries the install's path prefix",
			agentID, at, ac.ErrAgentNotFound, urlVar)
	case e.Type == ac.ErrUnauthorized && e.Status == http.StatusForbidden:
		workspace := ls.env.VarName(langsmithenv.EnvTenantID)
		if ls.creds.TenantID == "" {
			workspace = "the workspace (" + langsmithenv.EnvWorkspaceID + ", unset)"
		}
		return fmt.Sprintf("dry run: the control plane at %s refused the LangSmith key (403 Forbidden): check %s and the key's access to it",
			at, workspace)
	case e.Type == ac.ErrUnauthorized:
		return fmt.Sprintf("dry run: the control plane at %s refused the LangSmith key (%d %s): check %s",
			at, e.Status, http.StatusText(e.Status), ls.keyVar())
	case e.Status == 0:
		return fmt.Sprintf("dry run: cannot reach the control plane at %s (%s) to list the connections of agent %s: %s",
			at, urlVar, agentID, strings.TrimPrefix(e.Message, "control plane unreachable: "))
	}
	return fmt.Sprintf("dry run: listing the connections of agent %s failed: %v", agentID, e)
}

// keyVar is the variable the credential came from, for messages.
func (ls langSmith) keyVar() string {
	switch {
	case ls.creds.KeyFile != "":
		return langsmithenv.EnvAPIKeyFile
	case ls.creds.APIKey == "":
		return langsmithenv.EnvBearerToken
	}
	return ls.env.VarName(langsmithenv.EnvAPIKey)
}
