package activities

import (
	"errors"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

// OutcomeTransient is the outcome Metrics.Removal gets for a removal that failed in a way worth
// trying again (RateLimited, ServerError, Unavailable): Temporal or the teardown retries it later,
// and a later Removal call reports how that ends. The other outcomes are the contract's removed,
// already_absent and failed.
const OutcomeTransient = "transient"

// Metrics receives what the activities measure; the control plane client measures the requests
// (controlplane.Metrics). Every argument is bounded, never an ID and never a credential.
// Implementations must be safe for concurrent use. Config.Metrics nil records nothing.
type Metrics interface {
	// Removal is called once each time a connection removal finishes, in RemoveConnection and for
	// each connection a RemoveConnections batch finishes: outcome is removed, already_absent,
	// failed (a failure not retried) or OutcomeTransient; failureType is the contract's failure
	// type, empty on success.
	Removal(outcome, failureType string)
}

// noMetrics is the Metrics of a Config without one.
type noMetrics struct{}

func (noMetrics) Removal(string, string) {}

// recordRemoval reports a finished removal (its outcome, or its *controlplane.Error) to the
// metrics; a removal that ended with its context has no outcome to report.
func (a *Activities) recordRemoval(outcome string, err error) {
	var e *controlplane.Error
	switch {
	case outcome != "":
		a.meter().Removal(outcome, "")
	case !errors.As(err, &e):
	case e.Retryable:
		a.meter().Removal(OutcomeTransient, e.Type)
	default:
		a.meter().Removal(ac.OutcomeFailed, e.Type)
	}
}

// meter is the activities' Metrics, never nil (a zero Activities, as workflow tests register,
// records nothing).
func (a *Activities) meter() Metrics {
	if a.metrics == nil {
		return noMetrics{}
	}
	return a.metrics
}
