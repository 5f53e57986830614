package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
	"github.com/agentops/agentconnections/internal/proc"
)

func TestLoadConfig_Versioning(t *testing.T) {
	t.Run("both set", func(t *testing.T) {
		cfg, err := loadConfig(baseEnv(t, "TEMPORAL_DEPLOYMENT_NAME=prod/agent-connections-worker", "TEMPORAL_WORKER_BUILD_ID=v1.2.3").LookupEnv, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := worker.WorkerDeploymentVersion{DeploymentName: "prod/agent-connections-worker", BuildID: "v1.2.3"}
		if cfg.Versioning != want {
			t.Errorf("versioning: got %+v, want %+v", cfg.Versioning, want)
		}
		opts := deploymentOptions(cfg.Versioning)
		if !opts.UseVersioning || opts.Version != want || opts.DefaultVersioningBehavior != workflow.VersioningBehaviorAutoUpgrade {
			t.Errorf("deployment options: got %+v, want versioning on as %+v, AutoUpgrade by default", opts, want)
		}
	})
	t.Run("neither set runs unversioned", func(t *testing.T) {
		cfg, err := loadConfig(baseEnv(t).LookupEnv, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Versioning != (worker.WorkerDeploymentVersion{}) {
			t.Errorf("versioning: got %+v, want none", cfg.Versioning)
		}
		if opts := deploymentOptions(cfg.Versioning); opts != (worker.DeploymentOptions{}) {
			t.Errorf("deployment options: got %+v, want the zero value (unversioned)", opts)
		}
	})
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"name without build ID", []string{"TEMPORAL_DEPLOYMENT_NAME=prod/w"},
			"TEMPORAL_WORKER_BUILD_ID: not set, while TEMPORAL_DEPLOYMENT_NAME is; set both to run as a worker deployment version, or neither to run unversioned"},
		{"build ID without name", []string{"TEMPORAL_WORKER_BUILD_ID=v1"},
			"TEMPORAL_DEPLOYMENT_NAME: not set, while TEMPORAL_WORKER_BUILD_ID is; set both to run as a worker deployment version, or neither to run unversioned"},
		{"a dot in the name", []string{"TEMPORAL_DEPLOYMENT_NAME=prod.w", "TEMPORAL_WORKER_BUILD_ID=v1"},
			`TEMPORAL_DEPLOYMENT_NAME: "prod.w" contains '.' or ':', which Temporal refuses in a deployment name`},
		{"a colon in the name", []string{"TEMPORAL_DEPLOYMENT_NAME=prod:w", "TEMPORAL_WORKER_BUILD_ID=v1"},
			`TEMPORAL_DEPLOYMENT_NAME: "prod:w" contains '.' or ':'`},
		{"reserved prefix", []string{"TEMPORAL_DEPLOYMENT_NAME=prod/w", "TEMPORAL_WORKER_BUILD_ID=__v1"},
			`TEMPORAL_WORKER_BUILD_ID: "__v1" starts with "__", which Temporal reserves`},
		{"whitespace", []string{"TEMPORAL_DEPLOYMENT_NAME=prod/w ", "TEMPORAL_WORKER_BUILD_ID=v1"},
			`TEMPORAL_DEPLOYMENT_NAME: "prod/w " has leading or trailing whitespace or a control character`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(baseEnv(t, tt.env...).LookupEnv, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error: got %v, want it to start with %q", err, tt.want)
			}
		})
	}
}

// TestRegister_VersioningBehaviours pins the behaviour each workflow is registered with: a
// removal moves to the current build, a teardown stays on the build it started on.
func TestRegister_VersioningBehaviours(t *testing.T) {
	for typ, want := range map[string]workflow.VersioningBehavior{
		ac.RemoveConnectionWorkflowType:        workflow.VersioningBehaviorAutoUpgrade,
		ac.RemoveAgentConnectionsWorkflowType:  workflow.VersioningBehaviorPinned,
		ac.RestoreAgentConnectionsWorkflowType: workflow.VersioningBehaviorPinned,
	} {
		if got := versioningBehavior(typ); got != want {
			t.Errorf("%s: got behaviour %d, want %d", typ, got, want)
		}
	}
}

// versionedWorker is one build of the worker, run in process as its own replica would run.
type versionedWorker struct {
	build, key string
	stderr     proc.Buffer
}

// TestRun_WorkerVersioning_PinnedTeardownFinishesOnItsBuild runs two builds of the worker as two
// versions of one worker deployment on a dev server. Build A is made current and a teardown
// starts (pinned to A); its DELETEs are held at the control plane. Build B starts and is made
// current with the temporal CLI; a new removal then runs on B, and once released the held
// teardown finishes on A. Each build sends its own API key, so the control plane sees which build
// sent each request, and Temporal's description of each workflow names the build that ran it.
func TestRun_WorkerVersioning_PinnedTeardownFinishesOnItsBuild(t *testing.T) {
	server := devserver.ForTest(t, devserver.Options{})
	cli, err := devserver.CLIPath()
	if err != nil {
		t.Fatal(err)
	}
	api, arrived, release, keysOf := heldControlPlane(t, "agent-pinned",
		map[string][]string{"agent-pinned": {"c1", "c2"}, "agent-new": {"c3"}})

	const deployment, taskQueue = "tests/agent-connections-worker", "versioning"
	start := func(build, key string) *versionedWorker {
		w := &versionedWorker{build: build, key: key}
		startVersionedWorker(t, w, server.Address, api.URL, deployment, taskQueue)
		setCurrentVersion(t, cli, server.Address, deployment, build)
		return w
	}
	a := start("build-a", "key-a")

	c, err := client.Dial(client.Options{HostPort: server.Address, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	teardown, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: ac.RemoveAgentConnectionsWorkflowID("agent-pinned"), TaskQueue: taskQueue,
	}, ac.RemoveAgentConnectionsWorkflowType, ac.RemoveAgentConnectionsInput{AgentID: "agent-pinned"})
	if err != nil {
		t.Fatalf("start teardown: %v", err)
	}
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatalf("the teardown's DELETE did not arrive; build A's log: %s", a.stderr.String())
	}

	b := start("build-b", "key-b")
	removal, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: ac.RemoveConnectionWorkflowID("agent-new", "c3"), TaskQueue: taskQueue,
	}, ac.RemoveConnectionWorkflowType, ac.RemoveConnectionInput{AgentID: "agent-new", ConnectionID: "c3"})
	if err != nil {
		t.Fatalf("start removal: %v", err)
	}
	var removed ac.RemoveConnectionResult
	if err := removal.Get(ctx, &removed); err != nil || removed.Outcome != ac.OutcomeRemoved {
		t.Fatalf("removal after B became current: got %+v, %v, want removed; build B's log: %s", removed, err, b.stderr.String())
	}
	checkRanOn(t, c, removal, "build-b", enumspb.VERSIONING_BEHAVIOR_AUTO_UPGRADE)
	if got := keysOf("agent-new"); !sliceAll(got, "key-b") {
		t.Errorf("the new removal's requests came with keys %v, want only build B's", got)
	}

	release()
	var report ac.RemoveAgentConnectionsResult
	if err := teardown.Get(ctx, &report); err != nil {
		t.Fatalf("teardown: %v; build A's log: %s", err, a.stderr.String())
	}
	if report.Removed != 2 {
		t.Errorf("teardown removed %d connections, want 2: %+v", report.Removed, report)
	}
	checkRanOn(t, c, teardown, "build-a", enumspb.VERSIONING_BEHAVIOR_PINNED)
	if got := keysOf("agent-pinned"); len(got) == 0 || !sliceAll(got, "key-a") {
		t.Errorf("the teardown's requests came with keys %v, want only build A's, the build it is pinned to", got)
	}
	checkDescribedVersions(t, cli, server.Address, deployment, "build-b", "build-a")
}

// heldControlPlane is the emulator seeded with seed, behind a front that records each request's
// API key by agent and holds every DELETE for heldAgent until release is called (arrived gets a
// value as each one arrives).
func heldControlPlane(t *testing.T, heldAgent string, seed map[string][]string) (api *httptest.Server, arrived <-chan struct{}, release func(), keysOf func(agent string) []string) {
	emu := emulator.New(emulator.Options{Seed: seed})
	held := make(chan struct{})
	arrivals := make(chan struct{}, 64)
	var mu sync.Mutex
	keys := map[string][]string{}
	api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/auth/agents/"), "/")
		mu.Lock()
		keys[agent] = append(keys[agent], r.Header.Get("X-Api-Key"))
		mu.Unlock()
		if agent == heldAgent && r.Method == http.MethodDelete {
			select {
			case arrivals <- struct{}{}:
			default:
			}
			select {
			case <-held:
			case <-r.Context().Done():
				return
			}
		}
		emu.ServeHTTP(w, r)
	}))
	release = sync.OnceFunc(func() { close(held) })
	// Cleanups run last first: release the held requests, then close the servers.
	t.Cleanup(emu.Close)
	t.Cleanup(api.Close)
	t.Cleanup(release)
	keysOf = func(agent string) []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(keys[agent])
	}
	return api, arrivals, release, keysOf
}

// startVersionedWorker runs the worker as build w.build of deployment until the test ends.
func startVersionedWorker(t *testing.T, w *versionedWorker, temporal, apiURL, deployment, taskQueue string) {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := baseEnv(t,
		"TEMPORAL_ADDRESS="+temporal,
		"TEMPORAL_TASK_QUEUE="+taskQueue,
		"TEMPORAL_DEPLOYMENT_NAME="+deployment,
		"TEMPORAL_WORKER_BUILD_ID="+w.build,
		"LANGSMITH_API_KEY="+w.key,
		"LANGSMITH_CONTROL_PLANE_URL="+apiURL,
		"LANGSMITH_REQUEST_TIMEOUT=5m",
		"WORKER_HTTP_ADDRESS="+httpAddr,
		"WORKER_STOP_TIMEOUT=1s",
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, &proc.Buffer{}, &w.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitReady(t, "http://"+httpAddr+"/readyz", done, &w.stderr)
	if logs := w.stderr.String(); !strings.Contains(logs, `"deployment_name":"`+deployment+`"`) || !strings.Contains(logs, `"build_id":"`+w.build+`"`) {
		t.Errorf("start-up log does not name deployment %s and build %s: %s", deployment, w.build, logs)
	}
}

// setCurrentVersion makes build the current version with the temporal CLI, as an operator would.
// The server knows a version only once its worker has polled, so the first tries may be refused.
func setCurrentVersion(t *testing.T, cli, address, deployment, build string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command(cli, "worker", "deployment", "set-current-version", "--address", address,
			"--deployment-name", deployment, "--build-id", build, "--yes").CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporal worker deployment set-current-version --build-id %s: %v\n%s", build, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkRanOn checks that Temporal records the workflow as run by build with behaviour.
func checkRanOn(t *testing.T, c client.Client, run client.WorkflowRun, build string, behaviour enumspb.VersioningBehavior) {
	t.Helper()
	desc, err := c.DescribeWorkflowExecution(context.Background(), run.GetID(), "")
	if err != nil {
		t.Fatalf("describe %s: %v", run.GetID(), err)
	}
	vi := desc.GetWorkflowExecutionInfo().GetVersioningInfo()
	if got := vi.GetDeploymentVersion().GetBuildId(); got != build {
		t.Errorf("%s ran on build %q, want %q", run.GetID(), got, build)
	}
	if got := vi.GetBehavior(); got != behaviour {
		t.Errorf("%s has versioning behaviour %s, want %s", run.GetID(), got, behaviour)
	}
}

// checkDescribedVersions reads `temporal worker deployment describe`: current is the current
// build, and every build in all is one of the deployment's versions.
func checkDescribedVersions(t *testing.T, cli, address, deployment, current string, all ...string) {
	t.Helper()
	out, err := exec.Command(cli, "worker", "deployment", "describe", "--address", address,
		"--name", deployment, "-o", "json").Output()
	if err != nil {
		t.Fatalf("temporal worker deployment describe: %v", err)
	}
	var desc struct {
		RoutingConfig struct {
			CurrentVersionBuildID string `json:"currentVersionBuildID"`
		} `json:"routingConfig"`
		VersionSummaries []struct {
			BuildID string `json:"buildID"`
		} `json:"versionSummaries"`
	}
	if err := json.Unmarshal(out, &desc); err != nil {
		t.Fatalf("temporal worker deployment describe -o json: %v\n%s", err, out)
	}
	if got := desc.RoutingConfig.CurrentVersionBuildID; got != current {
		t.Errorf("describe: current build %q, want %q\n%s", got, current, out)
	}
	var builds []string
	for _, v := range desc.VersionSummaries {
		builds = append(builds, v.BuildID)
	}
	for _, b := range append(all, current) {
		if !slices.Contains(builds, b) {
			t.Errorf("describe: versions %v, want %s among them\n%s", builds, b, out)
		}
	}
}

func sliceAll(s []string, v string) bool {
	return !slices.ContainsFunc(s, func(x string) bool { return x != v })
}
