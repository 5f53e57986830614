package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// probeTimeout bounds the one request `worker --probe` sends: under the compose health check's
// 5 s timeout, so a hung worker is reported by the probe, not by Docker killing it.
const probeTimeout = 3 * time.Second

// probeBodyLimit is how much of an answer's body the probe reads before closing it.
const probeBodyLimit = 4 << 10

// runProbe is `worker --probe URL`: a health check for images without a shell or curl (the
// distroless image). It sends one GET and follows no redirect, reads no environment and no
// configuration, and returns 0 for a 2xx answer, 1 for any other answer or none (with one line on
// stderr), and 2 when rawURL is not an absolute http or https URL.
func runProbe(ctx context.Context, rawURL string, stderr io.Writer) int {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse's error quotes the whole URL, user info included: say only what is wrong.
		return fail(stderr, exitConfig, "--probe: want an absolute http or https URL such as http://127.0.0.1:9090/readyz")
	}
	shown := probeShown(u)
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(stderr, exitConfig, "--probe %s: %v", shown, err)
	}
	resp, err := probeClient().Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, user info included
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", probeTimeout)
		}
		return fail(stderr, exitFailure, "probe %s: %v", shown, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, probeBodyLimit))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fail(stderr, exitFailure, "probe %s: %s", shown, resp.Status)
	}
	return exitOK
}

// probeClient is the probe's HTTP client. Its transport has no Proxy: the probe reads no setting,
// HTTP_PROXY and HTTPS_PROXY included, so a proxy set for the worker's own requests never stands
// between the health check and the worker.
func probeClient() *http.Client {
	return &http.Client{
		// Proxy nil: no proxy, whatever the environment says. One request, so no connection kept.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, ForceAttemptHTTP2: true},
		// One request: a redirect is an answer, not healthy, and is never followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probeShown is the URL as the probe's messages show it: user info and query redacted (either
// may carry a credential), the fragment (never sent) left out.
func probeShown(u *url.URL) string {
	v := *u
	if v.RawQuery != "" || v.ForceQuery {
		v.RawQuery, v.ForceQuery = "xxxxx", false
	}
	v.Fragment, v.RawFragment = "", ""
	return v.Redacted()
}
