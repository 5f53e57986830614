package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// What the deployment files are checked against, read from the repository's own sources so the
// checks follow the code instead of a copy of it.

// workerVariablePrefixes are the prefixes of the variables the worker reads itself.
var workerVariablePrefixes = []string{"LANGSMITH_", "LANGGRAPH_", "WORKER_", "TEMPORAL_", "LOG_"}

// workerVariables reads the names of the environment variables the worker reads itself from the
// string constants in worker/config.go, keyed by constant name: envAPIKeyFile is
// LANGSMITH_API_KEY_FILE.
func workerVariables(t *testing.T) map[string]string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "worker", "config.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse worker/config.go: %v", err)
	}
	vars := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, id := range vs.Names {
				if i >= len(vs.Values) {
					break
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					continue
				}
				for _, prefix := range workerVariablePrefixes {
					if strings.HasPrefix(v, prefix) {
						vars[id.Name] = v
					}
				}
			}
		}
	}
	if len(vars) == 0 {
		t.Fatalf("worker/config.go declares no %v constants; has the configuration moved?", workerVariablePrefixes)
	}
	return vars
}

// workerVariable is the variable a worker/config.go constant names.
func workerVariable(t *testing.T, vars map[string]string, constant string) string {
	t.Helper()
	v, ok := vars[constant]
	if !ok {
		t.Fatalf("worker/config.go no longer declares %s; update this test to what replaced it", constant)
	}
	return v
}

// goVersion is the Go version go.mod asks for: its toolchain line, else its go line.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goLine, toolchain string
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		switch fields[0] {
		case "go":
			goLine = fields[1]
		case "toolchain":
			toolchain = strings.TrimPrefix(fields[1], "go")
		}
	}
	if toolchain != "" {
		return toolchain
	}
	if goLine == "" {
		t.Fatal("go.mod has no go line")
	}
	return goLine
}

// makeBuild matches the Makefile's build lines: go build ... -o bin/worker ./worker
var makeBuild = regexp.MustCompile(`(?m)^\s+go build .*-o bin/(\S+) (\./\S+)\s*$`)

// makefileCommands maps each command `make build` builds to its package: worker to ./worker.
func makefileCommands(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string]string{}
	for _, m := range makeBuild.FindAllStringSubmatch(string(b), -1) {
		cmds[m[1]] = filepath.Clean(m[2])
	}
	if len(cmds) == 0 {
		t.Fatal("found no `go build ... -o bin/NAME ./PKG` lines in the Makefile")
	}
	return cmds
}
