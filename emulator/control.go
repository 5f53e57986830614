package emulator

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"

	ac "github.com/agentops/agentconnections"
)

// controlMux serves the control API described in the package comment, one handler per route.
func (s *Server) controlMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /_emulator/healthz", controlHealthz)
	m.HandleFunc("GET /_emulator/stats", s.controlStats)
	m.HandleFunc("GET /_emulator/log", s.controlLog)
	m.HandleFunc("GET /_emulator/connections", s.controlConnections)
	m.HandleFunc("POST /_emulator/seed", s.controlSeed)
	m.HandleFunc("POST /_emulator/faults", s.controlInjectFault)
	m.HandleFunc("GET /_emulator/faults", s.controlFaults)
	m.HandleFunc("POST /_emulator/error-rate", s.controlErrorRate)
	m.HandleFunc("POST /_emulator/latency", s.controlLatency)
	m.HandleFunc("POST /_emulator/rate-limit", s.controlRateLimit)
	m.HandleFunc("POST /_emulator/reset", s.controlReset)
	m.HandleFunc("/_emulator/", controlNotFound)
	return m
}

// controlHealthz answers GET /_emulator/healthz: the emulator is up.
func controlHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// controlStats answers GET /_emulator/stats with the request counters.
func (s *Server) controlStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// controlLog answers GET /_emulator/log with every API request recorded.
func (s *Server) controlLog(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.Log()})
}

// controlConnections answers GET /_emulator/connections?agent_id= with that agent's connections.
func (s *Server) controlConnections(w http.ResponseWriter, r *http.Request) {
	agentID := r.URL.Query().Get("agent_id")
	writeJSON(w, http.StatusOK, map[string]any{"agent_id": agentID, "connection_ids": s.Connections(agentID)})
}

// controlInjectFault answers POST /_emulator/faults: it queues one fault.
func (s *Server) controlInjectFault(w http.ResponseWriter, r *http.Request) {
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
}

// controlErrorRate answers POST /_emulator/error-rate: it sets the fraction answering one status.
func (s *Server) controlErrorRate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status int      `json:"status"`
		Rate   *float64 `json:"rate"`
	}
	controlSet(w, r, &req, &req.Rate, func(rate *float64) error {
		if rate == nil {
			return fmt.Errorf("rate is required")
		}
		return validateErrorRate(req.Status, *rate)
	}, func(rate float64) { s.SetErrorRate(req.Status, rate) })
}

// controlLatency answers POST /_emulator/latency: it sets the delay added to every API request.
func (s *Server) controlLatency(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Latency *ac.Duration `json:"latency"`
	}
	controlSet(w, r, &req, &req.Latency,
		zeroOrMore[ac.Duration](fmt.Errorf("latency must be a duration of zero or more, such as \"20ms\"")),
		func(d ac.Duration) { s.SetLatency(d.D()) })
}

// controlRateLimit answers POST /_emulator/rate-limit: it sets the requests allowed per minute.
func (s *Server) controlRateLimit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PerMinute *int `json:"per_minute"`
	}
	controlSet(w, r, &req, &req.PerMinute, zeroOrMore[int](fmt.Errorf("per_minute must be zero or more")), s.SetRateLimit)
}

// controlSet answers a POST that sets one value: it decodes the body into req, a pointer to a
// struct whose required field is *field, and answers 400 when that fails or check refuses the
// field (nil when missing); otherwise it applies the field's value and answers 204.
func controlSet[V any](w http.ResponseWriter, r *http.Request, req any, field **V, check func(*V) error, apply func(V)) {
	if !readControl(w, r, req, false) {
		return
	}
	if err := check(*field); err != nil {
		controlError(w, err)
		return
	}
	apply(**field)
	w.WriteHeader(http.StatusNoContent)
}

// zeroOrMore is controlSet's check for a value that must be given and not negative: it refuses
// any other with err.
func zeroOrMore[V ~int | ~int64](err error) func(*V) error {
	return func(v *V) error {
		if v == nil || *v < 0 {
			return err
		}
		return nil
	}
}

// controlReset answers POST /_emulator/reset: it drops the faults, error rates, latency and rate
// limit, and the stats or connections when asked.
func (s *Server) controlReset(w http.ResponseWriter, r *http.Request) {
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
}

// controlNotFound answers any other /_emulator/ request with 404.
func controlNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]any{"detail": fmt.Sprintf("no control route %s %s", r.Method, r.URL.Path)})
}

// controlSeed answers POST /_emulator/seed: it adds connections to an agent, or marks IDs invalid.
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

// controlFaults answers GET /_emulator/faults with every fault setting in force.
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
