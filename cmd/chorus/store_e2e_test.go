package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chorus/internal/testphone"
	"chorus/store"
)

// The store's tests run the binary itself, in a child process (the test
// binary re-executed into main: see TestMain), so that SIGTERM, kill -9
// and the exit status are real.

// mainChildEnv carries the child's arguments as JSON.
const mainChildEnv = "CHORUS_TEST_MAIN_ARGS"

func childArgs() ([]string, bool) {
	v := os.Getenv(mainChildEnv)
	if v == "" {
		return nil, false
	}
	var args []string
	if err := json.Unmarshal([]byte(v), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad", mainChildEnv, err)
		os.Exit(3)
	}
	return args, true
}

// chorusProc is one run of the binary.
type chorusProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // once exited
	http   string
	sip    string
}

// startProc runs chorus on dataDir with the store, two users and the given
// extra flags, and waits until it serves.
func startProc(t *testing.T, dataDir string, extra ...string) *chorusProc {
	t.Helper()
	args := append([]string{"--data-dir", dataDir, "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--user", "u1:t1:s1", "--user", "u2:t2:s2", "--allow-private-targets", "--mixer-priority", "normal",
		"--log-format", "json"}, extra...)
	b, _ := json.Marshal(args)
	p := &chorusProc{t: t, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), mainChildEnv+"="+string(b))
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.After(30 * time.Second)
	re := regexp.MustCompile(`"msg":"chorus listening".*?"sip_udp":"([^"]+)".*?"http":"([^"]+)"`)
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			p.sip, p.http = m[1], m[2]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("chorus exited before serving: %v\n%s", p.err, p.stderr.String())
		case <-deadline:
			t.Fatalf("chorus did not start\n%s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM: with no call left, the drain ends at once and the
// binary stops; it must exit with status 0.
func (p *chorusProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("chorus did not stop\n%s", p.stderr.String())
	}
	if p.err != nil {
		p.t.Fatalf("chorus exited with %v\n%s", p.err, p.stderr.String())
	}
}

// kill ends the process with SIGKILL.
func (p *chorusProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *chorusProc) client(user, token, secret string) client {
	return client{t: p.t, base: "http://" + p.http + "/v1/users/" + user, token: token, secret: secret}
}

// cbEvent is one callback request.
type cbEvent struct {
	id   string
	typ  string
	body map[string]any
	raw  string
}

// cbServer is an application's callback server that keeps every event
// it answered 200, and answers 503 while down.
type cbServer struct {
	srv  *httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	evs  []cbEvent
}

func newCBServer(t *testing.T) *cbServer {
	s := &cbServer{}
	s.srv = newTargetServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if s.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		id, _ := m["eventId"].(string)
		typ, _ := m["eventType"].(string)
		s.mu.Lock()
		s.evs = append(s.evs, cbEvent{id: id, typ: typ, body: m, raw: string(b)})
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *cbServer) events() []cbEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.evs)
}

// waitFor waits until cond holds of the events received.
func (s *cbServer) waitFor(t *testing.T, what string, d time.Duration, cond func([]cbEvent) bool) []cbEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		evs := s.events()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			var types []string
			for _, e := range evs {
				types = append(types, e.typ+"/"+fmt.Sprint(e.body["state"], e.body["status"]))
			}
			t.Fatalf("callback server: %s did not happen; got %v", what, types)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// has reports whether evs hold an event of typ whose field k is v.
func has(evs []cbEvent, typ, k, v string) bool {
	return slices.ContainsFunc(evs, func(e cbEvent) bool { return e.typ == typ && fmt.Sprint(e.body[k]) == v })
}

// eventSeq is the number of an event id ("e-42").
func eventSeq(t *testing.T, id string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "e-"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "e-") {
		t.Fatalf("event id %q is not e-<n>", id)
	}
	return n
}

// unwrittenEventID says whether id is that of an event the outbox sent
// on unwritten ("e-<boot>-u<k>").
func unwrittenEventID(id string) bool {
	rest, ok := strings.CutPrefix(id, "e-")
	_, k, cut := strings.Cut(rest, "-u")
	return ok && cut && k != ""
}

// checkOnceInOrder checks that the events received hold each id with one
// body only (a redelivery is the same event), and that the events naming
// each conference came in id order, first deliveries counted.
func checkOnceInOrder(t *testing.T, evs []cbEvent) {
	t.Helper()
	bodies := map[string]string{}
	last := map[string]int64{}
	for _, e := range evs {
		if e.id == "" {
			t.Errorf("event without eventId: %s", e.raw)
			continue
		}
		if b, seen := bodies[e.id]; seen {
			if b != e.raw {
				t.Errorf("event %s delivered twice with different bodies:\n%s\n%s", e.id, b, e.raw)
			}
			continue
		}
		bodies[e.id] = e.raw
		conf, _ := e.body["conferenceId"].(string)
		if unwrittenEventID(e.id) {
			continue // sent unwritten (a stalled or full disk): not numbered by the store
		}
		n := eventSeq(t, e.id)
		if conf == "" {
			continue // a hangup names no conference: its order is its call's
		}
		if n <= last[conf] {
			t.Errorf("conference %s: event %s after e-%d", conf, e.id, last[conf])
		}
		last[conf] = n
	}
}

// created returns the id at the end of a 201's Location.
func createdID(t *testing.T, resp *http.Response, what string) string {
	t.Helper()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create %s: %d", what, resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

// waitJSON polls GET path until cond holds of its JSON.
func waitJSON(t *testing.T, c client, path string, cond func(v any) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, b := c.do("GET", path, nil)
		var v any
		_ = json.Unmarshal(b, &v)
		if resp.StatusCode == 200 && cond(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func field(v any, k string) string {
	m, _ := v.(map[string]any)
	return fmt.Sprint(m[k])
}

// dialConf calls into a conference by its id.
func dialConf(t *testing.T, p *chorusProc, confID string) *testphone.Phone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ph, err := testphone.Dial(ctx, testphone.Options{Target: p.sip, User: confID})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", confID, err, p.stderr.String())
	}
	t.Cleanup(ph.Close)
	return ph
}

// TestStoreRestartSameJSON: create a conference, call in, hang up; an
// application and a number; stop the binary (SIGTERM) and start it again
// on the same data directory: every GET answers the same JSON. A room
// nobody joined was completed by the clean stop; another user sees none
// of it.
func TestStoreRestartSameJSON(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	p := startProc(t, dir, "--rtp-ports", "32100-32199")
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550101", "callbackUrl": cb.srv.URL, "tag": "t"})
	conf := createdID(t, resp, "conference")
	resp, _ = u1.do("POST", "/conferences", map[string]any{"from": "+15550102"})
	idle := createdID(t, resp, "idle conference")
	resp, _ = u1.do("POST", "/applications", map[string]any{"name": "app", "incomingCallUrl": cb.srv.URL})
	app := createdID(t, resp, "application")
	resp, _ = u1.do("POST", "/phoneNumbers", map[string]any{"number": "+15550199", "applicationId": app})
	num := createdID(t, resp, "number")

	ph := dialConf(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ph.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "state") == "completed" })
	evs := cb.waitFor(t, "the conference's completion", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference", "state", "completed")
	})
	checkOnceInOrder(t, evs)

	var members []map[string]any
	_, b := u1.do("GET", "/conferences/"+conf+"/members", nil)
	if err := json.Unmarshal(b, &members); err != nil || len(members) != 1 {
		t.Fatalf("members %s", b)
	}
	member := fmt.Sprint(members[0]["id"])
	callURL := fmt.Sprint(members[0]["call"])
	call := callURL[strings.LastIndex(callURL, "/")+1:]
	paths := []string{"/conferences/" + conf, "/conferences/" + conf + "/members", "/conferences/" + conf + "/members/" + member,
		"/calls", "/calls/" + call, "/calls?conferenceId=" + conf, "/applications", "/applications/" + app,
		"/phoneNumbers", "/phoneNumbers/" + num, "/conferences?state=completed", "/undeliveredEvents"}
	get := func(p *chorusProc) map[string]string {
		c := p.client("u1", "t1", "s1")
		out := map[string]string{}
		for _, path := range paths {
			resp, b := c.do("GET", path, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
			}
			// Resource URLs name the API's address, which a restart changes.
			out[path] = strings.ReplaceAll(string(b), p.http, "API")
		}
		return out
	}
	before := get(p)
	p.stop()

	p2 := startProc(t, dir, "--rtp-ports", "32100-32199")
	after := get(p2)
	for _, path := range paths {
		if path == "/conferences?state=completed" {
			continue // the idle room is completed now: checked below
		}
		if before[path] != after[path] {
			t.Errorf("GET %s changed over the restart:\nbefore %s\nafter  %s", path, before[path], after[path])
		}
	}
	u1 = p2.client("u1", "t1", "s1")
	_, b = u1.do("GET", "/conferences/"+idle, nil)
	var idleJSON map[string]any
	_ = json.Unmarshal(b, &idleJSON)
	if idleJSON["state"] != "completed" || idleJSON["completedTime"] == nil || idleJSON["cause"] != nil {
		t.Errorf("a room left created by a clean stop: %s", b)
	}
	var list []map[string]any
	_, b = u1.do("GET", "/conferences", nil)
	_ = json.Unmarshal(b, &list)
	if len(list) != 2 || list[0]["id"] != idle || list[1]["id"] != conf {
		t.Errorf("conference list after restart: %s", b)
	}
	// The number still routes to its application (restored into routing).
	if _, b := u1.do("GET", "/phoneNumbers/+15550199", nil); !strings.Contains(string(b), app) {
		t.Errorf("number by its number after restart: %s", b)
	}
	// Another user's records are not there for u2, like ids never made.
	u2 := p2.client("u2", "t2", "s2")
	for _, path := range []string{"/conferences/" + conf, "/conferences/" + conf + "/members", "/conferences/" + conf + "/members/" + member,
		"/calls/" + call, "/applications/" + app, "/phoneNumbers/" + num} {
		if resp, b := u2.do("GET", path, nil); resp.StatusCode != 404 {
			t.Errorf("u2 GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	for _, path := range []string{"/conferences", "/calls", "/calls?conferenceId=" + conf, "/undeliveredEvents", "/applications", "/phoneNumbers"} {
		if _, b := u2.do("GET", path, nil); strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("u2 GET %s: %s", path, b)
		}
	}
	p2.stop()
}

// TestStoreKillLiveConference: kill -9 with a caller in a room; at the
// next start the room, its member and the call are completed with the
// cause SERVER_RESTART, and the completion events are delivered.
func TestStoreKillLiveConference(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	p := startProc(t, dir, "--rtp-ports", "32200-32299")
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550201", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	cb.waitFor(t, "the member's joining", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference-member", "state", "active")
	})
	p.kill()
	ph.Close()
	before := len(cb.events())

	p2 := startProc(t, dir, "--rtp-ports", "32200-32299")
	u1 = p2.client("u1", "t1", "s1")
	_, b := u1.do("GET", "/conferences/"+conf, nil)
	var cj map[string]any
	_ = json.Unmarshal(b, &cj)
	if cj["state"] != "completed" || cj["cause"] != "SERVER_RESTART" || cj["completedTime"] == nil || cj["activeMembers"] != 0.0 {
		t.Errorf("conference after kill -9 and restart: %s", b)
	}
	_, b = u1.do("GET", "/conferences/"+conf+"/members", nil)
	if !strings.Contains(string(b), `"state":"completed"`) || strings.Contains(string(b), `"state":"active"`) {
		t.Errorf("members after restart: %s", b)
	}
	_, b = u1.do("GET", "/calls?conferenceId="+conf, nil)
	if !strings.Contains(string(b), `"state":"completed"`) || !strings.Contains(string(b), `"endTime"`) {
		t.Errorf("calls after restart: %s", b)
	}
	evs := cb.waitFor(t, "the completion events after the restart", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference", "state", "completed")
	})
	after := evs[before:]
	if !has(after, "conference-member", "state", "completed") || !has(after, "hangup", "cause", "SERVER_RESTART") ||
		!has(after, "conference", "cause", "SERVER_RESTART") {
		t.Errorf("completion events after the restart: %v", after)
	}
	checkOnceInOrder(t, evs)
	p2.stop()
}

// TestStoreCallbackDownAcrossRestart: the application's server is down
// while a call comes and goes, while the bridge stops, and for a while
// after it starts again; once it is back it gets every event, in order,
// each id with one body.
func TestStoreCallbackDownAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	cb.down.Store(true)
	flags := []string{"--rtp-ports", "32300-32399", "--callback-retries", "30", "--callback-backoff", "100ms"}
	p := startProc(t, dir, flags...)
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550301", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ph.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	// The undelivered events are listed, oldest first, once the
	// conference's completion was written.
	var und []map[string]any
	waitJSON(t, u1, "/undeliveredEvents", func(v any) bool {
		b, _ := json.Marshal(v)
		return strings.Contains(string(b), `"status":"completed"`)
	})
	_, b := u1.do("GET", "/undeliveredEvents", nil)
	if err := json.Unmarshal(b, &und); err != nil || len(und) < 4 || und[0]["state"] != "pending" {
		t.Fatalf("undelivered events while the server is down: %s", b)
	}
	ids := make([]string, 0, len(und))
	for _, u := range und {
		ids = append(ids, fmt.Sprint(u["id"]))
	}
	p.stop()

	p2 := startProc(t, dir, flags...)
	time.Sleep(300 * time.Millisecond) // down after the start too: a retry or two fails
	cb.down.Store(false)
	evs := cb.waitFor(t, "every undelivered event", 60*time.Second, func(evs []cbEvent) bool {
		for _, id := range ids {
			if !slices.ContainsFunc(evs, func(e cbEvent) bool { return e.id == id }) {
				return false
			}
		}
		return true
	})
	checkOnceInOrder(t, evs)
	// Each once (or again with its id); the order within each queue is
	// checked above (a call's answer is its call's queue, not its room's).
	var got []string
	for _, e := range evs {
		if !slices.Contains(got, e.id) {
			got = append(got, e.id)
		}
	}
	slices.SortFunc(got, func(a, b string) int { return int(eventSeq(t, a) - eventSeq(t, b)) })
	if !slices.Equal(got, ids) {
		t.Errorf("delivered %v, want the undelivered ones %v", got, ids)
	}
	_, b = p2.client("u1", "t1", "s1").do("GET", "/undeliveredEvents", nil)
	if strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("undelivered after delivery: %s", b)
	}
	p2.stop()
}

// TestStoreCorruptAtStart: a data directory whose database is not one, or
// that cannot be made, stops the binary with a clear error and exit
// status 2.
func TestStoreCorruptAtStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.FileName), []byte(strings.Repeat("garbage ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(notDir, "data")} {
		args, _ := json.Marshal([]string{"--data-dir", d, "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--user", "u1:t1:s1"})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), mainChildEnv+"="+string(args))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("data dir %s: exit %v, want status 2\n%s", d, err, out)
		}
		if !strings.Contains(string(out), "chorus: store:") {
			t.Errorf("data dir %s: no clear error:\n%s", d, out)
		}
	}
}
