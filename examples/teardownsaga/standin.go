package teardownsaga

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
)

// StandInPlatform is the example's stand-in for the calling service's own systems: the registry
// that enables and disables agents, and the platform that holds their deployments. It keeps its
// state in memory, so the example and its tests run without them. A real service replaces it
// with its own activities, registered under the same names (DisableAgentActivity and the others).
type StandInPlatform struct {
	mu          sync.Mutex
	disabled    map[string]bool
	deployments map[string]bool
	calls       []string
	deleteErr   error
}

// NewStandInPlatform returns a platform holding the given deployments, every agent enabled.
func NewStandInPlatform(deploymentIDs ...string) *StandInPlatform {
	p := &StandInPlatform{disabled: map[string]bool{}, deployments: map[string]bool{}}
	for _, id := range deploymentIDs {
		p.deployments[id] = true
	}
	return p
}

// Register registers the stand-in activities under the names the saga calls.
func (p *StandInPlatform) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(p.DisableAgent, activity.RegisterOptions{Name: DisableAgentActivity})
	r.RegisterActivityWithOptions(p.EnableAgent, activity.RegisterOptions{Name: EnableAgentActivity})
	r.RegisterActivityWithOptions(p.DeleteDeployment, activity.RegisterOptions{Name: DeleteDeploymentActivity})
}

// FailDeleteDeployment makes every later DeleteDeployment fail with err (nil: succeed again).
func (p *StandInPlatform) FailDeleteDeployment(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deleteErr = err
}

// DisableAgent is the stand-in for step 1.
func (p *StandInPlatform) DisableAgent(_ context.Context, in AgentInput) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, DisableAgentActivity+" "+in.AgentID)
	p.disabled[in.AgentID] = true
	return nil
}

// EnableAgent is the stand-in for step 1's compensation; enabling an enabled agent is no error.
func (p *StandInPlatform) EnableAgent(_ context.Context, in AgentInput) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, EnableAgentActivity+" "+in.AgentID)
	delete(p.disabled, in.AgentID)
	return nil
}

// DeleteDeployment is the stand-in for step 3. A deployment already gone counts as deleted, so a
// retry after a lost answer succeeds.
func (p *StandInPlatform) DeleteDeployment(_ context.Context, in DeploymentInput) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, DeleteDeploymentActivity+" "+in.DeploymentID)
	if p.deleteErr != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("delete deployment %s: %v", in.DeploymentID, p.deleteErr), "DeploymentNotDeleted", p.deleteErr)
	}
	delete(p.deployments, in.DeploymentID)
	return nil
}

// Calls lists the activity calls so far, as "Name argument", in order.
func (p *StandInPlatform) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// AgentEnabled reports whether the agent is enabled.
func (p *StandInPlatform) AgentEnabled(agentID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.disabled[agentID]
}

// DeploymentExists reports whether the deployment is still there.
func (p *StandInPlatform) DeploymentExists(deploymentID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deployments[deploymentID]
}
