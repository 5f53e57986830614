package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/contrib/envconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsyaml "sigs.k8s.io/yaml"

	ac "github.com/agentops/agentconnections"
)

// The Kubernetes manifests, in deploy/kubernetes/.
const (
	k8sDir           = "kubernetes"
	k8sKustomization = "kustomization.yaml"
	k8sConfigMap     = "configmap.yaml"
	k8sDeployment    = "deployment.yaml"
	k8sPDB           = "poddisruptionbudget.yaml"
	k8sService       = "service.yaml"
	// k8sSecretExample shows the Secret's shape; it is kept out of the kustomization so applying the
	// directory never replaces a real key with the placeholder.
	k8sSecretExample = "secret.example.yaml"
)

// Worker-versioning variables, named as the temporal-worker-controller injects them.
const (
	envDeploymentName = "TEMPORAL_DEPLOYMENT_NAME"
	envWorkerBuildID  = "TEMPORAL_WORKER_BUILD_ID"
)

// decodeStrict reads one Kubernetes object from a YAML file into out the way the API server's
// strict field validation would: a duplicate or unknown field anywhere is an error, and so is a
// second document.
func decodeStrict(t *testing.T, file string, out any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sDir, file))
	if err != nil {
		t.Fatal(err)
	}
	if docs := regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1); len(docs) > 2 || (len(docs) == 2 && strings.TrimSpace(docs[1]) != "") {
		t.Fatalf("%s holds more than one document; keep one object per file", file)
	}
	j, err := sigsyaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v", file, out, err)
	}
}

// checkObject checks an object's apiVersion, kind, name and labels.
func checkObject(t *testing.T, file string, tm metav1.TypeMeta, om metav1.ObjectMeta, want schema.GroupVersionKind) {
	t.Helper()
	if got := tm.GroupVersionKind(); got != want {
		t.Errorf("%s is %s, want %s", file, got, want)
	}
	for _, msg := range validation.IsDNS1123Subdomain(om.Name) {
		t.Errorf("%s: name %q: %s", file, om.Name, msg)
	}
	if om.Namespace != "" {
		t.Errorf("%s sets namespace %q; leave it to kubectl -n or the kustomization", file, om.Namespace)
	}
	checkLabels(t, file, om.Labels)
}

func checkLabels(t *testing.T, where string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", where, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s=%q: %s", where, k, v, msg)
		}
	}
}

// manifests are the decoded files of deploy/kubernetes.
type manifests struct {
	configMap  corev1.ConfigMap
	deployment appsv1.Deployment
	pdb        policyv1.PodDisruptionBudget
	service    corev1.Service
	secret     corev1.Secret
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	decodeStrict(t, k8sConfigMap, &m.configMap)
	checkObject(t, k8sConfigMap, m.configMap.TypeMeta, m.configMap.ObjectMeta, corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	decodeStrict(t, k8sDeployment, &m.deployment)
	checkObject(t, k8sDeployment, m.deployment.TypeMeta, m.deployment.ObjectMeta, appsv1.SchemeGroupVersion.WithKind("Deployment"))
	decodeStrict(t, k8sPDB, &m.pdb)
	checkObject(t, k8sPDB, m.pdb.TypeMeta, m.pdb.ObjectMeta, policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"))
	decodeStrict(t, k8sService, &m.service)
	checkObject(t, k8sService, m.service.TypeMeta, m.service.ObjectMeta, corev1.SchemeGroupVersion.WithKind("Service"))
	decodeStrict(t, k8sSecretExample, &m.secret)
	checkObject(t, k8sSecretExample, m.secret.TypeMeta, m.secret.ObjectMeta, corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// workerContainer is the Deployment's one container.
func (m *manifests) workerContainer(t *testing.T) corev1.Container {
	t.Helper()
	spec := m.deployment.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%s: want exactly one container, the worker; got %d containers and %d init containers", k8sDeployment, len(spec.Containers), len(spec.InitContainers))
	}
	return spec.Containers[0]
}

// podLabels are the labels of the Deployment's pods.
func (m *manifests) podLabels() labels.Set { return m.deployment.Spec.Template.Labels }

// explicitEnv is the container's env as name → entry; a name given twice is an error (the later
// one would silently win).
func explicitEnv(t *testing.T, c corev1.Container) map[string]corev1.EnvVar {
	t.Helper()
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := out[e.Name]; dup {
			t.Errorf("%s: env %s is set twice", k8sDeployment, e.Name)
		}
		out[e.Name] = e
	}
	return out
}

// varRef matches a $(NAME) reference in an env value, which the kubelet expands from the variables
// defined before it in the list.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// containerEnv is the environment the worker process sees: the ConfigMap's keys (envFrom), then
// the literal env values over them, with $(NAME) references expanded as the kubelet expands them.
// fieldRefs become their placeholder (the pod's namespace is "NAMESPACE").
func (m *manifests) containerEnv(t *testing.T) map[string]string {
	t.Helper()
	c := m.workerContainer(t)
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil && from.ConfigMapRef.Name == m.configMap.Name {
			for k, v := range m.configMap.Data {
				env[from.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = varRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				name := varRef.FindStringSubmatch(ref)[1]
				if v, ok := env[name]; ok {
					return v
				}
				return ref // the kubelet leaves an unknown reference as written
			})
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = "NAMESPACE"
		default:
			env[e.Name] = "<" + e.Name + " from " + e.ValueFrom.String() + ">"
		}
	}
	return env
}

// envLookup is an environment as envconfig.EnvLookup, recording the names looked up.
type envLookup struct {
	vars    map[string]string
	looked  map[string]bool
	environ bool
}

func (e *envLookup) Environ() []string {
	e.environ = true
	var out []string
	for k, v := range e.vars {
		out = append(out, k+"="+v)
	}
	return out
}

func (e *envLookup) LookupEnv(key string) (string, bool) {
	e.looked[key] = true
	v, ok := e.vars[key]
	return v, ok
}

// httpPort is the port of WORKER_HTTP_ADDRESS in the container's environment.
func (m *manifests) httpPort(t *testing.T) int32 {
	t.Helper()
	addrVar := workerVariable(t, workerVariables(t), "envHTTPAddress")
	addr, ok := m.containerEnv(t)[addrVar]
	if !ok || addr == "" {
		t.Fatalf("%s: the worker gets no %s; its default listens on loopback only, out of the kubelet's reach", k8sDeployment, addrVar)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %s = %q: %v", k8sDeployment, addrVar, addr, err)
	}
	if !listensOnAllInterfaces(host) {
		t.Errorf("%s: %s = %q listens on %s only; the kubelet's probes and Prometheus come from outside the pod, want 0.0.0.0:%s", k8sDeployment, addrVar, addr, host, port)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("%s: %s = %q: port %q is not a number", k8sDeployment, addrVar, addr, port)
	}
	return int32(n)
}

// resolvePort turns a probe's or a Service's port (a number or a container port's name) into the
// container port number.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString, where string) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Errorf("%s names port %q, which the worker container does not declare", where, p.StrVal)
	return -1
}

func TestKubernetes_ManifestsDecodeStrictly(t *testing.T) {
	loadManifests(t)
}

func TestKubernetes_KustomizationListsEveryManifestButTheSecretExample(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, k8sKustomization))
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: a kustomization may grow namespace:, images:, patches: and the like.
	if err := sigsyaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s: %v", k8sKustomization, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k8sKustomization, k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if base := filepath.Base(f); base != k8sKustomization && base != k8sSecretExample {
			want = append(want, base)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("%s lists %v, want every manifest of %s but the secret example: %v", k8sKustomization, got, k8sDir, want)
	}
	if slices.Contains(k.Resources, k8sSecretExample) {
		t.Errorf("%s lists %s: applying the directory would replace the real key with the placeholder", k8sKustomization, k8sSecretExample)
	}
}

func TestKubernetes_EveryVariableIsOneTheWorkerReads(t *testing.T) {
	m := loadManifests(t)
	c := m.workerContainer(t)
	vars := workerVariables(t)
	known := map[string]bool{ac.TaskQueueEnv: true}
	for _, v := range vars {
		known[v] = true
	}
	lookup := &envLookup{vars: m.containerEnv(t), looked: map[string]bool{}}
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: lookup})
	if err != nil {
		t.Fatalf("the Temporal SDK rejects the worker's TEMPORAL_* settings: %v", err)
	}
	for k := range lookup.looked {
		known[k] = true
	}
	reads := func(name string) bool {
		switch {
		case known[name], strings.HasPrefix(name, "OTEL_"):
			return true
		case lookup.environ && strings.HasPrefix(name, "TEMPORAL_GRPC_META_"):
			return true
		}
		return false
	}

	t.Run("ConfigMap keys", func(t *testing.T) {
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != m.configMap.Name {
			t.Fatalf("%s: envFrom is %+v, want the one ConfigMap %s", k8sDeployment, c.EnvFrom, m.configMap.Name)
		}
		from := c.EnvFrom[0]
		if from.Prefix != "" {
			t.Errorf("%s: envFrom prefix %q renames every key", k8sDeployment, from.Prefix)
		}
		if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
			t.Errorf("%s: the ConfigMap is optional; without it the worker would dial localhost", k8sDeployment)
		}
		explicit := explicitEnv(t, c)
		for k := range m.configMap.Data {
			if !reads(k) {
				t.Errorf("%s sets %s, which neither worker/config.go nor the Temporal SDK's envconfig reads (a typo?)", k8sConfigMap, k)
			}
			if _, ok := explicit[k]; ok {
				t.Errorf("%s sets %s, and so does %s's env, which silently wins; set it in one place", k8sConfigMap, k, k8sDeployment)
			}
			if credentialName.MatchString(k) {
				t.Errorf("%s sets %s: credentials go in a Secret, not a ConfigMap", k8sConfigMap, k)
			}
		}
		if len(m.configMap.BinaryData) > 0 {
			t.Errorf("%s has binaryData; envFrom imports only data", k8sConfigMap)
		}
		for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} {
			if _, ok := m.configMap.Data[k]; !ok {
				t.Errorf("%s has no %s; the worker's Temporal connection comes from the ConfigMap", k8sConfigMap, k)
			}
		}
		if host, port, err := net.SplitHostPort(opts.HostPort); err != nil || host == "" || port == "" {
			t.Errorf("the worker's Temporal address is %q, want host:port", opts.HostPort)
		}
		if opts.Namespace == "" {
			t.Errorf("the worker gets no Temporal namespace")
		}
	})

	t.Run("env entries", func(t *testing.T) {
		// A variable the worker does not read is allowed only as a helper: it takes its value from
		// the downward API and only $(NAME) references in later entries use it.
		referenced := map[string]bool{}
		defined := map[string]bool{}
		for k := range m.configMap.Data {
			defined[k] = true
		}
		for _, e := range c.Env {
			for _, ref := range varRef.FindAllStringSubmatch(e.Value, -1) {
				if !defined[ref[1]] {
					t.Errorf("%s: env %s refers to $(%s), which is not defined before it; the kubelet would leave it as written", k8sDeployment, e.Name, ref[1])
				}
				referenced[ref[1]] = true
			}
			defined[e.Name] = true
		}
		for _, e := range c.Env {
			if reads(e.Name) {
				continue
			}
			if referenced[e.Name] && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				continue
			}
			t.Errorf("%s sets %s, which neither worker/config.go nor the Temporal SDK's envconfig reads (a typo?)", k8sDeployment, e.Name)
		}
	})
}

// An EU user who sets only LANGSMITH_ENDPOINT gets the EU control plane: the manifests leave the
// control plane URL (and its alias) unset, so LANGSMITH_ENDPOINT's region picks it, and the
// ConfigMap shows the URL commented out, with the US default, for whoever needs to set it.
func TestKubernetes_ControlPlaneURLFollowsLangSmithEndpoint(t *testing.T) {
	m := loadManifests(t)
	vars := workerVariables(t)
	urlVar := workerVariable(t, vars, "EnvControlPlaneURL")
	env := m.containerEnv(t)
	for _, name := range []string{urlVar, workerVariable(t, vars, "EnvHostURL")} {
		if v, ok := env[name]; ok {
			t.Errorf("the manifests set %s=%s: a LANGSMITH_ENDPOINT on the EU host would get that control plane and a warning, "+
				"not the EU one; leave it commented out in %s", name, v, k8sConfigMap)
		}
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, k8sConfigMap))
	if err != nil {
		t.Fatal(err)
	}
	shown := regexp.MustCompile(`(?m)^\s*#\s*` + regexp.QuoteMeta(urlVar) + `:\s*https://api\.host\.langchain\.com\s*$`)
	if !shown.Match(b) {
		t.Errorf("%s does not show %s commented out with the US default, https://api.host.langchain.com", k8sConfigMap, urlVar)
	}
	for _, want := range []string{"LANGSMITH_ENDPOINT", "eu.api.host.langchain.com"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s does not say that LANGSMITH_ENDPOINT on the EU host picks the EU control plane (no %q)", k8sConfigMap, want)
		}
	}
}

func TestKubernetes_ProbesAndPortsMatchTheWorkersHTTPAddress(t *testing.T) {
	m := loadManifests(t)
	c := m.workerContainer(t)
	port := m.httpPort(t)

	declared := false
	for _, cp := range c.Ports {
		if cp.ContainerPort == port {
			declared = true
		}
	}
	if !declared {
		t.Errorf("%s: the worker serves on port %d (WORKER_HTTP_ADDRESS), but the container declares %+v", k8sDeployment, port, c.Ports)
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: the worker has no HTTP %s; want GET %s", k8sDeployment, p.name, p.path)
			continue
		}
		get := p.probe.HTTPGet
		if get.Path != p.path {
			t.Errorf("%s: %s asks %s, want %s", k8sDeployment, p.name, get.Path, p.path)
		}
		if got := resolvePort(t, c, get.Port, k8sDeployment+" "+p.name); got != port {
			t.Errorf("%s: %s asks port %d, the worker serves on %d (WORKER_HTTP_ADDRESS)", k8sDeployment, p.name, got, port)
		}
		if get.Scheme != "" && get.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: %s uses %s; the worker serves plain HTTP", k8sDeployment, p.name, get.Scheme)
		}
		if get.Host != "" {
			t.Errorf("%s: %s sets host %q; the kubelet should probe the pod", k8sDeployment, p.name, get.Host)
		}
	}

	svc := m.service
	if len(svc.Spec.Ports) == 0 {
		t.Fatalf("%s declares no port", k8sService)
	}
	for _, sp := range svc.Spec.Ports {
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port) // an unset targetPort is the port itself
		}
		if got := resolvePort(t, c, target, k8sService); got != port {
			t.Errorf("%s: port %s targets %d, the worker serves /metrics on %d", k8sService, sp.Name, got, port)
		}
	}
	if got := svc.Annotations["prometheus.io/port"]; got != "" && got != strconv.Itoa(int(port)) {
		t.Errorf("%s: prometheus.io/port is %s, the worker serves on %d", k8sService, got, port)
	}
	if got := svc.Annotations["prometheus.io/path"]; got != "" && got != "/metrics" {
		t.Errorf("%s: prometheus.io/path is %s, want /metrics", k8sService, got)
	}
}

func TestKubernetes_GracePeriodCoversTheStopTimeout(t *testing.T) {
	m := loadManifests(t)
	stopVar := workerVariable(t, workerVariables(t), "envStopTimeout")
	raw, ok := explicitEnv(t, m.workerContainer(t))[stopVar]
	if !ok || raw.ValueFrom != nil {
		t.Fatalf("%s does not set %s as a literal; set it next to terminationGracePeriodSeconds so the two are checked together", k8sDeployment, stopVar)
	}
	stop, err := time.ParseDuration(raw.Value)
	if err != nil {
		t.Fatalf("%s: %s = %q: %v", k8sDeployment, stopVar, raw.Value, err)
	}
	grace := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= stop {
		got := "unset (30s)"
		if grace != nil {
			got = fmt.Sprintf("%ds", *grace)
		}
		t.Errorf("%s: terminationGracePeriodSeconds is %s, want more than %s = %s: the kubelet kills the worker after it, in-flight removals or not",
			k8sDeployment, got, stopVar, stop)
	}
}

func TestKubernetes_KeyFileIsTheMountedSecret(t *testing.T) {
	m := loadManifests(t)
	c := m.workerContainer(t)
	vars := workerVariables(t)
	keyFileVar, keyVar := workerVariable(t, vars, "envAPIKeyFile"), workerVariable(t, vars, "envAPIKey")
	env := m.containerEnv(t)
	if _, ok := env[keyVar]; ok {
		t.Errorf("the worker gets %s; the key must come from the Secret file (%s), and the worker refuses both", keyVar, keyFileVar)
	}
	keyFile, ok := env[keyFileVar]
	if !ok || !path.IsAbs(keyFile) {
		t.Fatalf("the worker's %s is %q, want an absolute path into the Secret volume; without a credential it does not start", keyFileVar, keyFile)
	}

	var mount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if strings.HasPrefix(keyFile, strings.TrimSuffix(vm.MountPath, "/")+"/") || keyFile == vm.MountPath {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("%s: %s = %s lies under no volume mount (%+v)", k8sDeployment, keyFileVar, keyFile, c.VolumeMounts)
	}
	if mount.SubPath != "" || mount.SubPathExpr != "" {
		t.Errorf("%s: the key is mounted with subPath; the kubelet never updates such a file, so a rotated key would not reach the worker", k8sDeployment)
	}
	if !mount.ReadOnly {
		t.Errorf("%s: the key's mount is not readOnly", k8sDeployment)
	}
	var vol *corev1.Volume
	for i, v := range m.deployment.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name {
			vol = &m.deployment.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil {
		t.Fatalf("%s: mount %s is not a Secret volume", k8sDeployment, mount.Name)
	}
	if vol.Secret.SecretName != m.secret.Name {
		t.Errorf("%s mounts Secret %s, %s shows %s", k8sDeployment, vol.Secret.SecretName, k8sSecretExample, m.secret.Name)
	}
	if vol.Secret.Optional != nil && *vol.Secret.Optional {
		t.Errorf("%s: the key's Secret is optional; without it the worker cannot start", k8sDeployment)
	}

	// The file inside the volume: an item's path, or the Secret's key itself.
	rel := strings.TrimPrefix(strings.TrimPrefix(keyFile, mount.MountPath), "/")
	secretKey := rel
	if len(vol.Secret.Items) > 0 {
		secretKey = ""
		for _, it := range vol.Secret.Items {
			if it.Path == rel {
				secretKey = it.Key
			}
		}
		if secretKey == "" {
			t.Fatalf("%s: %s = %s, but the Secret volume's items put no file at %s (%+v)", k8sDeployment, keyFileVar, keyFile, rel, vol.Secret.Items)
		}
	}
	placeholder, ok := m.secret.StringData[secretKey]
	if !ok {
		t.Errorf("%s: the worker reads key %q of the Secret, which %s does not show (it has %v)", k8sDeployment, secretKey, k8sSecretExample, slices.Collect(maps.Keys(m.secret.StringData)))
	}
	if len(m.secret.Data) > 0 {
		t.Errorf("%s has data; an example holds a readable placeholder in stringData", k8sSecretExample)
	}
	if strings.HasPrefix(placeholder, "lsv2_") || placeholder == "" || strings.ContainsFunc(placeholder, func(r rune) bool { return r <= ' ' }) {
		t.Errorf("%s: %q is not a placeholder (empty, spaced, or looking like a LangSmith key)", k8sSecretExample, placeholder)
	}

	// The worker runs as a non-root user: the file must be readable by it.
	mode := int32(0o644)
	if vol.Secret.DefaultMode != nil {
		mode = *vol.Secret.DefaultMode
	}
	for _, it := range vol.Secret.Items {
		if it.Path == rel && it.Mode != nil {
			mode = *it.Mode
		}
	}
	pod := m.deployment.Spec.Template.Spec.SecurityContext
	if mode&0o004 == 0 && (mode&0o040 == 0 || pod == nil || pod.FSGroup == nil) {
		t.Errorf("%s: the key file's mode %#o lets neither others nor an fsGroup read it; the non-root worker could not", k8sDeployment, mode)
	}
}

func TestKubernetes_SelectorsMatchThePods(t *testing.T) {
	m := loadManifests(t)
	pods := m.podLabels()
	checkLabels(t, k8sDeployment+" pod template", pods)

	sel := func(where string, ls *metav1.LabelSelector) labels.Selector {
		t.Helper()
		if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
			t.Fatalf("%s has an empty selector, which selects every pod of the namespace", where)
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatalf("%s: selector: %v", where, err)
		}
		return s
	}
	if s := sel(k8sDeployment, m.deployment.Spec.Selector); !s.Matches(pods) {
		t.Errorf("%s: selector %s does not match its pod template's labels %v; the API server refuses it", k8sDeployment, s, pods)
	}
	if s := sel(k8sPDB, m.pdb.Spec.Selector); !s.Matches(pods) {
		t.Errorf("%s: selector %s does not match the worker pods' labels %v; it would protect nothing", k8sPDB, s, pods)
	}
	if s := labels.SelectorFromSet(m.service.Spec.Selector); len(m.service.Spec.Selector) == 0 || !s.Matches(pods) {
		t.Errorf("%s: selector %v does not match the worker pods' labels %v", k8sService, m.service.Spec.Selector, pods)
	}
	for _, tsc := range m.deployment.Spec.Template.Spec.TopologySpreadConstraints {
		if s := sel(k8sDeployment+" topologySpreadConstraints", tsc.LabelSelector); !s.Matches(pods) {
			t.Errorf("%s: topology spread selector %s does not match the worker pods", k8sDeployment, s)
		}
	}

	// The budget must let a drain take a pod, or node maintenance blocks on the workers.
	replicas := int32(1)
	if r := m.deployment.Spec.Replicas; r != nil {
		replicas = *r
	}
	switch spec := m.pdb.Spec; {
	case spec.MaxUnavailable != nil && spec.MinAvailable != nil:
		t.Errorf("%s sets both minAvailable and maxUnavailable", k8sPDB)
	case spec.MaxUnavailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(spec.MaxUnavailable, int(replicas), true); err != nil || n < 1 {
			t.Errorf("%s: maxUnavailable %s allows no disruption of %d replicas: drains would block", k8sPDB, spec.MaxUnavailable.String(), replicas)
		}
	case spec.MinAvailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(spec.MinAvailable, int(replicas), true); err != nil || n >= int(replicas) {
			t.Errorf("%s: minAvailable %s of %d replicas allows no disruption: drains would block", k8sPDB, spec.MinAvailable.String(), replicas)
		}
	default:
		t.Errorf("%s sets neither minAvailable nor maxUnavailable", k8sPDB)
	}
	if replicas < 2 {
		t.Errorf("%s runs %d replica; with a disruption budget that allows one, a drain stops all work", k8sDeployment, replicas)
	}
}

func TestKubernetes_RunsLockedDownWithResources(t *testing.T) {
	m := loadManifests(t)
	c := m.workerContainer(t)
	pod := m.deployment.Spec.Template.Spec

	runAsNonRoot := (pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot) ||
		(c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil && *c.SecurityContext.RunAsNonRoot)
	if !runAsNonRoot {
		t.Errorf("%s: runAsNonRoot is not set; the kubelet would run a root image", k8sDeployment)
	}
	for _, uid := range []*int64{podUser(pod.SecurityContext), containerUser(c.SecurityContext)} {
		if uid != nil && *uid == 0 {
			t.Errorf("%s: runAsUser 0", k8sDeployment)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("%s: the worker container has no securityContext", k8sDeployment)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: readOnlyRootFilesystem is not true; the worker writes nothing to disk", k8sDeployment)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", k8sDeployment)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities are %+v, want drop [ALL] and none added", k8sDeployment, sc.Capabilities)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: the worker is privileged", k8sDeployment)
	}

	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := c.Resources.Requests[name]
		if !ok || req.IsZero() {
			t.Errorf("%s: no %s request; the scheduler cannot place the worker sensibly", k8sDeployment, name)
			continue
		}
		if lim, ok := c.Resources.Limits[name]; ok && lim.Cmp(req) < 0 {
			t.Errorf("%s: %s limit %s is below the request %s", k8sDeployment, name, lim.String(), req.String())
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", k8sDeployment)
	}

	if err := checkPinned(c.Image); err != nil {
		t.Errorf("%s: %v", k8sDeployment, err)
	}
}

func podUser(sc *corev1.PodSecurityContext) *int64 {
	if sc == nil {
		return nil
	}
	return sc.RunAsUser
}

func containerUser(sc *corev1.SecurityContext) *int64 {
	if sc == nil {
		return nil
	}
	return sc.RunAsUser
}

func TestKubernetes_WorkerVersioningAsTheControllerInjectsIt(t *testing.T) {
	// The worker reads the two variables under the names the controller injects.
	vars := workerVariables(t)
	for constant, want := range map[string]string{"envDeploymentName": envDeploymentName, "envWorkerBuildID": envWorkerBuildID} {
		if got := workerVariable(t, vars, constant); got != want {
			t.Errorf("worker/config.go reads %s as %s, the temporal-worker-controller injects %s", constant, got, want)
		}
	}
	m := loadManifests(t)
	c := m.workerContainer(t)
	env := m.containerEnv(t)
	name, hasName := env[envDeploymentName]
	buildID, hasBuild := env[envWorkerBuildID]
	if hasName != hasBuild {
		t.Fatalf("%s sets only one of %s and %s; the worker versions itself with both or neither", k8sDeployment, envDeploymentName, envWorkerBuildID)
	}
	if !hasName {
		t.Skipf("%s runs the worker unversioned", k8sDeployment)
	}
	// The temporal-worker-controller names a worker deployment "<k8s namespace>/<its name>".
	if want := "NAMESPACE/" + m.deployment.Name; name != want {
		t.Errorf("%s: %s is %q (with the pod's namespace as NAMESPACE), want %q, the controller's <namespace>/<name>", k8sDeployment, envDeploymentName, name, want)
	}
	// The controller uses the build ID as a label value too, so it keeps to label syntax.
	for _, msg := range validation.IsValidLabelValue(buildID) {
		t.Errorf("%s: %s %q: %s", k8sDeployment, envWorkerBuildID, buildID, msg)
	}
	if buildID == "" {
		t.Errorf("%s: %s is empty", k8sDeployment, envWorkerBuildID)
	}
	// One image, one build ID: a new image under the old build ID would run new workflow code as
	// the old version.
	if _, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":"); !ok || strings.SplitN(tag, "@", 2)[0] != buildID {
		t.Errorf("%s: %s is %q, but the image is %s; keep the build ID equal to the image tag", k8sDeployment, envWorkerBuildID, buildID, c.Image)
	}
}
