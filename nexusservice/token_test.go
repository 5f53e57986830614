package nexusservice

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	ac "github.com/agentops/agentconnections"
)

// operationTokenBytes counts the token as the SDK makes it: encoding/json of the workflow-run
// token, base64url without padding.
func TestOperationTokenBytes_MatchesTheSDKsEncoding(t *testing.T) {
	for _, tt := range []struct{ agent, conn string }{
		{"a1", "c1"},
		{strings.Repeat("&", 256), strings.Repeat("<", 256)},
		{strings.Repeat("é", 128), strings.Repeat(">", 200)},
		{`a"b\c`, "\u2028x"},
	} {
		for _, id := range []string{ac.RemoveConnectionWorkflowID(tt.agent, tt.conn), ac.RemoveAgentConnectionsWorkflowID(tt.agent)} {
			data, err := json.Marshal(struct {
				T   int    `json:"t"`
				NS  string `json:"ns"`
				WID string `json:"wid"`
			}{1, "ns-1", id})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := operationTokenBytes("ns-1", id), len(base64.URLEncoding.WithPadding(base64.NoPadding).EncodeToString(data)); got != want {
				t.Errorf("%q: got %d, want %d", id, got, want)
			}
		}
	}
}

// The bound refuses the removal of two 256-byte IDs of '&' and '<' and keeps 200-byte ones, and
// any teardown and any removal of plain 256-byte IDs.
func TestMaxOperationTokenBytes_WhatItRefuses(t *testing.T) {
	fits := func(id string) bool { return operationTokenBytes("default", id) <= MaxOperationTokenBytes }
	if fits(ac.RemoveConnectionWorkflowID(strings.Repeat("&", 256), strings.Repeat("<", 256))) {
		t.Error("got 256 '&' and 256 '<' accepted, want refused")
	}
	for _, id := range []string{
		ac.RemoveConnectionWorkflowID(strings.Repeat("&", 200), strings.Repeat("<", 200)),
		ac.RemoveConnectionWorkflowID(strings.Repeat("a", 256), strings.Repeat("b", 256)),
		ac.RemoveAgentConnectionsWorkflowID(strings.Repeat("&", 256)),
	} {
		if !fits(id) {
			t.Errorf("got %d bytes refused, want accepted", len(id))
		}
	}
}
