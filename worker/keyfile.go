package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/log"

	"github.com/agentops/agentconnections/activities"
)

// maxKeyFileBytes bounds a key file read: it holds one key, so anything bigger is a wrong path.
const maxKeyFileBytes = 64 << 10

// keyFileCheckInterval is how often the key file is looked at. Credentials is called for every
// request, so the check must stay cheap: one stat per interval, a read only when it changed.
const keyFileCheckInterval = time.Second

// fileStamp is what tells a changed key file from an unchanged one.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size()}, nil
}

// readKeyFile reads a key file, trimmed of surrounding whitespace. Its errors carry the path, never
// the content.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxKeyFileBytes {
		return "", fmt.Errorf("%s is larger than %d bytes; it should hold only the key", path, maxKeyFileBytes)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if err := checkHeaderValue(key); err != nil {
		return "", fmt.Errorf("%s %w", path, err)
	}
	return key, nil
}

// keyFileSource is a CredentialSource whose API key lives in a file that may be rotated (a mounted
// secret, a file an agent rewrites). When the file's modification time or size changes, the next
// call re-reads it; a failed or empty re-read keeps the last good key and logs a warning, so a
// half-written file cannot stop removals.
type keyFileSource struct {
	path   string
	base   activities.Credentials // tenant ID and bearer token; APIKey is taken from key
	logger log.Logger
	now    func() time.Time

	mu        sync.Mutex
	key       string
	stamp     fileStamp
	lastCheck time.Time
	// lastProblem is the last warning logged, so a lasting problem is logged once, not every second.
	lastProblem string
}

var _ activities.CredentialSource = (*keyFileSource)(nil)

// newKeyFileSource starts from a key already read (and the file's stamp before that read), so the
// worker does not start unless the file is good.
func newKeyFileSource(path, key string, stamp fileStamp, base activities.Credentials, logger log.Logger, now func() time.Time) *keyFileSource {
	if now == nil {
		now = time.Now
	}
	return &keyFileSource{path: path, base: base, logger: logger, now: now, key: key, stamp: stamp, lastCheck: now()}
}

// Credentials returns the current key with the tenant ID and bearer token.
func (s *keyFileSource) Credentials() (activities.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.lastCheck) >= keyFileCheckInterval || now.Before(s.lastCheck) {
		s.lastCheck = now
		s.refresh()
	}
	creds := s.base
	creds.APIKey = s.key
	return creds, nil
}

// refresh re-reads the file if its stamp changed. Called with mu held.
func (s *keyFileSource) refresh() {
	stamp, err := statFile(s.path)
	if err != nil {
		s.warn("cannot check the API key file; keeping the last key", err)
		return
	}
	if stamp == s.stamp {
		return
	}
	// Stat before read: if the file changes again during the read, the next check sees a newer
	// stamp and reads it once more.
	s.stamp = stamp
	key, err := readKeyFile(s.path)
	if err != nil {
		s.warn("cannot read the changed API key file; keeping the last key", err)
		return
	}
	s.lastProblem = ""
	if key != s.key {
		s.key = key
		s.logger.Info("API key file changed; using the new key", "path", s.path)
	}
}

func (s *keyFileSource) warn(msg string, err error) {
	text := msg + ": " + err.Error()
	if text == s.lastProblem {
		return
	}
	s.lastProblem = text
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		s.logger.Warn(msg, "path", s.path, "error", pathErr.Err.Error())
		return
	}
	s.logger.Warn(msg, "path", s.path, "error", err.Error())
}

// String never prints the key, so a stray %v of the source cannot leak it.
func (s *keyFileSource) String() string {
	return fmt.Sprintf("keyFileSource{path=%s tenant_id_set=%t bearer_token_set=%t}", s.path, s.base.TenantID != "", s.base.BearerToken != "")
}

// GoString keeps %#v as safe as %v.
func (s *keyFileSource) GoString() string { return s.String() }
