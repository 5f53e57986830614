package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testFileKey     = "lsv2_sk_FILEKEY9876543210"
	testBearerToken = "SECRETBEARER-abcdef"
)

// assertNoSecret fails when text holds a credential, without printing it.
func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, secret := range []string{testFileKey, testBearerToken, "ROTATEDKEY"} {
		if strings.Contains(text, secret) {
			t.Errorf("%s holds a credential (%d bytes of text), want none", where, len(text))
		}
	}
}

func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeClock is a clock the test moves by hand, so the once-a-second check needs no sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestKeyFileSource(t *testing.T, content string) (*KeyFileSource, string, *fakeClock, *logBuffer) {
	t.Helper()
	path := writeKeyFile(t, content)
	key, stamp, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	base := Credentials{TenantID: "tenant-1", BearerToken: testBearerToken}
	return newKeyFileSource(path, key, stamp, base, logs, clock.now), path, clock, logs
}

func currentKey(t *testing.T, s *KeyFileSource) string {
	t.Helper()
	creds, err := s.Credentials()
	if err != nil {
		t.Fatalf("Credentials: %v", err)
	}
	if creds.TenantID != "tenant-1" || creds.BearerToken != testBearerToken {
		t.Errorf("got tenant %q and a changed bearer token, want them kept from the configuration", creds.TenantID)
	}
	return creds.APIKey
}

// rewrite replaces the file's content and moves its mtime forward, so the test does not depend on
// the file system's timestamp granularity.
func rewrite(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFileSource_RotationIsPickedUp(t *testing.T) {
	src, path, clock, logs := newTestKeyFileSource(t, testFileKey+"\n")
	if got := currentKey(t, src); got != testFileKey {
		t.Fatal("got a different key, want the file's first key")
	}

	const rotated = "ROTATEDKEY-0001"
	rewrite(t, path, rotated+"\n", time.Now().Add(time.Minute))
	if got := currentKey(t, src); got != testFileKey {
		t.Error("got the new key within the same second, want the file checked at most once a second")
	}
	clock.advance(keyFileCheckInterval)
	if got := currentKey(t, src); got != rotated {
		t.Error("got the old key after the check interval, want the rotated key")
	}

	// Same length, new content: the mtime alone tells the change.
	const rotatedAgain = "ROTATEDKEY-0002"
	rewrite(t, path, rotatedAgain, time.Now().Add(2*time.Minute))
	clock.advance(keyFileCheckInterval)
	if got := currentKey(t, src); got != rotatedAgain {
		t.Error("got the previous key, want the second rotated key")
	}

	if !strings.Contains(logs.String(), "API key file changed; using the new key") {
		t.Errorf("got logs %q, want a line about the key change", logs.String())
	}
	assertNoSecret(t, "logs", logs.String())
}

func TestKeyFileSource_KeepsLastGoodKey(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		wantLog string
	}{
		{"emptied", func(t *testing.T, path string) {
			rewrite(t, path, "\n", time.Now().Add(time.Minute))
		}, "is empty"},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
		{"garbled", func(t *testing.T, path string) {
			rewrite(t, path, "ROTATEDKEY half\x00written", time.Now().Add(time.Minute))
		}, "contains whitespace or a control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, path, clock, logs := newTestKeyFileSource(t, testFileKey)
			tt.damage(t, path)
			for range 3 {
				clock.advance(keyFileCheckInterval)
				if got := currentKey(t, src); got != testFileKey {
					t.Fatal("got another key, want the last good key kept")
				}
			}
			out := logs.String()
			if !strings.Contains(out, tt.wantLog) || !strings.HasPrefix(out, "WARN ") {
				t.Errorf("got logs %q, want a warning with %q", out, tt.wantLog)
			}
			if n := len(logs.lines); n != 1 {
				t.Errorf("got %d log lines for one lasting problem, want 1: %q", n, out)
			}
			if !strings.Contains(out, path) {
				t.Errorf("got logs %q, want the file's path in them", out)
			}
			assertNoSecret(t, "logs", out)

			// Once the file is good again, its key is used.
			rewrite(t, path, "ROTATEDKEY-0003", time.Now().Add(time.Hour))
			clock.advance(keyFileCheckInterval)
			if got := currentKey(t, src); got != "ROTATEDKEY-0003" {
				t.Error("got the old key after the file was fixed, want the new one")
			}
		})
	}
}

func TestKeyFileSource_ConcurrentUse(t *testing.T) {
	src, path, clock, _ := newTestKeyFileSource(t, testFileKey)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := src.Credentials(); err != nil {
					t.Errorf("goroutine %d: Credentials: %v", i, err)
					return
				}
				clock.advance(100 * time.Millisecond)
			}
		})
	}
	for i := range 5 {
		rewrite(t, path, fmt.Sprintf("ROTATEDKEY-%04d", i), time.Now().Add(time.Duration(i+1)*time.Minute))
	}
	wg.Wait()
	clock.advance(keyFileCheckInterval)
	if got := currentKey(t, src); got != "ROTATEDKEY-0004" {
		t.Error("got an older key after the last rotation, want the last one")
	}
}

func TestKeyFileSource_StringHidesKey(t *testing.T) {
	src, _, _, _ := newTestKeyFileSource(t, testFileKey)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoSecret(t, "source printed with "+verb, fmt.Sprintf(verb, src))
	}
}

func TestLoadKeyFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		missing bool // no file at all
		wantKey string
		wantErr string
	}{
		{name: "trimmed", content: "\n  " + testFileKey + "\n", wantKey: testFileKey},
		{name: "empty", content: " \n", wantErr: "is empty"},
		{name: "two words", content: testFileKey + " " + testFileKey, wantErr: "contains whitespace or a control character"},
		{name: "oversized", content: strings.Repeat("k", MaxKeyFileBytes+1), wantErr: "is larger than"},
		{name: "missing", missing: true, wantErr: "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent")
			if !tt.missing {
				path = writeKeyFile(t, tt.content)
			}
			key, stamp, err := LoadKeyFile(path)
			if tt.wantErr == "" {
				if err != nil || key != tt.wantKey || stamp == (FileStamp{}) {
					t.Errorf("got a %d-byte key, stamp set %t and error %v, want the file's key and its stamp", len(key), stamp != (FileStamp{}), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("got error %q, want the path in it", err)
			}
			assertNoSecret(t, "error", err.Error())
		})
	}
}

func TestNewKeyFileSource_NilLogger(t *testing.T) {
	path := writeKeyFile(t, testFileKey)
	key, stamp, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := NewKeyFileSource(path, key, stamp, Credentials{APIKey: "ignored"}, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	src.lastCheck = time.Time{} // the next call checks the file, which logs a warning
	creds, err := src.Credentials()
	if err != nil || creds.APIKey != testFileKey {
		t.Errorf("got a %d-byte key and error %v, want the file's first key kept", len(creds.APIKey), err)
	}
}
