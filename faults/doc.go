// Package faults is the fault suite of the agent-connections worker: real processes (a Temporal
// dev server, the control plane emulator, the worker binary) under control-plane storms, outages,
// hanging and malformed answers, killed workers, a restarted Temporal server, duplicate starts,
// and a scan of everything the worker emits for the API key. Each case checks the outcome at the
// emulator: every connection removed (or reported failed with the right type), none lost, and no
// second DELETE of a connection unless a crash cut the first one off.
//
// Cases 8-10 restore connections (POST) through lost answers: POSTs that create their connection
// and then hang past the worker's request timeout, or create it only after the worker gave up;
// POSTs cut off by a connection reset after creating their connection or before; and a worker
// SIGKILLed with POSTs in flight and replaced by a new process. A tap in front of the emulator
// records each POST's token. Each ends with exactly one connection per oauth_token_id at the
// emulator, every entry restored or already_present with the connection that holds its token
// there, and a second POST for a token only when its first created nothing.
//
// The tests carry the build tag "faults", so `go test ./...` compiles this package and runs
// nothing; `make faults` runs them (go test -tags faults -count=1 -timeout 60m -v ./faults/).
// docs/reliability.md records a run.
package faults
