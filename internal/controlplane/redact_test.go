package controlplane

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Credentials for the tests below: distinctive, so any four bytes of their start found in a
// message can only come from them.
const (
	cutKey    = "Zq8vK3mT7wR2pL9xN4bH6cJ1fD5gS0yA"
	cutBearer = "Yt5nB8wQ2kX7rM4vC9jH3sF6dL1pG0zE"
)

// keyLeak is the length of the longest start of secret, four bytes or more, that s holds; 0 when
// none. Tests report it instead of the text, which would print what leaked.
func keyLeak(s, secret string) int {
	for k := len(secret); k >= 4; k-- {
		if strings.Contains(s, secret[:k]) {
			return k
		}
	}
	return 0
}

// echoCase is an error body that echoes a secret. lead is how many bytes of the text an excerpt
// clips come before body's pad argument, so a pad of maxExcerpt-lead-k bytes puts the cut k bytes
// into the secret.
type echoCase struct {
	name string
	lead int
	body func(pad, secret string) string
}

var echoCases = []echoCase{
	{"not JSON", 0, func(pad, s string) string { return pad + s + " tail" }},
	{"detail string", 0, func(pad, s string) string { return `{"detail":"` + pad + s + ` tail"}` }},
	{"validation list", len("path.connection_id: "), func(pad, s string) string {
		return `{"detail":[{"loc":["path","connection_id"],"msg":"` + pad + s + `","type":"value_error"}]}`
	}},
	{"no detail", len(`{"message":"`), func(pad, s string) string { return `{"message":"` + pad + s + `"}` }},
	{"detail object", len(`{"message":"`), func(pad, s string) string { return `{"detail":{"message":"` + pad + s + `"}}` }},
	{"empty detail", len(`{"detail":" ","message":"`), func(pad, s string) string {
		return `{"detail":" ","message":"` + pad + s + `"}`
	}},
	{"over the size limit", len(`{"detail":"`), func(pad, s string) string {
		return `{"detail":"` + pad + s + strings.Repeat("x", DefaultBodyLimit) + `"}`
	}},
}

// cutPoints are how many bytes of a secret come before the excerpt's cut.
var cutPoints = []int{4, 13, len(cutKey) - 1}

func cutBody(c echoCase, secret string, k int) string {
	return c.body(strings.Repeat(".", maxExcerpt-c.lead-k), secret)
}

// TestRedactSecrets_KeyCutByTheExcerpt cuts the key at every byte: what describeErrorBody keeps
// of it, redacted, holds no start of it.
func TestRedactSecrets_KeyCutByTheExcerpt(t *testing.T) {
	for _, c := range echoCases {
		for k := 1; k < len(cutKey); k++ {
			body := cutBody(c, cutKey, k)
			described := describeErrorBody(readTestBody(t, body))
			if !strings.Contains(described, "…") {
				t.Fatalf("%s: the excerpt was not cut; the case is wrong", c.name)
			}
			if n := keyLeak(redactSecrets(described, cutBearer, cutKey), cutKey); n > 0 {
				t.Errorf("%s, cut %d bytes into the key: the redacted description holds its first %d bytes", c.name, k, n)
			}
		}
	}
}

func readTestBody(t *testing.T, body string) ([]byte, bool) {
	t.Helper()
	data, truncated, err := readBody(strings.NewReader(body), DefaultBodyLimit)
	if err != nil {
		t.Fatal(err)
	}
	return data, truncated
}

// TestRedactSecrets_LeavesOtherTextAlone redacts only a secret's start of four bytes or more that
// ends at a cut. Failures name the case, never the text, which holds parts of the key.
func TestRedactSecrets_LeavesOtherTextAlone(t *testing.T) {
	k := func(n int) string { return cutKey[:n] }
	for _, tt := range []struct{ name, in, want string }{
		// Three bytes: too little of a key to matter, and ordinary text often ends so.
		{"three bytes at a cut", "ends with " + k(3) + "…", "ends with " + k(3) + "…"},
		{"not at a cut", k(6) + " is not cut", k(6) + " is not cut"},
		{"eight bytes at a cut", k(8) + "…", "[REDACTED]…"},
		{"two cuts", "a " + k(5) + "… and b " + k(6) + "…", "a [REDACTED]… and b [REDACTED]…"},
		{"whole and cut", "whole " + cutKey + " and cut " + k(7) + "…", "whole [REDACTED] and cut [REDACTED]…"},
		{"no secret", "plain text…", "plain text…"},
	} {
		if got := redactSecrets(tt.in, cutKey); got != tt.want {
			t.Errorf("%s: redactSecrets did not give the expected text", tt.name)
		}
	}
}

func withCutCredentials(c *Config) {
	c.Credentials = StaticCredentials{APIKey: cutKey, BearerToken: cutBearer}
}

// checkNoLeak fails when the error or the logs hold four or more bytes of a credential's start.
func checkNoLeak(t *testing.T, f *fixture, err error) {
	t.Helper()
	for _, secret := range []struct{ name, value string }{{"API key", cutKey}, {"bearer token", cutBearer}} {
		if err != nil {
			if n := keyLeak(err.Error(), secret.value); n > 0 {
				t.Errorf("the error message holds the first %d bytes of the %s", n, secret.name)
			}
		}
		if n := keyLeak(f.logs.String(), secret.value); n > 0 {
			t.Errorf("the logs hold the first %d bytes of the %s", n, secret.name)
		}
	}
}

// TestDelete_KeyEchoedAcrossTheCut has the control plane refuse a DELETE with a body
// echoing a credential where the message's excerpt is cut.
func TestDelete_KeyEchoedAcrossTheCut(t *testing.T) {
	for _, c := range echoCases {
		for _, secret := range []struct{ name, value string }{{"key", cutKey}, {"bearer", cutBearer}} {
			for _, k := range cutPoints {
				t.Run(fmt.Sprintf("%s/%s/cut after %d", c.name, secret.name, k), func(t *testing.T) {
					body := cutBody(c, secret.value, k)
					f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
						w.WriteHeader(http.StatusBadRequest)
						_, _ = w.Write([]byte(body))
					}, withCutCredentials)
					_, err := f.remove(t, DeleteRequest{})
					if err == nil {
						t.Fatal("got success, want a BadRequest failure")
					}
					// The body is redacted whole before it is clipped, so the excerpt holds the
					// marker (and may no longer be cut at the key); either way the case reached
					// the echoed credential.
					if !strings.Contains(err.Error(), "…") && !strings.Contains(err.Error(), "[REDACTED]") {
						t.Fatal("the message holds neither a cut excerpt nor the redaction marker; the case is wrong")
					}
					checkNoLeak(t, f, err)
				})
			}
		}
	}
}

// TestList_KeyEchoedAcrossTheCut does the same for the list: an error status with an
// error body, and a 200 whose list body cannot be read.
func TestList_KeyEchoedAcrossTheCut(t *testing.T) {
	type listCase struct {
		name   string
		status int
		echoCase
	}
	var cases []listCase
	for _, c := range echoCases {
		cases = append(cases, listCase{"404 " + c.name, http.StatusNotFound, c}, listCase{"500 " + c.name, http.StatusInternalServerError, c})
	}
	cases = append(cases,
		listCase{"200 not JSON", http.StatusOK, echoCase{"", 0, func(pad, s string) string { return pad + s + " tail" }}},
		listCase{"200 without data", http.StatusOK, echoCase{"", len(`{"items":"`), func(pad, s string) string { return `{"items":"` + pad + s + `"}` }}},
	)
	for _, c := range cases {
		for _, k := range cutPoints {
			t.Run(fmt.Sprintf("%s/cut after %d", c.name, k), func(t *testing.T) {
				body := cutBody(c.echoCase, cutKey, k)
				f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
					w.WriteHeader(c.status)
					_, _ = w.Write([]byte(body))
				}, withCutCredentials)
				_, err := f.list(t, "agent-1")
				if err == nil {
					t.Fatal("got success, want a failure")
				}
				checkNoLeak(t, f, err)
			})
		}
	}
}
