// Replay tests: every history in testdata/ was recorded from a real run of the workflows (dev
// server, emulator, real activities) and is replayed here against the current code, so a change
// that would break running workflows (another command, one fewer, a different order) fails
// `make test`. To re-record:
//
//	go run ./workflows/internal/recordhistories -out workflows/testdata
//	go run ./workflows/internal/recordhistories -out workflows/testdata -only teardown_given_ids  # one
//
// Re-record only for a deliberate, versioned change. Patched with workflow.GetVersion, the old
// histories must still replay (they are the workflows already running): copy them aside under new
// names first (remove_connection_removed_v0.json) so both paths stay tested. Under worker
// versioning, where running workflows stay pinned to the old build, replacing them is right. Never
// re-record to make a failing replay pass: that failure means running workflows would break.
package workflows_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/workflows"
)

// recordedHistories are the files the recorder writes; each guards one path of a workflow.
var recordedHistories = []string{
	"remove_connection_removed.json",
	"remove_connection_422.json",
	"remove_connection_503_then_removed.json",
	"remove_connection_missing_ok_false_404.json",
	"remove_connection_invalid_id.json",
	"remove_connection_waits_for_teardown.json",
	"teardown_listed.json",
	"teardown_given_ids.json",    // lists the agent first for the snapshots (version 1)
	"teardown_given_ids_v0.json", // the same run before that list (no version marker)
	"teardown_cancelled.json",
	"teardown_temporal_cancelled.json",
	"teardown_continued_as_new_run1.json",
	"teardown_continued_as_new_final.json",
}

func replayLogger(t *testing.T) tlog.Logger {
	t.Helper()
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// newReplayer registers the given workflow functions under the contract names, as the worker
// registers the real ones.
func newReplayer(removeConnection, removeAgentConnections any) worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(removeConnection, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	r.RegisterWorkflowWithOptions(removeAgentConnections, workflow.RegisterOptions{Name: ac.RemoveAgentConnectionsWorkflowType})
	return r
}

func historyFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestReplay_TestdataHoldsTheRecordedHistories(t *testing.T) {
	var have []string
	for _, f := range historyFiles(t) {
		have = append(have, filepath.Base(f))
	}
	for _, want := range recordedHistories {
		if !slices.Contains(have, want) {
			t.Errorf("got no testdata/%s, want it (re-record with go run ./workflows/internal/recordhistories -out workflows/testdata)", want)
		}
	}
}

func TestReplay_RecordedHistories(t *testing.T) {
	files := historyFiles(t)
	if len(files) == 0 {
		t.Fatal("got no histories in testdata, want the recorded ones")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			t.Parallel()
			if err := newReplayer(workflows.RemoveConnectionWorkflow, workflows.RemoveAgentConnectionsWorkflow).ReplayWorkflowHistoryFromJSONFile(replayLogger(t), path); err != nil {
				t.Errorf("replay of %s: got %v, want no error: the change is not compatible with running workflows; "+
					"version it (workflow.GetVersion or worker versioning) instead of re-recording", path, err)
			}
		})
	}
}

// acts is the nil receiver the altered workflows call activities through, as the real ones do.
var acts *activities.Activities

// removeConnectionWithExtraActivity is RemoveConnectionWorkflow after a careless edit: it lists
// the agent's connections first, a command no recorded history has.
func removeConnectionWithExtraActivity(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	actx := workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(nil))
	var listed activities.ListConnectionsResult
	if err := workflow.ExecuteActivity(actx, acts.ListConnections, activities.ListConnectionsInput{AgentID: in.AgentID}).Get(ctx, &listed); err != nil {
		return ac.RemoveConnectionResult{}, err
	}
	return workflows.RemoveConnectionWorkflow(ctx, in)
}

// removeConnectionWithoutClaimCheck is RemoveConnectionWorkflow with the teardown check (its local
// activity) dropped: it goes straight to the DELETE.
func removeConnectionWithoutClaimCheck(ctx workflow.Context, in ac.RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	if err := in.Validate(); err != nil {
		return ac.RemoveConnectionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ac.ErrInvalidRequest, nil)
	}
	var res ac.RemoveConnectionResult
	ctx = workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(in.Retry))
	err := workflow.ExecuteActivity(ctx, acts.RemoveConnection, activities.RemoveConnectionInput{
		AgentID: in.AgentID, ConnectionID: in.ConnectionID, MissingOK: in.MissingOKOrDefault(),
	}).Get(ctx, &res)
	return res, err
}

// teardownWithExtraActivity is RemoveAgentConnectionsWorkflow with an extra listing before it starts.
func teardownWithExtraActivity(ctx workflow.Context, in workflows.TeardownInput) (ac.RemoveAgentConnectionsResult, error) {
	actx := workflow.WithActivityOptions(ctx, workflows.RemoveConnectionActivityOptions(nil))
	var listed activities.ListConnectionsResult
	if err := workflow.ExecuteActivity(actx, acts.ListConnections, activities.ListConnectionsInput{AgentID: in.AgentID}).Get(ctx, &listed); err != nil {
		return ac.RemoveAgentConnectionsResult{}, err
	}
	return workflows.RemoveAgentConnectionsWorkflow(ctx, in)
}

// The replay test must not pass whatever the code does: an incompatible copy of a workflow,
// registered under the real name, must fail to replay a recorded history.
func TestReplay_CatchesAnIncompatibleChange(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		file                   string
		removeConnection       any
		removeAgentConnections any
	}{
		{"removal with an extra activity first", "remove_connection_removed.json",
			removeConnectionWithExtraActivity, workflows.RemoveAgentConnectionsWorkflow},
		{"removal without its local activity", "remove_connection_removed.json",
			removeConnectionWithoutClaimCheck, workflows.RemoveAgentConnectionsWorkflow},
		{"teardown with an extra activity first", "teardown_given_ids_v0.json",
			workflows.RemoveConnectionWorkflow, teardownWithExtraActivity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("got %v, want the recorded history %s", err, path)
			}
			err := newReplayer(tc.removeConnection, tc.removeAgentConnections).ReplayWorkflowHistoryFromJSONFile(replayLogger(t), path)
			if err == nil {
				t.Fatalf("replay of %s with the altered workflow: got no error, want a nondeterminism failure", path)
			}
			// TMPRL1100 is the SDK's code for a nondeterministic workflow.
			if !strings.Contains(err.Error(), "TMPRL1100") {
				t.Errorf("replay of %s with the altered workflow: got %v, want a nondeterminism failure (TMPRL1100)", path, err)
			}
		})
	}
}
