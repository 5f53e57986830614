// Package deploy holds the tests of the deployment files: docker-compose.yml and the Dockerfile at
// the repository root, prometheus.yml, stack.env and secrets/ in this folder, and the Kubernetes
// manifests in kubernetes/. The tests load the compose file the way docker compose does (with
// compose-go), decode each Kubernetes manifest strictly into the Kubernetes API types, read the
// worker's variable names from its source, and check that the pieces fit together (service names,
// ports, probes, secrets, health checks, selectors), that no credential is written inline, and that
// the Dockerfile's go build commands build. They need no Docker engine and no cluster.
package deploy
