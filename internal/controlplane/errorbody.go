package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxExcerpt bounds how much of a body goes into an error message.
const maxExcerpt = 512

// ellipsis ends every cut text. redactSecrets relies on it to find a credential that a cut split.
const ellipsis = "…"

// readBody reads at most limit bytes of body and reports whether more was left.
func readBody(body io.Reader, limit int64) (data []byte, truncated bool, err error) {
	data, err = io.ReadAll(io.LimitReader(body, limit+1))
	if int64(len(data)) > limit {
		return data[:limit], true, err
	}
	return data, false, err
}

// fastAPIError is the body FastAPI sends: detail is a list of validation errors (422) or a string
// (404 and most others).
type fastAPIError struct {
	Detail json.RawMessage `json:"detail"`
}

type validationItem struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// describeErrorBody turns an error body into one readable line: each detail[].loc and msg for a
// validation list, the detail string when it is one, otherwise a bounded excerpt of the raw body
// saying why it could not be read. It never fails: a broken body still gives a clear message.
func describeErrorBody(body []byte, truncated bool) string {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return "empty body"
	}
	if truncated {
		return "body over the size limit, starts: " + excerpt(trimmed)
	}
	var e fastAPIError
	if err := json.Unmarshal(trimmed, &e); err != nil {
		return "body is not JSON: " + excerpt(trimmed)
	}
	if len(e.Detail) == 0 || string(e.Detail) == "null" {
		return "body has no detail: " + excerpt(trimmed)
	}
	var s string
	if err := json.Unmarshal(e.Detail, &s); err == nil {
		if strings.TrimSpace(s) == "" {
			return "detail is an empty string: " + excerpt(trimmed)
		}
		return clip(s)
	}
	var items []validationItem
	if err := json.Unmarshal(e.Detail, &items); err != nil {
		return "detail is neither a string nor a list: " + excerpt(e.Detail)
	}
	if len(items) == 0 {
		return "detail is an empty list"
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		parts = append(parts, fmt.Sprintf("%s: %s", formatLoc(it.Loc), it.Msg))
	}
	return clip(strings.Join(parts, "; "))
}

// formatLoc renders ["path","connection_id"] or ["body","items",0] as path.connection_id and
// body.items[0].
func formatLoc(loc []any) string {
	if len(loc) == 0 {
		return "(no loc)"
	}
	var b strings.Builder
	for i, part := range loc {
		switch v := part.(type) {
		case float64:
			fmt.Fprintf(&b, "[%v]", v)
		case string:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			fmt.Fprintf(&b, "%v", v)
		}
	}
	return b.String()
}

// excerpt is a bounded, printable piece of a body for an error message.
func excerpt(b []byte) string {
	return clip(strings.ToValidUTF8(string(b), "\uFFFD"))
}

// clip bounds s to maxExcerpt bytes without splitting a rune and quotes control characters. A cut
// ends with ellipsis; see redactSecrets for why that matters.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= maxExcerpt {
		return s
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ClipTo bounds s to limit bytes, the ellipsis included, without splitting a rune. The cut ends
// with the same ellipsis as every excerpt, so a credential it splits is still found by the
// redaction that runs over the text afterwards.
func ClipTo(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := max(limit-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
