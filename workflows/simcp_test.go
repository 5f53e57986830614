package workflows

// The scripted control plane of the teardown simulation (sim_test.go): an http.Handler whose
// answers are drawn from the schedule's seed, and a client transport that records, for every
// DELETE, which batch attempt sent it, when it left and what the client got back.

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	ac "github.com/agentops/agentconnections"
)

// simDelete is one DELETE request, as the client sent it and the control plane answered it.
type simDelete struct {
	id      int64
	conn    string
	attempt *simAttempt // the batch attempt that sent it; nil for a standalone removal's request
	// client side
	start, end time.Time
	status     int  // the answer the client got, 0 when none came
	cutOff     bool // the client got no answer (it gave up, or the connection broke)
	// control plane side
	arrived bool
	answer  int  // the status the control plane chose (0 while it hangs)
	hung    bool // it hung past the client's timeout
	applied bool // this request removed the connection
}

// final reports whether the client got an answer that ends the connection's removal.
func (d *simDelete) final() bool {
	switch d.status {
	case http.StatusNoContent, http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusBadRequest,
		http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// simList is one GET of the agent's connections.
type simList struct {
	status    int
	ids       []string // what a 200 listed
	verifying bool     // sent after the first DELETE, or with given connections
}

// simCP is the scripted control plane of one schedule.
type simCP struct {
	sch     *simSchedule
	key     string
	agentID string

	mu       sync.Mutex
	exists   map[string]bool // the agent's current connections
	requests map[string]int  // DELETEs per connection, any source
	deletes  map[int64]*simDelete
	order    []*simDelete
	nextID   int64
	total    int // DELETEs that arrived
	refused  bool
	// refusedAt is when a client first got a 401 or 403 to a DELETE.
	refusedAt    time.Time
	lists        []simList
	listFails    int // transient list failures served so far
	appeared     []string
	appearedOnce bool
	vanishAfter  []string // removed by "someone else" when the first DELETE arrives
}

func newSimCP(sch *simSchedule, key string) *simCP {
	cp := &simCP{
		sch: sch, key: key, agentID: sch.agentID,
		exists: map[string]bool{}, requests: map[string]int{}, deletes: map[int64]*simDelete{},
	}
	for _, id := range sch.existing {
		cp.exists[id] = true
	}
	cp.vanishAfter = sch.vanish
	return cp
}

// draw is the random source for the n-th request of one connection: the same (seed, connection,
// n) always draws the same answer, whatever order concurrent requests arrive in.
func (cp *simCP) draw(conn string, n int) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(conn))
	return rand.New(rand.NewPCG(cp.sch.seed, h.Sum64()^uint64(n)*0x9e3779b97f4a7c15))
}

func (cp *simCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Api-Key") != cp.key {
		simJSON(w, http.StatusUnauthorized, `{"detail":"missing or wrong X-Api-Key"}`)
		return
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(segs) < 5 || segs[0] != "v2" || segs[1] != "auth" || segs[2] != "agents" || segs[4] != "connections" {
		simJSON(w, http.StatusNotFound, `{"detail":"Not Found"}`)
		return
	}
	agent, _ := url.PathUnescape(segs[3])
	switch {
	case r.Method == http.MethodGet && len(segs) == 5:
		cp.serveList(w, agent)
	case r.Method == http.MethodDelete && len(segs) == 6:
		conn, _ := url.PathUnescape(segs[5])
		cp.serveDelete(w, r, agent, conn)
	default:
		simJSON(w, http.StatusMethodNotAllowed, `{"detail":"Method Not Allowed"}`)
	}
}

func simJSON(w http.ResponseWriter, status int, body string) {
	if body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// errorBody is a FastAPI-style detail string; with echoKey the control plane misbehaves and
// echoes the request's key in it, somewhere a clipped excerpt may cut through.
func (cp *simCP) errorBody(r *rand.Rand, detail string) string {
	if cp.sch.echoKey && r.IntN(2) == 0 {
		detail = strings.Repeat("x", r.IntN(700)) + " request headers: X-Api-Key: " + cp.key + " " + detail
	}
	b, _ := json.Marshal(map[string]string{"detail": detail})
	return string(b)
}

func (cp *simCP) serveList(w http.ResponseWriter, agent string) {
	cp.mu.Lock()
	n := len(cp.lists)
	r := cp.draw("\x00list", n)
	// Lists after the first DELETE verify; the ones before are the teardown's own listing, page
	// by page (given connections too: it lists them for their snapshots).
	verifying := cp.total > 0
	var status int
	var body string
	var listed []string
	switch {
	case cp.refused:
		status, body = cp.sch.refuseStatus, cp.errorBody(r, "Invalid API key")
	case agent != cp.agentID || (!verifying && cp.sch.list404First):
		status, body = http.StatusNotFound, `{"detail":"Agent not found."}`
	case verifying && cp.sch.list404Verify:
		status, body = http.StatusNotFound, `{"detail":"Agent not found."}`
	case cp.listFails < cp.sch.listTransient && r.IntN(2) == 0:
		cp.listFails++
		status, body = http.StatusServiceUnavailable, cp.errorBody(r, "list unavailable")
		if r.IntN(2) == 0 {
			// The connection breaks in the middle of a 200's body.
			cp.lists = append(cp.lists, simList{status: -1, verifying: verifying})
			cp.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "4096")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"data":[{"id":"`))
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			panic(http.ErrAbortHandler)
		}
	default:
		if verifying && !cp.appearedOnce && cp.sch.appear > 0 {
			cp.appearedOnce = true
			if r.Float64() < cp.sch.appear {
				for i := range 1 + r.IntN(3) {
					id := fmt.Sprintf("appeared-%d", i)
					cp.exists[id] = true
					cp.appeared = append(cp.appeared, id)
				}
			}
		}
		status = http.StatusOK
		type entry struct {
			ID           string   `json:"id"`
			Name         string   `json:"name"`
			OAuthTokenID string   `json:"oauth_token_id,omitempty"`
			ProviderID   string   `json:"provider_id,omitempty"`
			Scopes       []string `json:"scopes,omitempty"`
		}
		data := []entry{} // an empty agent lists [], as the API does; null is refused
		for id := range cp.exists {
			listed = append(listed, id)
		}
		slices.Sort(listed)
		r.Shuffle(len(listed), func(i, j int) { listed[i], listed[j] = listed[j], listed[i] })
		for _, id := range listed {
			snap := simSnapshot(id)
			data = append(data, entry{ID: id, Name: "connection", OAuthTokenID: snap.OAuthTokenID, ProviderID: snap.ProviderID, Scopes: snap.Scopes})
		}
		b, _ := json.Marshal(map[string]any{"data": data})
		body = string(b)
	}
	cp.lists = append(cp.lists, simList{status: status, ids: listed, verifying: verifying})
	cp.mu.Unlock()
	simJSON(w, status, body)
}

func (cp *simCP) serveDelete(w http.ResponseWriter, req *http.Request, agent, conn string) {
	id, _ := strconv.ParseInt(req.Header.Get("X-Sim-Req"), 10, 64)
	cp.mu.Lock()
	d := cp.deletes[id]
	if d == nil { // a request the transport did not see: record it anyway
		d = &simDelete{id: -1, conn: conn}
		cp.order = append(cp.order, d)
	}
	d.arrived = true
	if cp.total == 0 {
		for _, id := range cp.vanishAfter {
			delete(cp.exists, id)
		}
	}
	n := cp.requests[conn]
	cp.requests[conn]++
	cp.total++
	r := cp.draw(conn, n)
	sch := cp.sch
	if sch.refuseAfter > 0 && cp.total >= sch.refuseAfter {
		cp.refused = true
	}
	var status int
	var body, retryAfter string
	u := r.Float64()
	switch {
	case cp.refused:
		status, body = sch.refuseStatus, cp.errorBody(r, "Invalid API key")
	case agent != cp.agentID:
		status, body = http.StatusNotFound, `{"detail":"Agent not found."}`
	case u < sch.pHang:
		d.hung = true
		if r.Float64() < sch.pHangApplies && cp.exists[conn] {
			delete(cp.exists, conn)
			d.applied = true
		}
		cp.mu.Unlock()
		select {
		case <-req.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	case u < sch.pHang+sch.p429:
		status, body = http.StatusTooManyRequests, cp.errorBody(r, "Too Many Requests")
		if r.IntN(4) != 0 {
			retryAfter = strconv.Itoa(r.IntN(4))
		}
	case u < sch.pHang+sch.p429+sch.p5xx:
		status = []int{500, 502, 503, 504}[r.IntN(4)]
		if r.IntN(3) == 0 {
			retryAfter = strconv.Itoa(1 + r.IntN(2))
		}
		if r.IntN(3) == 0 {
			// What a proxy in front of the control plane sends.
			body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n" +
				"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
		} else {
			body = cp.errorBody(r, "upstream error")
		}
	case u < sch.pHang+sch.p429+sch.p5xx+sch.p400:
		status, body = http.StatusBadRequest, cp.errorBody(r, "bad request")
	case sch.locked[conn]:
		msg := "connection is in use by a running deployment"
		if r.IntN(2) == 0 {
			msg += "; " + strings.Repeat("detail ", 60)
		}
		b, _ := json.Marshal(map[string]any{"detail": []map[string]any{{"loc": []string{"path", "connection_id"}, "msg": msg, "type": "value_error"}}})
		status, body = http.StatusUnprocessableEntity, string(b)
	case !cp.exists[conn]:
		b, _ := json.Marshal(map[string]string{"detail": "Connection " + conn + " not found."})
		status, body = http.StatusNotFound, string(b)
	default:
		status = http.StatusNoContent
		if r.Float64() >= sch.pPhantom {
			delete(cp.exists, conn)
			d.applied = true
		}
	}
	d.answer = status
	cp.mu.Unlock()
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	simJSON(w, status, body)
}

// simTransport records every DELETE the activities (and the fake standalone removals) send.
type simTransport struct {
	cp   *simCP
	next http.RoundTripper
}

type simAttemptKey struct{}

func (t *simTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodDelete {
		return t.next.RoundTrip(req)
	}
	segs := strings.Split(req.URL.EscapedPath(), "/")
	conn, _ := url.PathUnescape(segs[len(segs)-1])
	attempt, _ := req.Context().Value(simAttemptKey{}).(*simAttempt)

	t.cp.mu.Lock()
	t.cp.nextID++
	d := &simDelete{id: t.cp.nextID, conn: conn, attempt: attempt, start: time.Now()}
	t.cp.deletes[d.id] = d
	t.cp.order = append(t.cp.order, d)
	t.cp.mu.Unlock()
	if attempt != nil {
		attempt.sentOne()
	}

	out := req.Clone(req.Context())
	out.Header.Set("X-Sim-Req", strconv.FormatInt(d.id, 10))
	resp, err := t.next.RoundTrip(out)

	t.cp.mu.Lock()
	d.end = time.Now()
	if err != nil {
		d.cutOff = true
	} else {
		d.status = resp.StatusCode
		if (d.status == http.StatusUnauthorized || d.status == http.StatusForbidden) && t.cp.refusedAt.IsZero() && attempt != nil {
			t.cp.refusedAt = d.end
		}
	}
	t.cp.mu.Unlock()
	if attempt != nil && err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		attempt.refused(d.end)
	}
	return resp, err
}

// simStandaloneClient sends a fake standalone removal's DELETE through the recording transport.
func (cp *simCP) standaloneDelete(ctx context.Context, client *http.Client, base, conn string) (int, error) {
	u := base + "/v2/auth/agents/" + url.PathEscape(cp.agentID) + "/connections/" + url.PathEscape(conn)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Api-Key", cp.key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// simSnapshot is the token, provider and scopes the scripted control plane lists for a connection,
// drawn from its ID alone (not from the schedule's random source, so the schedules stay as they
// were): most have a UUID-like token, a provider and a few scopes; some have none, a token
// ValidateID refuses, or scopes too long to keep them all.
func simSnapshot(id string) ac.ConnectionSnapshot {
	h := fnv.New64a()
	_, _ = h.Write([]byte("snapshot\x00" + id))
	v := h.Sum64()
	s := ac.ConnectionSnapshot{ConnectionID: id, OAuthTokenID: fmt.Sprintf("tok-%016x", v)}
	switch v % 20 {
	case 0:
		return ac.ConnectionSnapshot{ConnectionID: id}
	case 1:
		s.OAuthTokenID = "tok/" + strconv.FormatUint(v, 36)
	case 2:
		s.Scopes = []string{strings.Repeat("https://scope.example/<read>&", 20), strings.Repeat("w", 600)}
	}
	if v%3 != 0 {
		s.ProviderID = []string{"github", "google", "slack"}[(v/3)%3]
		s.Scopes = append(s.Scopes, "read", "write:org")
	}
	return s
}
