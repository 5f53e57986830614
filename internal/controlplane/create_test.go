package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ac "github.com/agentops/agentconnections"
)

func (f *fixture) create(r CreateRequest) (CreateResult, error) {
	if r.AgentID == "" {
		r.AgentID = "agent-1"
	}
	if r.OAuthTokenID == "" {
		r.OAuthTokenID = "tok-1"
	}
	if r.Logger == nil {
		r.Logger = f.logs
	}
	return f.client.Create(context.Background(), r)
}

func TestCreate_StatusTable(t *testing.T) {
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		wantID        string
		wantType      string
		wantRetryable bool
		wantInMessage string
	}{
		{name: "201 restored", handler: status(201, `{"id":"new-1","agent_id":"agent-1","oauth_token_id":"tok-1"}`), wantID: "new-1"},
		{name: "404 is AgentNotFound", handler: status(404, `{"detail":"Agent agent-1 not found."}`), wantType: ac.ErrAgentNotFound, wantInMessage: "LANGSMITH_CONTROL_PLANE_URL"},
		{name: "422 is ValidationError with the detail", handler: status(422, `{"detail":[{"loc":["body","oauth_token_id"],"msg":"token revoked","type":"value_error"}]}`), wantType: ac.ErrValidation, wantInMessage: "body.oauth_token_id: token revoked"},
		{name: "400 is BadRequest", handler: status(400, `{"detail":"bad"}`), wantType: ac.ErrBadRequest},
		{name: "401 is Unauthorized", handler: status(401, `{"detail":"no"}`), wantType: ac.ErrUnauthorized, wantInMessage: "LANGSMITH_API_KEY"},
		{name: "403 is Unauthorized", handler: status(403, `{"detail":"no"}`), wantType: ac.ErrUnauthorized, wantInMessage: "LANGSMITH_TENANT_ID"},
		{name: "408 is Unavailable", handler: status(408, ""), wantType: ac.ErrUnavailable, wantRetryable: true},
		{name: "429 is RateLimited", handler: status(429, "", "Retry-After", "1"), wantType: ac.ErrRateLimited, wantRetryable: true},
		{name: "503 is ServerError, not repeated in process", handler: status(503, ""), wantType: ac.ErrServerError, wantRetryable: true},
		{name: "502 is ServerError, not repeated in process", handler: status(502, ""), wantType: ac.ErrServerError, wantRetryable: true},
		{name: "200 is UnexpectedStatus", handler: status(200, `{}`), wantType: ac.ErrUnexpectedStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				method, contentType string
				body                createBody
			}
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
				got.method, got.contentType = r.Method, r.Header.Get("Content-Type")
				_ = json.NewDecoder(r.Body).Decode(&got.body)
				tt.handler(w, r)
			})
			res, err := f.create(CreateRequest{})
			if n := f.requests.Load(); n != 1 || res.Requests != 1 {
				t.Errorf("got %d requests at the server, %d counted; want one POST", n, res.Requests)
			}
			if got.method != http.MethodPost || got.contentType != "application/json" || got.body.OAuthTokenID != "tok-1" {
				t.Errorf("got %s %q %+v, want a JSON POST of the token", got.method, got.contentType, got.body)
			}
			if strings.Contains(f.logs.String(), testKey) {
				t.Error("the key reached the logs")
			}
			if tt.wantType == "" {
				if err != nil || res.Outcome != ac.OutcomeRestored || res.ConnectionID != tt.wantID || res.Unknown {
					t.Fatalf("got (%+v, %v), want restored as %s", res, err, tt.wantID)
				}
				return
			}
			e := cpError(t, err)
			if e.Type != tt.wantType || e.Retryable != tt.wantRetryable || res.Unknown != tt.wantRetryable {
				t.Errorf("got %s retryable %t unknown %t, want %s retryable %t", e.Type, e.Retryable, res.Unknown, tt.wantType, tt.wantRetryable)
			}
			if !strings.Contains(e.Message, tt.wantInMessage) {
				t.Errorf("message %q lacks %q", e.Message, tt.wantInMessage)
			}
		})
	}
}

func TestCreate_RefusedIDsSendNothing(t *testing.T) {
	f := newFixture(t, status(201, `{"id":"x"}`))
	for _, r := range []CreateRequest{{AgentID: "a/b"}, {OAuthTokenID: "t%2F"}} {
		_, err := f.create(r)
		if e := cpError(t, err); e.Type != ac.ErrInvalidRequest {
			t.Errorf("got %s, want InvalidRequest", e.Type)
		}
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("got %d requests, want none", n)
	}
}

// fakePlane is a control plane that keeps connections per token, to count them. lose decides,
// per POST, how its answer is lost after the connection was (or was not) created.
type fakePlane struct {
	mu      sync.Mutex
	conns   []fakeConn
	posts   int
	lose    func(post int) (create bool, answer string)
	release chan struct{}
}

type fakeConn struct{ ID, Token string }

// Answers of lose: "201", "hang" (until the client gives up), "reset" (the connection is closed
// after the request was read), "503", "garbled" (a 201 with a body that is not JSON).
func (p *fakePlane) handler(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		p.mu.Lock()
		data := make([]map[string]any, 0, len(p.conns))
		for _, c := range p.conns {
			data = append(data, map[string]any{"id": c.ID, "oauth_token_id": c.Token, "provider_id": "github", "scopes": []string{"repo"}})
		}
		p.mu.Unlock()
		status(200, string(must(json.Marshal(map[string]any{"data": data}))))(w, r)
		return
	}
	var body createBody
	_ = json.NewDecoder(r.Body).Decode(&body)
	p.mu.Lock()
	p.posts++
	create, answer := true, "201"
	if p.lose != nil {
		create, answer = p.lose(p.posts)
	}
	id := fmt.Sprintf("new-%d", p.posts)
	if create {
		p.conns = append(p.conns, fakeConn{ID: id, Token: body.OAuthTokenID})
	}
	p.mu.Unlock()
	switch answer {
	case "hang":
		select {
		case <-r.Context().Done():
		case <-p.release:
		}
	case "reset":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	case "503":
		status(503, "")(w, r)
	case "garbled":
		status(201, `{"id":`)(w, r)
	default:
		status(201, fmt.Sprintf(`{"id":%q,"oauth_token_id":%q}`, id, body.OAuthTokenID))(w, r)
	}
}

func (p *fakePlane) perToken() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	for _, c := range p.conns {
		m[c.Token]++
	}
	return m
}

func (p *fakePlane) postCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.posts
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Each lost answer is followed by the caller's retry (PriorRequests set, as an activity's next
// attempt sets it): it lists the agent, finds the connection the first POST created, and sends
// no second POST; when the first POST created nothing, the retry creates it once.
func TestCreate_ExactlyOnceAfterALostAnswer(t *testing.T) {
	tests := []struct {
		name      string
		created   bool
		answer    string
		wantType  string
		wantPosts int
	}{
		{name: "hang past the timeout after creating", created: true, answer: "hang", wantType: ac.ErrUnavailable, wantPosts: 1},
		{name: "hang past the timeout before creating", created: false, answer: "hang", wantType: ac.ErrUnavailable, wantPosts: 2},
		{name: "reset after the request is read", created: true, answer: "reset", wantType: ac.ErrUnavailable, wantPosts: 1},
		{name: "503 after creating", created: true, answer: "503", wantType: ac.ErrServerError, wantPosts: 1},
		{name: "503 before creating", created: false, answer: "503", wantType: ac.ErrServerError, wantPosts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakePlane{release: make(chan struct{}), lose: func(post int) (bool, string) {
				if post == 1 {
					return tt.created, tt.answer
				}
				return true, "201"
			}}
			t.Cleanup(func() { close(p.release) })
			f := newFixture(t, p.handler, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
			first, err := f.create(CreateRequest{})
			if e := cpError(t, err); e.Type != tt.wantType || !e.Retryable || !first.Unknown || first.Requests != 1 {
				t.Fatalf("got (%+v, %v), want a retryable %s with an unknown outcome after one POST", first, err, tt.wantType)
			}
			second, err := f.create(CreateRequest{PriorRequests: first.Requests})
			if err != nil || second.Outcome != ac.OutcomeRestored || second.ConnectionID == "" {
				t.Fatalf("got (%+v, %v) on the retry, want restored", second, err)
			}
			if got := p.perToken(); got["tok-1"] != 1 || len(got) != 1 {
				t.Errorf("got connections per token %v, want exactly one for tok-1", got)
			}
			if p.postCount() != tt.wantPosts || second.Requests != tt.wantPosts {
				t.Errorf("got %d POSTs at the server, %d counted, want %d", p.postCount(), second.Requests, tt.wantPosts)
			}
		})
	}
}

// A 201 whose body gives no ID is a connection created: the call finds it by its token.
func TestCreate_UnreadableCreatedBodyIsFoundByItsToken(t *testing.T) {
	p := &fakePlane{lose: func(int) (bool, string) { return true, "garbled" }}
	f := newFixture(t, p.handler)
	res, err := f.create(CreateRequest{})
	if err != nil || res.Outcome != ac.OutcomeRestored || res.ConnectionID != "new-1" || p.postCount() != 1 {
		t.Fatalf("got (%+v, %v) after %d POSTs, want restored as new-1 after one", res, err, p.postCount())
	}
}

// An earlier attempt that may have sent a POST no count holds (MaybeSent): the call checks first.
func TestCreate_MaybeSentChecksFirst(t *testing.T) {
	p := &fakePlane{}
	p.conns = []fakeConn{{ID: "old", Token: "tok-1"}}
	f := newFixture(t, p.handler)
	res, err := f.create(CreateRequest{MaybeSent: true})
	if err != nil || res.ConnectionID != "old" || p.postCount() != 0 {
		t.Fatalf("got (%+v, %v) after %d POSTs, want the listed connection and no POST", res, err, p.postCount())
	}
	res, err = f.create(CreateRequest{MaybeSent: true, OAuthTokenID: "tok-2"})
	if err != nil || res.ConnectionID != "new-1" || p.postCount() != 1 {
		t.Fatalf("got (%+v, %v) after %d POSTs, want one POST for a token not listed", res, err, p.postCount())
	}
}

// A failed check is the call's failure, retryable as the list's, and still unknown.
func TestCreate_FailedCheckIsUnknown(t *testing.T) {
	f := newFixture(t, sequence(status(503, "", "Retry-After", "1")))
	res, err := f.create(CreateRequest{PriorRequests: 1})
	e := cpError(t, err)
	if e.Type != ac.ErrServerError || !e.Retryable || !res.Unknown || res.Requests != 1 {
		t.Errorf("got (%+v, %+v), want a retryable ServerError with the outcome still unknown", res, e)
	}
	if !strings.Contains(e.Message, "checking for a connection with the token") {
		t.Errorf("message %q does not say the check failed", e.Message)
	}
}

// Only a refused connection (the POST cannot have left) is sent again in process.
func TestCreate_ResetIsNotRepeatedInProcess(t *testing.T) {
	p := &fakePlane{lose: func(int) (bool, string) { return true, "reset" }}
	f := newFixture(t, p.handler)
	_, err := f.create(CreateRequest{})
	if cpError(t, err).Type != ac.ErrUnavailable || p.postCount() != 1 {
		t.Errorf("got %v after %d POSTs, want Unavailable after one", err, p.postCount())
	}
}

func TestConnections_CarryTokenProviderAndScopes(t *testing.T) {
	f := newFixture(t, status(200, `{"data":[{"id":"c1","oauth_token_id":"t1","provider_id":"github","scopes":["repo","user"]},{"id":"c2","oauth_token_id":5,"provider_id":null,"scopes":[1]}]}`))
	conns, err := f.client.Connections(context.Background(), "agent-1", f.logs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Connection{{ID: "c1", OAuthTokenID: "t1", ProviderID: "github", Scopes: []string{"repo", "user"}}, {ID: "c2", Scopes: []string{""}}}
	if fmt.Sprint(conns) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v: odd fields are left empty, the IDs still listed", conns, want)
	}
}

// A detached POST whose call ends sooner than the request timeout is not sent: it could still be
// in flight when a retry of the call lists the agent for its token. Without Detach, or with room
// for a whole request, it is sent.
func TestCreate_DetachedPostIsNotSentCloseToTheDeadline(t *testing.T) {
	p := &fakePlane{}
	f := newFixture(t, p.handler) // a 2 s request timeout
	r := CreateRequest{AgentID: "agent-1", OAuthTokenID: "tok-1", Logger: f.logs, Detach: true}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := f.client.Create(ctx, r)
	if !errors.Is(err, ErrTooLateToSend) || res.Requests != 0 || res.Unknown || p.postCount() != 0 {
		t.Fatalf("got (%+v, %v) after %d POSTs, want ErrTooLateToSend with nothing sent", res, err, p.postCount())
	}

	r.Detach = false
	if _, err := f.client.Create(ctx, r); err != nil || p.postCount() != 1 {
		t.Fatalf("got %v after %d POSTs, want an attached POST sent", err, p.postCount())
	}

	roomy, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	r.Detach, r.OAuthTokenID = true, "tok-2"
	if _, err := f.client.Create(roomy, r); err != nil || p.postCount() != 2 {
		t.Fatalf("got %v after %d POSTs, want a detached POST sent with a whole request timeout left", err, p.postCount())
	}
}

// refuseFirst is a transport whose first request is refused (the POST cannot have left), the
// rest go to next; it counts the requests that reached next.
type refuseFirst struct {
	next    http.RoundTripper
	mu      sync.Mutex
	refused bool
	passed  int
}

func (r *refuseFirst) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	first := !r.refused
	r.refused = true
	if !first {
		r.passed++
	}
	r.mu.Unlock()
	if first {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return r.next.RoundTrip(req)
}

// The in-process retry of a refused POST is held to the same rule: after its wait, a deadline
// nearer than the request timeout keeps it from being sent.
func TestCreate_DetachedPostRetryIsNotSentCloseToTheDeadline(t *testing.T) {
	p := &fakePlane{}
	srv := httptest.NewServer(http.HandlerFunc(p.handler))
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		name     string
		deadline time.Duration
		wantSent bool
	}{
		// 2 s request timeout, a 300 ms wait before the retry.
		{"room for the first, not for the retry", 2100 * time.Millisecond, false},
		{"room for both", time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &refuseFirst{next: http.DefaultTransport}
			f := newFixtureAt(t, srv.URL, nil, func(c *Config) {
				c.Transport = tr
				c.HTTPRetry = HTTPRetry{Max: 2, WaitMin: 300 * time.Millisecond, WaitMax: 300 * time.Millisecond}
			})
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			before := p.postCount()
			_, err := f.client.Create(ctx, CreateRequest{AgentID: "agent-1", OAuthTokenID: "tok-" + strings.ReplaceAll(tt.name, " ", "-"), Logger: f.logs, Detach: true})
			sent := p.postCount() - before
			if tt.wantSent && (err != nil || sent != 1) {
				t.Errorf("got %v after %d POSTs at the server, want the retry sent and answered", err, sent)
			}
			if !tt.wantSent && (!errors.Is(err, ErrTooLateToSend) || sent != 0 || tr.passed != 0) {
				t.Errorf("got %v after %d POSTs at the server, want ErrTooLateToSend and no retry sent", err, sent)
			}
		})
	}
}
