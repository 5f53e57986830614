package deploy

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	svcTemporal   = "temporal"
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

	for _, name := range p.ServiceNames() {
		s := p.Services[name]
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
		urlVar := workerVariable(t, vars, "envControlPlaneURL")
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

	t.Run("restarts and waits for Temporal", func(t *testing.T) {
		if worker.Restart != types.RestartPolicyUnlessStopped && worker.Restart != types.RestartPolicyAlways {
			t.Errorf("worker restart is %q, want %s: the worker exits when it cannot reach Temporal", worker.Restart, types.RestartPolicyUnlessStopped)
		}
		if dep := worker.DependsOn[svcTemporal]; dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("worker depends on %s with condition %q, want %s", svcTemporal, dep.Condition, types.ServiceConditionHealthy)
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
	if dep := starter.DependsOn[svcTemporal]; dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("starter depends on %s with condition %q, want %s", svcTemporal, dep.Condition, types.ServiceConditionHealthy)
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

func TestCompose_TemporalWaitsForThePostgresAndTheWorkersNamespace(t *testing.T) {
	p := loadProject(t, false)
	temporal, worker := service(t, p, svcTemporal), service(t, p, svcWorker)

	if seeds, _ := env(temporal, "POSTGRES_SEEDS"); seeds != svcPostgres {
		t.Errorf("temporal POSTGRES_SEEDS = %q, want service %s", seeds, svcPostgres)
	}
	if dep := temporal.DependsOn[svcPostgres]; dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("temporal depends on %s with condition %q, want %s", svcPostgres, dep.Condition, types.ServiceConditionHealthy)
	}

	// The health check is what the worker waits for, so it must ask for what the worker needs: its
	// namespace, at its address.
	hostPort, namespace, _ := temporalClient(t, worker)
	if temporal.HealthCheck == nil {
		t.Fatalf("temporal has no health check; the worker waits for it to be healthy")
	}
	check := []string(temporal.HealthCheck.Test)
	if got := flagValue(check, "--namespace"); got != namespace {
		t.Errorf("temporal health check asks for namespace %q (%q), the worker polls %q", got, check, namespace)
	}
	if got := flagValue(check, "--address"); got != hostPort {
		t.Errorf("temporal health check dials %q (%q), the worker dials %q", got, check, hostPort)
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
	// temporalio/auto-setup reads the password as POSTGRES_PWD, the postgres image as POSTGRES_PASSWORD.
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

func TestPrometheus_ScrapesTheWorkersMetricsPort(t *testing.T) {
	root := repoRoot(t)
	p := loadProject(t, false)
	prom, worker := service(t, p, svcPrometheus), service(t, p, svcWorker)
	configPath := filepath.Join(root, prometheusConfig)

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

	addrVar := workerVariable(t, workerVariables(t), "envHTTPAddress")
	addr, _ := env(worker, addrVar)
	_, workerPort, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker %s = %q: %v", addrVar, addr, err)
	}

	b, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("parse %s: %v", prometheusConfig, err)
	}
	found := false
	for _, job := range cfg.ScrapeConfigs {
		var targets []string // host:port
		for _, sc := range job.StaticConfigs {
			targets = append(targets, sc.Targets...)
		}
		for _, dc := range job.DNSSDConfigs {
			for _, n := range dc.Names {
				if n == svcWorker && dc.Type != "A" && dc.Type != "AAAA" && dc.Type != "" {
					t.Errorf("job %s: dns_sd type %s; compose's DNS answers A records, one per replica", job.JobName, dc.Type)
				}
				targets = append(targets, net.JoinHostPort(n, strconv.Itoa(dc.Port)))
			}
		}
		for _, target := range targets {
			host, port, err := net.SplitHostPort(target)
			if err != nil || host != svcWorker {
				continue
			}
			found = true
			if port != workerPort {
				t.Errorf("job %s scrapes %s, but the worker serves on port %s (%s)", job.JobName, target, workerPort, addrVar)
			}
			if job.MetricsPath != "" && job.MetricsPath != "/metrics" {
				t.Errorf("job %s scrapes %s, want /metrics", job.JobName, job.MetricsPath)
			}
		}
	}
	if !found {
		t.Errorf("%s has no scrape job whose targets name service %s", prometheusConfig, svcWorker)
	}
}
