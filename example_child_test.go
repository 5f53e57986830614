package agentconnections_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/workflows"
)

// TeardownAgent is the README's example of a calling service's workflow that removes connections
// as child workflows: it imports only the contract package.
func TeardownAgent(ctx workflow.Context, agentID string, connectionIDs []string) ([]ac.RemoveConnectionResult, error) {
	var results []ac.RemoveConnectionResult
	for _, id := range connectionIDs {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: ac.RemoveConnectionWorkflowID(agentID, id),
			TaskQueue:  ac.DefaultTaskQueue,
		})
		var res ac.RemoveConnectionResult
		err := workflow.ExecuteChildWorkflow(cctx, ac.RemoveConnectionWorkflowType,
			ac.RemoveConnectionInput{AgentID: agentID, ConnectionID: id}).Get(ctx, &res)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == ac.ErrValidation {
			// The control plane refused this one; this saga notes it and goes on.
			continue
		}
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

func TestExample_ChildWorkflowFromACallingService(t *testing.T) {
	var mu sync.Mutex
	deleted := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		deleted[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/v2/auth/agents/a1/connections/locked" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"detail":[{"loc":["path","connection_id"],"msg":"locked","type":"value_error"}]}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	cp, err := controlplane.New(controlplane.Config{BaseURL: srv.URL, Credentials: controlplane.StaticCredentials{APIKey: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: cp})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(TeardownAgent)
	env.RegisterWorkflowWithOptions(workflows.RemoveConnectionWorkflow, workflow.RegisterOptions{Name: ac.RemoveConnectionWorkflowType})
	env.RegisterActivity(acts)
	env.ExecuteWorkflow(TeardownAgent, "a1", []string{"c1", "locked", "c2"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var results []ac.RemoveConnectionResult
	if err := env.GetWorkflowResult(&results); err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].ConnectionID != "c1" || results[1].ConnectionID != "c2" || results[1].Outcome != ac.OutcomeRemoved {
		t.Errorf("got %+v, want c1 and c2 removed", results)
	}
	mu.Lock()
	defer mu.Unlock()
	if deleted["/v2/auth/agents/a1/connections/locked"] != 1 {
		t.Errorf("got %d DELETEs of the 422 connection, want 1", deleted["/v2/auth/agents/a1/connections/locked"])
	}
}
