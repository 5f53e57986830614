//go:build faults

package faults

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	ac "github.com/agentops/agentconnections"
	"github.com/agentops/agentconnections/emulator"
	"github.com/agentops/agentconnections/internal/devserver"
)

// secretKey is distinctive enough that any hit is this key and nothing else.
const secretKey = "sk-faults-Xq9ZT4mLr2VbN7pKc8Wd"

// traceRecorder keeps the bodies of OTLP/HTTP trace exports.
type traceRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *traceRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		if zr, err := gzip.NewReader(r.Body); err == nil {
			rd = zr
		}
	}
	body, _ := io.ReadAll(rd)
	c.mu.Lock()
	c.bodies = append(c.bodies, body)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// secretForms are the byte strings whose presence means the key leaked: the key itself and its
// base64 forms at each alignment (payloads are base64 in JSON renderings of a history).
func secretForms(key string) [][]byte {
	forms := [][]byte{[]byte(key)}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for off := range 3 {
			s := enc.EncodeToString(append(make([]byte, off), key...))
			// Drop the block holding the padding bytes and the last, padding-dependent block.
			forms = append(forms, []byte(s[4:len(s)-4]))
		}
	}
	return forms
}

func countHits(data []byte, forms [][]byte) int {
	n := 0
	for _, f := range forms {
		n += bytes.Count(data, f)
	}
	return n
}

// TestFaults_7_SecretScan runs removals that fail in every way with a distinctive key, then scans
// every worker log line, every workflow history (client and temporal CLI), the /metrics scrape and
// every exported trace for it.
func TestFaults_7_SecretScan(t *testing.T) {
	forms := secretForms(secretKey)
	if countHits([]byte("x"+secretKey+"y"), forms) == 0 || countHits([]byte(base64.StdEncoding.EncodeToString([]byte("ab"+secretKey))), forms) == 0 {
		t.Fatal("the scanner does not find the key it looks for")
	}
	col := &traceRecorder{}
	otlp := httptest.NewServer(col)
	t.Cleanup(otlp.Close)
	s := newStack(t, stackOptions{key: secretKey, env: []string{
		"LANGSMITH_REQUEST_TIMEOUT=2s",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + otlp.URL + "/v1/traces",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}})
	const agent = "secret-agent"
	singles := map[string]emulator.Fault{
		"s-401":       {Status: 401, Detail: "Invalid API key"},
		"s-403":       {Status: 403},
		"s-422":       {Status: 422, Body: emulator.BodyTruncated},
		"s-400":       {Status: 400},
		"s-418":       {Status: 418, Body: emulator.BodyHTML},
		"s-503":       {Status: 503, RetryAfter: "1"},
		"s-429-date":  {Status: 429, RetryAfter: "1", RetryAfterDate: true},
		"s-hang":      {Hang: true},
		"s-500-text":  {Status: 500, Body: emulator.BodyText},
		"s-ok":        {},
		"s-not-found": {},
	}
	var singleIDs []string
	for id, f := range singles {
		singleIDs = append(singleIDs, id)
		if id == "s-not-found" {
			continue // never seeded: 404 with missing_ok false
		}
		s.em.Seed(agent, id)
		if f.Status != 0 || f.Hang {
			f.ConnectionID = id
			s.em.InjectNext(f)
		}
	}
	missingOK := false
	var wg sync.WaitGroup
	failures := 0
	var mu sync.Mutex
	for _, id := range singleIDs {
		wg.Go(func() {
			in := ac.RemoveConnectionInput{AgentID: agent, ConnectionID: id}
			if id == "s-not-found" {
				in.MissingOK = &missingOK
			}
			run, err := s.startRemoval(in)
			if err == nil {
				_, err = removalResult(run, 5*time.Minute)
			}
			if err != nil {
				mu.Lock()
				failures++
				mu.Unlock()
				if countHits([]byte(err.Error()), forms) > 0 {
					t.Errorf("the failure of %s carries the key", id)
				}
			}
		})
	}
	wg.Wait()
	// A teardown with failures too: 422s, a 401, transient 5xx.
	all := ids("sec", 60)
	s.em.Seed("secret-teardown", all...)
	s.em.MarkInvalid(all[3], all[7])
	s.em.InjectNext(emulator.Fault{Status: 401, ConnectionID: all[11]})
	s.em.InjectNext(emulator.Fault{Status: 502, Body: emulator.BodyHTML, Count: 5, Route: emulator.RouteRemove})
	run, err := s.startTeardown(ac.RemoveAgentConnectionsInput{AgentID: "secret-teardown", Concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	res, err := teardownResult(run, 5*time.Minute)
	if err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if res.Failed != 3 {
		t.Errorf("got %v, want 3 failed (two 422, one 401)", outcomeCounts(res))
	}

	// /metrics, while the worker runs.
	s.mu.Lock()
	w := s.workers[0]
	s.mu.Unlock()
	resp, err := http.Get("http://" + w.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(metrics, []byte("agent_connections_http_requests_total")) {
		t.Fatalf("/metrics: got %d without the worker's metrics", resp.StatusCode)
	}
	metricHits := countHits(metrics, forms)

	// Stop the worker: its buffered spans are flushed, its log is complete.
	w.Stop(15 * time.Second)
	log := w.log(t)
	logLines := bytes.Count(log, []byte("\n"))
	logHits := countHits(log, forms)

	col.mu.Lock()
	spanBodies := len(col.bodies)
	traceBytes, traceHits := 0, 0
	for _, b := range col.bodies {
		traceBytes += len(b)
		traceHits += countHits(b, forms)
	}
	col.mu.Unlock()
	if spanBodies == 0 {
		t.Error("got no trace export, want the worker's spans at the recorder")
	}

	// Every workflow history, through the client (raw protobuf and JSON) and the temporal CLI.
	cli, err := devserver.CLIPath()
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	started := append([]string{}, s.started...)
	s.mu.Unlock()
	seen := map[string]bool{}
	histories, events, historyHits, cliHits := 0, 0, 0, 0
	for _, id := range started {
		if seen[id] {
			continue
		}
		seen[id] = true
		histories++
		iter := s.client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			ev, err := iter.Next()
			if err != nil {
				t.Fatalf("history of %s: %v", id, err)
			}
			events++
			raw, _ := proto.Marshal(ev)
			js, _ := protojson.Marshal(ev)
			historyHits += countHits(raw, forms) + countHits(js, forms)
		}
		out, err := exec.Command(cli, "workflow", "show", "--address", s.temporalAddr, "--workflow-id", id, "--output", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("temporal workflow show %s: %v\n%s", id, err, out)
		}
		cliHits += countHits(out, forms)
	}
	for what, n := range map[string]int{"worker log": logHits, "histories (client)": historyHits, "histories (temporal CLI)": cliHits, "/metrics": metricHits, "traces": traceHits} {
		if n != 0 {
			t.Errorf("got %d hits of the key in the %s, want 0", n, what)
		}
	}
	t.Logf("secrets: %d workflows (%d failed single removals, teardown %v), scanned %d log lines, %d histories (%d events, client and CLI), %d bytes of /metrics, %d trace exports (%d bytes): %d hits",
		histories, failures, outcomeCounts(res), logLines, histories, events, len(metrics), spanBodies, traceBytes,
		logHits+historyHits+cliHits+metricHits+traceHits)
}
