# GNU make. `make test` is what CI runs (.ci/run); it installs the pinned temporal CLI that the
# tests against a real dev server need.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

TEMPORAL_CLI_VERSION := v1.5.1
GOLANGCI_LINT_VERSION := v2.15.0

# Stamped into the binaries as main.version (the worker's User-Agent and --version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

# Tests find the temporal binary here, unless the caller points them elsewhere.
export TEMPORAL_CLI ?= $(CURDIR)/bin/temporal

.PHONY: build test lint run teardown bench faults clean

# Installed only when missing; delete it to pick up a new TEMPORAL_CLI_VERSION.
bin/temporal:
	GOBIN=$(CURDIR)/bin go install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

# Reinstalled when the binary there is not the pinned version.
bin/golangci-lint: FORCE
	@case "$$($@ version 2>/dev/null || true)" in \
	*"version $(GOLANGCI_LINT_VERSION:v%=%) "*) ;; \
	*) echo "GOBIN=$(CURDIR)/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)"; \
	   GOBIN=$(CURDIR)/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) ;; \
	esac

build:
	go build -ldflags '$(LDFLAGS)' -o bin/worker ./worker
	go build -ldflags '$(LDFLAGS)' -o bin/starter ./starter
	go build -ldflags '$(LDFLAGS)' -o bin/emulator ./emulator/cmd/emulator

test: bin/temporal
	go vet ./...
	go vet -tags faults ./faults/
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l lists files that need formatting:"; echo "$$unformatted"; exit 1; fi
	go test -race -count=1 -timeout 30m ./...

lint: bin/golangci-lint
	bin/golangci-lint run ./...

# The end-to-end demo (demo/): dev server, control plane emulator, worker and starter.
run: build bin/temporal
	go run ./demo --bin bin

# The same stack, tearing down an agent with 500 connections while its progress shows.
teardown: build bin/temporal
	go run ./demo --bin bin --teardown 500

# Benchmarks against baselines measured in the same run (bench/); figures go to docs/benchmarks.md.
bench: bin/temporal
	go test -run XXX -bench . -benchmem -benchtime 2000x ./activities/
	go run ./bench --out docs/benchmarks.md

# The fault suite (faults/, real processes), the teardown simulation over 2000 more seeds than
# make test runs (workflows/sim_test.go; about 7 minutes with -race on two cores, SIMSEEDS=3000
# for more), the restore simulation over as many more (workflows/simrestore_test.go; about four
# minutes), and bounded fuzzing of the parsers; results in docs/reliability.md.
FUZZTIME ?= 30s
SIMSEEDS ?= 2000
faults: bin/temporal
	go test -tags faults -count=1 -timeout 60m -v ./faults/
	go test -race -count=1 -timeout 30m -v -run 'TestSimulation$$' ./workflows/ -sim.first=201 -sim.seeds=$(SIMSEEDS)
	go test -race -count=1 -timeout 30m -v -run 'TestRestoreSimulation$$' ./workflows/ -simrestore.first=101 -simrestore.seeds=$(SIMSEEDS)
	go test -run XXX -fuzz FuzzValidateID -fuzztime $(FUZZTIME) .
	go test -run XXX -fuzz FuzzDescribeErrorBody -fuzztime $(FUZZTIME) ./internal/controlplane/
	go test -run XXX -fuzz FuzzParseRetryAfter -fuzztime $(FUZZTIME) ./internal/controlplane/

clean:
	rm -rf bin

FORCE:
