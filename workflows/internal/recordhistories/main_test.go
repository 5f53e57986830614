package main

import (
	"encoding/base64"
	"testing"
)

func TestCheckNoSecret_FindsTheKeyInTextAndPayloads(t *testing.T) {
	const key = "recordhistories-key-0123"
	for _, tc := range []struct {
		name    string
		json    string
		wantErr bool
	}{
		{"absent", `{"events":[{"data":"` + base64.StdEncoding.EncodeToString([]byte(`{"agent_id":"a1"}`)) + `"}]}`, false},
		{"in a message", `{"events":[{"failure":{"message":"sent ` + key + `"}}]}`, true},
		{"in a payload", `{"events":[{"data":"` + base64.StdEncoding.EncodeToString([]byte(`{"k":"`+key+`"}`)) + `"}]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNoSecret([]byte(tc.json), key)
			if (err != nil) != tc.wantErr {
				t.Errorf("got error %v, want error %t", err, tc.wantErr)
			}
		})
	}
}
