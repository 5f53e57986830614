package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	ac "github.com/agentops/agentconnections"
)

// Body kinds for Fault.Body.
const (
	// BodyJSON is the default: {"detail": "<Detail or status text>"} as FastAPI writes it.
	BodyJSON = "json"
	// BodyTruncated is the first half of the JSON body, still labelled application/json.
	BodyTruncated = "truncated"
	// BodyText is the detail as text/plain, as proxies answer.
	BodyText = "text"
	// BodyHTML is an nginx-style HTML error page.
	BodyHTML = "html"
	// BodyEmpty sends no body at all.
	BodyEmpty = "empty"
)

// Fault is one deterministic misbehaviour, queued by InjectNext or POST /_emulator/faults. It
// applies to the next Count API requests that match every filter that is set (Method, Route,
// AgentID, ConnectionID). A request answered by a fault is not served: a DELETE removes nothing.
//
// In JSON (the control API) the fields are status, count, method, route, agent_id,
// connection_id, retry_after (string or number), retry_after_date, detail, body, delay (a Go
// duration string such as "20ms", or a number of seconds), hang, reset and served.
type Fault struct {
	// Status is the status answered instead of serving the request (200-599). Zero means the
	// request is served normally after Delay, so a fault can be only a delay.
	Status int
	// Count is how many matching requests the fault applies to; zero means 1.
	Count int

	// Method limits the fault to one HTTP method (case-insensitive), e.g. "DELETE".
	Method string
	// Route limits the fault to one route: RouteList, RouteCreate or RouteRemove.
	Route string
	// AgentID limits the fault to one agent.
	AgentID string
	// ConnectionID limits the fault to one connection ID (so to DELETE requests).
	ConnectionID string

	// RetryAfter is sent as the Retry-After header: a number of seconds, sent as is (any text is
	// allowed, to test lenient clients), unless RetryAfterDate is set.
	RetryAfter string
	// RetryAfterDate sends Retry-After as an HTTP date RetryAfter seconds from now (1 second when
	// RetryAfter is empty).
	RetryAfterDate bool
	// Detail replaces the status text in the body.
	Detail string
	// Body is the body kind: BodyJSON (default), BodyTruncated, BodyText, BodyHTML or BodyEmpty.
	Body string

	// Delay is waited before answering (or serving, when Status is zero); the wait ends if the
	// client gives up.
	Delay time.Duration
	// Hang holds the request until the client gives up or the Server is closed (which drops the
	// connection); it is never answered.
	Hang bool
	// Reset closes the connection without an answer.
	Reset bool
	// Served serves the request first (a POST creates its connection, a DELETE removes), then
	// loses its answer: Status answers instead, or Hang holds it, or Reset cuts it off. It is how a
	// test loses the answer of a request that took effect.
	Served bool
}

// Validate reports the first problem with the fault, if any.
func (f Fault) Validate() error {
	if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		return fmt.Errorf("fault status %d is outside 200-599", f.Status)
	}
	if f.Count < 0 {
		return fmt.Errorf("fault count %d is negative", f.Count)
	}
	if f.Delay < 0 {
		return fmt.Errorf("fault delay %s is negative", f.Delay)
	}
	switch f.Route {
	case "", RouteList, RouteCreate, RouteRemove:
	default:
		return fmt.Errorf("fault route %q is not one of %s, %s, %s", f.Route, RouteList, RouteCreate, RouteRemove)
	}
	switch f.Body {
	case "", BodyJSON, BodyTruncated, BodyText, BodyHTML, BodyEmpty:
	default:
		return fmt.Errorf("fault body %q is not one of %s, %s, %s, %s, %s", f.Body, BodyJSON, BodyTruncated, BodyText, BodyHTML, BodyEmpty)
	}
	if f.RetryAfterDate && f.RetryAfter != "" {
		if n, err := strconv.Atoi(f.RetryAfter); err != nil || n < 0 {
			return fmt.Errorf("fault retry_after %q must be a whole number of seconds with retry_after_date", f.RetryAfter)
		}
	}
	if f.Served && f.Status == 0 && !f.Hang && !f.Reset {
		return fmt.Errorf("a served fault needs a status, hang or reset to lose the answer with")
	}
	if strings.ContainsAny(f.RetryAfter, "\r\n") {
		return fmt.Errorf("fault retry_after contains a line break")
	}
	return nil
}

func (f Fault) matches(method string, info *reqInfo) bool {
	return (f.Method == "" || strings.EqualFold(f.Method, method)) &&
		(f.Route == "" || f.Route == info.route) &&
		(f.AgentID == "" || f.AgentID == info.agentID) &&
		(f.ConnectionID == "" || f.ConnectionID == info.connectionID)
}

func (f Fault) retryAfterValue(now time.Time) string {
	if !f.RetryAfterDate {
		return f.RetryAfter
	}
	n := 1
	if f.RetryAfter != "" {
		n, _ = strconv.Atoi(f.RetryAfter)
	}
	return now.Add(time.Duration(n) * time.Second).UTC().Format(http.TimeFormat)
}

type faultJSON struct {
	Status         int             `json:"status,omitempty"`
	Count          int             `json:"count,omitempty"`
	Method         string          `json:"method,omitempty"`
	Route          string          `json:"route,omitempty"`
	AgentID        string          `json:"agent_id,omitempty"`
	ConnectionID   string          `json:"connection_id,omitempty"`
	RetryAfter     json.RawMessage `json:"retry_after,omitempty"`
	RetryAfterDate bool            `json:"retry_after_date,omitempty"`
	Detail         string          `json:"detail,omitempty"`
	Body           string          `json:"body,omitempty"`
	Delay          *ac.Duration    `json:"delay,omitempty"`
	Hang           bool            `json:"hang,omitempty"`
	Reset          bool            `json:"reset,omitempty"`
	Served         bool            `json:"served,omitempty"`
}

// MarshalJSON writes the fault in the control API's shape.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{
		Status: f.Status, Count: f.Count, Method: f.Method, Route: f.Route, AgentID: f.AgentID,
		ConnectionID: f.ConnectionID, RetryAfterDate: f.RetryAfterDate, Detail: f.Detail,
		Body: f.Body, Hang: f.Hang, Reset: f.Reset, Served: f.Served,
	}
	if f.RetryAfter != "" {
		j.RetryAfter = marshal(f.RetryAfter)
	}
	if f.Delay != 0 {
		d := ac.Duration(f.Delay)
		j.Delay = &d
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the control API's shape, refusing unknown fields so typos do not pass as
// "no filter".
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := decodeStrict(b, &j); err != nil {
		return err
	}
	*f = Fault{
		Status: j.Status, Count: j.Count, Method: j.Method, Route: j.Route, AgentID: j.AgentID,
		ConnectionID: j.ConnectionID, RetryAfterDate: j.RetryAfterDate, Detail: j.Detail,
		Body: j.Body, Hang: j.Hang, Reset: j.Reset, Served: j.Served,
	}
	if len(j.RetryAfter) > 0 {
		var s string
		var n json.Number
		switch {
		case json.Unmarshal(j.RetryAfter, &s) == nil:
			f.RetryAfter = s
		case json.Unmarshal(j.RetryAfter, &n) == nil:
			f.RetryAfter = n.String()
		default:
			return fmt.Errorf("retry_after: want a string or a number")
		}
	}
	if j.Delay != nil {
		f.Delay = j.Delay.D()
	}
	return nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
