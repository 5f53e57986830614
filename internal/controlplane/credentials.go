package controlplane

import "fmt"

// Credentials are what the control plane authenticates a request with. They stay inside the
// worker: never in workflow input, results, errors, heartbeats, logs or metrics.
type Credentials struct {
	APIKey      string // sent as X-Api-Key when set
	TenantID    string // sent as X-Tenant-Id when set
	BearerToken string // sent as Authorization: Bearer when set
}

// String never prints a credential, so a stray %v cannot leak one.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{api_key_set=%t tenant_id_set=%t bearer_token_set=%t}",
		c.APIKey != "", c.TenantID != "", c.BearerToken != "")
}

// GoString keeps %#v as safe as %v.
func (c Credentials) GoString() string { return c.String() }

// CredentialSource returns the credentials to send with the next request. A source may re-read a
// rotated key; it is called once per request.
type CredentialSource interface {
	Credentials() (Credentials, error)
}

// StaticCredentials is a CredentialSource that never changes.
type StaticCredentials Credentials

// Credentials returns the fixed credentials.
func (s StaticCredentials) Credentials() (Credentials, error) { return Credentials(s), nil }

// String never prints a credential.
func (s StaticCredentials) String() string { return Credentials(s).String() }

// GoString keeps %#v as safe as %v.
func (s StaticCredentials) GoString() string { return s.String() }
