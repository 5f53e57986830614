package main

import (
	"strings"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
)

// Worker Versioning. With TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID set (as the
// temporal-worker-controller sets them), the worker polls as that version of that worker
// deployment, and the server routes each workflow by its versioning behaviour:
//
//   - RemoveConnectionWorkflow is AutoUpgrade. A removal lasts seconds, or minutes of retries;
//     its next workflow task goes to whichever version is current, so a rollout needs no old
//     workers kept for removals. The price: its code must stay replay-compatible across builds
//     (workflows/replay_test.go guards the recorded histories), as it must unversioned.
//   - RemoveAgentConnectionsWorkflow and RestoreAgentConnectionsWorkflow are Pinned. A teardown
//     can run for hours over thousands of connections and continue as new many times (a restore
//     is as long); each finishes on the build it started on (a teardown's continued runs stay
//     pinned to that build too), so a new build may change their commands freely. The price: the old build's workers must run until its pinned teardowns
//     have drained (`temporal worker deployment describe-version` shows the drainage status).
//
// Any other workflow registered later gets AutoUpgrade, the DefaultVersioningBehavior below.
// Unset, the worker runs unversioned, as before: the behaviours are then ignored by the SDK.

// versioningBehavior is the versioning behaviour a workflow type is registered with.
func versioningBehavior(workflowType string) workflow.VersioningBehavior {
	switch workflowType {
	case ac.RemoveAgentConnectionsWorkflowType, ac.RestoreAgentConnectionsWorkflowType:
		return workflow.VersioningBehaviorPinned
	default:
		return workflow.VersioningBehaviorAutoUpgrade
	}
}

// loadVersioning reads the worker deployment version: both variables or neither.
func loadVersioning(get func(string) string, cfg *config) error {
	name, build := get(envDeploymentName), get(envWorkerBuildID)
	switch {
	case name == "" && build == "":
		return nil
	case name == "":
		return problem(envDeploymentName, "not set, while %s is; set both to run as a worker deployment version, or neither to run unversioned", envWorkerBuildID)
	case build == "":
		return problem(envWorkerBuildID, "not set, while %s is; set both to run as a worker deployment version, or neither to run unversioned", envDeploymentName)
	}
	if err := checkVersionPart(envDeploymentName, name); err != nil {
		return err
	}
	// The server keeps '.' and ':' out of deployment names: they separated the name from the
	// build ID in older version strings.
	if strings.ContainsAny(name, ".:") {
		return problem(envDeploymentName, "%q contains '.' or ':', which Temporal refuses in a deployment name", name)
	}
	if err := checkVersionPart(envWorkerBuildID, build); err != nil {
		return err
	}
	cfg.Versioning = worker.WorkerDeploymentVersion{DeploymentName: name, BuildID: build}
	return nil
}

// checkVersionPart refuses what the server would refuse only once the worker polls, where the
// failure would be a log line instead of a start that does not happen.
func checkVersionPart(name, v string) error {
	if strings.TrimSpace(v) != v || strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return problem(name, "%q has leading or trailing whitespace or a control character", v)
	}
	if strings.HasPrefix(v, "__") {
		return problem(name, "%q starts with \"__\", which Temporal reserves", v)
	}
	return nil
}

// deploymentOptions are the worker's Worker Versioning options: none when v is the zero version.
func deploymentOptions(v worker.WorkerDeploymentVersion) worker.DeploymentOptions {
	if v.DeploymentName == "" {
		return worker.DeploymentOptions{}
	}
	return worker.DeploymentOptions{
		UseVersioning:             true,
		Version:                   v,
		DefaultVersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	}
}
