package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.temporal.io/sdk/log"
)

// decode parses one JSON log line per entry.
func decode(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		entries = append(entries, m)
	}
	return entries
}

func newJSON(t *testing.T, level string) (*Adapter, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	zl, err := New("json", level, &buf)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return NewAdapter(zl), &buf
}

func TestNew_JSONHasMessageLevelAndFields(t *testing.T) {
	a, buf := newJSON(t, "")
	a.Info("connection removed", "agent_id", "a1", "attempts", 2, "error", errors.New("boom"))

	entries := decode(t, buf)
	if len(entries) != 1 {
		t.Fatalf("got %d entries, want 1", len(entries))
	}
	e := entries[0]
	for key, want := range map[string]any{
		"msg": "connection removed", "level": "info", "agent_id": "a1", "attempts": float64(2), "error": "boom",
	} {
		if got := e[key]; got != want {
			t.Errorf("field %s: got %v, want %v", key, got, want)
		}
	}
	if _, ok := e["time"]; !ok {
		t.Errorf("got no time field in %v, want one", e)
	}
}

func TestNew_ConsoleIsNotJSON(t *testing.T) {
	var buf bytes.Buffer
	zl, err := New("console", "info", &buf)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	NewAdapter(zl).Warn("worker stopping", "task_queue", "q1")
	out := buf.String()
	if json.Valid(bytes.TrimSpace(buf.Bytes())) {
		t.Errorf("got JSON %q, want console text", out)
	}
	for _, want := range []string{"WARN", "worker stopping", `"task_queue": "q1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("got %q, want it to contain %q", out, want)
		}
	}
}

func TestNew_RefusesUnknownFormatAndLevel(t *testing.T) {
	tests := []struct {
		name, format, level, want string
	}{
		{"format", "xml", "info", `log format "xml" is not one of json, console`},
		{"level", "json", "loud", `log level "loud" is not one of debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.format, tt.level, &bytes.Buffer{})
			if err == nil || err.Error() != tt.want {
				t.Errorf("got error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNew_LevelFilters(t *testing.T) {
	tests := []struct {
		level string
		want  []string
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"WARN", []string{"warn", "error"}},
		{"error", []string{"error"}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			a, buf := newJSON(t, tt.level)
			a.Debug("m")
			a.Info("m")
			a.Warn("m")
			a.Error("m")
			var got []string
			for _, e := range decode(t, buf) {
				got = append(got, fmt.Sprint(e["level"]))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got levels %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAdapter_MalformedKeyvalsDoNotPanic(t *testing.T) {
	a, buf := newJSON(t, "info")
	a.Info("odd", "k1", "v1", "dangling")
	a.Info("non-string key", 42, "v", nil, "w")
	a.Info("only a value", struct{ X int }{1})

	entries := decode(t, buf)
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3", len(entries))
	}
	if got := entries[0]["k1"]; got != "v1" {
		t.Errorf("odd: k1 got %v, want v1", got)
	}
	if got := entries[0][danglingKey]; got != "dangling" {
		t.Errorf("odd: %s got %v, want dangling", danglingKey, got)
	}
	if got := entries[1]["42"]; got != "v" {
		t.Errorf("non-string key: 42 got %v, want v", got)
	}
	if got := entries[1]["<nil>"]; got != "w" {
		t.Errorf("nil key: <nil> got %v, want w", got)
	}
	if _, ok := entries[2][danglingKey]; !ok {
		t.Errorf("only a value: got %v, want a %s field", entries[2], danglingKey)
	}
}

func TestAdapter_WithAddsFields(t *testing.T) {
	a, buf := newJSON(t, "info")
	child := log.With(a, "task_queue", "q1")
	child.Info("started", "namespace", "default")
	a.Info("parent")

	entries := decode(t, buf)
	if len(entries) != 2 {
		t.Fatalf("got %d entries, want 2", len(entries))
	}
	if got := entries[0]["task_queue"]; got != "q1" {
		t.Errorf("child: task_queue got %v, want q1", got)
	}
	if got := entries[0]["namespace"]; got != "default" {
		t.Errorf("child: namespace got %v, want default", got)
	}
	if _, ok := entries[1]["task_queue"]; ok {
		t.Errorf("parent: got task_queue in %v, want the parent unchanged", entries[1])
	}
}

// here returns "file.go:line" of its caller.
func here(t *testing.T) string {
	t.Helper()
	_, file, line, ok := runtime.Caller(1)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return fmt.Sprintf("%s:%d", filepath.Base(file), line+1)
}

func TestAdapter_CallerIsTheCallSite(t *testing.T) {
	a, buf := newJSON(t, "info")

	want := here(t)
	a.Info("direct")
	wantWith := here(t)
	log.With(a, "k", "v").Info("through With")
	// The SDK's own wrappers call WithCallerSkip for each frame they add.
	wantSkip := here(t)
	wrap(log.Skip(a, 1))

	entries := decode(t, buf)
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3", len(entries))
	}
	for i, want := range []string{want, wantWith, wantSkip} {
		got := fmt.Sprint(entries[i]["caller"])
		if !strings.HasSuffix(got, want) {
			t.Errorf("entry %d: caller got %s, want it to end in %s", i, got, want)
		}
	}
}

// wrap stands for a helper that logs on behalf of its caller.
func wrap(l log.Logger) { l.Info("through a helper") }
