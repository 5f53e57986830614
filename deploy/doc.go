// Package deploy holds the tests of the deployment files: docker-compose.yml and the Dockerfile at
// the repository root, and prometheus.yml, stack.env and secrets/ in this folder. The tests load
// the compose file the way docker compose does (with compose-go), read the worker's variable names
// from its source, and check that the pieces fit together (service names, ports, secrets, health
// checks), that no credential is written inline, and that the Dockerfile's go build commands build.
// They need no Docker engine.
package deploy
