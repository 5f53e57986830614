package deploy

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	ac "github.com/agentops/agentconnections"
)

// frontendHTTPPort is the temporalio/server image's frontend HTTP port unless FRONTEND_HTTP_PORT
// says otherwise.
const frontendHTTPPort = "7243"

// The namespace job also creates the Nexus endpoint, idempotently, targeting the namespace and task
// queue the worker polls (docs/nexus.md).
func TestCompose_NamespaceJobCreatesTheNexusEndpoint(t *testing.T) {
	p := loadProject(t, false)
	job, worker := service(t, p, svcNamespace), service(t, p, svcWorker)
	_, workerNS, _ := temporalClient(t, worker)
	jobEnv := func(v string) string {
		if name, ok := strings.CutPrefix(v, "$"); ok {
			s, _ := env(job, name)
			return s
		}
		return v
	}
	var gets, creates bool
	for _, words := range scriptCommands(jobScript(t, job)) {
		i := slices.Index(words, "temporal")
		if i < 0 || len(words) < i+5 || strings.Join(words[i+1:i+4], " ") != "operator nexus endpoint" {
			continue
		}
		args := words[i:]
		if name := jobEnv(flagValue(args, "--name")); name != ac.DefaultNexusEndpoint {
			t.Errorf("%q names endpoint %q, want %q", strings.Join(args, " "), name, ac.DefaultNexusEndpoint)
		}
		if flagValue(args, "--address") != "$TEMPORAL_ADDRESS" {
			t.Errorf("%q does not dial the worker's address", strings.Join(args, " "))
		}
		switch args[4] {
		case "get":
			gets = !creates
		case "create":
			creates = true
			ns, tq := jobEnv(flagValue(args, "--target-namespace")), jobEnv(flagValue(args, "--target-task-queue"))
			if ns != workerNS || tq != taskQueue(worker) {
				t.Errorf("the endpoint targets %q/%q, the worker polls %q/%q", ns, tq, workerNS, taskQueue(worker))
			}
		}
	}
	if !creates || !gets {
		t.Errorf("got endpoint create %t after a get %t; want `temporal operator nexus endpoint get ... || ... create`, so the job stays idempotent", creates, gets)
	}
}

// The server is told where completions go (its own frontend HTTP port on the stack's network) and
// allows that address, or a caller never hears that its operation ended.
func TestCompose_TemporalDeliversNexusCompletions(t *testing.T) {
	p := loadProject(t, false)
	temporal := service(t, p, svcTemporal)
	path, _ := env(temporal, "DYNAMIC_CONFIG_FILE_PATH")
	var file string
	for _, ref := range temporal.Configs {
		if ref.Target == path {
			file = p.Configs[ref.Source].File
		}
	}
	if path == "" || file == "" {
		t.Fatalf("temporal DYNAMIC_CONFIG_FILE_PATH = %q with configs %v; want a mounted dynamic config file", path, temporal.Configs)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dc struct {
		Template []struct {
			Value string `yaml:"value"`
		} `yaml:"component.nexusoperations.callback.endpoint.template"`
		Allowed []struct {
			Value []struct {
				Pattern       string `yaml:"Pattern"`
				AllowInsecure bool   `yaml:"AllowInsecure"`
			} `yaml:"value"`
		} `yaml:"component.callbacks.allowedAddresses"`
	}
	if err := yaml.Unmarshal(b, &dc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(dc.Template) != 1 || len(dc.Allowed) != 1 || len(dc.Allowed[0].Value) != 1 {
		t.Fatalf("%s: got %+v; want one callback template and one allowed address", file, dc)
	}
	u, err := url.Parse(dc.Template[0].Value)
	if err != nil || u.Scheme != "http" || !strings.Contains(u.Path, "{{.NamespaceName}}") {
		t.Fatalf("callback template %q: want http://<frontend>/namespaces/{{.NamespaceName}}/nexus/callback (%v)", dc.Template[0].Value, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	wantPort := frontendHTTPPort
	if v, ok := env(temporal, "FRONTEND_HTTP_PORT"); ok {
		wantPort = v
	}
	if err != nil || host != svcTemporal || port != wantPort {
		t.Errorf("callbacks go to %q; want the temporal service's frontend HTTP port %s:%s", u.Host, svcTemporal, wantPort)
	}
	if rule := dc.Allowed[0].Value[0]; rule.Pattern != u.Host || !rule.AllowInsecure {
		t.Errorf("allowed callback address %+v; want %s with AllowInsecure (plain HTTP)", rule, u.Host)
	}
	if bind, _ := env(temporal, "BIND_ON_IP"); !listensOnAllInterfaces(bind) {
		t.Errorf("temporal BIND_ON_IP = %q: its HTTP port would not answer on %s", bind, svcTemporal)
	}
}
