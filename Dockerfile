# The agent-connections image: the worker (the entrypoint), the starter CLI and the control plane
# emulator, as static binaries on a distroless base that runs as nonroot.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t agent-connections .
#
# docker-compose.yml builds it for the worker, starter and emulator services; deploy/compose_test.go
# checks this file and runs its go build commands.

# Base images, pinned here and nowhere else. GO_IMAGE follows the go directive in go.mod (the test
# checks they agree). Distroless publishes no versioned tags: for a byte-for-byte reproducible
# image pin it by digest, e.g. --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:...
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The build runs on the builder's own platform and cross-compiles (pure Go, no cgo), so a
# multi-platform build (docker buildx build --platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# Declared after the module layer, so a new VERSION or platform reuses it. BuildKit (the builder of
# docker build and docker compose) sets TARGETOS and TARGETARCH; empty, go builds for its own platform.
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/worker ./worker \
 && GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/starter ./starter \
 && GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/emulator ./emulator/cmd/emulator

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="agent-connections" \
      org.opencontainers.image.description="Temporal worker that removes agent connections through the LangSmith Deployment Control Plane API, with its starter CLI and a local control plane emulator" \
      org.opencontainers.image.source="https://github.com/agentops/agentconnections" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/worker /out/starter /out/emulator /usr/local/bin/
USER nonroot:nonroot
# WORKER_HTTP_ADDRESS: /metrics, /healthz, /readyz. The worker's default listens on 127.0.0.1 only;
# in a container set WORKER_HTTP_ADDRESS=0.0.0.0:9090 (docker-compose.yml does).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
