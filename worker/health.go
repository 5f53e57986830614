package main

import "net/http"

// health answers the orchestrator's probes and Prometheus. /healthz is 200 while the process
// serves at all; /readyz is 200 only while the worker polls its task queue and the Temporal server
// answers its health checks (see readiness), so a rollout waits for a worker that has connected, a
// stopping worker stops counting as ready before its pollers go away, and a worker that lost its
// server says so; /metrics serves metrics when there are any.
type health struct {
	readiness
	// metrics serves /metrics; nil leaves the path unanswered (404).
	metrics http.Handler
}

func (h *health) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if h.ready() {
			writeText(w, http.StatusOK, "ready")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready")
	})
	if h.metrics != nil {
		mux.Handle("GET /metrics", h.metrics)
	}
	return mux
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}
