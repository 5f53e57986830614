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

	"github.com/compose-spec/compose-go/v2/types"
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
	parent      *stage            // the earlier stage this one is built FROM, if any
	vars        map[string]string // the stage's ARGs, then ENVs over them
	env         map[string]string // the stage's ENVs, those of its parent stage included
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
			// FROM an earlier stage: its ENV carries over, its ARGs do not (as in Docker).
			for _, earlier := range df.stages {
				if earlier.name != "" && earlier.name == cur.image {
					cur.parent = earlier
					for k, v := range earlier.env {
						cur.env[k], cur.vars[k] = v, v
					}
				}
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

// installedIn maps each binary the stage copies from a build stage into installDir to the path it
// was built at: /usr/local/bin/worker to /out/worker in stage build.
func (s *stage) installedIn() map[string]struct{ stage, src string } {
	out := map[string]struct{ stage, src string }{}
	for _, args := range s.all("COPY") {
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
			if strings.HasPrefix(target, installDir) {
				out[target] = struct{ stage, src string }{from, src}
			}
		}
	}
	return out
}

// final is the last stage: what docker build builds without --target, the production image.
func (df *dockerfile) final() *stage { return df.stages[len(df.stages)-1] }

// images are the stages that make an image to run: those that install binaries into installDir.
func (df *dockerfile) images() []*stage {
	var out []*stage
	for _, s := range df.stages {
		if len(s.installedIn()) > 0 {
			out = append(out, s)
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

// target is the stage a compose service builds: its build target, else the final stage.
func (df *dockerfile) target(t *testing.T, s types.ServiceConfig) *stage {
	t.Helper()
	if s.Build.Target == "" {
		return df.final()
	}
	return df.stage(t, s.Build.Target)
}

// entrypoint is the exec-form ENTRYPOINT a stage ends with.
func (s *stage) entrypoint(t *testing.T) []string {
	t.Helper()
	eps := s.all("ENTRYPOINT")
	if len(eps) == 0 {
		return nil
	}
	var entrypoint []string
	if err := json.Unmarshal([]byte(eps[len(eps)-1]), &entrypoint); err != nil {
		t.Errorf("stage %s: ENTRYPOINT %s is not the exec (JSON) form: %v; the shell form needs a shell distroless lacks", s.name, eps[len(eps)-1], err)
	}
	return entrypoint
}

// exposed is every port a stage EXPOSEs.
func (s *stage) exposed() []string {
	var out []string
	for _, e := range s.all("EXPOSE") {
		for _, f := range strings.Fields(e) {
			p, _, _ := strings.Cut(f, "/")
			out = append(out, p)
		}
	}
	return out
}

// emulatorCommand is the emulator binary's name, as `make build` names it.
const emulatorCommand = "emulator"

func TestDockerfile_ImagesAreDistrolessNonroot(t *testing.T) {
	df := parseDockerfile(t)
	images := df.images()
	if len(images) == 0 {
		t.Fatal("no stage of the Dockerfile installs a binary")
	}
	for _, img := range images {
		if !strings.HasPrefix(img.image, "gcr.io/distroless/static") || !strings.Contains(img.image, ":nonroot") {
			t.Errorf("stage %s is FROM %s, want gcr.io/distroless/static-...:nonroot (no shell, no libc, not root)", img.name, img.image)
		}
		users := img.all("USER")
		if len(users) == 0 {
			t.Errorf("stage %s sets no USER; want nonroot:nonroot", img.name)
		} else if user, _, _ := strings.Cut(users[len(users)-1], ":"); user == "" || user == "root" || user == "0" {
			t.Errorf("stage %s runs as USER %s, want a non-root user", img.name, users[len(users)-1])
		}
		ep := img.entrypoint(t)
		if len(ep) == 0 {
			t.Errorf("stage %s has no ENTRYPOINT", img.name)
		} else if _, ok := img.installedIn()[ep[0]]; !ok {
			t.Errorf("stage %s's ENTRYPOINT %s is not a binary it installs", img.name, ep[0])
		}
		labels := strings.Join(img.all("LABEL"), " ")
		for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"} {
			if !strings.Contains(labels, l+"=") {
				t.Errorf("stage %s has no %s label", img.name, l)
			}
		}
	}

	final := df.final()
	if want := []string{installDir + svcWorker}; !slices.Equal(final.entrypoint(t), want) {
		t.Errorf("the production image (final stage %s) has ENTRYPOINT %q, want %q", final.name, final.entrypoint(t), want)
	}
	p := loadProject(t, false)
	addr, _ := env(service(t, p, svcWorker), workerVariable(t, workerVariables(t), "envHTTPAddress"))
	if _, port, err := net.SplitHostPort(addr); err != nil {
		t.Errorf("worker's HTTP address %q: %v", addr, err)
	} else if !slices.Contains(final.exposed(), port) {
		t.Errorf("the production image EXPOSEs %v, want the worker's HTTP port %s", final.exposed(), port)
	}
	em := service(t, p, svcEmulator)
	if _, port, err := net.SplitHostPort(emulatorAddr(t, em)); err == nil {
		if s := df.target(t, em); !slices.Contains(s.exposed(), port) {
			t.Errorf("stage %s EXPOSEs %v, want the emulator's port %s", s.name, s.exposed(), port)
		}
	}
}

// The production image is what runs against the real control plane: it must not carry the
// emulator, which accepts any request signed with a key it is given.
func TestDockerfile_ProductionImageShipsNoEmulator(t *testing.T) {
	df := parseDockerfile(t)
	final := df.final()
	for target, from := range final.installedIn() {
		if filepath.Base(target) == emulatorCommand || strings.Contains(from.src, emulatorCommand) {
			t.Errorf("the production image (final stage %s) installs %s (from %s %s)", final.name, target, from.stage, from.src)
		}
	}
	// Nor does it need the emulator compiled: no stage it copies from builds it.
	for _, from := range final.installedIn() {
		for _, b := range df.stage(t, from.stage).goBuilds(t, nil) {
			if strings.Contains(b.pkg, emulatorCommand) {
				t.Errorf("stage %s, which the production image copies from, builds %s; build it in a stage of its own", from.stage, b.pkg)
			}
		}
	}
}

func TestDockerfile_BuildsWhatTheMakefileBuilds(t *testing.T) {
	df := parseDockerfile(t)
	want := makefileCommands(t)

	goImage := df.stages[0].image
	if _, tag, ok := strings.Cut(goImage, ":"); !ok || (tag != goVersion(t) && !strings.HasPrefix(tag, goVersion(t)+"-")) {
		t.Errorf("first stage builds with %s, want the Go version go.mod asks for, %s", goImage, goVersion(t))
	}

	// Every command `make build` builds is in exactly one image: the emulator in its own, the rest in
	// the production image.
	installedBy := map[string][]string{}
	for _, img := range df.images() {
		for target, from := range img.installedIn() {
			cmd := strings.TrimPrefix(target, installDir)
			installedBy[cmd] = append(installedBy[cmd], img.name)
			pkg, ok := want[cmd]
			if !ok {
				t.Errorf("stage %s installs %s, which `make build` does not build", img.name, target)
				continue
			}
			var build *goBuild
			for _, b := range df.stage(t, from.stage).goBuilds(t, nil) {
				if b.out == from.src {
					build = &b
				}
			}
			if build == nil {
				t.Errorf("stage %s copies %s from stage %s, which builds no %s", img.name, target, from.stage, from.src)
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
	}
	final := df.final().name
	for cmd, pkg := range want {
		switch stages := installedBy[cmd]; {
		case len(stages) == 0:
			t.Errorf("no image installs %s; `make build` builds it from %s", cmd, pkg)
		case len(stages) > 1:
			t.Errorf("%s is installed by stages %v, want one", cmd, stages)
		case cmd != emulatorCommand && stages[0] != final:
			t.Errorf("%s is installed by stage %s, want the production image (stage %s)", cmd, stages[0], final)
		}
	}
}

func TestCompose_EntrypointsAreInTheImage(t *testing.T) {
	df := parseDockerfile(t)
	p := loadProject(t, false)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build == nil {
			continue
		}
		target := df.target(t, s)
		entrypoint := []string(s.Entrypoint)
		if len(entrypoint) == 0 {
			entrypoint = target.entrypoint(t)
		}
		if len(entrypoint) == 0 {
			t.Errorf("service %s runs nothing: neither it nor stage %s sets an entrypoint", name, target.name)
			continue
		}
		if _, ok := target.installedIn()[entrypoint[0]]; !ok {
			t.Errorf("service %s runs %s, which its image (stage %s) does not install", name, entrypoint[0], target.name)
		}
		if want := installDir + name; entrypoint[0] != want {
			t.Errorf("service %s runs %s, want %s", name, entrypoint[0], want)
		}
		if name != svcEmulator && target != df.final() {
			t.Errorf("service %s builds stage %s, want the production image (stage %s)", name, target.name, df.final().name)
		}
	}
}

// TestDockerfile_GoBuildCommandsBuild runs the Dockerfile's go build commands, as written there (with
// its ENV and a test VERSION), into a temporary directory: the images' binaries build from this
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
	for _, img := range df.images() {
		for target, from := range img.installedIn() {
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
