package main

import (
	"net/url"
	"strings"

	"go.temporal.io/sdk/log"
)

// LangSmith's own tools name some of the worker's settings differently: the SDKs and the
// LangSmith CLI call the workspace LANGSMITH_WORKSPACE_ID, langgraph-cli reads the control plane
// as LANGGRAPH_HOST_URL and LANGGRAPH_HOST_API_KEY. The worker accepts those names as aliases, so
// an environment set up for those tools works as it is.

// envAlias is another name for one of the worker's variables. same says whether two values mean
// the same setting.
type envAlias struct {
	primary, alias string
	same           func(a, b string) bool
}

func sameTrimmed(a, b string) bool { return strings.TrimSpace(a) == strings.TrimSpace(b) }

// sameURL compares two control plane URLs as URLs: the scheme and the host in any case, the path
// exactly but for trailing slashes. A value that does not parse compares as text.
func sameURL(a, b string) bool {
	return canonicalURL(a) == canonicalURL(b)
}

func canonicalURL(raw string) string {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return strings.TrimRight(raw, "/")
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), strings.TrimRight(u.RawPath, "/")
	return u.String()
}

func langSmithAliases() []envAlias {
	return []envAlias{
		{envTenantID, envWorkspaceID, sameTrimmed},
		{envAPIKey, envHostAPIKey, sameTrimmed},
		{envControlPlaneURL, envHostURL, sameURL},
	}
}

// resolveAliases returns a lookup in which an alias's value is seen under its primary name, and
// the name each primary's value was set under (for messages). An alias and its primary both set
// to different values is an error that names both and shows neither value (one may be a key). A
// value that is only whitespace counts as unset, as it does when the primary is read alone.
func resolveAliases(lookup func(string) (string, bool)) (func(string) (string, bool), map[string]string, error) {
	values := map[string]string{}
	setBy := map[string]string{}
	for _, a := range langSmithAliases() {
		p, pOK := lookup(a.primary)
		v, vOK := lookup(a.alias)
		pOK, vOK = pOK && strings.TrimSpace(p) != "", vOK && strings.TrimSpace(v) != ""
		switch {
		case pOK && vOK && !a.same(p, v):
			return nil, nil, &configError{name: a.primary + " and " + a.alias,
				problem: "both set, to different values; " + a.alias + " is another name for " + a.primary + ": set one of them"}
		case !pOK && vOK:
			values[a.primary], setBy[a.primary] = v, a.alias
		}
	}
	return func(name string) (string, bool) {
		if v, ok := values[name]; ok {
			return v, true
		}
		return lookup(name)
	}, setBy, nil
}

// The LangSmith hosts whose region the worker knows: the API LANGSMITH_ENDPOINT points at, and
// the control plane's. Anything else (self-hosted, a proxy) has no known region.
const (
	langSmithHostUS    = "api.smith.langchain.com"
	langSmithHostEU    = "eu.api.smith.langchain.com"
	controlPlaneHostUS = "api.host.langchain.com"
	controlPlaneHostEU = "eu.api.host.langchain.com"
	controlPlaneURLEU  = "https://" + controlPlaneHostEU
)

// regionOf is "US" or "EU" for a known LangSmith or control plane URL, else "".
func regionOf(rawURL string) string {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return ""
	}
	switch strings.ToLower(u.Hostname()) {
	case langSmithHostUS, controlPlaneHostUS:
		return "US"
	case langSmithHostEU, controlPlaneHostEU:
		return "EU"
	}
	return ""
}

// note is a line logged once the logger exists: what the configuration chose or suspects.
type note struct {
	warn    bool
	msg     string
	keyvals []any
}

// pickControlPlaneURL is the control plane URL when none is set: the EU one when
// LANGSMITH_ENDPOINT is on the EU host (an EU key is refused in the US), else the US default.
func pickControlPlaneURL(endpoint string, cfg *config) string {
	if regionOf(endpoint) != "EU" {
		return defaultControlPlaneURL
	}
	cfg.notes = append(cfg.notes, note{msg: "no control plane URL set and " + envLangSmithEndpoint +
		" is on the EU host: using the EU control plane", keyvals: []any{"control_plane_host", controlPlaneHostEU}})
	return controlPlaneURLEU
}

// checkRegions warns when LANGSMITH_ENDPOINT and the control plane URL are in different regions.
func checkRegions(endpoint, controlPlane, controlPlaneVar string, cfg *config) {
	er, cr := regionOf(endpoint), regionOf(controlPlane)
	if er == "" || cr == "" || er == cr {
		return
	}
	cfg.notes = append(cfg.notes, note{warn: true,
		msg: envLangSmithEndpoint + " is in one region and " + controlPlaneVar + " in the other; " +
			"a LangSmith key works in its own region only, so check which one is meant",
		keyvals: []any{"langsmith_endpoint_region", er, "control_plane_region", cr}})
}

// noteNoWorkspace warns when an API key is sent without a workspace: a key that reaches several
// workspaces needs X-Tenant-Id to say which.
func noteNoWorkspace(cfg *config) {
	if cfg.Credentials.TenantID != "" || (cfg.Credentials.APIKey == "" && cfg.APIKeyFile == "") {
		return
	}
	cfg.notes = append(cfg.notes, note{warn: true,
		msg: "no workspace set (" + envWorkspaceID + " or " + envTenantID + "): requests carry no X-Tenant-Id, " +
			"which a key with access to several workspaces needs"})
}

// logNotes logs what loadConfig noted, once the logger exists.
func logNotes(logger log.Logger, cfg config) {
	for _, n := range cfg.notes {
		if n.warn {
			logger.Warn(n.msg, n.keyvals...)
		} else {
			logger.Info(n.msg, n.keyvals...)
		}
	}
}
