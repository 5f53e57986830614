package agentconnections

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateID(t *testing.T) {
	good := []string{"a", "conn-1", "8f0c2b1e-5a3c-4c1e-9d4b-2f7e6a1b9c0d", "agént", "c:1@x", "a.b", "...", strings.Repeat("x", MaxIDBytes)}
	for _, id := range good {
		if err := ValidateID("connection_id", id); err != nil {
			t.Errorf("ValidateID(%q) got %v, want nil", id, err)
		}
	}
	bad := []string{"", ".", "..", "a/b", `a\b`, "a b", "a\tb", "a\nb", "a\x00", "a\x7f", "a?b", "a#b", "a%2F", "a\u00a0b", "a\u2028b", "\xff", strings.Repeat("x", MaxIDBytes+1)}
	for _, id := range bad {
		err := ValidateID("connection_id", id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) got %v, want ErrInvalidID", id, err)
			continue
		}
		if !strings.Contains(err.Error(), "connection_id") {
			t.Errorf("ValidateID(%q) error %q does not name the field", id, err)
		}
	}
	long := strings.Repeat("y", 10_000)
	if err := ValidateID("agent_id", long); err == nil || strings.Contains(err.Error(), long[:300]) {
		t.Errorf("got %v, want an error that does not repeat a 10 kB id", err)
	}
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"conn-1", "..", "a/b", "a%2F", "é", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID("id", id) != nil {
			return
		}
		// An accepted ID must be one path segment that no server can re-route.
		if id == "" || id == "." || id == ".." || len(id) > MaxIDBytes || strings.ContainsAny(id, "/\\?#% \t\r\n") {
			t.Fatalf("accepted %q", id)
		}
	})
}

func TestRemoveConnectionInput_JSON(t *testing.T) {
	var in RemoveConnectionInput
	if err := json.Unmarshal([]byte(`{"agent_id":"a1","connection_id":"c1"}`), &in); err != nil {
		t.Fatal(err)
	}
	if !in.MissingOKOrDefault() {
		t.Error("got missing_ok false when absent, want true")
	}
	if err := json.Unmarshal([]byte(`{"agent_id":"a1","connection_id":"c1","missing_ok":false,"retry":{"maximum_attempts":3,"initial_interval":"250ms","start_to_close_timeout":5}}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.MissingOKOrDefault() {
		t.Error("got missing_ok true, want false")
	}
	if in.Retry == nil || in.Retry.MaximumAttempts != 3 || in.Retry.InitialInterval.D() != 250*time.Millisecond || in.Retry.StartToCloseTimeout.D() != 5*time.Second {
		t.Errorf("got retry %+v, want 3 attempts, 250ms, 5s", in.Retry)
	}
	out, err := json.Marshal(RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: OutcomeRemoved, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"agent_id":"a1","connection_id":"c1","outcome":"removed","attempts":1}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
	if err := json.Unmarshal([]byte(`{"retry":{"initial_interval":"soon"}}`), &in); err == nil {
		t.Error("got no error for a bad duration, want one")
	}
	var snap RemoveConnectionInput
	if err := json.Unmarshal([]byte(`{"agent_id":"a1","connection_id":"c1","snapshot":true}`), &snap); err != nil || !snap.Snapshot {
		t.Errorf("got %+v (%v), want snapshot true", snap, err)
	}
	// A removal's result with its snapshot is a restore entry as it is.
	out, _ = json.Marshal(RemoveConnectionResult{AgentID: "a1", ConnectionID: "c1", Outcome: OutcomeRemoved, Attempts: 1, OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo"}})
	if want := `{"agent_id":"a1","connection_id":"c1","outcome":"removed","attempts":1,"oauth_token_id":"t1","provider_id":"github","scopes":["repo"]}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
	var entry ConnectionSnapshot
	if err := json.Unmarshal(out, &entry); err != nil || entry.OAuthTokenID != "t1" || entry.ConnectionID != "c1" || entry.ProviderID != "github" {
		t.Errorf("got %+v (%v), want the result read as the snapshot of c1", entry, err)
	}
}

func TestRetryOverrides_Validate(t *testing.T) {
	bad := []RetryOverrides{
		{InitialInterval: -1},
		{BackoffCoefficient: 0.5},
		{MaximumAttempts: -1},
		{InitialInterval: Duration(time.Minute), MaximumInterval: Duration(time.Second)},
	}
	for _, r := range bad {
		if r.Validate() == nil {
			t.Errorf("Validate(%+v) got nil, want an error", r)
		}
	}
	if err := (RetryOverrides{MaximumAttempts: 2, BackoffCoefficient: 1.5}).Validate(); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}

func TestNonRetryableAndRetryableTypesAreDisjoint(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range NonRetryableErrorTypes() {
		seen[typ] = true
	}
	for _, typ := range RetryableErrorTypes() {
		if seen[typ] {
			t.Errorf("type %s is listed as both retryable and non-retryable", typ)
		}
	}
}

func TestRemoveConnectionWorkflowID(t *testing.T) {
	if got, want := RemoveConnectionWorkflowID("a1", "c1"), "remove-connection/a1/c1"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
