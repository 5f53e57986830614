// Package controlplane is the worker's HTTP client for the LangSmith Deployment Control Plane
// API: it removes one agent connection (Delete) and lists an agent's connections (List), and
// turns each answer into an outcome or one typed *Error as the status table in docs/contract.md
// says.
//
// It owns everything about talking HTTP to the control plane: building the client and its pooled
// keep-alive transport, the short in-process retries, pacing and the client-wide pause a 429 sets,
// Retry-After, reading and describing error bodies, keeping credentials out of every message, and
// the metrics and spans of each request. It knows nothing of Temporal, so all of it is tested
// with plain net/http/httptest servers; the activities package adapts it to Temporal (heartbeats,
// ApplicationError) and is the only place that does.
package controlplane
