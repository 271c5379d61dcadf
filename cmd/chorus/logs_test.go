package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// jsonLines parses every line of a JSON log, failing on any that is not
// one JSON object.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestJSONLogs: with --log-format json every line of the log is one JSON
// object: the start-up line, one access line per API request (method,
// route pattern, status, duration, user, and never the secret), and a
// call's end with its RTP counters as fields.
func TestJSONLogs(t *testing.T) {
	var stderr syncBuffer
	r := startChorusLogged(t, []string{"--rtp-ports", "31900-31999", "--user", "u-alice:alice-token:alice-secret",
		"--log-format", "json", "--log-level", "debug"}, &stderr)
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	if resp, body := alice.do("GET", "/conferences", nil); resp.StatusCode != 200 {
		t.Fatalf("list conferences: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	phone, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7501"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	waitMetric(t, r.HTTP.String(), "chorus_members_live", func(v float64) bool { return v == 1 })
	if err := phone.Hangup(ctx); err != nil {
		t.Fatal(err)
	}

	find := func(lines []map[string]any, ok func(map[string]any) bool) []map[string]any {
		var got []map[string]any
		for _, l := range lines {
			if ok(l) {
				got = append(got, l)
			}
		}
		return got
	}
	isAccess := func(l map[string]any) bool {
		return l["msg"] == "http request" && l["route"] == "/v1/users/{userId}/conferences" && l["method"] == "GET"
	}
	isEnd := func(l map[string]any) bool { return l["msg"] == "call ended" }
	var lines []map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		lines = jsonLines(t, stderr.String())
		if len(find(lines, isAccess)) > 0 && len(find(lines, isEnd)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line or no call end in the log:\n%s", stderr.String())
		}
	}

	if got := find(lines, isAccess); len(got) != 1 {
		t.Errorf("%d access lines for one request: %v", len(got), got)
	} else if a := got[0]; a["status"] != 200.0 || a["user"] != "u-alice" || a["level"] != "INFO" || a["duration"] == nil {
		t.Errorf("access line %v", a)
	}
	if strings.Contains(stderr.String(), "alice-secret") {
		t.Error("the log carries the API secret")
	}
	if up := find(lines, func(l map[string]any) bool { return l["msg"] == "chorus listening" }); len(up) != 1 ||
		!strings.HasPrefix(fmt.Sprint(up[0]["dial_in"]), "sip:1000@") {
		t.Errorf("start-up line: %v", up)
	}
	end := find(lines, isEnd)[0]
	stats, ok := end["stats"].(map[string]any)
	if !ok {
		t.Fatalf("call ended without a stats object: %v", end)
	}
	if _, ok := stats["packets_in"].(float64); !ok {
		t.Errorf("stats.packets_in is not a number: %v", stats)
	}
}

// TestLibraryLogger: sipgo's process-wide logger follows --log-level and
// --log-format like the rest.
func TestLibraryLogger(t *testing.T) {
	var out strings.Builder
	log := libraryLogger([]string{"--log-level", "warn", "--log-format", "json"}, noEnv, &out)
	log.Info("hidden")
	log.Warn("shown")
	lines := jsonLines(t, out.String())
	if len(lines) != 1 || lines[0]["msg"] != "shown" {
		t.Errorf("warn level, JSON: got %q", out.String())
	}
	out.Reset()
	libraryLogger([]string{"--log-level", "debug"}, noEnv, &out).Debug("seen")
	if !strings.Contains(out.String(), "level=DEBUG msg=seen") {
		t.Errorf("debug level, text: got %q", out.String())
	}
}
