package activities

import "strings"

// redactSecrets replaces every non-empty secret in s with [REDACTED].
func redactSecrets(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}
