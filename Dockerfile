# The agent-connections images, static binaries on a distroless base that runs as nonroot:
#
#   worker (the default target, last in this file): the production image, with the worker (the
#     entrypoint) and the starter CLI, and nothing else;
#   emulator: the local control plane emulator, for the compose stack and tests only. It is built
#     in a stage of its own, so the production image neither ships nor even compiles it.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t agent-connections .
#   docker build --target emulator -t agent-connections-emulator .
#
# docker-compose.yml builds the worker target for the worker and starter services and the emulator
# target for the emulator; deploy/dockerfile_test.go checks this file and runs its go build commands.

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
 && GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/starter ./starter

# The emulator, on top of the build stage (its modules and sources), only for the emulator target.
# ARGs do not carry over from one stage to the next; ENV (CGO_ENABLED) does.
FROM build AS build-emulator
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=${VERSION}" -o /out/emulator ./emulator/cmd/emulator

FROM ${RUNTIME_IMAGE} AS emulator
ARG VERSION=dev
LABEL org.opencontainers.image.title="agent-connections-emulator" \
      org.opencontainers.image.description="A local LangSmith Deployment Control Plane (the agent-connection routes) with fault injection, for trying and testing the agent-connections worker; not for production" \
      org.opencontainers.image.source="https://github.com/agentops/agentconnections" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-emulator /out/emulator /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8765
ENTRYPOINT ["/usr/local/bin/emulator"]

# The production image. Last, so a plain docker build (no --target) builds it.
FROM ${RUNTIME_IMAGE} AS worker
ARG VERSION=dev
LABEL org.opencontainers.image.title="agent-connections" \
      org.opencontainers.image.description="Temporal worker that removes agent connections through the LangSmith Deployment Control Plane API, with its starter CLI" \
      org.opencontainers.image.source="https://github.com/agentops/agentconnections" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/worker /out/starter /usr/local/bin/
USER nonroot:nonroot
# WORKER_HTTP_ADDRESS: /metrics, /healthz, /readyz. The worker's default listens on 127.0.0.1 only;
# in a container set WORKER_HTTP_ADDRESS=0.0.0.0:9090 (docker-compose.yml and the Kubernetes
# manifests do).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
