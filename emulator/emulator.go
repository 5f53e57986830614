// Package emulator is a local stand-in for the agent-connection routes of the LangSmith Deployment
// Control Plane API (list, create and remove connections under /v2/auth/agents/{agent_id}). It
// exists so that the worker can be tried without a LangSmith account, and so that tests and the
// demo can provoke every answer docs/contract.md covers: 204, 404, 401, 403, 422, 429 with
// Retry-After, 5xx, slow or hanging requests and malformed bodies. It is tooling, not a model of the
// real service beyond what docs/contract.md states.
//
// A Server is an http.Handler. Go tests use it with httptest.NewServer and drive it through its
// methods (register em.Close after the httptest.Server's Close so it runs first); the emulator
// command (cmd/emulator) serves it on a port, and scripts drive it through the control API.
//
// Every API request goes through these steps, in order: fixed latency, the first matching queued
// fault (InjectNext), the error rates (SetErrorRate), rate-limit mode, authentication, path
// validation (422), and finally the route itself. A request answered by a fault or refused never
// changes the stored connections.
//
// The control API lives under /_emulator/, needs no credentials, ignores the path prefix, and is
// neither delayed nor faulted nor counted. Bodies are JSON; unknown fields answer 400.
//
//	GET  /_emulator/healthz      {"status":"ok"}
//	GET  /_emulator/stats        Stats
//	GET  /_emulator/log          {"data":[LogEntry...]}
//	GET  /_emulator/connections?agent_id=a1
//	                             {"agent_id":"a1","connection_ids":["c1"]}
//	POST /_emulator/seed         {"agent_id":"a1","connection_ids":["c1"],"invalid_connection_ids":["bad"]}
//	                             -> {"agent_id":"a1","connection_ids":[...current...]}
//	POST /_emulator/faults       a Fault, e.g. {"status":503,"count":1,"method":"DELETE","connection_id":"c1"} -> 204
//	GET  /_emulator/faults       {"latency":"0s","rate_limit_per_minute":0,"error_rates":[{"status":503,"rate":0.3}],"pending":[Fault...]}
//	POST /_emulator/error-rate   {"status":503,"rate":0.3} (rate 0 removes it) -> 204
//	POST /_emulator/latency      {"latency":"20ms"} -> 204
//	POST /_emulator/rate-limit   {"per_minute":60} (0 turns it off) -> 204
//	POST /_emulator/reset        clears every fault; optional {"stats":true,"connections":true} -> 204
package emulator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxIDBytes is the longest agent or connection ID the emulator accepts; longer IDs answer 422.
const MaxIDBytes = 256

// StatusNoAnswer is the status recorded in Stats and the request log for a request that got no
// answer: its client gave up (hang, latency) or the server was closed under it. Borrowed from
// nginx's "client closed request"; it is never sent.
const StatusNoAnswer = 499

// Route names, as used by Fault.Route.
const (
	// RouteList is GET /v2/auth/agents/{agent_id}/connections.
	RouteList = "list"
	// RouteCreate is POST /v2/auth/agents/{agent_id}/connections.
	RouteCreate = "create"
	// RouteRemove is DELETE /v2/auth/agents/{agent_id}/connections/{connection_id}.
	RouteRemove = "remove"
)

const (
	controlPrefix   = "/_emulator/"
	defaultLogLimit = 10000
	maxBodyBytes    = 1 << 20
)

// Options configures a Server. The zero value serves the routes at the root, accepts any
// credential (one is still required) and injects no faults.
type Options struct {
	// APIKey, when set, is the only X-Api-Key value accepted.
	APIKey string
	// BearerToken, when set, is the only "Authorization: Bearer" token accepted. When APIKey or
	// BearerToken is set, a request must carry at least one configured credential with the right
	// value and no configured credential with a wrong one.
	BearerToken string
	// TenantID, when set, must be sent as X-Tenant-Id (403 otherwise).
	TenantID string
	// PathPrefix is put in front of every API route, e.g. "/api-host" as self-hosted installs do.
	// "api-host" and "/api-host/" mean the same. The control API is always at /_emulator/.
	PathPrefix string

	// Latency is added to every API request; the wait ends early if the client gives up.
	Latency time.Duration
	// RateLimitPerMinute turns on rate-limit mode: a token bucket per credential holding this many
	// requests and refilled at this rate per minute; over it, 429 with Retry-After in seconds.
	// Zero turns it off.
	RateLimitPerMinute int
	// RateLimitBurst, when above zero, is the bucket's size in rate-limit mode (it starts full);
	// zero means RateLimitPerMinute, a minute's worth. A small bucket shows at once a client
	// that sends faster than the rate, where a full minute's bucket would hide it for a minute.
	RateLimitBurst int
	// ErrorRates maps a status to the fraction (0 to 1) of API requests answered with it.
	ErrorRates map[int]float64
	// Faults are queued as by InjectNext, in order.
	Faults []Fault

	// Seed maps agent IDs to the connection IDs they start with.
	Seed map[string][]string
	// InvalidConnectionIDs answer 422 on DELETE, as MarkInvalid.
	InvalidConnectionIDs []string

	// RandSeed seeds the error-rate draws; zero picks a random seed.
	RandSeed uint64
	// LogLimit bounds the request log kept for Log and /_emulator/log (default 10000 entries; the
	// oldest are dropped).
	LogLimit int
	// Logger, when set, gets one line per request (method, path, status, duration; never headers).
	Logger *slog.Logger
}

// Validate reports the first problem with the options, if any. New panics on the same problems.
func (o Options) Validate() error {
	if err := validatePrefix(normalizePrefix(o.PathPrefix)); err != nil {
		return err
	}
	if o.Latency < 0 {
		return fmt.Errorf("latency %s is negative", o.Latency)
	}
	if o.RateLimitPerMinute < 0 {
		return fmt.Errorf("rate limit %d per minute is negative", o.RateLimitPerMinute)
	}
	if o.RateLimitBurst < 0 {
		return fmt.Errorf("rate limit burst %d is negative", o.RateLimitBurst)
	}
	if o.LogLimit < 0 {
		return fmt.Errorf("log limit %d is negative", o.LogLimit)
	}
	for status, rate := range o.ErrorRates {
		if err := validateErrorRate(status, rate); err != nil {
			return err
		}
	}
	for i, f := range o.Faults {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("fault %d: %w", i+1, err)
		}
	}
	for agentID, ids := range o.Seed {
		if agentID == "" {
			return fmt.Errorf("seed: empty agent id")
		}
		if slices.Contains(ids, "") {
			return fmt.Errorf("seed: empty connection id for agent %q", agentID)
		}
	}
	if slices.Contains(o.InvalidConnectionIDs, "") {
		return fmt.Errorf("invalid connection ids: empty id")
	}
	return nil
}

func validateErrorRate(status int, rate float64) error {
	if status < 200 || status > 599 {
		return fmt.Errorf("error rate status %d is outside 200-599", status)
	}
	if !(rate >= 0 && rate <= 1) {
		return fmt.Errorf("error rate %v for status %d is outside 0-1", rate, status)
	}
	return nil
}

func normalizePrefix(p string) string {
	p = strings.TrimRight(strings.TrimSpace(p), "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

func validatePrefix(p string) error {
	if p == "" {
		return nil
	}
	if strings.ContainsAny(p, "?#%{}\\ \t\r\n") || cleanPath(p) != p {
		return fmt.Errorf("path prefix %q must be a plain clean path such as /api-host", p)
	}
	if p+"/" == controlPrefix || strings.HasPrefix(p, controlPrefix) {
		return fmt.Errorf("path prefix %q collides with the control API at %s", p, controlPrefix)
	}
	return nil
}

// Server is the emulator. It implements http.Handler and is safe for concurrent use.
type Server struct {
	apiKey, bearer, tenant string
	prefix                 string
	logger                 *slog.Logger
	logLimit               int
	api                    *http.ServeMux
	control                *http.ServeMux
	now                    func() time.Time

	closeOnce sync.Once
	closed    chan struct{}

	mu         sync.Mutex
	rng        *mrand.Rand
	seq        int64
	agents     map[string]*agent
	invalid    map[string]bool
	revoked    map[string]bool // OAuth token IDs a POST refuses (restore.go)
	latency    time.Duration
	errorRates map[int]float64
	pending    []*pendingFault
	rateLimit  int
	rateBurst  int // bucket size; 0 means rateLimit
	buckets    map[string]*bucket
	stats      Stats
	log        []LogEntry
}

type agent struct {
	conns   map[string]*connection
	removed map[string]bool
}

// connection is the AgentConnectionResponse schema.
type connection struct {
	ID                   string   `json:"id"`
	AgentID              string   `json:"agent_id"`
	OAuthTokenID         string   `json:"oauth_token_id"`
	ProviderID           string   `json:"provider_id"`
	ProviderAccountLabel *string  `json:"provider_account_label"`
	Scopes               []string `json:"scopes"`
	ExpiresAt            *string  `json:"expires_at"`
	CreatedBy            string   `json:"created_by"`
	CreatedAt            string   `json:"created_at"`

	seq int64
}

type pendingFault struct {
	f    Fault
	left int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a Server configured by opts. It panics if opts.Validate fails, as a test helper
// would; programs should call Validate first.
func New(opts Options) *Server {
	if err := opts.Validate(); err != nil {
		panic("emulator: " + err.Error())
	}
	seed := opts.RandSeed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	s := &Server{
		apiKey:   opts.APIKey,
		bearer:   opts.BearerToken,
		tenant:   opts.TenantID,
		prefix:   normalizePrefix(opts.PathPrefix),
		logger:   opts.Logger,
		logLimit: opts.LogLimit,
		now:      time.Now,
		closed:   make(chan struct{}),
		rng:      mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		agents:   map[string]*agent{},
		invalid:  map[string]bool{},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.logLimit == 0 {
		s.logLimit = defaultLogLimit
	}
	s.resetFaultsLocked()
	s.resetStatsLocked()
	s.latency = opts.Latency
	s.rateLimit = opts.RateLimitPerMinute
	s.rateBurst = opts.RateLimitBurst
	for status, rate := range opts.ErrorRates {
		if rate > 0 {
			s.errorRates[status] = rate
		}
	}
	for _, f := range opts.Faults {
		s.InjectNext(f)
	}
	agentIDs := make([]string, 0, len(opts.Seed))
	for id := range opts.Seed {
		agentIDs = append(agentIDs, id)
	}
	sort.Strings(agentIDs)
	for _, id := range agentIDs {
		s.Seed(id, opts.Seed[id]...)
	}
	s.MarkInvalid(opts.InvalidConnectionIDs...)

	s.api = http.NewServeMux()
	s.api.HandleFunc("GET /v2/auth/agents/{agent_id}/connections", s.route(RouteList, s.listConnections))
	s.api.HandleFunc("POST /v2/auth/agents/{agent_id}/connections", s.route(RouteCreate, s.createConnection))
	s.api.HandleFunc("DELETE /v2/auth/agents/{agent_id}/connections/{connection_id}", s.route(RouteRemove, s.removeConnection))
	s.api.HandleFunc("/v2/auth/agents/{agent_id}/connections", methodNotAllowed("GET, POST"))
	s.api.HandleFunc("/v2/auth/agents/{agent_id}/connections/{connection_id}", methodNotAllowed("DELETE"))
	s.api.HandleFunc("/", notFound)
	s.control = s.controlMux()
	return s
}

// Close releases every request held by a hang fault or latency (their connections are dropped, as
// a dying server's would be) and makes later ones fail the same way at once. Other requests are
// still served. Call it before closing an httptest.Server that may hold hanging requests, because
// httptest.Server.Close waits for them. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// Seed creates connections for agentID directly, skipping the ones it already has. The agent is
// created even with no connection IDs. Connection IDs that were removed before exist again.
func (s *Server) Seed(agentID string, connectionIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentLocked(agentID)
	for _, id := range connectionIDs {
		if _, ok := a.conns[id]; ok {
			continue
		}
		s.addLocked(a, agentID, id, "tok-"+id)
	}
}

// MarkInvalid makes DELETE of these connection IDs (under any agent) answer 422, so demos can show
// a validation error with an ID the worker itself accepts.
func (s *Server) MarkInvalid(connectionIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range connectionIDs {
		s.invalid[id] = true
	}
}

// Connections returns the IDs of agentID's current connections in creation order.
func (s *Server) Connections(agentID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := s.sortedLocked(agentID)
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.ID
	}
	return ids
}

// HasConnection reports whether agentID currently has connectionID.
func (s *Server) HasConnection(agentID, connectionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		return false
	}
	_, ok := a.conns[connectionID]
	return ok
}

// ClearConnections forgets every agent, connection, removal and invalid mark.
func (s *Server) ClearConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents = map[string]*agent{}
	s.invalid = map[string]bool{}
}

// SetLatency sets the delay added to every API request; zero or less turns it off.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// SetErrorRate makes the given fraction of API requests answer status (a FastAPI-style JSON body;
// a 429 also carries "Retry-After: 1"). A rate of zero removes it. When several statuses have
// rates, one draw picks among them, lowest status first, so their rates add up. It panics on a
// status outside 200-599 or a rate outside 0-1.
func (s *Server) SetErrorRate(status int, rate float64) {
	if err := validateErrorRate(status, rate); err != nil {
		panic("emulator: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rate == 0 {
		delete(s.errorRates, status)
		return
	}
	s.errorRates[status] = rate
}

// SetRateLimit sets rate-limit mode to perMinute requests per minute per credential; zero or less
// turns it off. Either way every bucket starts full again.
func (s *Server) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = max(perMinute, 0)
	s.buckets = map[string]*bucket{}
}

// SetRateLimitBurst sets the bucket size of rate-limit mode (as Options.RateLimitBurst; zero or
// less means a minute's worth) and refills every bucket.
func (s *Server) SetRateLimitBurst(burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateBurst = max(burst, 0)
	s.buckets = map[string]*bucket{}
}

// InjectNext queues f: the next f.Count API requests that match it (default 1) get its answer.
// Queued faults are tried in order and each request consumes at most one. It panics if
// f.Validate fails.
func (s *Server) InjectNext(f Fault) {
	if err := f.Validate(); err != nil {
		panic("emulator: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, &pendingFault{f: f, left: max(f.Count, 1)})
}

// Reset clears every fault, including those from Options: queued faults, error rates, latency
// and rate-limit mode. Connections and statistics stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetFaultsLocked()
}

func (s *Server) resetFaultsLocked() {
	s.pending = nil
	s.errorRates = map[int]float64{}
	s.latency = 0
	s.rateLimit = 0
	s.rateBurst = 0
	s.buckets = map[string]*bucket{}
}

// FaultSettings is a snapshot of the faults in force.
type FaultSettings struct {
	Latency            time.Duration
	RateLimitPerMinute int
	ErrorRates         map[int]float64
	// Pending lists the queued faults; Count is what is left of each.
	Pending []Fault
}

// Faults returns the faults in force.
func (s *Server) Faults() FaultSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := FaultSettings{
		Latency:            s.latency,
		RateLimitPerMinute: s.rateLimit,
		ErrorRates:         make(map[int]float64, len(s.errorRates)),
		Pending:            make([]Fault, 0, len(s.pending)),
	}
	for k, v := range s.errorRates {
		fs.ErrorRates[k] = v
	}
	for _, p := range s.pending {
		f := p.f
		f.Count = p.left
		fs.Pending = append(fs.Pending, f)
	}
	return fs
}

func (s *Server) agentLocked(agentID string) *agent {
	a := s.agents[agentID]
	if a == nil {
		a = &agent{conns: map[string]*connection{}, removed: map[string]bool{}}
		s.agents[agentID] = a
	}
	return a
}

func (s *Server) addLocked(a *agent, agentID, id, tokenID string) *connection {
	s.seq++
	c := &connection{
		ID:           id,
		AgentID:      agentID,
		OAuthTokenID: tokenID,
		ProviderID:   "emulator",
		Scopes:       []string{},
		CreatedBy:    "emulator",
		CreatedAt:    s.now().UTC().Format(time.RFC3339),
		seq:          s.seq,
	}
	a.conns[id] = c
	delete(a.removed, id)
	return c
}

func (s *Server) sortedLocked(agentID string) []*connection {
	a := s.agents[agentID]
	if a == nil {
		return nil
	}
	conns := make([]*connection, 0, len(a.conns))
	for _, c := range a.conns {
		conns = append(conns, c)
	}
	sort.Slice(conns, func(i, j int) bool { return conns[i].seq < conns[j].seq })
	return conns
}

// reqInfo carries what the route learned back to ServeHTTP, for the statistics.
type reqInfo struct {
	route        string
	agentID      string
	connectionID string
	injected     bool
	removed      bool
	// served is the fault that loses the answer after the request is served.
	served *Fault
}

type infoKey struct{}

// ServeHTTP serves the API routes under the path prefix and the control API under /_emulator/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	control := strings.HasPrefix(r.URL.Path, controlPrefix)
	info := &reqInfo{}
	defer func() {
		status := rec.status
		if status == 0 {
			status = StatusNoAnswer
		}
		d := time.Since(start)
		if !control {
			s.record(r, status, d, info)
		}
		s.logger.Info("request", "method", r.Method, "path", r.URL.EscapedPath(), "status", status, "duration", d)
	}()
	if control {
		s.control.ServeHTTP(rec, r)
		return
	}
	s.serveAPI(rec, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	p, raw := r.URL.Path, r.URL.RawPath
	if s.prefix != "" {
		var ok bool
		if escaped, ok = cutPrefix(escaped, s.prefix); !ok {
			notFound(w, r)
			return
		}
		if p, ok = cutPrefix(p, s.prefix); !ok {
			notFound(w, r)
			return
		}
		if raw != "" {
			if raw, ok = cutPrefix(raw, s.prefix); !ok {
				notFound(w, r)
				return
			}
		}
	}
	// ServeMux would redirect an unclean path to its cleaned form, which can be another route (a
	// DELETE of ".../c1/.." would become a GET of the list). The real service does not; answer 404.
	if cleanPath(escaped) != escaped {
		notFound(w, r)
		return
	}
	u := *r.URL
	u.Path, u.RawPath = p, raw
	r2 := r.WithContext(r.Context())
	r2.URL = &u
	s.api.ServeHTTP(w, r2)
}

// cutPrefix removes prefix from p when it is followed by "/" or nothing.
func cutPrefix(p, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return rest, true
}

// cleanPath is ServeMux's canonical form of a path.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			np = p
		} else {
			np += "/"
		}
	}
	return np
}

// route wraps an API operation in the request pipeline described in the package comment.
func (s *Server) route(name string, op func(http.ResponseWriter, *http.Request, *reqInfo)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, _ := r.Context().Value(infoKey{}).(*reqInfo)
		if info == nil {
			info = &reqInfo{}
		}
		info.route = name
		info.agentID = r.PathValue("agent_id")
		info.connectionID = r.PathValue("connection_id")

		s.mu.Lock()
		latency := s.latency
		s.mu.Unlock()
		if !s.wait(r.Context(), latency) {
			return
		}
		if s.applyFault(w, r, info) {
			return
		}
		if s.rateLimited(w, r) {
			return
		}
		if !s.authorize(w, r) {
			return
		}
		if s.invalidPath(w, info) {
			return
		}
		if info.served != nil {
			s.serveThenLose(w, r, info, op)
			return
		}
		op(w, r, info)
	}
}

// wait sleeps for d (forever when d < 0). It returns false when the client gave up first; when the
// server is closed first it drops the connection.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		return true
	}
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		panic(http.ErrAbortHandler)
	}
}

// takeFault picks the fault for this request: the first matching queued fault, else an error-rate
// draw.
func (s *Server) takeFault(method string, info *reqInfo) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if !p.f.matches(method, info) {
			continue
		}
		p.left--
		if p.left <= 0 {
			s.pending = slices.Delete(s.pending, i, i+1)
		}
		return p.f, true
	}
	if len(s.errorRates) == 0 {
		return Fault{}, false
	}
	statuses := make([]int, 0, len(s.errorRates))
	for st := range s.errorRates {
		statuses = append(statuses, st)
	}
	sort.Ints(statuses)
	u := s.rng.Float64()
	sum := 0.0
	for _, st := range statuses {
		sum += s.errorRates[st]
		if u < sum {
			f := Fault{Status: st}
			if st == http.StatusTooManyRequests {
				f.RetryAfter = "1"
			}
			return f, true
		}
	}
	return Fault{}, false
}

// applyFault answers the request from a fault, if one applies, and reports whether it did.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, info *reqInfo) bool {
	f, ok := s.takeFault(r.Method, info)
	if !ok {
		return false
	}
	if !s.wait(r.Context(), f.Delay) {
		return true
	}
	if f.Served {
		info.served = &f
		return false
	}
	if f.Reset {
		info.injected = true
		panic(http.ErrAbortHandler)
	}
	if f.Hang {
		s.wait(r.Context(), -1)
		return true
	}
	if f.Status == 0 {
		return false
	}
	info.injected = true
	s.writeFault(w, f)
	return true
}

func (s *Server) writeFault(w http.ResponseWriter, f Fault) {
	h := w.Header()
	if f.RetryAfter != "" || f.RetryAfterDate {
		h.Set("Retry-After", f.retryAfterValue(s.now()))
	}
	detail := f.Detail
	if detail == "" {
		detail = http.StatusText(f.Status)
	}
	if detail == "" {
		detail = "Error"
	}
	if !bodyAllowed(f.Status) || f.Body == BodyEmpty {
		w.WriteHeader(f.Status)
		return
	}
	switch f.Body {
	case BodyTruncated:
		b := marshal(map[string]any{"detail": detail})
		h.Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write(b[:len(b)/2])
	case BodyText:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(f.Status)
		_, _ = fmt.Fprintf(w, "%s\n", detail)
	case BodyHTML:
		h.Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		_, _ = fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
			f.Status, detail, f.Status, detail)
	default:
		writeJSON(w, f.Status, map[string]any{"detail": detail})
	}
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

// rateLimited applies rate-limit mode and reports whether it answered 429.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	key := "key:" + r.Header.Get("X-Api-Key")
	if key == "key:" {
		key = "bearer:" + bearerToken(r.Header.Get("Authorization"))
	}
	s.mu.Lock()
	limit := s.rateLimit
	if limit <= 0 {
		s.mu.Unlock()
		return false
	}
	now := s.now()
	perSecond := float64(limit) / 60
	size := float64(limit)
	if s.rateBurst > 0 {
		size = float64(s.rateBurst)
	}
	b := s.buckets[key]
	if b == nil {
		b = &bucket{tokens: size, last: now}
		s.buckets[key] = b
	}
	b.tokens = min(size, b.tokens+now.Sub(b.last).Seconds()*perSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		s.mu.Unlock()
		return false
	}
	wait := (1 - b.tokens) / perSecond
	s.mu.Unlock()
	retry := max(int(wait+0.999), 1)
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{"detail": "Too Many Requests"})
	return true
}

// authorize checks the credentials and the tenant, answering 401 or 403 when they fail. Values are
// compared in constant time and never written anywhere.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("X-Api-Key")
	token := bearerToken(r.Header.Get("Authorization"))
	if key == "" && token == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Not authenticated"})
		return false
	}
	if s.apiKey != "" || s.bearer != "" {
		matched := false
		for _, c := range [][2]string{{key, s.apiKey}, {token, s.bearer}} {
			got, want := c[0], c[1]
			if got == "" || want == "" {
				continue
			}
			if !equal(got, want) {
				matched = false
				break
			}
			matched = true
		}
		if !matched {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Invalid API key"})
			return false
		}
	}
	if s.tenant != "" {
		tenant := r.Header.Get("X-Tenant-Id")
		if tenant == "" {
			writeJSON(w, http.StatusForbidden, map[string]any{"detail": "X-Tenant-Id header required"})
			return false
		}
		if !equal(tenant, s.tenant) {
			writeJSON(w, http.StatusForbidden, map[string]any{"detail": "Forbidden: this API key has no access to the workspace in X-Tenant-Id"})
			return false
		}
	}
	return true
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func bearerToken(h string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

type validationError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

func writeValidation(w http.ResponseWriter, errs ...validationError) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
}

func tooLong(loc ...any) validationError {
	return validationError{Loc: loc, Msg: fmt.Sprintf("String should have at most %d characters", MaxIDBytes), Type: "string_too_long"}
}

// invalidPath answers 422 for over-long IDs and connection IDs marked invalid.
func (s *Server) invalidPath(w http.ResponseWriter, info *reqInfo) bool {
	var errs []validationError
	if len(info.agentID) > MaxIDBytes {
		errs = append(errs, tooLong("path", "agent_id"))
	}
	if len(info.connectionID) > MaxIDBytes {
		errs = append(errs, tooLong("path", "connection_id"))
	} else if info.route == RouteRemove {
		s.mu.Lock()
		bad := s.invalid[info.connectionID]
		s.mu.Unlock()
		if bad {
			errs = append(errs, validationError{Loc: []any{"path", "connection_id"}, Msg: "Value error, invalid connection id", Type: "value_error"})
		}
	}
	if len(errs) == 0 {
		return false
	}
	writeValidation(w, errs...)
	return true
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"detail": "Method Not Allowed"})
	}
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not Found"})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
