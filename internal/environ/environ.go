// Package environ is a process environment held as a value, in os.Environ form. The worker and
// the starter read their own settings and the SDK's TEMPORAL_* settings (envconfig) from the same
// Env, and tests pass their own without touching the process environment.
package environ

import "strings"

// Env is a process environment in os.Environ form. It implements envconfig.EnvLookup.
type Env []string

// Environ returns the variables in os.Environ form.
func (e Env) Environ() []string { return e }

// LookupEnv finds a variable; as with a real environment, the last definition wins.
func (e Env) LookupEnv(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
