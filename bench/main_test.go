package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs the whole harness with tiny sizes against a real dev server and the worker
// binary, and checks the figures (positive rates, computed ratios) and the report (every section,
// the hot-path section someone else filled kept).
func TestQuickRun(t *testing.T) {
	// A guard against a hung run, not a figure: about 90 s on two shared cores.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	start := time.Now()
	rep, err := run(ctx, options{quick: true, command: "go run ./bench --quick"}, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("quick run took %s", time.Since(start).Round(time.Millisecond))

	if len(rep.E2E) != len(quickSizes.e2eLevels) {
		t.Fatalf("got %d end-to-end rows, want %d", len(rep.E2E), len(quickSizes.e2eLevels))
	}
	for _, row := range rep.E2E {
		for name, v := range map[string]float64{"baseline": row.Baseline, "in-process": row.InProcess, "binary": row.Binary, "ratio": row.Ratio, "binary ratio": row.BinaryRatio} {
			if !(v > 0) || !finite(v) {
				t.Errorf("end-to-end, concurrency %d: %s is %v, want a positive number", row.Concurrency, name, v)
			}
		}
	}
	if len(rep.Teardown) != len(quickSizes.tdLevels) {
		t.Fatalf("got %d teardown rows, want %d", len(rep.Teardown), len(quickSizes.tdLevels))
	}
	for _, row := range rep.Teardown {
		for name, v := range map[string]float64{"naive": row.Naive, "batched": row.Batched, "binary": row.Binary, "ratio": row.Ratio} {
			if !(v > 0) || !finite(v) {
				t.Errorf("teardown, concurrency %d: %s is %v, want a positive number", row.Concurrency, name, v)
			}
		}
	}
	p := rep.Pace
	if p.Removed != quickSizes.paceN || p.Requests < quickSizes.paceN || !(p.PerMinute > 0) || p.PeakPerSecond <= 0 {
		t.Errorf("paced teardown: got %+v", p)
	}
	// 33/s with a burst of 5 against 2000/min: never a 429, and the requests keep to the worker's pace.
	if p.Status429 != 0 {
		t.Errorf("paced teardown: got %d answers 429, want 0", p.Status429)
	}
	if limit := p.RPS + p.Burst + 2; p.PeakPerSecond > limit {
		t.Errorf("paced teardown: got %d requests in one second, want at most %d", p.PeakPerSecond, limit)
	}
	if len(rep.Footprint) != len(quickSizes.footprint)+1 {
		t.Fatalf("got %d footprint rows, want %d", len(rep.Footprint), len(quickSizes.footprint)+1)
	}
	for _, row := range rep.Footprint {
		if row.PeakRSSKiB <= 0 || !(row.CPUSeconds > 0) {
			t.Errorf("footprint, %d connections: got RSS %d KiB and CPU %v s, want both positive", row.Connections, row.PeakRSSKiB, row.CPUSeconds)
		}
		if row.Connections > 0 && row.Elapsed <= 0 {
			t.Errorf("footprint, %d connections: got wall time %s", row.Connections, row.Elapsed)
		}
	}
	// Section 2c: one row per replica count and one with a replica killed; a fleet never gets a 429.
	if len(rep.Fleet) != len(quickSizes.fleetReplicas)+1 {
		t.Fatalf("got %d fleet rows, want %d", len(rep.Fleet), len(quickSizes.fleetReplicas)+1)
	}
	for _, row := range rep.Fleet {
		if row.Removed != quickSizes.fleetN || row.Status429 != 0 || !(row.PerMinute > 0) {
			t.Errorf("fleet of %d (killed %t): got %+v, want every connection removed and no 429", row.Replicas, row.Killed, row)
		}
	}
	// Section 2d: every connection torn down and restored, one connection per token (the run
	// fails otherwise), with positive rates and the requests of each.
	x := rep.Restore
	if x == nil {
		t.Fatal("no restore section")
	}
	if x.N != quickSizes.restoreN || x.Restored != x.N || x.OnePerToken != x.N || x.AtEmulator != x.N {
		t.Errorf("restore: got %+v, want all %d restored with one connection per token", x, quickSizes.restoreN)
	}
	for name, v := range map[string]float64{"teardown": x.Teardown.Rate, "restore": x.Restore.Rate, "ratio": x.Ratio} {
		if !(v > 0) || !finite(v) {
			t.Errorf("restore: %s is %v, want a positive number", name, v)
		}
	}
	if x.Teardown.ByMethod["DELETE"] != x.N || x.Restore.ByMethod["POST"] != x.N || x.Restore.ByMethod["GET"] < 1 {
		t.Errorf("restore: got teardown requests %v and restore requests %v, want %d DELETEs, then %d POSTs and the restore's lists",
			x.Teardown.ByMethod, x.Restore.ByMethod, x.N, x.N)
	}
	// 5 goals before section 2c; 3 per fleet row, and 1 more for the row with a replica killed;
	// 2 for section 2d.
	if want := 5 + 3*len(rep.Fleet) + 1 + 2; len(rep.Goals) != want {
		t.Errorf("got %d goals, want %d: %+v", len(rep.Goals), want, rep.Goals)
	}

	out := filepath.Join(t.TempDir(), "benchmarks.md")
	filled := "\n| BenchmarkRemoveConnection | filled by someone else |\n"
	if err := os.WriteFile(out, []byte("old\n"+hotPathStart+filled+hotPathEnd+"\nold tail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(out, rep.markdown()); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Benchmarks", "## Machine", "## Goals", "## 1. End-to-end removals/s", "## 2a. Teardown",
		"## 2b. Teardown under the API's rate limit", "## 2c. One budget for the whole fleet", "## 2d. Restore of 40 connections beside the teardown",
		"## 3. Worker footprint", "## Activity hot path",
		hotPathStart + filled + hotPathEnd, "go run ./bench --quick", "Quick smoke run", "Growth:",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "old tail") {
		t.Error("the report kept text from outside the hot-path section of the old file")
	}
	for _, bad := range []string{"NaN", "Inf", "%!"} {
		if strings.Contains(string(md), bad) {
			t.Errorf("the report contains %q:\n%s", bad, md)
		}
	}
}

func TestFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainRun(context.Background(), []string{"--bogus"}, &stdout, &stderr); code != 2 {
		t.Errorf("got exit code %d for an unknown flag, want 2", code)
	}
	if code := mainRun(context.Background(), []string{"extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("got exit code %d for an argument, want 2", code)
	}
	// Refused before anything starts: a partial report written to --out would drop the other
	// sections' figures.
	for _, args := range [][]string{{"--only", "restore", "--out", filepath.Join(t.TempDir(), "b.md")}, {"--only", "restore,bogus"}, {"--only", ","}} {
		stderr.Reset()
		if code := mainRun(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("got exit code %d for %q, want 2", code, args)
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: nothing said on stderr", args)
		}
	}
}

func TestParseOnly(t *testing.T) {
	got, err := parseOnly(" Footprint,restore,2a,restore ")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{sectionTeardown, sectionRestore, sectionFootprint}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (report order, no repeats)", got, want)
	}
	if _, err := parseOnly("restore,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("got %v, want an error naming the unknown section", err)
	}
}

// A run with --only prints its sections and goals and no other section's heading.
func TestMarkdownOnly(t *testing.T) {
	x := &restoreResult{N: 1000, Concurrency: 50, Latency: 20 * time.Millisecond, Restored: 1000, OnePerToken: 1000, AtEmulator: 1000, ReportPages: 1,
		Teardown: restorePhase{Wall: time.Second, Rate: 1000, Requests: 1002, ByMethod: map[string]int{"DELETE": 1000, "GET": 2}, WorkerCPU: 1, ServerCPU: 2, SelfCPU: 1},
		Restore:  restorePhase{Wall: 1250 * time.Millisecond, Rate: 800, Requests: 1020, ByMethod: map[string]int{"POST": 1000, "GET": 20}},
		Ratio:    0.8}
	rep := &report{Command: "go run ./bench --only restore", Only: []string{sectionRestore}, Restore: x}
	rep.evaluate()
	if len(rep.Goals) != 2 || !rep.Goals[0].Met || !rep.Goals[1].Met {
		t.Errorf("got goals %+v, want the two of section 2d, met", rep.Goals)
	}
	md := rep.markdown()
	for _, want := range []string{"Partial run (`--only restore`)", "## 2d. Restore of 1,000 connections beside the teardown", "1000 DELETE + 2 GET", "1000 POST + 20 GET", "**0.80**"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	for _, bad := range []string{"## 1.", "## 2a.", "## 2b.", "## 2c.", "## 3.", "## Activity hot path", "NaN", "Inf", "%!"} {
		if strings.Contains(md, bad) {
			t.Errorf("the report contains %q:\n%s", bad, md)
		}
	}
}

func TestBucketDrawn(t *testing.T) {
	t0 := time.Now()
	// 10 requests at once, then one a second: the first ten draw 10 tokens, the rest are refilled.
	var times []time.Time
	for range 10 {
		times = append(times, t0)
	}
	for i := 1; i <= 5; i++ {
		times = append(times, t0.Add(time.Duration(i)*time.Second))
	}
	if got := bucketDrawn(times, 60); got < 9.99 || got > 10.01 {
		t.Errorf("got %v tokens drawn, want 10", got)
	}
	if got := peakInWindow(times, time.Second); got != 10 {
		t.Errorf("got a peak of %d in one second, want 10", got)
	}
}
