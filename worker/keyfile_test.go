package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentops/agentconnections/internal/proc"

	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/logging"
)

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

func newTestKeyFileSource(t *testing.T, content string) (*keyFileSource, string, *fakeClock, *proc.Buffer) {
	t.Helper()
	path := writeKeyFile(t, content)
	stamp, err := statFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := readKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &proc.Buffer{}
	zl, err := logging.New("json", "debug", logs)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	base := activities.Credentials{TenantID: "tenant-1", BearerToken: testBearerToken}
	return newKeyFileSource(path, key, stamp, base, logging.NewAdapter(zl), clock.now), path, clock, logs
}

func currentKey(t *testing.T, s *keyFileSource) string {
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
			if !strings.Contains(out, tt.wantLog) || !strings.Contains(out, `"level":"warn"`) {
				t.Errorf("got logs %q, want a warning with %q", out, tt.wantLog)
			}
			if n := strings.Count(out, "\n"); n != 1 {
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
