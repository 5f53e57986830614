package emulator

import (
	"net/http"
	"sort"
)

// What the restore's tests need from the emulator: tokens a POST refuses (422, as the control
// plane refuses a revoked token), the connections per token (a restore must leave exactly one),
// and serving a request whose answer is then lost (Fault.Served).

// RevokeTokens makes a POST of these OAuth token IDs (under any agent) answer 422 with a detail
// naming body.oauth_token_id.
func (s *Server) RevokeTokens(tokenIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		s.revoked = map[string]bool{}
	}
	for _, id := range tokenIDs {
		s.revoked[id] = true
	}
}

func (s *Server) tokenRevoked(tokenID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked[tokenID]
}

// TokenConnection is one current connection and its token.
type TokenConnection struct {
	ConnectionID string `json:"connection_id"`
	OAuthTokenID string `json:"oauth_token_id"`
}

// TokenConnections lists agentID's current connections with their tokens, in creation order.
func (s *Server) TokenConnections(agentID string) []TokenConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := s.sortedLocked(agentID)
	out := make([]TokenConnection, len(conns))
	for i, c := range conns {
		out[i] = TokenConnection{ConnectionID: c.ID, OAuthTokenID: c.OAuthTokenID}
	}
	return out
}

// ConnectionsPerToken counts agentID's current connections per OAuth token ID.
func (s *Server) ConnectionsPerToken(agentID string) map[string]int {
	m := map[string]int{}
	for _, c := range s.TokenConnections(agentID) {
		m[c.OAuthTokenID]++
	}
	return m
}

// TokensWithMoreThanOne lists the tokens of agentID held by more than one connection, sorted.
func (s *Server) TokensWithMoreThanOne(agentID string) []string {
	var dup []string
	for tok, n := range s.ConnectionsPerToken(agentID) {
		if n > 1 {
			dup = append(dup, tok)
		}
	}
	sort.Strings(dup)
	return dup
}

// serveThenLose serves the request into nothing, then loses its answer as info.served says:
// its status instead, a hang, or a cut connection.
func (s *Server) serveThenLose(w http.ResponseWriter, r *http.Request, info *reqInfo, op func(http.ResponseWriter, *http.Request, *reqInfo)) {
	op(&discardWriter{h: http.Header{}}, r, info)
	f := *info.served
	info.injected = true
	switch {
	case f.Hang:
		s.wait(r.Context(), -1)
	case f.Reset:
		panic(http.ErrAbortHandler)
	default:
		s.writeFault(w, f)
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
