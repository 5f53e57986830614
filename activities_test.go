package agentconnections_test

// The black-box test of the contract: every row of the "what each answer becomes" table in
// docs/contract.md, run through RemoveConnectionWorkflow and the real RemoveConnection activity
// (Temporal's test environment, so Temporal retries happen on a virtual clock) against an httptest
// control plane.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/activities"
	"github.com/agentops/agentconnections/internal/controlplane"
	"github.com/agentops/agentconnections/workflows"
)

// answer is one scripted reply of the fake control plane.
type answer struct {
	status     int
	body       string
	retryAfter string
	// retryAfterIn sends Retry-After as an HTTP date this long after the answer.
	retryAfterIn time.Duration
	reset        bool // close the connection without answering
	hang         bool // answer nothing until the client gives up
}

// controlPlane answers the i-th request with the i-th answer (the last one repeats).
type controlPlane struct {
	mu      sync.Mutex
	answers []answer
	paths   []string
}

func (c *controlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	n := len(c.paths)
	c.paths = append(c.paths, r.Method+" "+r.URL.EscapedPath())
	a := c.answers[min(n, len(c.answers)-1)]
	c.mu.Unlock()
	switch {
	case a.reset:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case a.hang:
		<-r.Context().Done()
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.retryAfterIn > 0 {
		w.Header().Set("Retry-After", time.Now().Add(a.retryAfterIn).UTC().Format(http.TimeFormat))
	}
	if a.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(a.body))
}

func (c *controlPlane) requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.paths)
}

type run struct {
	result  ac.RemoveConnectionResult
	err     *temporal.ApplicationError
	starts  []time.Time // virtual time at each Temporal attempt's start
	servers int         // requests the control plane saw
}

// removeOnce runs RemoveConnectionWorkflow once against a control plane scripted with answers.
func removeOnce(t *testing.T, in ac.RemoveConnectionInput, answers ...answer) run {
	t.Helper()
	cp := &controlPlane{answers: answers}
	srv := httptest.NewServer(cp)
	t.Cleanup(srv.Close)
	client, err := controlplane.New(controlplane.Config{
		BaseURL:        srv.URL,
		Credentials:    controlplane.StaticCredentials{APIKey: "contract-test-key"},
		RequestTimeout: 200 * time.Millisecond,
		HTTPRetry:      controlplane.HTTPRetry{WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: client})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(time.Minute)
	env.RegisterWorkflow(workflows.RemoveConnectionWorkflow)
	env.RegisterActivity(acts)
	var r run
	var mu sync.Mutex
	env.SetOnActivityStartedListener(func(_ *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		r.starts = append(r.starts, env.Now())
		mu.Unlock()
	})
	env.ExecuteWorkflow(workflows.RemoveConnectionWorkflow, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if werr := env.GetWorkflowError(); werr != nil {
		if !errors.As(werr, &r.err) {
			t.Fatalf("got %v, want an ApplicationError", werr)
		}
	} else if err := env.GetWorkflowResult(&r.result); err != nil {
		t.Fatal(err)
	}
	r.servers = cp.requests()
	return r
}

func in(missingOK bool) ac.RemoveConnectionInput {
	return ac.RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn-1", MissingOK: &missingOK}
}

// fewAttempts keeps the retry-forever rows short: 3 Temporal attempts.
func fewAttempts(missingOK bool) ac.RemoveConnectionInput {
	i := in(missingOK)
	i.Retry = &ac.RetryOverrides{MaximumAttempts: 3}
	return i
}

func TestContract_WhatEachAnswerBecomes(t *testing.T) {
	notFound := answer{status: 404, body: `{"detail":"Connection conn-1 not found."}`}
	ok := answer{status: 204}
	tests := []struct {
		row          string
		input        ac.RemoveConnectionInput
		answers      []answer
		wantOutcome  string
		wantType     string
		wantRequests int // requests the control plane saw, and the result's attempts on success
		wantAttempts int // Temporal attempts
		wantMessage  string
		wantMinDelay time.Duration // least virtual wait between the first two attempts
	}{
		{row: "204 is removed", input: in(true), answers: []answer{ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 1, wantAttempts: 1},
		{row: "404 with missing_ok true is already_absent", input: in(true), answers: []answer{notFound}, wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 1, wantAttempts: 1},
		{row: "404 with missing_ok false on the first request is NotFound, not retried", input: in(false), answers: []answer{notFound}, wantType: ac.ErrNotFound, wantRequests: 1, wantAttempts: 1, wantMessage: "Connection conn-1 not found."},
		{row: "404 after an in-process retry is already_absent", input: in(false), answers: []answer{{status: 502}, notFound}, wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 2, wantAttempts: 1},
		{row: "404 after an earlier Temporal attempt is already_absent", input: in(false), answers: []answer{{status: 500}, notFound}, wantOutcome: ac.OutcomeAlreadyAbsent, wantRequests: 2, wantAttempts: 2},
		{row: "422 is ValidationError, not retried, with loc and msg", input: in(true), answers: []answer{{status: 422, body: `{"detail":[{"loc":["path","connection_id"],"msg":"String should have at most 256 characters","type":"string_too_long"}]}`}}, wantType: ac.ErrValidation, wantRequests: 1, wantAttempts: 1, wantMessage: "path.connection_id: String should have at most 256 characters"},
		{row: "400 is BadRequest, not retried", input: in(true), answers: []answer{{status: 400, body: `{"detail":"bad"}`}}, wantType: ac.ErrBadRequest, wantRequests: 1, wantAttempts: 1},
		{row: "401 is Unauthorized, not retried, names the key", input: in(true), answers: []answer{{status: 401}}, wantType: ac.ErrUnauthorized, wantRequests: 1, wantAttempts: 1, wantMessage: "LANGSMITH_API_KEY"},
		{row: "403 is Unauthorized, not retried, names the tenant", input: in(true), answers: []answer{{status: 403}}, wantType: ac.ErrUnauthorized, wantRequests: 1, wantAttempts: 1, wantMessage: "LANGSMITH_TENANT_ID"},
		{row: "408 is retried", input: in(true), answers: []answer{{status: 408}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2},
		// A 429 also pauses the whole client in real time (the test environment's clock is virtual),
		// so these delays are kept short.
		{row: "429 with Retry-After seconds is retried after the delay", input: in(true), answers: []answer{{status: 429, retryAfter: "2"}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2, wantMinDelay: 2 * time.Second},
		{row: "429 with a Retry-After date is retried after the delay", input: in(true), answers: []answer{{status: 429, retryAfterIn: 3 * time.Second}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2, wantMinDelay: time.Second},
		{row: "429 every time ends RateLimited after the bound", input: fewAttempts(true), answers: []answer{{status: 429, retryAfter: "1"}}, wantType: ac.ErrRateLimited, wantRequests: 3, wantAttempts: 3},
		{row: "5xx is retried", input: in(true), answers: []answer{{status: 500}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2},
		{row: "503 with Retry-After is retried after the delay", input: in(true), answers: []answer{{status: 503, retryAfter: "30"}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2, wantMinDelay: 30 * time.Second},
		{row: "5xx every time ends ServerError after the bound", input: fewAttempts(true), answers: []answer{{status: 500}}, wantType: ac.ErrServerError, wantRequests: 3, wantAttempts: 3},
		{row: "connection reset is retried", input: in(true), answers: []answer{{reset: true}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 1},
		{row: "connection reset every time ends Unavailable", input: fewAttempts(true), answers: []answer{{reset: true}}, wantType: ac.ErrUnavailable, wantRequests: 9, wantAttempts: 3},
		{row: "timeout is retried", input: in(true), answers: []answer{{hang: true}, ok}, wantOutcome: ac.OutcomeRemoved, wantRequests: 2, wantAttempts: 2},
		{row: "timeout every time ends Unavailable", input: fewAttempts(true), answers: []answer{{hang: true}}, wantType: ac.ErrUnavailable, wantRequests: 3, wantAttempts: 3},
		{row: "any other status is UnexpectedStatus, not retried", input: in(true), answers: []answer{{status: 418, body: "short and stout"}}, wantType: ac.ErrUnexpectedStatus, wantRequests: 1, wantAttempts: 1, wantMessage: "short and stout"},
		{row: "a refused ID is InvalidRequest before any request", input: ac.RemoveConnectionInput{AgentID: "agent-1", ConnectionID: "conn%2F1"}, answers: []answer{ok}, wantType: ac.ErrInvalidRequest, wantRequests: 0, wantAttempts: 0},
	}
	for _, tt := range tests {
		t.Run(tt.row, func(t *testing.T) {
			r := removeOnce(t, tt.input, tt.answers...)
			if r.servers != tt.wantRequests {
				t.Errorf("got %d requests at the control plane, want %d", r.servers, tt.wantRequests)
			}
			if len(r.starts) != tt.wantAttempts {
				t.Errorf("got %d Temporal attempts, want %d", len(r.starts), tt.wantAttempts)
			}
			if tt.wantMinDelay > 0 && len(r.starts) >= 2 {
				if d := r.starts[1].Sub(r.starts[0]); d < tt.wantMinDelay {
					t.Errorf("got %s between attempts, want at least %s", d, tt.wantMinDelay)
				}
			}
			if tt.wantType == "" {
				if r.err != nil {
					t.Fatalf("got failure %s: %s, want outcome %s", r.err.Type(), r.err.Message(), tt.wantOutcome)
				}
				want := ac.RemoveConnectionResult{AgentID: tt.input.AgentID, ConnectionID: tt.input.ConnectionID, Outcome: tt.wantOutcome, Attempts: tt.wantRequests}
				if !reflect.DeepEqual(r.result, want) {
					t.Errorf("got %+v, want %+v", r.result, want)
				}
				return
			}
			if r.err == nil {
				t.Fatalf("got %+v, want failure type %s", r.result, tt.wantType)
			}
			if r.err.Type() != tt.wantType {
				t.Errorf("got type %s (%s), want %s", r.err.Type(), r.err.Message(), tt.wantType)
			}
			if !strings.Contains(r.err.Error(), tt.wantMessage) {
				t.Errorf("got message %q, want it to contain %q", r.err.Error(), tt.wantMessage)
			}
			if strings.Contains(r.err.Error(), "contract-test-key") {
				t.Errorf("got the API key in the failure: %s", r.err.Error())
			}
		})
	}
}

func TestContract_DeleteIsIdempotent(t *testing.T) {
	for i := range 2 {
		r := removeOnce(t, in(false), answer{status: 204})
		if r.err != nil || r.result.Outcome != ac.OutcomeRemoved {
			t.Errorf("removal %d: got %+v / %v, want removed", i+1, r.result, r.err)
		}
	}
}

func TestContract_IDsArePathEscapedUnderThePrefix(t *testing.T) {
	cp := &controlPlane{answers: []answer{{status: 204}}}
	srv := httptest.NewServer(cp)
	t.Cleanup(srv.Close)
	client, err := controlplane.New(controlplane.Config{BaseURL: srv.URL + "/api-host", Credentials: controlplane.StaticCredentials{APIKey: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := activities.New(activities.Config{ControlPlane: client})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	if _, err := env.ExecuteActivity(ac.RemoveConnectionActivityType, activities.RemoveConnectionInput{AgentID: "agént", ConnectionID: "c:1"}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(cp.paths), "[DELETE /api-host/v2/auth/agents/ag%C3%A9nt/connections/c:1]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
