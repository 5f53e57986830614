package agentconnections

import "testing"

// The Nexus names are part of the contract: callers in other namespaces use them as written here.
func TestNexusNames(t *testing.T) {
	for got, want := range map[string]string{
		NexusService:                     "agent-connections",
		RemoveConnectionOperation:        "remove-connection",
		RemoveAgentConnectionsOperation:  "remove-agent-connections",
		RestoreAgentConnectionsOperation: "restore-agent-connections",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
