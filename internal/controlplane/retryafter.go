package controlplane

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// parseRetryAfter reads a Retry-After header in either form RFC 9110 allows: a number of seconds,
// or an HTTP date. A date in the past gives 0 (retry now); an unreadable value gives ok false.
// The delay is capped at limit, so a broken or hostile header cannot park a removal for days.
func parseRetryAfter(value string, now time.Time, limit time.Duration) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(limit/time.Second) {
			return limit, true
		}
		d = time.Duration(secs) * time.Second
	} else {
		at, err := http.ParseTime(value)
		if err != nil {
			return 0, false
		}
		d = at.Sub(now)
		if d < 0 {
			d = 0
		}
	}
	if d > limit {
		d = limit
	}
	return d, true
}
