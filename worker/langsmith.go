package main

import (
	"errors"

	"go.temporal.io/sdk/log"

	"github.com/agentops/agentconnections/internal/langsmithenv"
)

// The LangSmith settings (the key, the workspace, the control plane URL, their aliases and the
// region rule) are read by internal/langsmithenv, which the starter shares for `--all --dry-run`.
// Here they become the worker's configuration, its errors and its start-up notes.

// note is a line logged once the logger exists: what the configuration chose or suspects.
type note struct {
	warn    bool
	msg     string
	keyvals []any
}

func addNotes(cfg *config, notes ...langsmithenv.Note) {
	for _, n := range notes {
		cfg.notes = append(cfg.notes, note{warn: n.Warn, msg: n.Msg, keyvals: n.Keyvals})
	}
}

// asConfigError turns the variable a langsmithenv error names into the worker's configError.
func asConfigError(err error) error {
	var setting *langsmithenv.SettingError
	if errors.As(err, &setting) {
		return &configError{name: setting.Name, problem: setting.Problem}
	}
	return err
}

// noteNoWorkspace warns when an API key is sent without a workspace: a key that reaches several
// workspaces needs X-Tenant-Id to say which.
func noteNoWorkspace(cfg *config) {
	if n, ok := langsmithenv.NoWorkspace(langsmithenv.Credentials{Credentials: cfg.Credentials, KeyFile: cfg.APIKeyFile}); ok {
		addNotes(cfg, n)
	}
}

// logNotes logs what loadConfig noted, once the logger exists.
func logNotes(logger log.Logger, cfg config) {
	for _, n := range cfg.notes {
		if n.warn {
			logger.Warn(n.msg, n.keyvals...)
		} else {
			logger.Info(n.msg, n.keyvals...)
		}
	}
}
