package emulator

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// listConnections answers GET .../connections: {"data": [...]} in creation order. An agent the
// emulator never had (not seeded, no connection ever created) answers 404, as the control plane
// answers an agent it does not know; one whose connections were all removed lists none.
func (s *Server) listConnections(w http.ResponseWriter, _ *http.Request, info *reqInfo) {
	s.mu.Lock()
	if s.agents[info.agentID] == nil {
		s.mu.Unlock()
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": fmt.Sprintf("Agent %s not found.", info.agentID)})
		return
	}
	conns := s.sortedLocked(info.agentID)
	data := make([]connection, len(conns))
	for i, c := range conns {
		data[i] = *c
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}

// createConnection answers POST .../connections. Besides the spec's oauth_token_id it accepts an
// optional "id", so seeding through the API can choose IDs; a taken id answers 409.
func (s *Server) createConnection(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"detail": "Request Entity Too Large"})
			return
		}
		return
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		writeValidation(w, validationError{Loc: []any{"body"}, Msg: "Field required", Type: "missing"})
		return
	}
	var body any
	if err := json.Unmarshal(raw, &body); err != nil {
		writeValidation(w, validationError{Loc: []any{"body", 0}, Msg: "JSON decode error", Type: "json_invalid"})
		return
	}
	obj, ok := body.(map[string]any)
	if !ok {
		writeValidation(w, validationError{Loc: []any{"body"}, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"})
		return
	}
	var errs []validationError
	tokenID, present := obj["oauth_token_id"]
	tokenStr, isString := tokenID.(string)
	switch {
	case !present:
		errs = append(errs, validationError{Loc: []any{"body", "oauth_token_id"}, Msg: "Field required", Type: "missing"})
	case !isString:
		errs = append(errs, validationError{Loc: []any{"body", "oauth_token_id"}, Msg: "Input should be a valid string", Type: "string_type"})
	}
	id := ""
	if v, present := obj["id"]; present && v != nil {
		idStr, isString := v.(string)
		switch {
		case !isString:
			errs = append(errs, validationError{Loc: []any{"body", "id"}, Msg: "Input should be a valid string", Type: "string_type"})
		case len(idStr) > MaxIDBytes:
			errs = append(errs, tooLong("body", "id"))
		default:
			id = idStr
		}
	}
	if len(errs) == 0 && s.tokenRevoked(tokenStr) {
		errs = append(errs, validationError{Loc: []any{"body", "oauth_token_id"}, Msg: fmt.Sprintf("OAuth token %s is revoked", tokenStr), Type: "value_error"})
	}
	if len(errs) > 0 {
		writeValidation(w, errs...)
		return
	}
	if id == "" {
		id = newConnectionID()
	}

	s.mu.Lock()
	a := s.agentLocked(info.agentID)
	if _, taken := a.conns[id]; taken {
		s.mu.Unlock()
		writeJSON(w, http.StatusConflict, map[string]any{"detail": fmt.Sprintf("Connection %s already exists.", id)})
		return
	}
	c := *s.addLocked(a, info.agentID, id, tokenStr)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, c)
}

// removeConnection answers DELETE .../connections/{connection_id}: 204 when the connection exists
// or existed (DELETE is idempotent), 404 for one the agent never had.
func (s *Server) removeConnection(w http.ResponseWriter, _ *http.Request, info *reqInfo) {
	s.mu.Lock()
	found := false
	if a := s.agents[info.agentID]; a != nil {
		if _, ok := a.conns[info.connectionID]; ok {
			delete(a.conns, info.connectionID)
			a.removed[info.connectionID] = true
			info.removed = true
			found = true
		} else {
			found = a.removed[info.connectionID]
		}
	}
	s.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": fmt.Sprintf("Connection %s not found.", info.connectionID)})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func newConnectionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "conn-" + hex.EncodeToString(b[:])
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the package's own types are marshalled; failing here is a bug.
		panic("emulator: marshal: " + err.Error())
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b := marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
