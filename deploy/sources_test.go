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
// LANGSMITH_API_KEY_FILE. A constant there that names one of internal/langsmithenv's (the
// LangSmith settings the worker shares with the starter) takes that one's value, and
// langsmithenv's own constants are in the map too, under their names there.
func workerVariables(t *testing.T) map[string]string {
	t.Helper()
	shared := stringConstants(t, filepath.Join("internal", "langsmithenv", "langsmithenv.go"), nil)
	vars := stringConstants(t, filepath.Join("worker", "config.go"), map[string]map[string]string{"langsmithenv": shared})
	if len(vars) == 0 {
		t.Fatalf("worker/config.go declares no %v constants; has the configuration moved?", workerVariablePrefixes)
	}
	for name, v := range shared {
		if _, ok := vars[name]; !ok {
			vars[name] = v
		}
	}
	return vars
}

// stringConstants reads a source file's string constants whose values start with one of
// workerVariablePrefixes; a constant set to pkg.Name takes imported[pkg][Name].
func stringConstants(t *testing.T, rel string, imported map[string]map[string]string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot(t), rel), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", rel, err)
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
				v, ok := constantString(vs.Values[i], imported)
				if !ok {
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
	return vars
}

// constantString is the value of a string literal, or of pkg.Name found in imported.
func constantString(e ast.Expr, imported map[string]map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		v, err := strconv.Unquote(e.Value)
		return v, err == nil
	case *ast.SelectorExpr:
		pkg, ok := e.X.(*ast.Ident)
		if !ok {
			return "", false
		}
		v, ok := imported[pkg.Name][e.Sel.Name]
		return v, ok
	}
	return "", false
}

// workerVariable is the variable a worker/config.go constant names.
func workerVariable(t *testing.T, vars map[string]string, constant string) string {
	t.Helper()
	v, ok := vars[constant]
	if !ok {
		t.Fatalf("worker/config.go (or internal/langsmithenv) no longer declares %s; update this test to what replaced it", constant)
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
