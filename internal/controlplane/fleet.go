package controlplane

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// The methods below let the replicas that share a key divide its budget (internal/fleet): each
// sets its own share of the pace, and a 429 one of them gets pauses the others too.

// SetPace sets the steady limit and burst of every request this client sends, replacing
// Config.RequestsPerSecond and Burst. It does nothing when the client was built without a steady
// limit (RequestsPerSecond 0) or perSecond is not positive.
func (c *Client) SetPace(perSecond float64, burst int) { c.pacer.setRate(perSecond, burst) }

// Pace is the steady limit and burst in force; 0, 0 without a steady limit.
func (c *Client) Pace() (perSecond float64, burst int) { return c.pacer.rateNow() }

// PauseFor holds every request back for d from now, as a 429's Retry-After does (a longer pause
// already set stays). It does not call Config.OnRateLimited.
func (c *Client) PauseFor(d time.Duration) { c.pacer.pause(d) }

// Demand is how many requests (first or retried) have asked the pacer for a turn since the client
// was built, and how many are waiting for one now: the fleet budget gives a replica with requests
// to send a larger share than an idle one.
func (c *Client) Demand() (asked uint64, waiting int) { return c.pacer.demand() }

// PausedFor is how long requests are still held back by a 429 pause; 0 when they are not.
func (c *Client) PausedFor() time.Duration { return c.pacer.pausedFor() }

// credentialTagLen is how many bytes of the HMAC a tag keeps: 8 bytes, 16 hex digits.
const credentialTagLen = 8

// CredentialTag is a short keyed hash naming the credential requests are sent with now: the
// HMAC-SHA256 of label keyed with the API key (with the bearer token and tenant when set), cut to
// 16 hex digits. Only a holder of the credential can compute it, and it cannot be turned back
// into the credential, so it may appear in workflow IDs; replicas that share a key get the same
// tag, a rotated key gets another. docs/fleet-budget.md says why it is safe.
func (c *Client) CredentialTag(label string) (string, error) {
	creds, err := c.creds.Credentials()
	if err != nil {
		return "", errNoCredentials
	}
	if creds.APIKey == "" && creds.BearerToken == "" {
		return "", errors.New("no control plane credentials to name")
	}
	return credentialTag(creds, label), nil
}

func credentialTag(creds Credentials, label string) string {
	// Length-prefixed fields, so that no two different credentials give the same HMAC key.
	var key []byte
	for _, f := range []string{creds.APIKey, creds.BearerToken, creds.TenantID} {
		key = binary.BigEndian.AppendUint32(key, uint32(len(f)))
		key = append(key, f...)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(label))
	return hex.EncodeToString(mac.Sum(nil)[:credentialTagLen])
}
