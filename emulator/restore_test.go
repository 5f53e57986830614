package emulator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/agentops/agentconnections/emulator"
)

func TestServedFault_CreatesThenLosesTheAnswer(t *testing.T) {
	em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": nil}})
	em.InjectNext(emulator.Fault{Served: true, Status: 503, Method: "POST"})
	wantStatus(t, call(t, "POST", listURL(ts, "a1"), `{"oauth_token_id":"t1"}`, apiKey), 503)
	if got := em.ConnectionsPerToken("a1"); got["t1"] != 1 {
		t.Fatalf("got %v, want the 503'd POST to have created one connection for t1", got)
	}

	em.InjectNext(emulator.Fault{Served: true, Reset: true, Method: "POST"})
	if _, err := send(context.Background(), "POST", listURL(ts, "a1"), `{"oauth_token_id":"t2"}`, apiKey); err == nil {
		t.Fatal("got an answer, want the connection cut off")
	}
	em.InjectNext(emulator.Fault{Served: true, Hang: true, Method: "POST"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := send(ctx, "POST", listURL(ts, "a1"), `{"oauth_token_id":"t3"}`, apiKey); err == nil {
		t.Fatal("got an answer, want the request held")
	}
	got := em.ConnectionsPerToken("a1")
	if got["t2"] != 1 || got["t3"] != 1 || len(em.TokensWithMoreThanOne("a1")) != 0 {
		t.Errorf("got %v, want one connection for each served POST", got)
	}

	// A reset that is not served creates nothing.
	em.InjectNext(emulator.Fault{Reset: true, Method: "POST"})
	if _, err := send(context.Background(), "POST", listURL(ts, "a1"), `{"oauth_token_id":"t4"}`, apiKey); err == nil {
		t.Fatal("got an answer, want the connection cut off")
	}
	if got := em.ConnectionsPerToken("a1"); got["t4"] != 0 {
		t.Errorf("got %v, want no connection for t4", got)
	}
}

func TestServedFault_NeedsAWayToLoseTheAnswer(t *testing.T) {
	if err := (emulator.Fault{Served: true}).Validate(); err == nil {
		t.Error("got nil, want a served fault without status, hang or reset refused")
	}
	var f emulator.Fault
	if err := json.Unmarshal([]byte(`{"served":true,"reset":true,"method":"POST"}`), &f); err != nil || !f.Served || !f.Reset {
		t.Fatalf("got %+v, %v", f, err)
	}
	b, _ := json.Marshal(f)
	var back emulator.Fault
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Errorf("round trip of %s: got %+v", b, back)
	}
}

func TestRevokedToken_422NamesTheToken(t *testing.T) {
	em, ts := newServer(t, emulator.Options{Seed: map[string][]string{"a1": nil}})
	em.RevokeTokens("t-revoked")
	r := call(t, "POST", listURL(ts, "a1"), `{"oauth_token_id":"t-revoked"}`, apiKey)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantJSON(t, r, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"OAuth token t-revoked is revoked","type":"value_error"}]}`)
	if n := len(em.TokenConnections("a1")); n != 0 {
		t.Errorf("got %d connections, want none", n)
	}
	wantStatus(t, call(t, "POST", listURL(ts, "a1"), `{"oauth_token_id":"t-ok"}`, apiKey), http.StatusCreated)
}
