package main

import (
	"context"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/agentops/agentconnections/internal/controlplane"
)

// loadTemporalKeyFile reads TEMPORAL_API_KEY_FILE, the Temporal API key (Temporal Cloud) as a file
// that may be rotated. The first read happens here, so a missing or empty file stops the start;
// later reads are the same mechanism as LANGSMITH_API_KEY_FILE's. Errors name the variable and
// the path, never the key.
func loadTemporalKeyFile(get func(string) string, cfg *config) error {
	path := get(envTemporalAPIKeyFile)
	if path == "" {
		return nil
	}
	if get(envTemporalAPIKey) != "" {
		return problem(envTemporalAPIKeyFile, "both %s and %s are set; set only one", envTemporalAPIKey, envTemporalAPIKeyFile)
	}
	key, stamp, err := controlplane.LoadKeyFile(path)
	if err != nil {
		return problem(envTemporalAPIKeyFile, "%v", err)
	}
	cfg.TemporalAPIKeyFile, cfg.TemporalKey.APIKey, cfg.temporalKeyStamp = path, key, stamp
	return nil
}

// useTemporalKeyFile makes the client send the key from TEMPORAL_API_KEY_FILE with every call,
// re-reading the file when it changes (checked at most once a second; a failed re-read keeps the
// last good key and logs a warning). It replaces an api_key from a temporal.toml profile, as
// TEMPORAL_API_KEY does. As with any API key, the SDK turns TLS on unless the TLS settings turn
// it off (TEMPORAL_TLS=false).
func useTemporalKeyFile(opts *client.Options, cfg config, logger log.Logger) {
	if cfg.TemporalAPIKeyFile == "" {
		return
	}
	src := controlplane.NewKeyFileSource(cfg.TemporalAPIKeyFile, cfg.TemporalKey.APIKey, cfg.temporalKeyStamp,
		controlplane.Credentials{}, log.With(logger, "component", "temporal-api-key-file"))
	opts.Credentials = client.NewAPIKeyDynamicCredentials(func(context.Context) (string, error) {
		creds, err := src.Credentials()
		return creds.APIKey, err
	})
}

// temporalKeyMode names where the Temporal API key comes from, for the start-up log.
func temporalKeyMode(opts client.Options, cfg config) string {
	switch {
	case cfg.TemporalAPIKeyFile != "":
		return "file"
	case opts.Credentials != nil:
		return "set"
	}
	return "none"
}
