package emulator

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"
)

// controlMux serves the control API described in the package comment.
func (s *Server) controlMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /_emulator/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	m.HandleFunc("GET /_emulator/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	m.HandleFunc("GET /_emulator/log", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"data": s.Log()})
	})
	m.HandleFunc("GET /_emulator/connections", func(w http.ResponseWriter, r *http.Request) {
		agentID := r.URL.Query().Get("agent_id")
		writeJSON(w, http.StatusOK, map[string]any{"agent_id": agentID, "connection_ids": s.Connections(agentID)})
	})
	m.HandleFunc("POST /_emulator/seed", s.controlSeed)
	m.HandleFunc("POST /_emulator/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if !readControl(w, r, &f, false) {
			return
		}
		if err := f.Validate(); err != nil {
			controlError(w, err)
			return
		}
		s.InjectNext(f)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /_emulator/faults", s.controlFaults)
	m.HandleFunc("POST /_emulator/error-rate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Status int      `json:"status"`
			Rate   *float64 `json:"rate"`
		}
		if !readControl(w, r, &req, false) {
			return
		}
		if req.Rate == nil {
			controlError(w, fmt.Errorf("rate is required"))
			return
		}
		if err := validateErrorRate(req.Status, *req.Rate); err != nil {
			controlError(w, err)
			return
		}
		s.SetErrorRate(req.Status, *req.Rate)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_emulator/latency", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Latency *jsonDuration `json:"latency"`
		}
		if !readControl(w, r, &req, false) {
			return
		}
		if req.Latency == nil || *req.Latency < 0 {
			controlError(w, fmt.Errorf("latency must be a duration of zero or more, such as \"20ms\""))
			return
		}
		s.SetLatency(time.Duration(*req.Latency))
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_emulator/rate-limit", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			PerMinute *int `json:"per_minute"`
		}
		if !readControl(w, r, &req, false) {
			return
		}
		if req.PerMinute == nil || *req.PerMinute < 0 {
			controlError(w, fmt.Errorf("per_minute must be zero or more"))
			return
		}
		s.SetRateLimit(*req.PerMinute)
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /_emulator/reset", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stats       bool `json:"stats"`
			Connections bool `json:"connections"`
		}
		if !readControl(w, r, &req, true) {
			return
		}
		s.Reset()
		if req.Stats {
			s.ResetStats()
		}
		if req.Connections {
			s.ClearConnections()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("/_emulator/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": fmt.Sprintf("no control route %s %s", r.Method, r.URL.Path)})
	})
	return m
}

func (s *Server) controlSeed(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AgentID              string   `json:"agent_id"`
		ConnectionIDs        []string `json:"connection_ids"`
		InvalidConnectionIDs []string `json:"invalid_connection_ids"`
	}
	if !readControl(w, r, &req, false) {
		return
	}
	if req.AgentID == "" && (len(req.ConnectionIDs) > 0 || len(req.InvalidConnectionIDs) == 0) {
		controlError(w, fmt.Errorf("agent_id is required"))
		return
	}
	for _, id := range append(append([]string{}, req.ConnectionIDs...), req.InvalidConnectionIDs...) {
		if id == "" {
			controlError(w, fmt.Errorf("connection ids must not be empty"))
			return
		}
	}
	if req.AgentID != "" {
		s.Seed(req.AgentID, req.ConnectionIDs...)
	}
	s.MarkInvalid(req.InvalidConnectionIDs...)
	writeJSON(w, http.StatusOK, map[string]any{"agent_id": req.AgentID, "connection_ids": s.Connections(req.AgentID)})
}

func (s *Server) controlFaults(w http.ResponseWriter, _ *http.Request) {
	fs := s.Faults()
	type rate struct {
		Status int     `json:"status"`
		Rate   float64 `json:"rate"`
	}
	rates := make([]rate, 0, len(fs.ErrorRates))
	for st, r := range fs.ErrorRates {
		rates = append(rates, rate{st, r})
	}
	sort.Slice(rates, func(i, j int) bool { return rates[i].Status < rates[j].Status })
	writeJSON(w, http.StatusOK, map[string]any{
		"latency":               fs.Latency.String(),
		"rate_limit_per_minute": fs.RateLimitPerMinute,
		"error_rates":           rates,
		"pending":               fs.Pending,
	})
}

// readControl decodes the JSON body into v and answers 400 when it cannot; an empty body is
// allowed only when optional.
func readControl(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		controlError(w, fmt.Errorf("read body: %w", err))
		return false
	}
	if optional && len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	if err := decodeStrict(b, v); err != nil {
		controlError(w, fmt.Errorf("decode body: %w", err))
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"detail": err.Error()})
}
