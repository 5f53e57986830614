// Package langsmithenv reads the LangSmith settings from the environment: the API key (or the file
// it is read from, or a bearer token), the workspace, and the control plane URL with its region
// rule. The worker reads them to remove connections; the starter reads the same ones, under the
// same names and aliases, to list an agent's connections for `--all --dry-run`.
//
// LangSmith's own tools name some of these settings differently: the SDKs and the LangSmith CLI
// call the workspace LANGSMITH_WORKSPACE_ID, langgraph-cli reads the control plane as
// LANGGRAPH_HOST_URL and LANGGRAPH_HOST_API_KEY. Those names are accepted as aliases, so an
// environment set up for those tools works as it is.
package langsmithenv

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/agentops/agentconnections/internal/controlplane"
)

// Names of the variables read here.
const (
	EnvAPIKey          = "LANGSMITH_API_KEY"
	EnvAPIKeyFile      = "LANGSMITH_API_KEY_FILE"
	EnvTenantID        = "LANGSMITH_TENANT_ID"
	EnvBearerToken     = "LANGSMITH_BEARER_TOKEN"
	EnvControlPlaneURL = "LANGSMITH_CONTROL_PLANE_URL"

	// Names LangSmith's own tools use: aliases, and the API endpoint whose region the control
	// plane URL is checked against.
	EnvWorkspaceID       = "LANGSMITH_WORKSPACE_ID"
	EnvHostURL           = "LANGGRAPH_HOST_URL"
	EnvHostAPIKey        = "LANGGRAPH_HOST_API_KEY"
	EnvLangSmithEndpoint = "LANGSMITH_ENDPOINT"
)

// DefaultControlPlaneURL is the control plane when none is set and LANGSMITH_ENDPOINT is not on the
// EU host.
const DefaultControlPlaneURL = "https://api.host.langchain.com"

// The LangSmith hosts whose region is known: the API LANGSMITH_ENDPOINT points at, and the control
// plane's. Anything else (self-hosted, a proxy) has no known region.
const (
	langSmithHostUS    = "api.smith.langchain.com"
	langSmithHostEU    = "eu.api.smith.langchain.com"
	controlPlaneHostUS = "api.host.langchain.com"
	controlPlaneHostEU = "eu.api.host.langchain.com"
	controlPlaneURLEU  = "https://" + controlPlaneHostEU
)

// SettingError names the variable that is missing, malformed or contradicted. Its message never
// holds a credential.
type SettingError struct {
	Name    string
	Problem string
}

func (e *SettingError) Error() string { return e.Name + ": " + e.Problem }

func problem(name, format string, args ...any) *SettingError {
	return &SettingError{Name: name, Problem: fmt.Sprintf(format, args...)}
}

// Note is what reading the settings chose or suspects, for the caller to log or print.
type Note struct {
	Warn    bool
	Msg     string
	Keyvals []any
}

// Env is the environment with the aliases resolved: an alias's value is seen under its primary
// name.
type Env struct {
	lookup func(string) (string, bool)
	setBy  map[string]string
}

// Resolve reads the aliases of lookup. An alias and its primary both set to different values is an
// error that names both and shows neither value (one may be a key). A value that is only
// whitespace counts as unset, as it does when the primary is read alone.
func Resolve(lookup func(string) (string, bool)) (*Env, error) {
	values := map[string]string{}
	setBy := map[string]string{}
	for _, a := range aliases() {
		p, pOK := lookup(a.primary)
		v, vOK := lookup(a.alias)
		pOK, vOK = pOK && strings.TrimSpace(p) != "", vOK && strings.TrimSpace(v) != ""
		switch {
		case pOK && vOK && !a.same(p, v):
			return nil, &SettingError{Name: a.primary + " and " + a.alias,
				Problem: "both set, to different values; " + a.alias + " is another name for " + a.primary + ": set one of them"}
		case !pOK && vOK:
			values[a.primary], setBy[a.primary] = v, a.alias
		}
	}
	return &Env{setBy: setBy, lookup: func(name string) (string, bool) {
		if v, ok := values[name]; ok {
			return v, true
		}
		return lookup(name)
	}}, nil
}

// Lookup is the environment's lookup, aliases resolved.
func (e *Env) Lookup(name string) (string, bool) { return e.lookup(name) }

// Get is the value of name, aliases resolved; empty when unset.
func (e *Env) Get(name string) string {
	v, _ := e.lookup(name)
	return v
}

// VarName is the variable a setting came from: name, or the alias it was set through.
func (e *Env) VarName(name string) string {
	if alias, ok := e.setBy[name]; ok {
		return alias
	}
	return name
}

// envAlias is another name for one of the variables. same says whether two values mean the same
// setting.
type envAlias struct {
	primary, alias string
	same           func(a, b string) bool
}

func aliases() []envAlias {
	return []envAlias{
		{EnvTenantID, EnvWorkspaceID, sameTrimmed},
		{EnvAPIKey, EnvHostAPIKey, sameTrimmed},
		{EnvControlPlaneURL, EnvHostURL, sameURL},
	}
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

// Credentials are the credentials the environment sets, and where the key came from.
type Credentials struct {
	controlplane.Credentials
	// KeyFile is the file the key was read from, to re-read it when it changes; empty when the key
	// came from LANGSMITH_API_KEY (or its alias) or only a bearer token is set.
	KeyFile string
	// KeyFileStamp is the file's state when the key was read from it.
	KeyFileStamp controlplane.FileStamp
}

// Set reports whether there is anything to authenticate with: an API key or a bearer token.
func (c Credentials) Set() bool { return c.APIKey != "" || c.BearerToken != "" }

// Credentials reads the API key (from the variable or its file), the tenant ID and the bearer
// token. None of them set is no error: see Credentials.Set. Its errors name variables and the key
// file's path, never a value.
func (e *Env) Credentials() (Credentials, error) {
	key := strings.TrimSpace(e.Get(EnvAPIKey))
	keyFile := e.Get(EnvAPIKeyFile)
	tenant := strings.TrimSpace(e.Get(EnvTenantID))
	bearer := strings.TrimSpace(e.Get(EnvBearerToken))

	for _, c := range []struct{ name, value string }{{e.VarName(EnvAPIKey), key}, {e.VarName(EnvTenantID), tenant}, {EnvBearerToken, bearer}} {
		if err := controlplane.CheckHeaderValue(c.value); err != nil {
			return Credentials{}, problem(c.name, "%v", err)
		}
	}
	var creds Credentials
	switch {
	case key != "" && keyFile != "":
		return Credentials{}, problem(EnvAPIKeyFile, "both %s and %s are set; set only one", e.VarName(EnvAPIKey), EnvAPIKeyFile)
	case keyFile != "":
		k, stamp, err := controlplane.LoadKeyFile(keyFile)
		if err != nil {
			return Credentials{}, problem(EnvAPIKeyFile, "%v", err)
		}
		key, creds.KeyFile, creds.KeyFileStamp = k, keyFile, stamp
	}
	creds.Credentials = controlplane.Credentials{APIKey: key, TenantID: tenant, BearerToken: bearer}
	return creds, nil
}

// ControlPlaneURL reads where the control plane is. Unset, it follows LANGSMITH_ENDPOINT's region
// (the EU control plane for the EU host, with a note saying so); set, it is checked against it (a
// warning when they are in different regions).
func (e *Env) ControlPlaneURL() (*url.URL, []Note, error) {
	var notes []Note
	endpoint, rawURL := e.Get(EnvLangSmithEndpoint), e.Get(EnvControlPlaneURL)
	if rawURL == "" {
		rawURL = DefaultControlPlaneURL
		if RegionOf(endpoint) == "EU" {
			rawURL = controlPlaneURLEU
			notes = append(notes, Note{Msg: "no control plane URL set and " + EnvLangSmithEndpoint +
				" is on the EU host: using the EU control plane", Keyvals: []any{"control_plane_host", controlPlaneHostEU}})
		}
	} else if n, ok := regionMismatch(endpoint, rawURL, e.VarName(EnvControlPlaneURL)); ok {
		notes = append(notes, n)
	}
	u, err := controlplane.ParseBaseURL(rawURL)
	if err != nil {
		// ParseBaseURL never repeats user info, so a URL with a password in it stays out of the message.
		return nil, nil, problem(e.VarName(EnvControlPlaneURL), "%v", err)
	}
	return u, notes, nil
}

// RegionOf is "US" or "EU" for a known LangSmith or control plane URL, else "".
func RegionOf(rawURL string) string {
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

// regionMismatch is the warning when LANGSMITH_ENDPOINT and the control plane URL are in different
// regions.
func regionMismatch(endpoint, controlPlane, controlPlaneVar string) (Note, bool) {
	er, cr := RegionOf(endpoint), RegionOf(controlPlane)
	if er == "" || cr == "" || er == cr {
		return Note{}, false
	}
	return Note{Warn: true,
		Msg: EnvLangSmithEndpoint + " is in one region and " + controlPlaneVar + " in the other; " +
			"a LangSmith key works in its own region only, so check which one is meant",
		Keyvals: []any{"langsmith_endpoint_region", er, "control_plane_region", cr}}, true
}

// NoWorkspace is the warning when an API key is sent without a workspace: a key that reaches
// several workspaces needs X-Tenant-Id to say which.
func NoWorkspace(creds Credentials) (Note, bool) {
	if creds.TenantID != "" || (creds.APIKey == "" && creds.KeyFile == "") {
		return Note{}, false
	}
	return Note{Warn: true,
		Msg: "no workspace set (" + EnvWorkspaceID + " or " + EnvTenantID + "): requests carry no X-Tenant-Id, " +
			"which a key with access to several workspaces needs"}, true
}
