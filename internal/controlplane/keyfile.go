package controlplane

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
)

// MaxKeyFileBytes bounds a key file: it holds one key, so anything bigger is a wrong path.
const MaxKeyFileBytes = 64 << 10

// keyFileCheckInterval is how often the key file is looked at. Credentials is called for every
// request, so the check must stay cheap: one stat per interval, a read only when it changed.
const keyFileCheckInterval = time.Second

// FileStamp is what tells a changed key file from an unchanged one.
type FileStamp struct {
	modTime time.Time
	size    int64
}

// LoadKeyFile reads an API key file (see ReadKeyFile) and returns the key with the file's stamp
// from just before the read, for NewKeyFileSource: if the file changes during the read, the
// source's first check sees a newer stamp and reads it again.
func LoadKeyFile(path string) (string, FileStamp, error) {
	stamp, err := statFile(path)
	if err != nil {
		return "", FileStamp{}, err
	}
	key, err := ReadKeyFile(path)
	return key, stamp, err
}

func statFile(path string) (FileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileStamp{}, err
	}
	return FileStamp{modTime: fi.ModTime(), size: fi.Size()}, nil
}

// ReadKeyFile reads a key file, trimmed of surrounding whitespace; it refuses an empty or
// oversized file and a key that cannot travel in a header. Its errors carry the path, never the
// content.
func ReadKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxKeyFileBytes {
		return "", fmt.Errorf("%s is larger than %d bytes; it should hold only the key", path, MaxKeyFileBytes)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if err := CheckHeaderValue(key); err != nil {
		return "", fmt.Errorf("%s %w", path, err)
	}
	return key, nil
}

// KeyFileSource is a CredentialSource whose API key lives in a file that may be rotated (a mounted
// secret, a file an agent rewrites). When the file's modification time or size changes, the next
// call re-reads it; a failed or empty re-read keeps the last good key and logs a warning, so a
// half-written file cannot stop removals.
type KeyFileSource struct {
	path   string
	base   Credentials // tenant ID and bearer token; APIKey is taken from key
	logger Logger
	now    func() time.Time

	mu        sync.Mutex
	key       string
	stamp     FileStamp
	lastCheck time.Time
	// lastProblem is the last warning logged, so a lasting problem is logged once, not every second.
	lastProblem string
}

var _ CredentialSource = (*KeyFileSource)(nil)

// NewKeyFileSource starts from a key already read and the file's stamp before that read (from
// LoadKeyFile), so a worker does not start unless the file is good. base carries the tenant ID
// and bearer token; its APIKey is ignored. logger receives a line when the key changes and a
// warning (once per lasting problem, never the key) when a re-read fails; nil logs nothing.
func NewKeyFileSource(path, key string, stamp FileStamp, base Credentials, logger Logger) *KeyFileSource {
	return newKeyFileSource(path, key, stamp, base, loggerOrNop(logger), time.Now)
}

// newKeyFileSource is NewKeyFileSource on a clock the tests move.
func newKeyFileSource(path, key string, stamp FileStamp, base Credentials, logger Logger, now func() time.Time) *KeyFileSource {
	base.APIKey = ""
	return &KeyFileSource{path: path, base: base, logger: logger, now: now, key: key, stamp: stamp, lastCheck: now()}
}

// Credentials returns the current key with the tenant ID and bearer token.
func (s *KeyFileSource) Credentials() (Credentials, error) {
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
func (s *KeyFileSource) refresh() {
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
	key, err := ReadKeyFile(s.path)
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

func (s *KeyFileSource) warn(msg string, err error) {
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
func (s *KeyFileSource) String() string {
	return fmt.Sprintf("KeyFileSource{path=%s tenant_id_set=%t bearer_token_set=%t}", s.path, s.base.TenantID != "", s.base.BearerToken != "")
}

// GoString keeps %#v as safe as %v.
func (s *KeyFileSource) GoString() string { return s.String() }

// CheckHeaderValue refuses what cannot travel in an HTTP header or is surely a copy-paste
// mistake. The error never repeats the value: it may be a credential.
func CheckHeaderValue(v string) error {
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("contains whitespace or a control character")
		}
	}
	return nil
}
