package controlplane

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	limit := 5 * time.Minute
	tests := []struct {
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 12 ", 12 * time.Second, true},
		{"86400", limit, true},
		{"99999999999999999999", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), limit, true},
		{"Thursday, 26-Nov-26 12:01:00 GMT", time.Minute, true}, // RFC 850, still allowed
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.value, now, limit)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got (%s, %t), want (%s, %t)", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDescribeErrorBody(t *testing.T) {
	tests := []struct {
		name, body string
		truncated  bool
		want       string
	}{
		{"list", `{"detail":[{"loc":["path","agent_id"],"msg":"too long","type":"t"}]}`, false, "path.agent_id: too long"},
		{"list with index", `{"detail":[{"loc":["body",0,"x"],"msg":"m","type":"t"}]}`, false, "body[0].x: m"},
		{"list without loc", `{"detail":[{"msg":"m"}]}`, false, "(no loc): m"},
		{"string", `{"detail":"Connection c not found."}`, false, "Connection c not found."},
		{"empty list", `{"detail":[]}`, false, "detail is an empty list"},
		{"empty string", `{"detail":" "}`, false, `detail is an empty string: {"detail":" "}`},
		// Found by FuzzDescribeErrorBody: encoding/json matches field names case-insensitively.
		{"other case, empty", `{"detAil":""}`, false, `detail is an empty string: {"detAil":""}`},
		{"no detail", `{"message":"x"}`, false, `body has no detail: {"message":"x"}`},
		{"null detail", `{"detail":null}`, false, `body has no detail: {"detail":null}`},
		{"object detail", `{"detail":{"a":1}}`, false, `detail is neither a string nor a list: {"a":1}`},
		{"not json", `<html>bad gateway</html>`, false, "body is not JSON: <html>bad gateway</html>"},
		{"truncated", `{"detail":"aaaa`, true, `body over the size limit, starts: {"detail":"aaaa`},
		{"empty", "  ", false, "empty body"},
		{"control chars", "{\"detail\":\"a\\nb\"}", false, "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeErrorBody([]byte(tt.body), tt.truncated); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDescribeErrorBody_Bounded(t *testing.T) {
	got := describeErrorBody([]byte(`{"detail":"`+strings.Repeat("é", 5000)+`"}`), false)
	if len(got) > maxExcerpt+len("…") || !utf8.ValidString(got) {
		t.Errorf("got %d bytes (valid UTF-8 %t), want at most %d valid bytes", len(got), utf8.ValidString(got), maxExcerpt+len("…"))
	}
}

func TestReadBody_Limit(t *testing.T) {
	data, truncated, err := readBody(strings.NewReader(strings.Repeat("x", 100)), 10)
	if err != nil || len(data) != 10 || !truncated {
		t.Errorf("got (%d bytes, truncated %t, %v), want (10, true, nil)", len(data), truncated, err)
	}
	data, truncated, err = readBody(strings.NewReader("abc"), 10)
	if err != nil || string(data) != "abc" || truncated {
		t.Errorf("got (%q, truncated %t, %v), want (abc, false, nil)", data, truncated, err)
	}
}

func TestParseBaseURL(t *testing.T) {
	good := map[string]string{
		"https://api.host.langchain.com":      "https://api.host.langchain.com",
		"https://eu.api.host.langchain.com/":  "https://eu.api.host.langchain.com",
		"https://langsmith.example/api-host/": "https://langsmith.example/api-host",
		"http://127.0.0.1:8765":               "http://127.0.0.1:8765",
	}
	for in, want := range good {
		u, err := ParseBaseURL(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseBaseURL(%q) got (%v, %v), want %s", in, u, err, want)
		}
	}
	bad := []string{"", "api.host.langchain.com", "ftp://x", "https://", "https://user:pass@x", "https://x?q=1", "https://x#f", "://x"}
	for _, in := range bad {
		_, err := ParseBaseURL(in)
		if err == nil {
			t.Errorf("ParseBaseURL(%q) got no error, want one", in)
			continue
		}
		if strings.Contains(err.Error(), "pass") {
			t.Errorf("ParseBaseURL(%q) error %q repeats a credential", in, err)
		}
	}
}

func TestNew_RefusesBadConfig(t *testing.T) {
	creds := StaticCredentials{APIKey: "k"}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no credentials", Config{BaseURL: "https://x"}},
		{"negative timeout", Config{BaseURL: "https://x", Credentials: creds, RequestTimeout: -time.Second}},
		{"negative rate", Config{BaseURL: "https://x", Credentials: creds, RequestsPerSecond: -1}},
		{"bad URL", Config{BaseURL: "x", Credentials: creds}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("got no error, want one")
			}
		})
	}
}

func TestCredentials_StringHidesSecrets(t *testing.T) {
	c := Credentials{APIKey: testKey, BearerToken: testBearer, TenantID: testTenant}
	sc := StaticCredentials(c)
	for _, s := range []string{c.String(), c.GoString(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v %+v %#v %s", sc, sc, sc, sc)} {
		if strings.Contains(s, testKey) || strings.Contains(s, testBearer) {
			t.Errorf("got %q, want no secret", s)
		}
	}
}

func FuzzDescribeErrorBody(f *testing.F) {
	f.Add([]byte(`{"detail":[{"loc":["path",1],"msg":"m","type":"t"}]}`), false)
	f.Add([]byte(`{"detail":"x"}`), false)
	f.Add([]byte(`{"detail":[{"loc":[{"a":null}],"msg":5}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, truncated bool) {
		got := describeErrorBody(body, truncated)
		if got == "" {
			t.Fatal("got an empty description")
		}
		if len(got) > 2*maxExcerpt+64 {
			t.Fatalf("got %d bytes, want a bounded description", len(got))
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Add("7")
	f.Add("Thu, 26 Nov 2026 12:01:00 GMT")
	f.Add("-3")
	f.Fuzz(func(t *testing.T, value string) {
		d, ok := parseRetryAfter(value, now, time.Minute)
		if d < 0 || d > time.Minute {
			t.Fatalf("got %s for %q, want 0..1m", d, value)
		}
		if !ok && d != 0 {
			t.Fatalf("got %s with ok false for %q", d, value)
		}
	})
}

func TestClipTo(t *testing.T) {
	tests := []struct {
		name, in string
		limit    int
		want     string
	}{
		{"short kept", "abc", 10, "abc"},
		{"exact kept", "abcdefghij", 10, "abcdefghij"},
		{"cut with the ellipsis inside the limit", "abcdefghijk", 10, "abcdefg…"},
		{"never splits a rune", "ééééé", 8, "éé…"},
		{"limit below the ellipsis", "abcdef", 2, "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClipTo(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("got %q, want valid UTF-8", got)
			}
		})
	}
}

func TestDelayNote(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "", -time.Second: "", 3 * time.Second: ", retry after 3s"} {
		if got := DelayNote(d); got != want {
			t.Errorf("DelayNote(%s): got %q, want %q", d, got, want)
		}
	}
}

func TestClient_Redact(t *testing.T) {
	c, err := New(Config{BaseURL: "https://x", Credentials: StaticCredentials{APIKey: testKey, BearerToken: testBearer}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Redact("key "+testKey+" and "+testBearer), "key [REDACTED] and [REDACTED]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// With no credentials to read there is nothing to remove: the text stays as it is.
	c, err = New(Config{BaseURL: "https://x", Credentials: failingSource{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Redact("plain"); got != "plain" {
		t.Errorf("got %q, want %q", got, "plain")
	}
}
