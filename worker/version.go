package main

import (
	"runtime/debug"
)

// version is set at link time: go build -ldflags "-X main.version=v1.2.3". It is the only
// package-level variable, written by the linker and never at run time.
var version string

// resolveVersion prefers the linked version, then the module version the go command stamped
// (go install module@version), then the VCS revision, then "devel".
func resolveVersion(linked string, readBuildInfo func() (*debug.BuildInfo, bool)) string {
	if linked != "" {
		return linked
	}
	info, ok := readBuildInfo()
	if !ok || info == nil {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var revision string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision == "" {
		return "devel"
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if modified {
		revision += "-dirty"
	}
	return revision
}
