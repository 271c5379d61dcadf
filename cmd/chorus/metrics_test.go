package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// scrape reads /metrics into series ("name" or `name{a="x",b="y"}`, as
// written) and returns the raw text as well.
func scrape(t *testing.T, httpAddr string) (map[string]float64, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series, body
}

// waitMetric scrapes until ok holds for the series name, or fails.
func waitMetric(t *testing.T, httpAddr, name string, ok func(float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, _ := scrape(t, httpAddr)
		if ok(m[name]) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed at %v", name, m[name])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsScenario scripts what an operator's dashboard watches: an API
// request creates a room with a callback URL, a caller joins it, a second
// caller is turned away (486: the room takes one), the first hangs up. The
// SIP, RTP, API, callback and room series move exactly as that says, and
// promtool, Prometheus's own linter, passes the scrape.
func TestMetricsScenario(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package")
	}
	var callbacks atomic.Int64
	app := newTargetServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callbacks.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer app.Close()
	r := startChorusLogged(t, []string{"--rtp-ports", "31800-31899", "--user", "u-alice:alice-token:alice-secret",
		"--target-allow", "127.0.0.1/32", "--max-members", "1"}, io.Discard)
	httpAddr := r.HTTP.String()
	before, _ := scrape(t, httpAddr)
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", httpAddr), token: "alice-token", secret: "alice-secret"}
	resp, body := alice.do("POST", "/conferences", map[string]any{"from": "7401", "callbackUrl": app.URL})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caller, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7401"})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	_, err = testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7401"})
	var se *testphone.StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("second caller into a room of one: %v, want 486", err)
	}
	// The mixer reads the caller's RTP and the join reaches the application.
	during := waitMetric(t, httpAddr, "chorus_rtp_packets_in_total", func(v float64) bool { return v > before["chorus_rtp_packets_in_total"] })
	if during["chorus_conferences_live"] != 1 || during["chorus_members_live"] != 1 {
		t.Errorf("live rooms %v, members %v; want 1 and 1", during["chorus_conferences_live"], during["chorus_members_live"])
	}
	waitMetric(t, httpAddr, `chorus_callback_events_total{outcome="delivered"}`, func(v float64) bool { return v >= 1 })
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	after := waitMetric(t, httpAddr, "chorus_members_live", func(v float64) bool { return v == 0 })

	moved := func(name string) float64 { return after[name] - before[name] }
	want := map[string]float64{
		`chorus_sip_requests_total{method="INVITE"}`:                                                  2,
		`chorus_sip_requests_total{method="BYE"}`:                                                     1,
		`chorus_sip_responses_total{class="4xx",code="486"}`:                                          1,
		`chorus_sip_invites_rejected_total{code="486"}`:                                               1,
		`chorus_sip_call_setup_seconds_count`:                                                         1,
		`chorus_calls_total`:                                                                          1,
		`chorus_http_requests_total{code="201",method="POST",route="/v1/users/{userId}/conferences"}`: 1,
	}
	for name, n := range want {
		if got := moved(name); got != n {
			t.Errorf("%s moved by %v, want %v", name, got, n)
		}
	}
	// 200 to the INVITE and to the BYE; the ACK has no response.
	if got := moved(`chorus_sip_responses_total{class="2xx",code="200"}`); got < 2 {
		t.Errorf("200 responses moved by %v, want at least 2", got)
	}
	if got := moved(`chorus_sip_requests_total{method="ACK"}`); got < 1 {
		t.Errorf("ACKs moved by %v, want at least 1", got)
	}
	// The caller's jitter buffer counted its packets when it left the room.
	waitMetric(t, httpAddr, "chorus_rtp_jitter_packets_total", func(v float64) bool { return v > before["chorus_rtp_jitter_packets_total"] })
	if d, n := after["chorus_callback_events_total{outcome=\"delivered\"}"], callbacks.Load(); d < 1 || d > float64(n) {
		t.Errorf("callbacks delivered %v, the application received %d", d, n)
	}
	if after["chorus_mixer_tick_lateness_seconds_count"] == 0 || after[`chorus_mixer_tick_lateness_seconds_bucket{le="+Inf"}`] != after["chorus_mixer_tick_lateness_seconds_count"] {
		t.Errorf("lateness histogram: count %v, +Inf bucket %v", after["chorus_mixer_tick_lateness_seconds_count"],
			after[`chorus_mixer_tick_lateness_seconds_bucket{le="+Inf"}`])
	}
	if _, ok := after["chorus_mixer_tick_lateness_seconds_sum"]; !ok {
		t.Error("no chorus_mixer_tick_lateness_seconds_sum")
	}
	for _, name := range []string{"process_open_fds", "go_goroutines"} {
		if after[name] <= 0 {
			t.Errorf("%s = %v", name, after[name])
		}
	}
	if !hasPrefix(after, "chorus_build_info{") {
		t.Error("no chorus_build_info")
	}

	_, raw := scrape(t, httpAddr)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("scrape: %d bytes, %d series", len(raw), len(after))
	checkDashboard(t, raw)
}

// checkDashboard: every series docs/grafana-dashboard.json queries is one
// the binary exports, so the dashboard cannot drift from the metrics.
func checkDashboard(t *testing.T, scrape []byte) {
	t.Helper()
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	families := map[string]bool{}
	for _, line := range strings.Split(string(scrape), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			families[name] = true
		}
	}
	name := regexp.MustCompile(`\b(?:chorus|process|go)_[a-z0-9_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				n++
				fam := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if f, ok := strings.CutSuffix(m, suf); ok && families[f] {
						fam = f
					}
				}
				if !families[fam] {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not export", p.Title, m)
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d metric references found in the dashboard", n)
	}
}

func hasPrefix(m map[string]float64, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}
