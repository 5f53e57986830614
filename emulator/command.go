package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultAddr is where the emulator command listens unless --addr says otherwise.
const DefaultAddr = "127.0.0.1:8765"

// APIKeyEnv names the environment variable read when --api-key is not given.
const APIKeyEnv = "EMULATOR_API_KEY"

// APIKeyFileEnv names the environment variable read when --api-key-file is not given: a file
// holding the key, as a mounted secret does (the worker reads the same secret).
const APIKeyFileEnv = "EMULATOR_API_KEY_FILE"

// Config is the emulator command's configuration.
type Config struct {
	// Addr is the listen address; port 0 picks a free port.
	Addr string
	// AddrFile, when set, receives the actual listening address once listening (and is removed at
	// shutdown), so scripts using port 0 can find it.
	AddrFile string
	// Options configures the Server.
	Options Options
}

// ParseFlags parses the emulator command line (without the program name). getenv supplies
// EMULATOR_API_KEY; usage goes to output. With -h it returns flag.ErrHelp.
func ParseFlags(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	cfg := Config{Options: Options{Seed: map[string][]string{}, ErrorRates: map[int]float64{}}}
	fs := newFlagSet(output)
	apiKeyFile := defineFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := resolveAPIKey(&cfg.Options, *apiKeyFile, getenv); err != nil {
		return Config{}, err
	}
	if cfg.Addr == "" {
		return Config{}, errors.New("-addr must not be empty")
	}
	if err := cfg.Options.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// newFlagSet makes the emulator's empty flag set, which writes only its usage, to output.
func newFlagSet(output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	// Parse errors are returned, and printed once by the caller; only usage goes to output.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(output, "usage: emulator [flags]\n\nA local LangSmith Deployment Control Plane for the agent-connection routes.\n"+
			"Control API (no auth): /_emulator/{stats,log,seed,reset,faults,error-rate,latency,rate-limit,connections,healthz}\n\nflags:\n")
		fs.SetOutput(output)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// defineFlags declares every flag on fs, each filling in its part of cfg, and returns where
// --api-key-file lands: resolveAPIKey reads that file once parsing is done.
func defineFlags(fs *flag.FlagSet, cfg *Config) (apiKeyFile *string) {
	o := &cfg.Options
	fs.StringVar(&cfg.Addr, "addr", DefaultAddr, "listen address (port 0 picks a free port)")
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "write the actual listening address to this file once listening")
	fs.StringVar(&o.APIKey, "api-key", "", "the only X-Api-Key accepted (default $"+APIKeyEnv+"; empty accepts any)")
	apiKeyFile = fs.String("api-key-file", "", "read the accepted X-Api-Key from this file (default $"+APIKeyFileEnv+"); not with --api-key")
	fs.StringVar(&o.TenantID, "tenant-id", "", "required X-Tenant-Id (empty: not checked)")
	fs.StringVar(&o.BearerToken, "bearer-token", "", "the only Authorization: Bearer token accepted")
	fs.StringVar(&o.PathPrefix, "path-prefix", "", "prefix for the API routes, e.g. /api-host")
	fs.DurationVar(&o.Latency, "latency", 0, "delay added to every API request, e.g. 20ms")
	fs.IntVar(&o.RateLimitPerMinute, "rate-limit-per-minute", 0, "requests per minute per credential before 429 (0: off)")
	fs.Func("seed", "agent:conn1,conn2 to start with (repeatable)",
		func(v string) error { return addSeed(o, v) })
	fs.Func("invalid", "connection ID whose DELETE answers 422 (repeatable)",
		func(v string) error { return addInvalid(o, v) })
	fs.Func("error-rate", "STATUS=RATE, e.g. 503=0.3: that fraction of API requests answers STATUS (repeatable)",
		func(v string) error { return addErrorRate(o, v) })
	fs.Func("fault", `queued fault as JSON, e.g. '{"status":503,"count":1,"connection_id":"c1"}' (repeatable)`,
		func(v string) error { return addFault(o, v) })
	return apiKeyFile
}

// addSeed adds one --seed agent:conn1,conn2 to o.Seed; "agent:" alone seeds an agent with none.
func addSeed(o *Options, v string) error {
	agentID, list, ok := strings.Cut(v, ":")
	if !ok || agentID == "" {
		return errors.New("want agent:conn1,conn2")
	}
	ids := o.Seed[agentID]
	if ids == nil {
		ids = []string{}
	}
	if list != "" {
		for id := range strings.SplitSeq(list, ",") {
			if id = strings.TrimSpace(id); id == "" {
				return errors.New("empty connection id")
			}
			ids = append(ids, id)
		}
	}
	o.Seed[agentID] = ids
	return nil
}

// addInvalid adds one --invalid connection ID, whose DELETE answers 422.
func addInvalid(o *Options, v string) error {
	if v == "" {
		return errors.New("empty connection id")
	}
	o.InvalidConnectionIDs = append(o.InvalidConnectionIDs, v)
	return nil
}

// addErrorRate sets one --error-rate STATUS=RATE in o.ErrorRates.
func addErrorRate(o *Options, v string) error {
	st, r, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want STATUS=RATE such as 503=0.3")
	}
	status, err := strconv.Atoi(strings.TrimSpace(st))
	if err != nil {
		return fmt.Errorf("status %q is not a number", st)
	}
	rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
	if err != nil {
		return fmt.Errorf("rate %q is not a number", r)
	}
	if err := validateErrorRate(status, rate); err != nil {
		return err
	}
	o.ErrorRates[status] = rate
	return nil
}

// addFault queues one --fault, given as JSON.
func addFault(o *Options, v string) error {
	var f Fault
	if err := json.Unmarshal([]byte(v), &f); err != nil {
		return err
	}
	if err := f.Validate(); err != nil {
		return err
	}
	o.Faults = append(o.Faults, f)
	return nil
}

// resolveAPIKey sets the accepted key from the file named by --api-key-file or, failing that,
// EMULATOR_API_KEY_FILE (an error next to --api-key), and else, when no key is set yet, from
// EMULATOR_API_KEY.
func resolveAPIKey(o *Options, file string, getenv func(string) string) error {
	if file == "" && getenv != nil {
		file = getenv(APIKeyFileEnv)
	}
	if file != "" {
		if o.APIKey != "" {
			return errors.New("set --api-key or --api-key-file, not both")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("api key file: %w", err)
		}
		if o.APIKey = strings.TrimSpace(string(b)); o.APIKey == "" {
			return fmt.Errorf("api key file %s is empty", file)
		}
	}
	if o.APIKey == "" && getenv != nil {
		o.APIKey = getenv(APIKeyEnv)
	}
	return nil
}

// Run serves the emulator at cfg.Addr until ctx is done, then releases hanging requests and shuts
// down gracefully. It logs through cfg.Options.Logger.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Options.Validate(); err != nil {
		return err
	}
	logger := cfg.Options.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	em := New(cfg.Options)
	defer em.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, addr+"\n"); err != nil {
			_ = ln.Close()
			return fmt.Errorf("write addr file: %w", err)
		}
		defer func() { _ = os.Remove(cfg.AddrFile) }()
	}
	srv := &http.Server{Handler: em, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("emulator listening", "addr", addr, "path_prefix", em.prefix,
		"api_key_set", cfg.Options.APIKey != "", "bearer_token_set", cfg.Options.BearerToken != "",
		"tenant_id_set", cfg.Options.TenantID != "")

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("emulator shutting down")
	em.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// writeFileAtomic writes through a temporary file and a rename, so a script polling for the file
// never reads half an address.
func writeFileAtomic(name, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".emulator-addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}
