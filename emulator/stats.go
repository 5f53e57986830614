package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Stats counts the API requests served since the start or the last ResetStats. Control-API
// requests are not counted. A request that got no answer counts under StatusNoAnswer.
type Stats struct {
	// Requests is the number of API requests.
	Requests int `json:"requests"`
	// ByMethodStatus counts requests by "METHOD status", e.g. "DELETE 204".
	ByMethodStatus map[string]int `json:"by_method_status"`
	// DeletesByConnection counts DELETE requests by connection ID, whatever their answer.
	DeletesByConnection map[string]int `json:"deletes_by_connection"`
	// Removed counts DELETE requests that removed an existing connection.
	Removed int `json:"removed"`
	// Delete404 counts DELETE requests answered 404.
	Delete404 int `json:"delete_404"`
	// Status429 counts requests answered 429 (rate-limit mode and injected faults).
	Status429 int `json:"status_429"`
	// Injected counts requests answered by a fault or an error rate.
	Injected int `json:"injected"`
}

// LogEntry is one API request in the request log. Headers are never kept.
type LogEntry struct {
	Time     time.Time     `json:"time"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	Status   int           `json:"status"`
	Duration time.Duration `json:"-"`
	// Injected is true when a fault or an error rate produced the answer.
	Injected bool `json:"injected,omitempty"`
}

// MarshalJSON adds the duration as a Go duration string, "duration": "1.5ms".
func (e LogEntry) MarshalJSON() ([]byte, error) {
	type plain LogEntry
	return json.Marshal(struct {
		plain
		Duration string `json:"duration"`
	}{plain(e), e.Duration.String()})
}

func (s *Server) record(r *http.Request, status int, d time.Duration, info *reqInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.stats.ByMethodStatus[r.Method+" "+strconv.Itoa(status)]++
	if info.route == RouteRemove {
		s.stats.DeletesByConnection[info.connectionID]++
		if status == http.StatusNotFound {
			s.stats.Delete404++
		}
	}
	if info.removed {
		s.stats.Removed++
	}
	if status == http.StatusTooManyRequests {
		s.stats.Status429++
	}
	if info.injected {
		s.stats.Injected++
	}
	s.log = append(s.log, LogEntry{
		Time:     s.now().UTC(),
		Method:   r.Method,
		Path:     r.URL.EscapedPath(),
		Status:   status,
		Duration: d,
		Injected: info.injected,
	})
	// Trim in batches so that appending stays amortised O(1).
	if len(s.log) >= 2*s.logLimit {
		s.log = append([]LogEntry(nil), s.log[len(s.log)-s.logLimit:]...)
	}
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByMethodStatus = make(map[string]int, len(s.stats.ByMethodStatus))
	for k, v := range s.stats.ByMethodStatus {
		st.ByMethodStatus[k] = v
	}
	st.DeletesByConnection = make(map[string]int, len(s.stats.DeletesByConnection))
	for k, v := range s.stats.DeletesByConnection {
		st.DeletesByConnection[k] = v
	}
	return st
}

// DeleteCount returns how many DELETE requests named connectionID, whatever their answer.
func (s *Server) DeleteCount(connectionID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.DeletesByConnection[connectionID]
}

// Log returns the request log, oldest first (at most Options.LogLimit entries).
func (s *Server) Log() []LogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log
	if len(l) > s.logLimit {
		l = l[len(l)-s.logLimit:]
	}
	return append([]LogEntry{}, l...)
}

// ResetStats zeroes the counters and empties the request log.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetStatsLocked()
}

func (s *Server) resetStatsLocked() {
	s.stats = Stats{ByMethodStatus: map[string]int{}, DeletesByConnection: map[string]int{}}
	s.log = nil
}
