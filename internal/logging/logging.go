// Package logging builds the worker's zap logger and adapts it to the two logging interfaces the
// worker's libraries expect: the Temporal SDK's log.Logger (with log.WithLogger and
// log.WithSkipCallers) and go-retryablehttp's LeveledLogger. Their method sets match
// (Debug/Info/Warn/Error(msg, keyvals...)), so one Adapter serves both and every line the process
// writes shares one format.
package logging

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-retryablehttp"
	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Formats accepted by New.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// The adapter must satisfy every interface it is handed to; a signature change upstream should
// break the build here, not the worker at run time.
var (
	_ log.Logger                  = (*Adapter)(nil)
	_ log.WithLogger              = (*Adapter)(nil)
	_ log.WithSkipCallers         = (*Adapter)(nil)
	_ retryablehttp.LeveledLogger = (*Adapter)(nil)
)

// New builds a zap logger writing to w. format is "json" (the default when empty) or "console";
// level is "debug", "info" (the default when empty), "warn" or "error".
func New(format, level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder

	var enc zapcore.Encoder
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", FormatJSON:
		enc = zapcore.NewJSONEncoder(encCfg)
	case FormatConsole:
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log format %q is not one of %s, %s", format, FormatJSON, FormatConsole)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// ParseLevel reads a level name; empty means info.
func ParseLevel(level string) (zapcore.Level, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "", "info":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	default:
		return zapcore.InfoLevel, fmt.Errorf("log level %q is not one of debug, info, warn, error", level)
	}
}

// Adapter logs through zap for the Temporal SDK and go-retryablehttp.
type Adapter struct {
	zl *zap.Logger
}

// NewAdapter wraps zl. The extra caller skip makes the caller field point at the code that called
// the adapter, not at the adapter itself.
func NewAdapter(zl *zap.Logger) *Adapter {
	return &Adapter{zl: zl.WithOptions(zap.AddCallerSkip(1))}
}

// Debug logs at debug level; keyvals alternate keys and values.
func (a *Adapter) Debug(msg string, keyvals ...any) { a.zl.Debug(msg, fields(keyvals)...) }

// Info logs at info level; keyvals alternate keys and values.
func (a *Adapter) Info(msg string, keyvals ...any) { a.zl.Info(msg, fields(keyvals)...) }

// Warn logs at warn level; keyvals alternate keys and values.
func (a *Adapter) Warn(msg string, keyvals ...any) { a.zl.Warn(msg, fields(keyvals)...) }

// Error logs at error level; keyvals alternate keys and values.
func (a *Adapter) Error(msg string, keyvals ...any) { a.zl.Error(msg, fields(keyvals)...) }

// With returns a logger that adds keyvals to every entry.
func (a *Adapter) With(keyvals ...any) log.Logger {
	return &Adapter{zl: a.zl.With(fields(keyvals)...)}
}

// WithCallerSkip returns a logger that skips depth more stack frames when it reports the caller;
// the SDK uses it when it wraps the logger in helpers of its own.
func (a *Adapter) WithCallerSkip(depth int) log.Logger {
	return &Adapter{zl: a.zl.WithOptions(zap.AddCallerSkip(depth))}
}

// Zap returns the underlying logger, caller skip included.
func (a *Adapter) Zap() *zap.Logger { return a.zl }

// danglingKey holds the last value of an odd-length keyvals list, so a mistake in a log call shows
// up in the output instead of panicking or vanishing.
const danglingKey = "!BADKEY"

// fields turns alternating keys and values into zap fields. A key that is not a string is
// formatted with %v; an odd value at the end goes under danglingKey.
func fields(keyvals []any) []zap.Field {
	if len(keyvals) == 0 {
		return nil
	}
	out := make([]zap.Field, 0, (len(keyvals)+1)/2)
	for i := 0; i < len(keyvals); i += 2 {
		if i+1 == len(keyvals) {
			out = append(out, zap.Any(danglingKey, keyvals[i]))
			break
		}
		key, ok := keyvals[i].(string)
		if !ok {
			key = fmt.Sprintf("%v", keyvals[i])
		}
		out = append(out, zap.Any(key, keyvals[i+1]))
	}
	return out
}
