// Package faults is the fault suite of the agent-connections worker: real processes (a Temporal
// dev server, the control plane emulator, the worker binary) under control-plane storms, outages,
// hanging and malformed answers, killed workers, a restarted Temporal server, duplicate starts,
// and a scan of everything the worker emits for the API key. Each case checks the outcome at the
// emulator: every connection removed (or reported failed with the right type), none lost, and no
// second DELETE of a connection unless a crash cut the first one off.
//
// The tests carry the build tag "faults", so `go test ./...` compiles this package and runs
// nothing; `make faults` runs them (go test -tags faults -count=1 -timeout 60m -v ./faults/).
// docs/reliability.md records a run.
package faults
