package controlplane

import "strings"

// redacted replaces a credential in text that came from the server.
const redacted = "[REDACTED]"

// minCutSecret is the shortest start of a secret that redactSecrets removes at a cut: shorter
// tails carry too little of a key to matter and would often match ordinary text.
const minCutSecret = 4

// redactSecrets replaces every non-empty secret in s with [REDACTED], and also the start of one
// that an excerpt cut off. Error bodies are clipped (clip, ClipTo) before the message that holds
// them is redacted, so a key echoed across the cut would otherwise leave its first bytes behind;
// every cut ends with ellipsis, which is how they are found.
func redactSecrets(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, redacted)
			s = redactCutSecret(s, secret)
		}
	}
	return s
}

// redactCutSecret replaces the longest start of secret (minCutSecret bytes or more) that ends
// right before an ellipsis, at each ellipsis in s.
func redactCutSecret(s, secret string) string {
	if len(secret) <= minCutSecret || !strings.Contains(s, ellipsis) {
		return s
	}
	var b strings.Builder
	for {
		before, after, found := strings.Cut(s, ellipsis)
		for n := min(len(secret)-1, len(before)); n >= minCutSecret; n-- {
			if strings.HasSuffix(before, secret[:n]) {
				before = before[:len(before)-n] + redacted
				break
			}
		}
		b.WriteString(before)
		if !found {
			return b.String()
		}
		b.WriteString(ellipsis)
		s = after
	}
}
