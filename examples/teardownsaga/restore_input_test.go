package teardownsaga

import (
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"

	ac "github.com/agentops/agentconnections"
)

// The Nexus variant's restore operation attaches to a restore of the agent already running: a
// result whose input_digest names other tokens is refused, the same tokens (any order, any
// duplicates) and a worker that sends no digest are taken.
func TestSameRestoreInput(t *testing.T) {
	in := SagaInput{AgentID: "a1", NexusEndpoint: "agent-connections"}
	rin := ac.RestoreAgentConnectionsInput{AgentID: "a1", Connections: []ac.ConnectionSnapshot{
		{ConnectionID: "c1", OAuthTokenID: "t1"}, {ConnectionID: "c2", OAuthTokenID: "t2"},
	}}
	same := ac.RestoreInputDigest([]ac.ConnectionSnapshot{{OAuthTokenID: "t2"}, {OAuthTokenID: "t1"}, {OAuthTokenID: "t1"}})
	other := ac.RestoreInputDigest([]ac.ConnectionSnapshot{{OAuthTokenID: "t1"}})
	for _, tt := range []struct {
		name, digest string
		wantErr      bool
	}{
		{"same tokens", same, false},
		{"a worker without the digest", "", false},
		{"other tokens", other, true},
	} {
		err := sameRestoreInput(in, rin, ac.RestoreAgentConnectionsResult{AgentID: "a1", InputDigest: tt.digest})
		var appErr *temporal.ApplicationError
		if got := errors.As(err, &appErr) && appErr.Type() == ErrRestoreNotOurs; got != tt.wantErr || (err != nil) != tt.wantErr {
			t.Errorf("%s: got %v, want an %s error: %t", tt.name, err, ErrRestoreNotOurs, tt.wantErr)
		}
	}
}
