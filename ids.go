package agentconnections

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxIDBytes is the longest agent or connection ID accepted.
const MaxIDBytes = 256

// ErrInvalidID is wrapped by every error ValidateID returns.
var ErrInvalidID = errors.New("invalid id")

// ValidateID checks an agent or connection ID before it goes into a URL path. It refuses IDs that
// are empty, longer than MaxIDBytes, "." or "..", or that contain '/', '\', whitespace, control
// characters, '?', '#' or '%': many servers decode an escaped slash before routing, so such an ID
// could reach another route, and that route's 404 would read as "already absent". It also refuses
// bytes that are not UTF-8, which JSON (and so workflow history) cannot carry faithfully. Every
// other ID is valid and is path-escaped when the URL is built. field names the
// ID in the error ("agent_id", "connection_id"); the error never repeats an over-long ID in full.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, field)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: %s is %d bytes long, the limit is %d", ErrInvalidID, field, len(id), MaxIDBytes)
	case id == "." || id == "..":
		return fmt.Errorf("%w: %s %q is a path segment, not an id", ErrInvalidID, field, id)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidID, field)
	}
	for i, r := range id {
		if r == '/' || r == '\\' || r == '?' || r == '#' || r == '%' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q contains %q at byte %d", ErrInvalidID, field, id, r, i)
		}
	}
	return nil
}

// JSONBytes is how many bytes s takes as a JSON string, quotes included, as encoding/json writes
// it: '"' takes two bytes, and '<', '>', '&' and the line and paragraph separators U+2028 and
// U+2029 take six each (ValidateID accepts them). The byte bounds of this contract
// (MaxGivenConnectionBytes, the report's pages) count these bytes, since that is what reaches
// Temporal.
func JSONBytes(s string) int {
	n := 2
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
			n += 2
		case r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029' || r < 0x20:
			n += 6
		default:
			n += utf8.RuneLen(r)
		}
	}
	return n
}
