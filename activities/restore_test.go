package activities

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
)

// restoreFixture is an emulator with agent "a1" and the activity environment pointed at it.
func restoreFixture(t *testing.T, seed ...string) (*fixture, *emulator.Server) {
	t.Helper()
	em := emulator.New(emulator.Options{APIKey: testKey, TenantID: testTenant, Seed: map[string][]string{"a1": seed}})
	t.Cleanup(em.Close)
	return newFixture(t, em.ServeHTTP), em
}

func restoreItems(tokens ...string) []RestoreItem {
	out := make([]RestoreItem, len(tokens))
	for i, tok := range tokens {
		out[i] = RestoreItem{Entry: ac.ConnectionSnapshot{ConnectionID: "old-" + tok, OAuthTokenID: tok}}
	}
	return out
}

func (f *fixture) restore(t *testing.T, in RestoreConnectionsInput) (RestoreConnectionsResult, error) {
	t.Helper()
	if in.AgentID == "" {
		in.AgentID = "a1"
	}
	val, err := f.env.ExecuteActivity(ac.RestoreConnectionsActivityType, in) // the contract's name reaches the method
	var res RestoreConnectionsResult
	if err == nil {
		if gerr := val.Get(&res); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return res, err
}

func restoredByToken(res RestoreConnectionsResult) map[string]ac.RestoreOutcome {
	m := map[string]ac.RestoreOutcome{}
	for _, o := range res.Done {
		m[o.OAuthTokenID] = o
	}
	return m
}

func TestRestoreConnections_RestoredAlreadyPresentAndRevoked(t *testing.T) {
	// c1 is seeded with token tok-c1: that entry is already present.
	f, em := restoreFixture(t, "c1")
	em.RevokeTokens("t-revoked")
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems("t1", "t2", "tok-c1", "t-revoked", "t1"), Parallelism: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := restoredByToken(res)
	if len(res.Done) != 4 || len(res.Transient) != 0 {
		t.Fatalf("got %+v, want four tokens done", res)
	}
	for _, tok := range []string{"t1", "t2"} {
		if o := got[tok]; o.Outcome != ac.OutcomeRestored || o.NewConnectionID == "" || o.ConnectionID != "old-"+tok || o.Attempts != 1 {
			t.Errorf("got %+v for %s, want restored after one POST", o, tok)
		}
	}
	if o := got["tok-c1"]; o.Outcome != ac.OutcomeAlreadyPresent || o.NewConnectionID != "c1" || o.Attempts != 0 {
		t.Errorf("got %+v, want already_present as c1 with no POST", o)
	}
	if o := got["t-revoked"]; o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrValidation || !strings.Contains(o.Message, "OAuth token t-revoked is revoked") {
		t.Errorf("got %+v, want failed ValidationError with the 422's detail", o)
	}
	if dup := em.TokensWithMoreThanOne("a1"); len(dup) != 0 {
		t.Errorf("tokens with two connections: %v", dup)
	}
}

// A POST whose answer was lost leaves the entry transient and unknown; the next round (given
// MaybeSent) finds the connection by its token and sends no second POST.
func TestRestoreConnections_LostAnswerThenNextRoundTakesTheConnection(t *testing.T) {
	f, em := restoreFixture(t)
	em.InjectNext(emulator.Fault{Served: true, Status: http.StatusBadGateway, Method: "POST"})
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems("t1")})
	if err != nil || len(res.Transient) != 1 || !res.Transient[0].Unknown || res.Transient[0].Attempts != 1 {
		t.Fatalf("got (%+v, %v), want t1 transient with an unknown outcome after one POST", res, err)
	}
	posts := em.Stats().Requests
	res, err = f.restore(t, RestoreConnectionsInput{Items: []RestoreItem{{Entry: ac.ConnectionSnapshot{ConnectionID: "old-t1", OAuthTokenID: "t1"}, PriorRequests: 1, MaybeSent: true}}})
	if err != nil || len(res.Done) != 1 || res.Done[0].Outcome != ac.OutcomeRestored || res.Done[0].Attempts != 1 {
		t.Fatalf("got (%+v, %v), want restored with the first POST's connection", res, err)
	}
	if n := em.ConnectionsPerToken("a1")["t1"]; n != 1 {
		t.Errorf("got %d connections for t1, want 1", n)
	}
	if em.Stats().Requests != posts+1 {
		t.Errorf("got %d requests in the second round, want one list and no POST", em.Stats().Requests-posts)
	}
}

// A batch whose attempt ends sooner than one request timeout sends no POST: Temporal could retry
// the attempt while that POST is still in flight, and the retry's list would miss its connection.
// The entries come back not sent, for a later round. (The test environment gives an activity 10
// minutes; a request timeout of 11 leaves no room.)
func TestRestoreConnections_NoPostThatCouldOutliveTheAttempt(t *testing.T) {
	em := emulator.New(emulator.Options{APIKey: testKey, TenantID: testTenant, Seed: map[string][]string{"a1": nil}})
	t.Cleanup(em.Close)
	f := newFixture(t, em.ServeHTTP, func(c *fixtureConfig) { c.RequestTimeout = 11 * time.Minute })
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems("t1", "t2", "t3"), Parallelism: 2})
	if err != nil || len(res.Done) != 0 || len(res.Transient) != 3 {
		t.Fatalf("got (%+v, %v), want all three transient", res, err)
	}
	for _, tf := range res.Transient {
		if !tf.NotSent || tf.Unknown || tf.Attempts != 0 || !strings.Contains(tf.Message, "deadline") {
			t.Errorf("got %+v, want not sent, naming the deadline", tf)
		}
	}
	if n := len(em.TokenConnections("a1")); n != 0 {
		t.Errorf("got %d connections created, want none", n)
	}
}

func TestRestoreConnections_RefusedKeyStopsTheBatch(t *testing.T) {
	var posts int
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			status(200, `{"data":[]}`)(w, r)
			return
		}
		posts++
		status(401, `{"detail":"Invalid API key"}`)(w, r)
	})
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems("t1", "t2", "t3"), Parallelism: 1})
	if err != nil || !res.Refused || posts != 1 {
		t.Fatalf("got (%+v, %v) after %d POSTs, want refused after one", res, err, posts)
	}
	if len(res.Done) != 1 || res.Done[0].FailureType != ac.ErrUnauthorized || len(res.Transient) != 2 || !res.Transient[0].NotSent {
		t.Errorf("got %+v, want one Unauthorized and two not sent", res)
	}
}

func TestRestoreConnections_MissingAgentFailsEveryEntry(t *testing.T) {
	f := newFixture(t, status(404, `{"detail":"Agent a1 not found."}`))
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems("t1", "t2")})
	if err != nil || len(res.Done) != 2 {
		t.Fatalf("got (%+v, %v), want both done", res, err)
	}
	for _, o := range res.Done {
		if o.Outcome != ac.OutcomeFailed || o.FailureType != ac.ErrAgentNotFound {
			t.Errorf("got %+v, want failed AgentNotFound", o)
		}
	}
	if n := f.requests.Load(); n != 1 {
		t.Errorf("got %d requests, want the one list", n)
	}
}

func TestRestoreConnections_ManyInParallelOnePerToken(t *testing.T) {
	f, em := restoreFixture(t)
	tokens := make([]string, 120)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("t%03d", i)
	}
	// 20 POSTs create and lose their answer, 20 more are refused with a 503 unserved.
	em.InjectNext(emulator.Fault{Served: true, Status: http.StatusServiceUnavailable, Method: "POST", Count: 20})
	em.InjectNext(emulator.Fault{Status: http.StatusServiceUnavailable, Method: "POST", Count: 20})
	res, err := f.restore(t, RestoreConnectionsInput{Items: restoreItems(tokens...), Parallelism: 10})
	if err != nil || len(res.Done) != 80 || len(res.Transient) != 40 {
		t.Fatalf("got %d done, %d transient (%v), want 80 and 40", len(res.Done), len(res.Transient), err)
	}
	var again []RestoreItem
	for _, tr := range res.Transient {
		again = append(again, RestoreItem{Entry: ac.ConnectionSnapshot{ConnectionID: "old-" + tr.OAuthTokenID, OAuthTokenID: tr.OAuthTokenID},
			PriorRequests: tr.Attempts, MaybeSent: tr.Unknown})
	}
	res, err = f.restore(t, RestoreConnectionsInput{Items: again, Parallelism: 10})
	if err != nil || len(res.Done) != 40 {
		t.Fatalf("got (%+v, %v) in the second round, want all 40 done", res, err)
	}
	per := em.ConnectionsPerToken("a1")
	for _, tok := range tokens {
		if per[tok] != 1 {
			t.Errorf("got %d connections for %s, want 1", per[tok], tok)
		}
	}
}
