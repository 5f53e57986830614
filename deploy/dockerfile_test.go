package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// installDir is where the final image holds the binaries.
const installDir = "/usr/local/bin/"

// dockerfile is the part of a Dockerfile these tests read: its stages and their instructions, with
// ARG and ENV values, enough to follow what a build would do without a Docker engine.
type dockerfile struct {
	globalArgs map[string]string // ARGs declared before the first FROM, with their defaults
	stages     []*stage
}

type stage struct {
	name, image string            // image with the global ARGs expanded
	vars        map[string]string // the stage's ARGs, then ENVs over them
	env         map[string]string // the stage's ENVs only
	insts       []instruction
}

type instruction struct {
	cmd  string // upper case: RUN, COPY, USER...
	args string // the rest, continuation lines joined
}

func parseDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{globalArgs: map[string]string{}}
	var cur *stage
	var logical strings.Builder
	for line := range strings.Lines(string(b)) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			logical.WriteString(rest + " ")
			continue
		}
		logical.WriteString(trimmed)
		text := logical.String()
		logical.Reset()

		cmd, args, _ := strings.Cut(text, " ")
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		switch cmd {
		case "FROM":
			var fields []string
			for _, f := range strings.Fields(args) {
				if !strings.HasPrefix(f, "--") {
					fields = append(fields, f)
				}
			}
			if len(fields) == 0 {
				t.Fatalf("Dockerfile: FROM %s names no image", args)
			}
			cur = &stage{image: expand(fields[0], df.globalArgs), vars: map[string]string{}, env: map[string]string{}}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				cur.name = fields[2]
			}
			df.stages = append(df.stages, cur)
			continue
		}
		if cmd == "ARG" && cur == nil {
			name, def, _ := strings.Cut(args, "=")
			df.globalArgs[name] = def
			continue
		}
		if cur == nil {
			t.Fatalf("Dockerfile: %s before the first FROM", cmd)
		}
		switch cmd {
		case "ARG":
			name, def, hasDef := strings.Cut(args, "=")
			if !hasDef {
				def = df.globalArgs[name]
			}
			cur.vars[name] = def
		case "ENV":
			fields := shellFields(expand(args, cur.vars))
			if len(fields) > 0 && !strings.Contains(fields[0], "=") {
				// The legacy form, ENV NAME value.
				fields = []string{fields[0] + "=" + strings.Join(fields[1:], " ")}
			}
			for _, f := range fields {
				k, v, _ := strings.Cut(f, "=")
				cur.env[k], cur.vars[k] = v, v
			}
		}
		cur.insts = append(cur.insts, instruction{cmd: cmd, args: args})
	}
	if len(df.stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	return df
}

// expand substitutes $NAME and ${NAME} as the shell and the Dockerfile do; unknown names are empty.
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(name string) string { return vars[name] })
}

// shellFields splits a command line into words, honouring single and double quotes.
func shellFields(s string) []string {
	var fields []string
	var word strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				fields = append(fields, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		fields = append(fields, word.String())
	}
	return fields
}

func (s *stage) all(cmd string) []string {
	var args []string
	for _, in := range s.insts {
		if in.cmd == cmd {
			args = append(args, in.args)
		}
	}
	return args
}

// goBuild is one go build a RUN instruction runs.
type goBuild struct {
	env  map[string]string // the stage's ENV, then the command's own NAME=value prefixes
	args []string          // after "go build"
	out  string            // the -o value
	pkg  string            // the package built
}

// goBuilds finds the go build commands of the stage's RUN instructions (shell form, joined with &&
// or ;), with the stage's variables expanded and overrides for its ARGs.
func (s *stage) goBuilds(t *testing.T, overrides map[string]string) []goBuild {
	t.Helper()
	vars := merged(s.vars, overrides)
	var builds []goBuild
	for _, run := range s.all("RUN") {
		if strings.HasPrefix(run, "[") {
			continue
		}
		for _, part := range strings.FieldsFunc(expand(run, vars), func(r rune) bool { return r == ';' }) {
			for command := range strings.SplitSeq(part, "&&") {
				words := shellFields(command)
				env := merged(s.env, nil)
				for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
					k, v, _ := strings.Cut(words[0], "=")
					env[k] = v
					words = words[1:]
				}
				if len(words) < 3 || words[0] != "go" || words[1] != "build" {
					continue
				}
				b := goBuild{env: env, args: words[2:], pkg: words[len(words)-1]}
				for i, w := range b.args {
					if w == "-o" && i+1 < len(b.args) {
						b.out = b.args[i+1]
					} else if v, ok := strings.CutPrefix(w, "-o="); ok {
						b.out = v
					}
				}
				if b.out == "" {
					t.Fatalf("Dockerfile: %q has no -o; want -o /out/NAME", command)
				}
				builds = append(builds, b)
			}
		}
	}
	return builds
}

func merged(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// installed maps each binary the final stage copies from a build stage into installDir to the path
// it was built at: /usr/local/bin/worker to /out/worker in stage build.
func (df *dockerfile) installed(t *testing.T) map[string]struct{ stage, src string } {
	t.Helper()
	final := df.stages[len(df.stages)-1]
	out := map[string]struct{ stage, src string }{}
	for _, args := range final.all("COPY") {
		fields := strings.Fields(args)
		var from string
		var paths []string
		for _, f := range fields {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				from = v
			} else if !strings.HasPrefix(f, "--") {
				paths = append(paths, f)
			}
		}
		if from == "" || len(paths) < 2 {
			continue
		}
		dest := paths[len(paths)-1]
		for _, src := range paths[:len(paths)-1] {
			target := dest
			if strings.HasSuffix(dest, "/") {
				target = dest + filepath.Base(src)
			}
			out[target] = struct{ stage, src string }{from, src}
		}
	}
	return out
}

func (df *dockerfile) stage(t *testing.T, name string) *stage {
	t.Helper()
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return nil
}

func TestDockerfile_FinalStageIsDistrolessNonroot(t *testing.T) {
	df := parseDockerfile(t)
	final := df.stages[len(df.stages)-1]

	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") || !strings.Contains(final.image, ":nonroot") {
		t.Errorf("final stage is FROM %s, want gcr.io/distroless/static-...:nonroot (no shell, no libc, not root)", final.image)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Errorf("final stage sets no USER; want nonroot:nonroot")
	} else if user, _, _ := strings.Cut(users[len(users)-1], ":"); user == "" || user == "root" || user == "0" {
		t.Errorf("final stage runs as USER %s, want a non-root user", users[len(users)-1])
	}

	var entrypoint []string
	if eps := final.all("ENTRYPOINT"); len(eps) > 0 {
		if err := json.Unmarshal([]byte(eps[len(eps)-1]), &entrypoint); err != nil {
			t.Errorf("ENTRYPOINT %s is not the exec (JSON) form: %v; the shell form needs a shell distroless lacks", eps[len(eps)-1], err)
		}
	}
	if want := []string{installDir + "worker"}; !slices.Equal(entrypoint, want) {
		t.Errorf("ENTRYPOINT is %q, want %q", entrypoint, want)
	}

	p := loadProject(t, false)
	addr, _ := env(service(t, p, svcWorker), workerVariable(t, workerVariables(t), "envHTTPAddress"))
	if _, port, err := net.SplitHostPort(addr); err != nil {
		t.Errorf("worker's HTTP address %q: %v", addr, err)
	} else {
		var exposed []string
		for _, e := range final.all("EXPOSE") {
			for _, f := range strings.Fields(e) {
				p, _, _ := strings.Cut(f, "/")
				exposed = append(exposed, p)
			}
		}
		if !slices.Contains(exposed, port) {
			t.Errorf("final stage EXPOSEs %v, want the worker's HTTP port %s", exposed, port)
		}
	}

	labels := strings.Join(final.all("LABEL"), " ")
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"} {
		if !strings.Contains(labels, l+"=") {
			t.Errorf("final stage has no %s label", l)
		}
	}
}

func TestDockerfile_BuildsWhatTheMakefileBuilds(t *testing.T) {
	df := parseDockerfile(t)
	want := makefileCommands(t)
	installed := df.installed(t)

	goImage := df.stages[0].image
	if _, tag, ok := strings.Cut(goImage, ":"); !ok || (tag != goVersion(t) && !strings.HasPrefix(tag, goVersion(t)+"-")) {
		t.Errorf("first stage builds with %s, want the Go version go.mod asks for, %s", goImage, goVersion(t))
	}

	for cmd, pkg := range want {
		target := installDir + cmd
		from, ok := installed[target]
		if !ok {
			t.Errorf("final stage does not install %s; `make build` builds %s from %s", target, cmd, pkg)
			continue
		}
		var build *goBuild
		for _, b := range df.stage(t, from.stage).goBuilds(t, nil) {
			if b.out == from.src {
				build = &b
			}
		}
		if build == nil {
			t.Errorf("final stage copies %s from stage %s, which builds no %s", target, from.stage, from.src)
			continue
		}
		if filepath.Clean(build.pkg) != pkg {
			t.Errorf("%s is built from %s, `make build` builds it from %s", target, build.pkg, pkg)
		}
		if build.env["CGO_ENABLED"] != "0" {
			t.Errorf("%s is built with CGO_ENABLED=%q, want 0: distroless static has no libc", target, build.env["CGO_ENABLED"])
		}
		if !slices.Contains(build.args, "-trimpath") {
			t.Errorf("%s is built without -trimpath", target)
		}
	}
	for target := range installed {
		if _, ok := want[strings.TrimPrefix(target, installDir)]; !ok {
			t.Errorf("final stage installs %s, which `make build` does not build", target)
		}
	}
}

func TestCompose_EntrypointsAreInTheImage(t *testing.T) {
	installed := parseDockerfile(t).installed(t)
	p := loadProject(t, false)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build == nil {
			continue
		}
		if len(s.Entrypoint) == 0 {
			if name != svcWorker {
				t.Errorf("service %s runs the image's entrypoint, the worker; set entrypoint to its binary", name)
			}
			continue
		}
		if _, ok := installed[s.Entrypoint[0]]; !ok {
			t.Errorf("service %s runs %s, which the image does not install", name, s.Entrypoint[0])
		}
		if want := installDir + name; name != svcWorker && s.Entrypoint[0] != want {
			t.Errorf("service %s runs %s, want %s", name, s.Entrypoint[0], want)
		}
	}
}

// TestDockerfile_GoBuildCommandsBuild runs the Dockerfile's go build commands, as written there (with
// its ENV and a test VERSION), into a temporary directory: the image's binaries build from this
// repository, static, with the version stamped in.
func TestDockerfile_GoBuildCommandsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command: %v", err)
	}
	root, dir := repoRoot(t), t.TempDir()
	df := parseDockerfile(t)
	const version = "v0.0.0-compose-test"

	built := map[string]string{}
	for target, from := range df.installed(t) {
		for _, b := range df.stage(t, from.stage).goBuilds(t, map[string]string{"VERSION": version}) {
			if b.out != from.src {
				continue
			}
			out := filepath.Join(dir, filepath.Base(b.out))
			args := slices.Clone(b.args)
			for i, a := range args {
				if a == "-o" && i+1 < len(args) {
					args[i+1] = out
				} else if strings.HasPrefix(a, "-o=") {
					args[i] = "-o=" + out
				}
			}
			cmd := exec.CommandContext(t.Context(), goBin, append([]string{"build"}, args...)...)
			cmd.Dir = root
			cmd.Env = os.Environ()
			for k, v := range b.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if output, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build %s (for %s): %v\n%s", strings.Join(args, " "), target, err, output)
			}
			built[filepath.Base(target)] = out
		}
	}
	for cmd := range makefileCommands(t) {
		out, ok := built[cmd]
		if !ok {
			t.Errorf("the Dockerfile's go build commands built no %s", cmd)
			continue
		}
		if runtime.GOOS != "linux" {
			continue
		}
		f, err := elf.Open(out)
		if err != nil {
			t.Errorf("%s: %v", cmd, err)
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; distroless static has no dynamic loader", cmd)
			}
		}
		_ = f.Close()
	}

	worker, ok := built[svcWorker]
	if !ok {
		t.Fatal("no worker binary built")
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(t.Context(), worker, "--version")
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("worker --version: %v", err)
	}
	if !strings.Contains(stdout.String(), version) {
		t.Errorf("worker --version printed %q, want it to carry the build's VERSION %s (-X main.version)", stdout.String(), version)
	}
}
