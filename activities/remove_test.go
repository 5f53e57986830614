package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/internal/controlplane"
)

const (
	testKey    = "lsv2_sk_test_secret_key_0123456789"
	testBearer = "bearer-secret-token-9876543210"
	testTenant = "tenant-1"
)

// logBuffer captures everything the activity and retryablehttp log, to check what a log would show.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) add(level, msg string, keyvals ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, keyvals))
}
func (l *logBuffer) Debug(msg string, kv ...any) { l.add("DEBUG", msg, kv...) }
func (l *logBuffer) Info(msg string, kv ...any)  { l.add("INFO", msg, kv...) }
func (l *logBuffer) Warn(msg string, kv ...any)  { l.add("WARN", msg, kv...) }
func (l *logBuffer) Error(msg string, kv ...any) { l.add("ERROR", msg, kv...) }
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// fixture is one activity environment wired to one test server.
type fixture struct {
	env      *testsuite.TestActivityEnvironment
	acts     *Activities
	logs     *logBuffer
	requests *atomic.Int64
	server   *httptest.Server
}

// fixtureConfig is what a fixture builds its control plane client and activities from.
type fixtureConfig struct {
	controlplane.Config
	acts Config
}

type fixtureOption func(*fixtureConfig)

// newFixture starts an httptest server running handler (counting requests) and an activity
// environment whose activities point at it with fast in-process retries.
func newFixture(t *testing.T, handler http.HandlerFunc, opts ...fixtureOption) *fixture {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return newFixtureAt(t, srv.URL, &n, srv, opts...)
}

func newFixtureAt(t *testing.T, baseURL string, n *atomic.Int64, srv *httptest.Server, opts ...fixtureOption) *fixture {
	t.Helper()
	logs := &logBuffer{}
	cfg := fixtureConfig{Config: controlplane.Config{
		BaseURL:        baseURL,
		Credentials:    controlplane.StaticCredentials{APIKey: testKey, TenantID: testTenant, BearerToken: testBearer},
		RequestTimeout: 2 * time.Second,
		UserAgent:      "agent-connections-worker/test",
		HTTPRetry:      controlplane.HTTPRetry{Max: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond},
		Logger:         logs,
	}}
	for _, o := range opts {
		o(&cfg)
	}
	cp, err := controlplane.New(cfg.Config)
	if err != nil {
		t.Fatalf("controlplane.New: %v", err)
	}
	cfg.acts.ControlPlane = cp
	acts, err := New(cfg.acts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(logs)
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	if n == nil {
		n = &atomic.Int64{}
	}
	return &fixture{env: env, acts: acts, logs: logs, requests: n, server: srv}
}

func (f *fixture) remove(t *testing.T, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
	t.Helper()
	val, err := f.env.ExecuteActivity(f.acts.RemoveConnection, in)
	var res ac.RemoveConnectionResult
	if err == nil {
		if gerr := val.Get(&res); gerr != nil {
			t.Fatalf("decode result: %v", gerr)
		}
	}
	return res, err
}

func input(missingOK bool) RemoveConnectionInput {
	return RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: missingOK}
}

// appError unwraps the ApplicationError the activity failed with.
func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("got error %v (%T), want an ApplicationError", err, err)
	}
	return appErr
}

// sequence answers the i-th request with the i-th handler, repeating the last one.
func sequence(handlers ...http.HandlerFunc) http.HandlerFunc {
	var i atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		n := int(i.Add(1)) - 1
		if n >= len(handlers) {
			n = len(handlers) - 1
		}
		handlers[n](w, r)
	}
}

func status(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

// TestRemoveConnection_MapsEachAnswer runs the activity against each kind of answer: the control
// plane client classifies it (its own tests hold the whole status table); the activity must hand
// the outcome back as the result, and a failure as the ApplicationError the contract describes.
func TestRemoveConnection_MapsEachAnswer(t *testing.T) {
	tests := []struct {
		name          string
		handler       http.HandlerFunc
		in            RemoveConnectionInput
		wantOutcome   string
		wantType      string
		wantRetryable bool
		wantStatus    int
		wantRequests  int
		wantDelay     time.Duration
		wantInMessage string
	}{
		{name: "204 removes", handler: status(204, ""), in: input(false), wantOutcome: ac.OutcomeRemoved, wantRequests: 1},
		{name: "404 with missing_ok is already absent", handler: status(404, ""), in: input(true), wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 1},
		{name: "503 then 204 counts both requests", handler: sequence(status(503, ""), status(204, "")), in: input(false), wantOutcome: ac.OutcomeRemoved, wantRequests: 2},
		{name: "404 without missing_ok is NotFound", handler: status(404, `{"detail":"Connection conn-1 not found."}`), in: input(false), wantType: ac.ErrNotFound, wantStatus: 404, wantRequests: 1, wantInMessage: "Connection conn-1 not found."},
		{name: "422 is not retried", handler: status(422, `{"detail":"agent is locked"}`), in: input(true), wantType: ac.ErrValidation, wantStatus: 422, wantRequests: 1, wantInMessage: "agent is locked"},
		{name: "429 hands its Retry-After to Temporal", handler: status(429, "", "Retry-After", "7"), in: input(true), wantType: ac.ErrRateLimited, wantRetryable: true, wantStatus: 429, wantRequests: 1, wantDelay: 7 * time.Second},
		{name: "503 after the in-process retries", handler: status(503, ""), in: input(true), wantType: ac.ErrServerError, wantRetryable: true, wantStatus: 503, wantRequests: 3},
		{name: "refused ID sends nothing", handler: status(204, ""), in: RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "c/../x"}, wantType: ac.ErrInvalidRequest, wantInMessage: "connection_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.handler)
			res, err := f.remove(t, tt.in)
			if got := f.requests.Load(); got != int64(tt.wantRequests) {
				t.Errorf("got %d requests at the server, want %d", got, tt.wantRequests)
			}
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("got error %v, want success", err)
				}
				want := ac.RemoveConnectionResult{AgentID: "agent-1", ConnectionID: "conn-1", Outcome: tt.wantOutcome, Attempts: tt.wantRequests}
				if !reflect.DeepEqual(res, want) {
					t.Errorf("got result %+v, want %+v", res, want)
				}
				return
			}
			appErr := appError(t, err)
			if appErr.Type() != tt.wantType {
				t.Errorf("got type %q, want %q (message %q)", appErr.Type(), tt.wantType, appErr.Message())
			}
			if appErr.NonRetryable() == tt.wantRetryable {
				t.Errorf("got non-retryable %t, want %t", appErr.NonRetryable(), !tt.wantRetryable)
			}
			if appErr.NextRetryDelay() != tt.wantDelay {
				t.Errorf("got next retry delay %s, want %s", appErr.NextRetryDelay(), tt.wantDelay)
			}
			if !strings.Contains(appErr.Message(), tt.wantInMessage) {
				t.Errorf("got message %q, want it to contain %q", appErr.Message(), tt.wantInMessage)
			}
			var d ac.FailureDetails
			if err := appErr.Details(&d); err != nil {
				t.Fatalf("details: %v", err)
			}
			if want := (ac.FailureDetails{StatusCode: tt.wantStatus, Requests: tt.wantRequests}); d != want {
				t.Errorf("got details %+v, want %+v", d, want)
			}
		})
	}
}

// TestRemoveConnection_ContextEndIsNotAFailure cancels the activity while its request is in
// flight: the activity ends with the context's error, not with one of the contract's failure
// types that Temporal would record as the removal's failure.
func TestRemoveConnection_ContextEndIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFixture(t, func(w http.ResponseWriter, _ *http.Request) {
		cancel()
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	f.env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	_, err := f.remove(t, input(true))
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("got error %v, want the context's end", err)
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && slices.Contains(slices.Concat(ac.NonRetryableErrorTypes(), ac.RetryableErrorTypes()), appErr.Type()) {
		t.Errorf("got failure type %q, want none of the contract's", appErr.Type())
	}
}

func TestRemoveConnection_404AfterEarlierAttemptIsAlreadyAbsent(t *testing.T) {
	f := newFixture(t, status(404, `{"detail":"not found"}`))
	// An earlier Temporal attempt sent two requests and heartbeated the count.
	f.env.SetHeartbeatDetails(removeProgress{Requests: 2})
	res, err := f.remove(t, input(false))
	if err != nil {
		t.Fatalf("got error %v, want already_absent", err)
	}
	if res.Outcome != ac.OutcomeAlreadyAbsent {
		t.Errorf("got outcome %q, want %q", res.Outcome, ac.OutcomeAlreadyAbsent)
	}
	if res.Attempts != 3 {
		t.Errorf("got attempts %d, want 3 (2 earlier + 1)", res.Attempts)
	}
}

// heartbeatLog records, in order, the server's requests and the heartbeats the activity sent to
// (the test environment's mock of) Temporal, as "request" and "hb <requests>/<attempt>" events.
type heartbeatLog struct {
	mu     sync.Mutex
	events []string
}

func (l *heartbeatLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *heartbeatLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, ", ")
}

// heartbeatFixture is a fixture whose server and heartbeat listener write to one heartbeatLog.
func heartbeatFixture(t *testing.T, handler http.HandlerFunc) (*fixture, *heartbeatLog) {
	t.Helper()
	log := &heartbeatLog{}
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request) {
		log.add("request")
		handler(w, r)
	})
	f.env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p removeProgress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
			return
		}
		log.add(fmt.Sprintf("hb %d/%d", p.Requests, p.Attempt))
	})
	return f, log
}

// The first request of an attempt leaves with no heartbeat before it (in production that would be
// a synchronous Temporal RPC per removal); a removal that succeeds records none at all.
func TestRemoveConnection_NoHeartbeatBeforeTheFirstRequest(t *testing.T) {
	f, log := heartbeatFixture(t, status(204, ""))
	res, err := f.remove(t, input(false))
	if err != nil {
		t.Fatalf("got error %v, want success", err)
	}
	if res.Attempts != 1 {
		t.Errorf("got attempts %d, want 1", res.Attempts)
	}
	if got := log.String(); got != "request" {
		t.Errorf("got events %q, want %q (no heartbeat)", got, "request")
	}
}

// An in-process retry is a later request of the same attempt: its count is recorded before it
// leaves. It is the attempt's first heartbeat, which the SDK sends at once.
func TestRemoveConnection_HeartbeatsCountBeforeAnInProcessRetry(t *testing.T) {
	f, log := heartbeatFixture(t, sequence(status(503, ""), status(204, "")))
	res, err := f.remove(t, input(false))
	if err != nil {
		t.Fatalf("got error %v, want success", err)
	}
	if res.Attempts != 2 {
		t.Errorf("got attempts %d, want 2", res.Attempts)
	}
	if got, want := log.String(), "request, hb 2/1, request"; got != want {
		t.Errorf("got events %q, want %q", got, want)
	}
}

// Before an error Temporal retries is returned, the attempt's count is recorded, so the next
// attempt reads it; an error Temporal does not retry records nothing.
func TestRemoveConnection_HeartbeatsCountBeforeARetryableError(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		// The attempt's only heartbeat, sent at once.
		{name: "429 after one request", handler: status(429, "", "Retry-After", "7"), want: "request, hb 1/1"},
		// 2/1 opens the SDK's throttle window; 3/1 before the third request and 3/1 before the
		// return are kept in it, and the SDK flushes the last when the failed attempt closes.
		{name: "503 after the in-process retries", handler: status(503, ""), want: "request, hb 2/1, request, request, hb 3/1"},
		{name: "422 is not retried", handler: status(422, `{"detail":"agent is locked"}`), want: "request"},
		{name: "404 without missing_ok is not retried", handler: status(404, ""), want: "request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, log := heartbeatFixture(t, tt.handler)
			if _, err := f.remove(t, input(false)); err == nil {
				t.Fatal("got success, want an error")
			}
			if got := log.String(); got != tt.want {
				t.Errorf("got events %q, want %q", got, tt.want)
			}
		})
	}
}

// A recorded count from an earlier attempt is carried into this one and into the record before a
// retryable error, with this attempt's number.
func TestRemoveConnection_CarriesTheRecordedCount(t *testing.T) {
	f, log := heartbeatFixture(t, status(503, ""))
	f.env.SetHeartbeatDetails(removeProgress{Requests: 4, Attempt: 1})
	_, err := f.remove(t, RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: true})
	var d ac.FailureDetails
	if err := appError(t, err).Details(&d); err != nil {
		t.Fatalf("details: %v", err)
	}
	if d.Requests != 7 {
		t.Errorf("got %d requests in the failure, want 7 (4 recorded + 3)", d.Requests)
	}
	// The test environment runs every activity as attempt 1.
	if got, want := log.String(), "request, hb 6/1, request, request, hb 7/1"; got != want {
		t.Errorf("got events %q, want %q", got, want)
	}
}

// priorRequests: each earlier Temporal attempt that left no count of its own counts as one
// request.
func TestPriorRequests(t *testing.T) {
	tests := []struct {
		name     string
		attempt  int32
		recorded removeProgress
		want     int
	}{
		{name: "first attempt, no detail", attempt: 1, want: 0},
		{name: "second attempt, no detail: the first died in its first request", attempt: 2, want: 1},
		{name: "fourth attempt, no detail", attempt: 4, want: 3},
		{name: "second attempt, first recorded 3", attempt: 2, recorded: removeProgress{Requests: 3, Attempt: 1}, want: 3},
		{name: "third attempt, first recorded 3, second left none", attempt: 3, recorded: removeProgress{Requests: 3, Attempt: 1}, want: 4},
		{name: "third attempt, second recorded 5", attempt: 3, recorded: removeProgress{Requests: 5, Attempt: 2}, want: 5},
		{name: "a tick before the first request of attempt 2 claims attempt 1 only", attempt: 3, recorded: removeProgress{Requests: 1, Attempt: 1}, want: 2},
		{name: "a detail of an older worker (no attempt) counted every request already", attempt: 3, recorded: removeProgress{Requests: 2}, want: 2},
		{name: "a detail of this attempt adds nothing", attempt: 1, recorded: removeProgress{Requests: 2, Attempt: 1}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := priorRequests(tt.attempt, tt.recorded); got != tt.want {
				t.Errorf("priorRequests(%d, %+v) = %d, want %d", tt.attempt, tt.recorded, got, tt.want)
			}
		})
	}
}

// progress: before the first request of an attempt a heartbeat (the periodic one) claims only the
// earlier attempts, so that an attempt dying in its first request is still counted; after it, and
// in the last record of an attempt that sent nothing, it claims this attempt.
func TestRemoveHeartbeat_Progress(t *testing.T) {
	tests := []struct {
		name         string
		prior        int
		attempt, n   int
		final        bool
		want         removeProgress
		wantNextSees int // priorRequests of the next attempt, should this one die now
	}{
		{name: "attempt 1 before its first request", attempt: 1, want: removeProgress{Requests: 0, Attempt: 0}, wantNextSees: 1},
		{name: "attempt 3 before its first request", prior: 4, attempt: 3, want: removeProgress{Requests: 4, Attempt: 2}, wantNextSees: 5},
		{name: "attempt 3 in its first request", prior: 4, attempt: 3, n: 1, want: removeProgress{Requests: 5, Attempt: 3}, wantNextSees: 5},
		{name: "attempt 3 in its second request", prior: 4, attempt: 3, n: 2, want: removeProgress{Requests: 6, Attempt: 3}, wantNextSees: 6},
		{name: "attempt 3 ending with no request sent", prior: 4, attempt: 3, final: true, want: removeProgress{Requests: 4, Attempt: 3}, wantNextSees: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hb := &removeHeartbeat{prior: tt.prior, attempt: tt.attempt, n: tt.n, final: tt.final}
			got := hb.progress()
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if next := priorRequests(int32(tt.attempt+1), got); next != tt.wantNextSees {
				t.Errorf("the next attempt counts %d earlier requests, want %d", next, tt.wantNextSees)
			}
		})
	}
}

// Across Temporal attempts (the test workflow environment retries on a virtual clock, with the
// attempt number and the last heartbeat): attempt 1 ends ServerError after three requests, its
// count flushed when it closes; attempt 2 reads it, and its 404 is already_absent.
func TestRemoveConnection_CountAcrossTemporalAttempts(t *testing.T) {
	var requests atomic.Int64
	handler := sequence(status(503, ""), status(503, ""), status(503, ""), status(404, `{"detail":"not found"}`))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	f := newFixtureAt(t, srv.URL, &requests, srv)
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(f.logs)
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(f.acts)
	var attempts []string
	env.SetOnActivityStartedListener(func(info *activity.Info, ctx context.Context, _ converter.EncodedValues) {
		var p removeProgress
		if activity.HasHeartbeatDetails(ctx) {
			_ = activity.GetHeartbeatDetails(ctx, &p)
		}
		attempts = append(attempts, fmt.Sprintf("attempt %d reads %d/%d", info.Attempt, p.Requests, p.Attempt))
	})
	remove := func(ctx workflow.Context, in RemoveConnectionInput) (ac.RemoveConnectionResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		})
		var res ac.RemoveConnectionResult
		err := workflow.ExecuteActivity(ctx, f.acts.RemoveConnection, in).Get(ctx, &res)
		return res, err
	}
	env.RegisterWorkflowWithOptions(remove, workflow.RegisterOptions{Name: "remove"})
	env.ExecuteWorkflow("remove", input(false))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("got error %v, want already_absent", err)
	}
	var res ac.RemoveConnectionResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ac.OutcomeAlreadyAbsent || res.Attempts != 4 || requests.Load() != 4 {
		t.Errorf("got %+v after %d requests, want already_absent with attempts 4 after 4", res, requests.Load())
	}
	if got, want := strings.Join(attempts, ", "), "attempt 1 reads 0/0, attempt 2 reads 3/1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRemoveConnection_CredentialsNeverLogged(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		// A misbehaving server echoes the credentials back in its error body.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, `{"detail":"bad key %s and %s"}`, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
	}
	handlers := map[string]http.HandlerFunc{
		"204":      status(204, ""),
		"503s":     status(503, ""),
		"422 echo": echo,
		"401":      status(401, `{"detail":"Invalid API key"}`),
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, h)
			_, err := f.remove(t, input(true))
			text := f.logs.String()
			if err != nil {
				text += "\n" + err.Error()
			}
			if text == "" {
				t.Fatal("got no log lines, want the activity's log to be captured")
			}
			for _, secret := range []string{testKey, testBearer} {
				if strings.Contains(text, secret) {
					t.Errorf("got a credential in logs or error:\n%s", text)
				}
			}
		})
	}
}

func TestRemoveConnection_LogsIDsStatusAndLatency(t *testing.T) {
	f := newFixture(t, status(204, ""))
	if _, err := f.remove(t, input(true)); err != nil {
		t.Fatal(err)
	}
	logs := f.logs.String()
	for _, want := range []string{"connection removed", "agent_id agent-1", "connection_id conn-1", "status 204", "latency_ms", "attempt 1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("got logs %q, want them to contain %q", logs, want)
		}
	}
}
