package controlplane

import (
	"strings"
	"testing"
	"time"
)

func TestClient_OnRateLimitedGetsEvery429(t *testing.T) {
	var got []time.Duration
	f := newFixture(t, status(429, `{"detail":"slow down"}`, "Retry-After", "7"), func(c *Config) {
		c.OnRateLimited = func(d time.Duration) { got = append(got, d) }
	})
	_, _ = f.remove(t, DeleteRequest{})
	if len(got) != 1 || got[0] != 7*time.Second {
		t.Fatalf("OnRateLimited got %v, want [7s]", got)
	}
	if p := f.client.PausedFor(); p <= 6*time.Second || p > 7*time.Second {
		t.Errorf("PausedFor is %s after a 429 with Retry-After 7, want about 7s", p)
	}
	// Other failures do not call it.
	g := newFixture(t, status(503, "", "Retry-After", "3"), func(c *Config) {
		c.OnRateLimited = func(d time.Duration) { got = append(got, d) }
	})
	_, _ = g.remove(t, DeleteRequest{})
	if len(got) != 1 {
		t.Errorf("a 503 called OnRateLimited: %v", got)
	}
}

func TestClient_SetPaceAndPauseFor(t *testing.T) {
	f := newFixture(t, status(204, ""), func(c *Config) { c.RequestsPerSecond, c.Burst = 30, 10 })
	if r, b := f.client.Pace(); r != 30 || b != 10 {
		t.Fatalf("Pace is %v/%d, want the configured 30/10", r, b)
	}
	f.client.SetPace(15, 5)
	if r, b := f.client.Pace(); r != 15 || b != 5 {
		t.Errorf("after SetPace(15, 5) Pace is %v/%d", r, b)
	}
	f.client.SetPace(0, 3) // not a rate: ignored
	f.client.SetPace(2.5, 0)
	if r, b := f.client.Pace(); r != 2.5 || b != 1 {
		t.Errorf("after SetPace(2.5, 0) Pace is %v/%d, want 2.5/1", r, b)
	}
	f.client.PauseFor(time.Hour)
	f.client.PauseFor(time.Second) // a shorter pause does not cut the longer one
	if p := f.client.PausedFor(); p < 59*time.Minute {
		t.Errorf("PausedFor is %s, want about an hour", p)
	}

	unpaced := newFixture(t, status(204, ""))
	unpaced.client.SetPace(10, 2)
	if r, b := unpaced.client.Pace(); r != 0 || b != 0 {
		t.Errorf("a client without a steady limit got one: %v/%d", r, b)
	}
}

func TestCredentialTag(t *testing.T) {
	tag := func(c Credentials, label string) string {
		t.Helper()
		f := newFixture(t, status(204, ""), func(cfg *Config) { cfg.Credentials = StaticCredentials(c) })
		s, err := f.client.CredentialTag(label)
		if err != nil {
			t.Fatalf("CredentialTag: %v", err)
		}
		return s
	}
	a := tag(Credentials{APIKey: testKey}, "budget")
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("tag %q is not 16 lowercase hex digits", a)
	}
	if strings.Contains(testKey, a) || strings.Contains(a, testKey[:8]) {
		t.Errorf("tag %q shares text with the key", a)
	}
	if b := tag(Credentials{APIKey: testKey}, "budget"); b != a {
		t.Errorf("the same key gave %q then %q", a, b)
	}
	for name, other := range map[string]string{
		"another key":    tag(Credentials{APIKey: testKey + "x"}, "budget"),
		"another label":  tag(Credentials{APIKey: testKey}, "other"),
		"a tenant too":   tag(Credentials{APIKey: testKey, TenantID: testTenant}, "budget"),
		"key as bearer":  tag(Credentials{BearerToken: testKey}, "budget"),
		"split the same": tag(Credentials{APIKey: testKey[:4], BearerToken: testKey[4:]}, "budget"),
	} {
		if other == a {
			t.Errorf("%s gave the same tag %q", name, a)
		}
	}
	f := newFixture(t, status(204, ""), func(cfg *Config) { cfg.Credentials = StaticCredentials{TenantID: testTenant} })
	if _, err := f.client.CredentialTag("budget"); err == nil {
		t.Error("a tag for no credential, want an error")
	}
}
