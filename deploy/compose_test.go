package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.temporal.io/sdk/contrib/envconfig"
	"gopkg.in/yaml.v3"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// The services the checks relate to one another.
const (
	svcPostgres   = "postgresql"
	svcSchemaJob  = "temporal-admin-tools"
	svcTemporal   = "temporal"
	svcNamespace  = "temporal-create-namespace"
	svcEmulator   = "emulator"
	svcWorker     = "worker"
	svcStarter    = "starter"
	svcPrometheus = "prometheus"
)

const (
	composeFile = "docker-compose.yml"
	// secretsMount is where compose mounts a service's secrets.
	secretsMount = "/run/secrets/"
	// stackEnvFile is the one env_file allowed: the local-only PostgreSQL settings.
	stackEnvFile     = "deploy/stack.env"
	prometheusConfig = "deploy/prometheus.yml"
	// prometheusConfigTarget is where the prom/prometheus image reads its configuration.
	prometheusConfigTarget = "/etc/prometheus/prometheus.yml"
	// imagesExtension is the top-level extension that pins every third-party image.
	imagesExtension = "x-images"
)

// repoRoot is the repository root: the compose project's directory and the build context.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// loadProject loads docker-compose.yml as docker compose does, with every profile enabled so the
// on-demand services are checked too. Neither the caller's environment nor a .env file is read, so
// the result is the same on every machine. raw keeps ${...} interpolations as written and leaves
// env_file contents out of the services' environment.
func loadProject(t *testing.T, raw bool) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(root),
		cli.WithProfiles([]string{"*"}),
		cli.WithResolvedPaths(true),
	}
	if raw {
		opts = append(opts, cli.WithInterpolation(false), cli.WithoutEnvironmentResolution)
	}
	po, err := cli.NewProjectOptions([]string{filepath.Join(root, composeFile)}, opts...)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := po.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("load %s: %v", composeFile, err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("%s has no service %q; got %v", composeFile, name, p.ServiceNames())
	}
	return s
}

// env returns a service's variable as compose passes it to the container.
func env(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// serviceEnv is a service's environment as envconfig.EnvLookup, recording what the SDK looks up.
type serviceEnv struct {
	vars    types.MappingWithEquals
	looked  map[string]bool
	environ bool
}

func newServiceEnv(s types.ServiceConfig) *serviceEnv {
	return &serviceEnv{vars: s.Environment, looked: map[string]bool{}}
}

func (e *serviceEnv) Environ() []string {
	e.environ = true
	var out []string
	for k, v := range e.vars {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}

func (e *serviceEnv) LookupEnv(key string) (string, bool) {
	e.looked[key] = true
	v, ok := e.vars[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// temporalClient is what the worker (or the starter) makes of a service's TEMPORAL_* variables:
// the SDK's envconfig, called as they call it.
func temporalClient(t *testing.T, s types.ServiceConfig) (hostPort, namespace string, e *serviceEnv) {
	t.Helper()
	e = newServiceEnv(s)
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: e})
	if err != nil {
		t.Fatalf("service %s: the Temporal SDK rejects its TEMPORAL_* settings: %v", s.Name, err)
	}
	return opts.HostPort, opts.Namespace, e
}

// taskQueue is the task queue a service's worker or starter uses.
func taskQueue(s types.ServiceConfig) string {
	if v, _ := env(s, ac.TaskQueueEnv); v != "" {
		return v
	}
	return ac.DefaultTaskQueue
}

// secretTarget is where a service's secret is mounted in its container.
func secretTarget(ref types.ServiceSecretConfig) string {
	switch {
	case ref.Target == "":
		return secretsMount + ref.Source
	case strings.HasPrefix(ref.Target, "/"):
		return ref.Target
	default:
		return secretsMount + ref.Target
	}
}

// containerPorts is every port a service declares it listens on: port mappings and expose.
func containerPorts(s types.ServiceConfig) []string {
	var ports []string
	for _, p := range s.Ports {
		ports = append(ports, strconv.FormatUint(uint64(p.Target), 10))
	}
	for _, e := range s.Expose {
		port, _, _ := strings.Cut(e, "/")
		ports = append(ports, port)
	}
	return ports
}

// listensOnAllInterfaces reports whether a listen host is reachable from other containers.
func listensOnAllInterfaces(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// emulatorAddr is the emulator service's listen address, read by the emulator's own flag parser.
func emulatorAddr(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	getenv := func(k string) string {
		if k == emulator.APIKeyFileEnv {
			return "" // a path inside the container; TestCompose_EmulatorChecksTheWorkersKey checks it
		}
		v, _ := env(s, k)
		return v
	}
	cfg, err := emulator.ParseFlags(s.Command, getenv, io.Discard)
	if err != nil {
		t.Fatalf("service %s: the emulator rejects its command %q: %v", s.Name, s.Command, err)
	}
	return cfg.Addr
}

func TestCompose_ImagesArePinnedOrBuiltFromTheDockerfile(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, false)

	pinned := map[string]bool{}
	images, ok := p.Extensions[imagesExtension].(map[string]any)
	if !ok {
		t.Fatalf("%s has no top-level %s mapping (the one place image versions are pinned)", composeFile, imagesExtension)
	}
	for key, v := range images {
		image, ok := v.(string)
		if !ok {
			t.Errorf("%s.%s is %T, want an image reference", imagesExtension, key, v)
			continue
		}
		if err := checkPinned(image); err != nil {
			t.Errorf("%s.%s: %v", imagesExtension, key, err)
		}
		pinned[image] = true
	}

	used := map[string]bool{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		used[s.Image] = true
		if s.Build != nil {
			if got := filepath.Clean(s.Build.Context); got != root {
				t.Errorf("service %s: build context is %s, want the repository root %s", name, got, root)
			}
			if s.Build.DockerfileInline != "" {
				t.Errorf("service %s: builds from dockerfile_inline, want the repository's Dockerfile", name)
			}
			dockerfile := s.Build.Dockerfile
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(s.Build.Context, dockerfile)
			}
			if dockerfile != filepath.Join(root, "Dockerfile") {
				t.Errorf("service %s: builds from %s, want the repository's Dockerfile", name, dockerfile)
			}
			if _, err := os.Stat(dockerfile); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
			continue
		}
		if err := checkPinned(s.Image); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		if !pinned[s.Image] {
			t.Errorf("service %s: image %q is not one of %s; pin images there, once", name, s.Image, imagesExtension)
		}
	}
	for image := range pinned {
		if !used[image] {
			t.Errorf("%s pins %s, which no service uses", imagesExtension, image)
		}
	}
}

// versionTag is a tag naming at least major.minor: 16.13, 1.29.7, v3.5.0, 1.26.8-bookworm.
var versionTag = regexp.MustCompile(`^v?\d+\.\d+`)

// checkPinned accepts an image pinned by digest, or by a version tag with at least a minor number.
func checkPinned(image string) error {
	if image == "" {
		return fmt.Errorf("no image and no build")
	}
	if _, digest, ok := strings.Cut(image, "@"); ok && strings.HasPrefix(digest, "sha256:") {
		return nil
	}
	slash, colon := strings.LastIndex(image, "/"), strings.LastIndex(image, ":")
	if colon < slash+1 {
		return fmt.Errorf("image %q has no tag; pin a version", image)
	}
	tag := image[colon+1:]
	switch {
	case tag == "latest":
		return fmt.Errorf("image %q floats on latest; pin a version", image)
	case !versionTag.MatchString(tag):
		return fmt.Errorf("image %q: tag %q is not a version such as 1.2 or 1.2.3; pin a version or a digest", image, tag)
	}
	return nil
}

func TestCompose_WorkerGetsWhatItNeedsInTheStack(t *testing.T) {
	p := loadProject(t, false)
	worker := service(t, p, svcWorker)
	vars := workerVariables(t)
	hostPort, namespace, lookups := temporalClient(t, worker)

	t.Run("every variable it is given is one it reads", func(t *testing.T) {
		known := map[string]bool{ac.TaskQueueEnv: true}
		for _, v := range vars {
			known[v] = true
		}
		for k := range lookups.looked {
			known[k] = true
		}
		for k := range worker.Environment {
			switch {
			case known[k]:
				continue
			case lookups.environ && strings.HasPrefix(k, "TEMPORAL_GRPC_META_"):
				continue
			case strings.HasPrefix(k, "OTEL_"):
				// The OpenTelemetry SDK reads the standard OTEL_* set itself; there is no list to check.
				continue
			}
			t.Errorf("worker sets %s, which neither worker/config.go nor the Temporal SDK's envconfig reads (a typo?)", k)
		}
	})

	t.Run("LangSmith key from a mounted secret", func(t *testing.T) {
		keyFileVar, keyVar := workerVariable(t, vars, "envAPIKeyFile"), workerVariable(t, vars, "envAPIKey")
		if _, ok := worker.Environment[keyVar]; ok {
			t.Errorf("worker sets %s; the key must come from the secret file (%s), and the worker refuses both", keyVar, keyFileVar)
		}
		keyFile, _ := env(worker, keyFileVar)
		if !strings.HasPrefix(keyFile, secretsMount) {
			t.Fatalf("worker %s = %q, want a file under %s (a compose secret); without a credential the worker does not start", keyFileVar, keyFile, secretsMount)
		}
		var mounts []string
		for _, ref := range worker.Secrets {
			mounts = append(mounts, secretTarget(ref))
		}
		if !slices.Contains(mounts, keyFile) {
			t.Errorf("worker %s = %s, but its secrets are mounted at %v", keyFileVar, keyFile, mounts)
		}
	})

	t.Run("control plane URL names the emulator and its port", func(t *testing.T) {
		urlVar := workerVariable(t, vars, "EnvControlPlaneURL")
		raw, ok := env(worker, urlVar)
		if !ok || raw == "" {
			t.Fatalf("worker does not set %s; it would call the real API, with the stack's example key", urlVar)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("worker %s = %q: %v", urlVar, raw, err)
		}
		if _, inStack := p.Services[u.Hostname()]; !inStack {
			// Pointed at a real control plane: that is allowed, over TLS only.
			if u.Scheme != "https" {
				t.Errorf("worker %s = %q names no service of the stack, and a real control plane must be https", urlVar, raw)
			}
			return
		}
		if u.Hostname() != svcEmulator {
			t.Fatalf("worker %s = %q names service %s; the stack's control plane is %s", urlVar, raw, u.Hostname(), svcEmulator)
		}
		host, port, err := net.SplitHostPort(emulatorAddr(t, service(t, p, svcEmulator)))
		if err != nil {
			t.Fatalf("emulator --addr: %v", err)
		}
		if !listensOnAllInterfaces(host) {
			t.Errorf("emulator listens on %s only; other containers cannot reach it, want --addr 0.0.0.0:%s", host, port)
		}
		urlPort := u.Port()
		if urlPort == "" {
			urlPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if urlPort != port {
			t.Errorf("worker %s = %q, but the emulator listens on port %s", urlVar, raw, port)
		}
	})

	t.Run("Temporal address names the temporal service and its port", func(t *testing.T) {
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil {
			t.Fatalf("worker's Temporal address %q (TEMPORAL_ADDRESS): %v", hostPort, err)
		}
		if host != svcTemporal {
			t.Fatalf("worker's Temporal address is %s, want service %s", hostPort, svcTemporal)
		}
		if ports := containerPorts(service(t, p, svcTemporal)); !slices.Contains(ports, port) {
			t.Errorf("worker's Temporal address is %s, but service %s declares ports %v", hostPort, svcTemporal, ports)
		}
		if namespace == "" {
			t.Errorf("worker sets no TEMPORAL_NAMESPACE; want the namespace the temporal health check waits for")
		}
	})

	t.Run("HTTP address reachable from Prometheus", func(t *testing.T) {
		addrVar := workerVariable(t, vars, "envHTTPAddress")
		addr, ok := env(worker, addrVar)
		if !ok || addr == "" {
			t.Fatalf("worker does not set %s; its default listens on loopback only, and empty turns /metrics off", addrVar)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("worker %s = %q: %v", addrVar, addr, err)
		}
		if !listensOnAllInterfaces(host) {
			t.Errorf("worker %s = %q: Prometheus cannot reach %s from another container; want 0.0.0.0:%s", addrVar, addr, host, port)
		}
		if ports := containerPorts(worker); !slices.Contains(ports, port) {
			t.Errorf("worker %s = %q, but the service declares ports %v; expose %s", addrVar, addr, ports, port)
		}
	})

	t.Run("stop grace period covers the stop timeout", func(t *testing.T) {
		stopVar := workerVariable(t, vars, "envStopTimeout")
		raw, ok := env(worker, stopVar)
		if !ok {
			t.Fatalf("worker does not set %s; set it, so stop_grace_period can be checked against it", stopVar)
		}
		stop, err := time.ParseDuration(raw)
		if err != nil {
			t.Fatalf("worker %s = %q: %v", stopVar, raw, err)
		}
		if worker.StopGracePeriod == nil || time.Duration(*worker.StopGracePeriod) <= stop {
			t.Errorf("worker stop_grace_period is %v, want more than %s = %s: Docker kills the worker after it, in-flight removals or not",
				worker.StopGracePeriod, stopVar, stop)
		}
	})

	t.Run("restarts and waits for its namespace", func(t *testing.T) {
		if worker.Restart != types.RestartPolicyUnlessStopped && worker.Restart != types.RestartPolicyAlways {
			t.Errorf("worker restart is %q, want %s: the worker exits when it cannot reach Temporal", worker.Restart, types.RestartPolicyUnlessStopped)
		}
		if dep := worker.DependsOn[svcNamespace]; dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("worker depends on %s with condition %q, want %s: it refuses to start on a missing namespace", svcNamespace, dep.Condition, types.ServiceConditionCompletedSuccessfully)
		}
	})
}

func TestCompose_StarterIsOnDemandAndReachesTheWorker(t *testing.T) {
	p := loadProject(t, false)
	starter, worker := service(t, p, svcStarter), service(t, p, svcWorker)

	if !slices.Equal(starter.Profiles, []string{"tools"}) {
		t.Errorf("starter profiles are %v, want [tools]: docker compose up must leave it out, docker compose run starts it", starter.Profiles)
	}
	starterHost, starterNS, _ := temporalClient(t, starter)
	workerHost, workerNS, _ := temporalClient(t, worker)
	if starterHost != workerHost || starterNS != workerNS {
		t.Errorf("starter reaches Temporal at %s namespace %q, the worker at %s namespace %q", starterHost, starterNS, workerHost, workerNS)
	}
	if got, want := taskQueue(starter), taskQueue(worker); got != want {
		t.Errorf("starter starts removals on task queue %q, the worker polls %q", got, want)
	}
	if dep := starter.DependsOn[svcNamespace]; dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("starter depends on %s with condition %q, want %s", svcNamespace, dep.Condition, types.ServiceConditionCompletedSuccessfully)
	}
}

func TestCompose_EmulatorIsReachable(t *testing.T) {
	p := loadProject(t, false)
	em := service(t, p, svcEmulator)
	_, port, err := net.SplitHostPort(emulatorAddr(t, em))
	if err != nil {
		t.Fatalf("emulator --addr: %v", err)
	}
	for _, mapping := range em.Ports {
		if got := strconv.FormatUint(uint64(mapping.Target), 10); got != port {
			t.Errorf("emulator publishes container port %s, but listens on %s", got, port)
		}
	}
}

// The emulator accepts exactly the key the worker sends: both read the same mounted secret.
func TestCompose_EmulatorChecksTheWorkersKey(t *testing.T) {
	p := loadProject(t, false)
	em, w := service(t, p, svcEmulator), service(t, p, svcWorker)
	emFile, ok := env(em, emulator.APIKeyFileEnv)
	if !ok {
		t.Fatalf("emulator has no %s, want it to read the worker's key secret", emulator.APIKeyFileEnv)
	}
	wFile, _ := env(w, "LANGSMITH_API_KEY_FILE")
	if emFile != wFile {
		t.Errorf("emulator reads its key from %q, the worker from %q; want the same secret", emFile, wFile)
	}
	mounted := func(s types.ServiceConfig) map[string]bool {
		m := map[string]bool{}
		for _, sec := range s.Secrets {
			target := sec.Target
			if target == "" {
				target = "/run/secrets/" + sec.Source
			} else if !strings.HasPrefix(target, "/") {
				target = "/run/secrets/" + target
			}
			m[target] = true
		}
		return m
	}
	if !mounted(em)[emFile] || !mounted(w)[wFile] {
		t.Errorf("got secrets emulator %v, worker %v; want both to mount %s", em.Secrets, w.Secrets, emFile)
	}
}

// flagValue finds --name value or --name=value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestCompose_HealthyDependenciesHaveHealthChecks(t *testing.T) {
	p := loadProject(t, false)
	for _, name := range p.ServiceNames() {
		for dep, d := range p.Services[name].DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which is not a service", name, dep)
				continue
			}
			if d.Condition != types.ServiceConditionHealthy {
				continue
			}
			if hc := target.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Errorf("service %s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
	}
}

// credentialName matches variable names that carry credentials.
var credentialName = regexp.MustCompile(`(?i)(_KEY|_TOKEN|PASSWORD|SECRET|_PWD|_PASS|CREDENTIAL)`)

// credentialFlag matches command-line flags that carry credentials.
var credentialFlag = regexp.MustCompile(`(?i)^--?(api-key|bearer-token|token|password|secret)(=|$)`)

// secretFree matches a value that is not itself a credential: an interpolation with no literal
// default (${X}, ${X:?message}, ${X:-}) or a bare $X.
var secretFree = regexp.MustCompile(`^(\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*|:?-)?\}|\$[A-Za-z_][A-Za-z0-9_]*)$`)

func TestCompose_NoCredentialIsWrittenInline(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, true)

	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		vars := map[string]*string{}
		for k, v := range s.Environment {
			vars["environment "+k] = v
		}
		if s.Build != nil {
			for k, v := range s.Build.Args {
				vars["build arg "+k] = v
			}
		}
		for where, v := range vars {
			if !credentialName.MatchString(where) || v == nil || *v == "" {
				continue
			}
			if strings.HasPrefix(*v, secretsMount) || secretFree.MatchString(*v) {
				continue
			}
			t.Errorf("service %s: %s has an inline value; use a secret file (%s...) or ${VAR} without a default", name, where, secretsMount)
		}
		for _, arg := range append(slices.Clone(s.Entrypoint), s.Command...) {
			if credentialFlag.MatchString(arg) {
				t.Errorf("service %s: %q passes a credential on the command line, where docker inspect and ps show it", name, arg)
			}
		}
		for _, f := range s.EnvFiles {
			if s.Build != nil {
				t.Errorf("service %s: reads env_file %s; our image takes credentials from secrets only", name, f.Path)
			}
			if f.Path != filepath.Join(root, stackEnvFile) {
				t.Errorf("service %s: env_file %s, want only %s (local-only PostgreSQL settings)", name, f.Path, stackEnvFile)
			}
		}
	}
}

func TestStackEnv_HoldsOnlyLocalPostgresSettings(t *testing.T) {
	root := repoRoot(t)
	vars, err := dotenv.Read(filepath.Join(root, stackEnvFile))
	if err != nil {
		t.Fatalf("read %s: %v", stackEnvFile, err)
	}
	allowed := []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PWD", "POSTGRES_DB"}
	for k := range vars {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s sets %s; it is for the stack's own PostgreSQL only (%v)", stackEnvFile, k, allowed)
		}
	}
	// temporalio/server and the schema job read the password as POSTGRES_PWD, the postgres image as
	// POSTGRES_PASSWORD.
	if vars["POSTGRES_PASSWORD"] != vars["POSTGRES_PWD"] {
		t.Errorf("%s: POSTGRES_PASSWORD and POSTGRES_PWD differ; Temporal could not log in to PostgreSQL", stackEnvFile)
	}
	// A default password is acceptable only for a database nobody outside the stack can reach.
	p := loadProject(t, false)
	if ports := service(t, p, svcPostgres).Ports; len(ports) > 0 {
		t.Errorf("%s publishes ports %v while its password is a committed default in %s", svcPostgres, ports, stackEnvFile)
	}
}

func TestCompose_SecretsAreGitIgnoredFilesWithAWorkingExample(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, false)
	if len(p.Secrets) == 0 {
		t.Fatalf("%s declares no secrets; the worker's key must come from one", composeFile)
	}
	for _, name := range p.ServiceNames() {
		for _, ref := range p.Services[name].Secrets {
			if _, ok := p.Secrets[ref.Source]; !ok {
				t.Errorf("service %s mounts secret %s, which is not declared at the top level", name, ref.Source)
			}
		}
	}
	for name, secret := range p.Secrets {
		if secret.File == "" {
			t.Errorf("secret %s has no file; want a file under deploy/secrets/", name)
			continue
		}
		dir, base := filepath.Split(secret.File)
		if filepath.Clean(dir) != filepath.Join(root, "deploy", "secrets") {
			t.Errorf("secret %s is %s, want a file in deploy/secrets/", name, secret.File)
		}

		ignore, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
		if err != nil {
			t.Errorf("secret %s: %v", name, err)
		} else if lines := strings.Split(string(ignore), "\n"); !slices.Contains(lines, "/"+base) && !slices.Contains(lines, base) {
			t.Errorf("secret %s: deploy/secrets/.gitignore does not list %s; the real key could be committed", name, base)
		}

		// The documented first step copies the example into place: the worker must accept it.
		example, err := os.ReadFile(secret.File + ".example")
		if err != nil {
			t.Errorf("secret %s: %v (the example docs/operations.md tells people to copy)", name, err)
			continue
		}
		key := strings.TrimSpace(string(example))
		if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Errorf("secret %s: %s.example must hold one key with no spaces; the worker rejects anything else", name, base)
		}
	}
}

// promConfig is the part of a Prometheus configuration these tests read.
type promConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// scrapeTarget is one host:port a Prometheus job scrapes.
type scrapeTarget struct {
	job, path, host, port string
}

// prometheusTargets reads deploy/prometheus.yml, after checking that the prometheus service mounts
// it where the image reads its configuration.
func prometheusTargets(t *testing.T, p *types.Project) []scrapeTarget {
	t.Helper()
	configPath := filepath.Join(repoRoot(t), prometheusConfig)
	prom := service(t, p, svcPrometheus)
	mounted := false
	for _, ref := range prom.Configs {
		if p.Configs[ref.Source].File == configPath && ref.Target == prometheusConfigTarget {
			mounted = true
		}
	}
	for _, v := range prom.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == configPath && v.Target == prometheusConfigTarget {
			mounted = true
		}
	}
	if !mounted {
		t.Fatalf("service %s does not mount %s at %s; this test would check a file Prometheus never reads", svcPrometheus, prometheusConfig, prometheusConfigTarget)
	}
	b, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("parse %s: %v", prometheusConfig, err)
	}
	var out []scrapeTarget
	for _, job := range cfg.ScrapeConfigs {
		var targets []string // host:port
		for _, sc := range job.StaticConfigs {
			targets = append(targets, sc.Targets...)
		}
		for _, dc := range job.DNSSDConfigs {
			for _, n := range dc.Names {
				if _, inStack := p.Services[n]; inStack && dc.Type != "A" && dc.Type != "AAAA" && dc.Type != "" {
					t.Errorf("job %s: dns_sd type %s; compose's DNS answers A records, one per replica", job.JobName, dc.Type)
				}
				targets = append(targets, net.JoinHostPort(n, strconv.Itoa(dc.Port)))
			}
		}
		for _, target := range targets {
			host, port, err := net.SplitHostPort(target)
			if err != nil {
				t.Errorf("job %s: target %q: %v", job.JobName, target, err)
				continue
			}
			out = append(out, scrapeTarget{job: job.JobName, path: job.MetricsPath, host: host, port: port})
		}
	}
	return out
}

// checkScraped checks that some job scrapes service on port at /metrics, and no job another port of it.
func checkScraped(t *testing.T, targets []scrapeTarget, svc, port, why string) {
	t.Helper()
	found := false
	for _, tg := range targets {
		if tg.host != svc {
			continue
		}
		found = true
		if tg.port != port {
			t.Errorf("job %s scrapes %s:%s, but %s serves metrics on port %s (%s)", tg.job, svc, tg.port, svc, port, why)
		}
		if tg.path != "" && tg.path != "/metrics" {
			t.Errorf("job %s scrapes %s, want /metrics", tg.job, tg.path)
		}
	}
	if !found {
		t.Errorf("%s has no scrape job whose targets name service %s", prometheusConfig, svc)
	}
}

func TestPrometheus_ScrapesTheWorkersMetricsPort(t *testing.T) {
	p := loadProject(t, false)
	addrVar := workerVariable(t, workerVariables(t), "envHTTPAddress")
	addr, _ := env(service(t, p, svcWorker), addrVar)
	_, workerPort, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker %s = %q: %v", addrVar, addr, err)
	}
	checkScraped(t, prometheusTargets(t, p), svcWorker, workerPort, addrVar)
}

func TestPrometheus_ScrapesTheTemporalServer(t *testing.T) {
	p := loadProject(t, false)
	endpoint, _ := env(service(t, p, svcTemporal), "PROMETHEUS_ENDPOINT")
	_, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Fatalf("temporal PROMETHEUS_ENDPOINT = %q: %v", endpoint, err)
	}
	checkScraped(t, prometheusTargets(t, p), svcTemporal, port, "PROMETHEUS_ENDPOINT")
}

// jobScript is the shell script a one-shot job runs: entrypoint ["/bin/sh", "-euc"] and the
// script as its one command argument (with compose's $$ already turned into $).
func jobScript(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	ep := []string(s.Entrypoint)
	if len(ep) != 2 || ep[0] != "/bin/sh" || !strings.HasPrefix(ep[1], "-") || !strings.Contains(ep[1], "e") || !strings.HasSuffix(ep[1], "c") {
		t.Fatalf("service %s: entrypoint %q, want [/bin/sh -euc] so that the first failing step fails the job", s.Name, ep)
	}
	if len(s.Command) != 1 {
		t.Fatalf("service %s: command %q, want one script", s.Name, s.Command)
	}
	return s.Command[0]
}

// scriptCommands splits a shell script into its simple commands (lines, continuations joined, split
// at ;, && and ||), each as words.
func scriptCommands(script string) [][]string {
	var out [][]string
	joined := strings.ReplaceAll(script, "\\\n", " ")
	for line := range strings.Lines(joined) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, part := range regexp.MustCompile(`;|&&|\|\|`).Split(line, -1) {
			if words := shellFields(part); len(words) > 0 {
				out = append(out, words)
			}
		}
	}
	return out
}

// sqlTool is one temporal-sql-tool invocation: its global flags, subcommand and the rest.
type sqlTool struct {
	flags      map[string]string
	subcommand string
	args       []string
}

func parseSQLTool(words []string) (sqlTool, bool) {
	if len(words) == 0 || words[0] != "temporal-sql-tool" {
		return sqlTool{}, false
	}
	// Long names for the short ones temporal-sql-tool also accepts.
	long := map[string]string{"ep": "endpoint", "p": "port", "u": "user", "pw": "password", "db": "database", "pl": "plugin"}
	st := sqlTool{flags: map[string]string{}}
	for i := 1; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			st.subcommand, st.args = w, words[i+1:]
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
		if !hasValue && i+1 < len(words) {
			i++
			value = words[i]
		}
		if l, ok := long[name]; ok {
			name = l
		}
		st.flags[name] = value
	}
	return st, true
}

// The stack starts in the order its pieces need: the schema before the server, the namespace before
// the worker. The jobs do not restart: they retry inside their scripts where that is needed.
func TestCompose_JobsRunInOrder(t *testing.T) {
	p := loadProject(t, false)
	order := []struct {
		service, dependsOn, condition string
	}{
		{svcSchemaJob, svcPostgres, types.ServiceConditionHealthy},
		{svcTemporal, svcSchemaJob, types.ServiceConditionCompletedSuccessfully},
		{svcNamespace, svcTemporal, types.ServiceConditionHealthy},
		{svcWorker, svcNamespace, types.ServiceConditionCompletedSuccessfully},
		{svcStarter, svcNamespace, types.ServiceConditionCompletedSuccessfully},
	}
	for _, o := range order {
		if got := service(t, p, o.service).DependsOn[o.dependsOn].Condition; got != o.condition {
			t.Errorf("service %s depends on %s with condition %q, want %s", o.service, o.dependsOn, got, o.condition)
		}
	}
	for _, name := range p.ServiceNames() {
		for dep, d := range p.Services[name].DependsOn {
			if d.Condition != types.ServiceConditionCompletedSuccessfully {
				continue
			}
			job := service(t, p, dep)
			if job.Restart != "" && job.Restart != types.RestartPolicyNo {
				t.Errorf("service %s waits for %s to complete, but %s has restart %s; a one-shot job retries inside its script and keeps restart \"no\", so that its first exit is the one depends_on sees", name, dep, dep, job.Restart)
			}
			if job.Deploy != nil && job.Deploy.RestartPolicy != nil {
				t.Errorf("job %s has a deploy restart policy", dep)
			}
		}
	}
}

// The schema job creates both databases the server uses and brings each schema to the server's
// version, with the plugin, host, port and user the server uses, in the order temporal-sql-tool
// needs: create, setup-schema -v 0.0, update-schema.
func TestCompose_SchemaJobSetsUpBothDatabases(t *testing.T) {
	p := loadProject(t, false)
	job, temporal := service(t, p, svcSchemaJob), service(t, p, svcTemporal)
	if job.Image != service(t, p, svcNamespace).Image {
		t.Errorf("the schema job runs %s, the namespace job %s; both are the admin-tools pinned once", job.Image, service(t, p, svcNamespace).Image)
	}
	serverEnv := func(k, def string) string {
		if v, ok := env(temporal, k); ok && v != "" {
			return v
		}
		return def
	}
	databases := map[string]string{ // database → its schema's directory name
		serverEnv("DBNAME", "temporal"):                       "temporal",
		serverEnv("VISIBILITY_DBNAME", "temporal_visibility"): "visibility",
	}
	wantFlags := map[string]string{
		"plugin":   serverEnv("DB", ""),
		"endpoint": serverEnv("POSTGRES_SEEDS", ""),
		"port":     serverEnv("DB_PORT", "5432"),
		"user":     "$POSTGRES_USER",
	}
	if wantFlags["plugin"] != "postgres12" {
		t.Errorf("temporal DB = %q, want postgres12 (the PostgreSQL plugin of this stack)", wantFlags["plugin"])
	}
	if wantFlags["endpoint"] != svcPostgres {
		t.Errorf("temporal POSTGRES_SEEDS = %q, want service %s", wantFlags["endpoint"], svcPostgres)
	}

	script := jobScript(t, job)
	if !regexp.MustCompile(`(?m)^\s*export SQL_PASSWORD="?\$\{?POSTGRES_PWD\}?"?\s*$`).MatchString(script) {
		t.Errorf("the schema job does not export SQL_PASSWORD from POSTGRES_PWD; temporal-sql-tool would log in without the password")
	}
	steps := map[string][]string{} // database → subcommands in order
	for _, words := range scriptCommands(script) {
		st, ok := parseSQLTool(words)
		if !ok {
			continue
		}
		if _, ok := st.flags["password"]; ok {
			t.Errorf("temporal-sql-tool is given the password on its command line (%q); export SQL_PASSWORD instead", strings.Join(words, " "))
		}
		for k, want := range wantFlags {
			if got := st.flags[k]; got != want {
				t.Errorf("temporal-sql-tool --%s %q in %q, want %q (what the server uses)", k, got, strings.Join(words, " "), want)
			}
		}
		db := st.flags["database"]
		schemaDir, known := databases[db]
		if !known {
			t.Errorf("temporal-sql-tool works on database %q, which the server does not use (%v)", db, databases)
			continue
		}
		switch st.subcommand {
		case "create", "create-database":
			st.subcommand = "create"
		case "setup-schema", "setup":
			st.subcommand = "setup-schema"
			if flagValue(st.args, "-v") != "0.0" && flagValue(st.args, "--version") != "0.0" {
				t.Errorf("setup-schema of %s: %q, want -v 0.0 (versioning tables only; update-schema does the rest)", db, st.args)
			}
		case "update-schema", "update":
			st.subcommand = "update-schema"
			dir := flagValue(st.args, "-d")
			if dir == "" {
				dir = flagValue(st.args, "--schema-dir")
			}
			if want := "/etc/temporal/schema/postgresql/v12/" + schemaDir + "/versioned"; dir != want {
				t.Errorf("update-schema of %s reads %q, want %s", db, dir, want)
			}
		}
		steps[db] = append(steps[db], st.subcommand)
	}
	for db := range databases {
		if got, want := steps[db], []string{"create", "setup-schema", "update-schema"}; !slices.Equal(got, want) {
			t.Errorf("the schema job runs %v on database %s, want %v in that order", got, db, want)
		}
	}
}

// The server's own settings: its database, its listen address, its metrics.
func TestCompose_TemporalServerSettings(t *testing.T) {
	p := loadProject(t, false)
	temporal, pg, worker := service(t, p, svcTemporal), service(t, p, svcPostgres), service(t, p, svcWorker)

	user, _ := env(temporal, "POSTGRES_USER")
	pwd, _ := env(temporal, "POSTGRES_PWD")
	pgUser, _ := env(pg, "POSTGRES_USER")
	pgPwd, _ := env(pg, "POSTGRES_PASSWORD")
	if user == "" || user != pgUser || pwd != pgPwd {
		t.Errorf("temporal logs in as %q with the password the postgresql service %s; want the user and password postgresql creates", user,
			map[bool]string{true: "sets", false: "does not set"}[pwd == pgPwd])
	}
	if bind, _ := env(temporal, "BIND_ON_IP"); !listensOnAllInterfaces(bind) || bind == "" {
		t.Errorf("temporal BIND_ON_IP = %q; the server would serve on its loopback only, out of the other containers' reach; want 0.0.0.0", bind)
	}

	hostPort, _, _ := temporalClient(t, worker)
	_, frontendPort, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("worker's Temporal address %q: %v", hostPort, err)
	}
	if temporal.HealthCheck == nil || len(temporal.HealthCheck.Test) == 0 {
		t.Fatalf("temporal has no health check; the namespace job waits for it")
	}
	if check := []string(temporal.HealthCheck.Test); !slices.Contains(check, frontendPort) && !slices.ContainsFunc(check, func(s string) bool { return strings.HasSuffix(s, ":"+frontendPort) }) {
		t.Errorf("temporal's health check %q does not ask the frontend port %s the worker dials", check, frontendPort)
	}

	metrics, _ := env(temporal, "PROMETHEUS_ENDPOINT")
	host, port, err := net.SplitHostPort(metrics)
	if err != nil {
		t.Fatalf("temporal PROMETHEUS_ENDPOINT = %q: %v; the server's metrics would be off", metrics, err)
	}
	if !listensOnAllInterfaces(host) {
		t.Errorf("temporal PROMETHEUS_ENDPOINT = %q: Prometheus cannot reach %s from another container", metrics, host)
	}
	if ports := containerPorts(temporal); !slices.Contains(ports, port) {
		t.Errorf("temporal serves metrics on %s, but declares ports %v; expose it", port, ports)
	}
}

// The namespace job registers, at the worker's Temporal address, the namespace the worker polls.
func TestCompose_NamespaceJobRegistersTheWorkersNamespace(t *testing.T) {
	p := loadProject(t, false)
	job, worker := service(t, p, svcNamespace), service(t, p, svcWorker)
	jobHost, jobNS, _ := temporalClient(t, job)
	workerHost, workerNS, _ := temporalClient(t, worker)
	if jobHost != workerHost || jobNS != workerNS {
		t.Errorf("the namespace job registers %q at %s, the worker polls %q at %s", jobNS, jobHost, workerNS, workerHost)
	}
	var waits, creates bool
	for _, words := range scriptCommands(jobScript(t, job)) {
		if i := slices.Index(words, "temporal"); i < 0 || i+2 >= len(words) || words[i+1] != "operator" {
			continue
		}
		args := words[slices.Index(words, "temporal"):]
		address, namespace := flagValue(args, "--address"), flagValue(args, "--namespace")
		if address != "$TEMPORAL_ADDRESS" {
			t.Errorf("%q dials %q, want --address \"$TEMPORAL_ADDRESS\" (the worker's address)", strings.Join(args, " "), address)
		}
		switch strings.Join(args[2:4], " ") {
		case "cluster health":
			waits = true
		case "namespace create":
			creates = true
			if namespace != "$TEMPORAL_NAMESPACE" {
				t.Errorf("%q creates %q, want --namespace \"$TEMPORAL_NAMESPACE\" (the worker's namespace)", strings.Join(args, " "), namespace)
			}
		}
	}
	if !waits {
		t.Errorf("the namespace job does not wait for `temporal operator cluster health` before it creates the namespace")
	}
	if !creates {
		t.Errorf("the namespace job never runs `temporal operator namespace create`")
	}
}

// fakeTemporal stands in for the temporal CLI when TestCompose_NamespaceJobRetriesAndIsIdempotent
// runs the namespace job's script. The cluster is always healthy. FAKE_MODE says how the rest
// answers: "down", every call fails; "transient", the first two calls fail, then describe and get
// find what a create made; "exists", describe and get find nothing and a create answers what the
// server answers when the thing is there already. FAKE_DIR/calls logs every call.
const fakeTemporal = `#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls"
[ "$1 $2 $3" = "operator cluster health" ] && exit 0
fail() { echo "$*" >&2; exit 1; }
case "$FAKE_MODE" in
down) fail "connection refused" ;;
transient)
	echo x >> "$FAKE_DIR/failures"
	[ "$(wc -l < "$FAKE_DIR/failures")" -le 2 ] && fail "connection refused" ;;
esac
case " $* " in
*" create "*)
	[ "$FAKE_MODE" = exists ] && [ "$2" = namespace ] && fail "Namespace \"$5\" already exists"
	[ "$FAKE_MODE" = exists ] && fail "error creating Nexus endpoint. Endpoint with name x already registered"
	: > "$FAKE_DIR/created-$2"; exit 0 ;;
esac
[ -e "$FAKE_DIR/created-$2" ] || fail "not found"
`

// runNamespaceJob runs the namespace job's script as its container would, with fakeTemporal as
// the temporal CLI and a sleep that returns at once. It returns whether the script succeeded and
// the temporal calls it made (the cluster health checks left out).
func runNamespaceJob(t *testing.T, job types.ServiceConfig, mode string) (bool, []string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"temporal": fakeTemporal, "sleep": "#!/bin/sh\nexit 0\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), "/bin/sh", append([]string(job.Entrypoint)[1:], jobScript(t, job))...)
	cmd.Env = []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"), "FAKE_DIR=" + dir, "FAKE_MODE=" + mode}
	for k, v := range job.Environment {
		if v != nil {
			cmd.Env = append(cmd.Env, k+"="+*v)
		}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run the namespace job's script: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	var calls []string
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "operator cluster health") {
			calls = append(calls, strings.TrimSpace(line))
		}
	}
	t.Logf("%s: %s", mode, out)
	return err == nil, calls
}

// The namespace job retries each step, so a transient failure does not leave the stack without
// its namespace (and the worker never started), and a create that finds the namespace or the
// endpoint already there counts as done. It keeps restart "no": the retries are in the script.
func TestCompose_NamespaceJobRetriesAndIsIdempotent(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to run the job's script")
	}
	job := service(t, loadProject(t, false), svcNamespace)
	if job.Restart != "" && job.Restart != types.RestartPolicyNo {
		t.Errorf("%s has restart %s; it retries inside its script, and its one exit is what depends_on sees", svcNamespace, job.Restart)
	}
	creates := func(calls []string, what string) bool {
		return slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "operator "+what+" create ") })
	}
	for _, mode := range []string{"transient", "exists"} {
		ok, calls := runNamespaceJob(t, job, mode)
		if !ok {
			t.Errorf("%s: the job failed; want it to end with the namespace and the endpoint in place (calls %q)", mode, calls)
		}
		if !creates(calls, "namespace") || !creates(calls, "nexus endpoint") {
			t.Errorf("%s: the job ran namespace create %t, endpoint create %t; want both (calls %q)", mode,
				creates(calls, "namespace"), creates(calls, "nexus endpoint"), calls)
		}
	}
	ok, calls := runNamespaceJob(t, job, "down")
	if ok {
		t.Errorf("down: the job succeeded against a server that answers nothing")
	}
	if n := len(calls); n < 2 || n > 40 {
		t.Errorf("down: %d calls; want the first step retried, a bounded number of times", n)
	}
}

// The server version the temporal CLI embeds, from its --version line or its go.mod, and the CLI
// version the Makefile pins.
var (
	cliVersionLineRE = regexp.MustCompile(`\(Server (\d+\.\d+\.\d+)`)
	cliGoModRE       = regexp.MustCompile(`(?m)^\s*go\.temporal\.io/server v(\d+\.\d+\.\d+)\s*$`)
	makefileCLIRE    = regexp.MustCompile(`(?m)^TEMPORAL_CLI_VERSION\s*:?=\s*(\S+)\s*$`)
)

// devServerVersion is the Temporal server version the tests' dev server runs: the one the temporal
// CLI pinned in the Makefile embeds, read from its go.mod in the module cache, else from the
// installed CLI's --version. Empty when neither is on this machine.
func devServerVersion(t *testing.T) (version, source string) {
	t.Helper()
	root := repoRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := makefileCLIRE.FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no TEMPORAL_CLI_VERSION")
	}
	cliVersion := string(m[1])
	if out, err := exec.CommandContext(t.Context(), "go", "env", "GOMODCACHE").Output(); err == nil {
		goMod := filepath.Join(strings.TrimSpace(string(out)), "github.com", "temporalio", "cli@"+cliVersion, "go.mod")
		if b, err := os.ReadFile(goMod); err == nil {
			if m := cliGoModRE.FindSubmatch(b); m != nil {
				return string(m[1]), "the go.mod of the temporal CLI " + cliVersion
			}
		}
	}
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		cli = filepath.Join(root, "bin", "temporal")
	}
	if out, err := exec.CommandContext(t.Context(), cli, "--version").Output(); err == nil {
		if m := cliVersionLineRE.FindSubmatch(out); m != nil {
			return string(m[1]), cli + " --version"
		}
	}
	return "", ""
}

// The stack runs the Temporal server the tests run against, and admin-tools of the same release.
func TestCompose_TemporalVersionMatchesTheTestsDevServer(t *testing.T) {
	p := loadProject(t, false)
	tag := func(image string) string {
		_, tag, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
		return tag
	}
	server, tools := tag(service(t, p, svcTemporal).Image), tag(service(t, p, svcSchemaJob).Image)
	if server != strings.SplitN(tools, "-", 2)[0] {
		t.Errorf("temporal runs server %s, admin-tools is of server %s; the schema must be the one the server expects", server, tools)
	}
	want, source := devServerVersion(t)
	if want == "" {
		t.Skip("neither the temporal CLI's go.mod nor the CLI is on this machine (make test installs it); cannot tell which server the tests run")
	}
	if server != want {
		t.Errorf("temporal runs server %s, the tests' dev server is %s (from %s)", server, want, source)
	}
}

// The worker's health check runs in its distroless image: no shell, so the exec form, and the
// worker binary itself asking its own /readyz.
func TestCompose_WorkerHealthCheckRunsInItsImage(t *testing.T) {
	p := loadProject(t, false)
	worker := service(t, p, svcWorker)
	hc := worker.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 {
		t.Fatalf("worker has no health check")
	}
	test := []string(hc.Test)
	if test[0] != "CMD" {
		t.Fatalf("worker health check is %q; the distroless image has no shell, want the exec form [CMD ...]", test)
	}
	installed := parseDockerfile(t).target(t, worker).installedIn()
	if _, ok := installed[test[1]]; !ok {
		t.Errorf("worker health check runs %s, which its image does not install", test[1])
	}
	raw := flagValue(test, "--probe")
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		t.Fatalf("worker health check probes %q, want --probe http://127.0.0.1:PORT/readyz", raw)
	}
	addr, _ := env(worker, workerVariable(t, workerVariables(t), "envHTTPAddress"))
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker's HTTP address %q: %v", addr, err)
	}
	if u.Port() != port {
		t.Errorf("worker health check probes port %q, the worker serves on %s", u.Port(), port)
	}
	if u.Path != "/readyz" {
		t.Errorf("worker health check probes %s, want /readyz", u.Path)
	}
	if ip := net.ParseIP(u.Hostname()); listensOnAllInterfaces(host) && (ip == nil || !ip.IsLoopback()) {
		t.Errorf("worker health check probes host %s; it runs inside the container, want 127.0.0.1", u.Hostname())
	} else if !listensOnAllInterfaces(host) && u.Hostname() != host {
		t.Errorf("worker health check probes host %s, the worker listens on %s only", u.Hostname(), host)
	}
}

// TestWorker_ProbeFlag runs `worker --probe URL`, what the compose health check runs, against a
// server that answers 200, then 503, a redirect, then nothing: exit 0 only for the 200, with no
// settings in the environment at all (a probe reads none), and 2 for a URL that is not one.
func TestWorker_ProbeFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./worker")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./worker: %v\n%s", err, out)
	}
	probe := func(target string) (int, string) {
		cmd := exec.CommandContext(t.Context(), bin, "--probe", target)
		cmd.Env = []string{}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &exit):
			return exit.ExitCode(), out.String()
		}
		t.Fatalf("worker --probe: %v", err)
		return -1, ""
	}

	var status atomic.Int32 // read by the server's goroutines
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(int(status.Load()))
		case "/moved":
			http.Redirect(w, r, "/readyz", http.StatusFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	if code, out := probe(srv.URL + "/readyz"); code != 0 {
		t.Errorf("worker --probe against a 200: exit %d, want 0 (%s)", code, out)
	}
	if code, out := probe(srv.URL + "/moved"); code != 1 || !strings.HasPrefix(out, "worker: ") {
		t.Errorf("worker --probe against a redirect to a 200: exit %d (%q), want 1 and a line starting \"worker: \" (never followed)", code, out)
	}
	status.Store(http.StatusServiceUnavailable)
	if code, out := probe(srv.URL + "/readyz"); code != 1 || !strings.HasPrefix(out, "worker: ") {
		t.Errorf("worker --probe against a 503: exit %d (%q), want 1 and a line starting \"worker: \"", code, out)
	}
	if code, out := probe("127.0.0.1:9090/readyz"); code != 2 {
		t.Errorf("worker --probe with no scheme: exit %d (%q), want 2", code, out)
	}
	srv.Close()
	if code, out := probe(srv.URL + "/readyz"); code == 0 {
		t.Errorf("worker --probe against nothing: exit 0, want non-zero (%s)", out)
	}
}
