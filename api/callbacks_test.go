package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
)

// cbReq is one request an application received.
type cbReq struct {
	Method string
	Path   string
	Query  url.Values
	Body   map[string]any
	Raw    string
	Header http.Header
	User   string // basic auth user
	At     time.Time
	Status int
}

// cbApp is an application's HTTP server that records every event request.
// handle, if set, decides the status (and may sleep); it gets the request
// and its parsed body.
type cbApp struct {
	t      *testing.T
	srv    *httptest.Server
	handle func(r *http.Request, body map[string]any) int

	mu   sync.Mutex
	reqs []cbReq
}

func cbNewApp(t *testing.T, handle func(r *http.Request, body map[string]any) int) *cbApp {
	t.Helper()
	a := &cbApp{t: t, handle: handle}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Errorf("callback body is not JSON: %v: %q", err, raw)
			}
		}
		if r.Method == http.MethodGet {
			body = map[string]any{}
			for k, v := range r.URL.Query() {
				body[k] = v[0]
			}
		}
		status := http.StatusOK
		if a.handle != nil {
			status = a.handle(r, body)
		}
		user, _, _ := r.BasicAuth()
		a.mu.Lock()
		a.reqs = append(a.reqs, cbReq{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body,
			Raw: string(raw), Header: r.Header.Clone(), User: user, At: time.Now(), Status: status})
		a.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *cbApp) url(path string) string { return a.srv.URL + path }

// all returns every request received so far.
func (a *cbApp) all() []cbReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]cbReq(nil), a.reqs...)
}

// ok returns the requests answered 2xx.
func (a *cbApp) ok() []cbReq {
	var out []cbReq
	for _, r := range a.all() {
		if r.Status/100 == 2 {
			out = append(out, r)
		}
	}
	return out
}

// waitOK waits until n requests were answered 2xx.
func (a *cbApp) waitOK(n int, timeout time.Duration) []cbReq {
	a.t.Helper()
	cbWaitFor(a.t, timeout, func() bool { return len(a.ok()) >= n }, func() string {
		return fmt.Sprintf("%d of %d events received", len(a.ok()), n)
	})
	return a.ok()
}

func cbWaitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cbSetup returns a bridge whose events go to a new dispatcher.
func cbSetup(t *testing.T, cfg DispatcherConfig) (*bridge.Bridge, *Dispatcher) {
	t.Helper()
	b := bridge.New(bridge.Config{}, nil, nil)
	cfg.Bridge = b
	if cfg.Targets == nil {
		cfg.Targets = allowLoopback() // the test servers are on 127.0.0.1
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	d := NewDispatcher(cfg)
	b.SetEventSink(d)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return b, d
}

// cbConf creates a conference. It has no dial-in number, so that a test
// may hold many at once (a live number belongs to one conference).
func cbConf(t *testing.T, b *bridge.Bridge, cb bridge.Callback) *bridge.Conference {
	t.Helper()
	c, err := b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", Callback: cb})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cbMemberEvent is a conference-member event whose activeMembers carries n,
// to check order.
func cbMemberEvent(conf *bridge.Conference, n int) bridge.Event {
	return bridge.Event{Type: bridge.EventConferenceMember, UserID: conf.UserID(), ConferenceID: conf.ID(),
		MemberID: "member-x", CallID: "c-x", State: bridge.StateActive, ActiveMembers: n}
}

// cbIdle waits until d has nothing pending and returns its counters.
func cbIdle(t *testing.T, d *Dispatcher) DispatcherStats {
	t.Helper()
	cbWaitFor(t, 5*time.Second, func() bool { st := d.Stats(); return st.Pending == 0 && st.Workers == 0 },
		func() string { return fmt.Sprintf("not idle: %+v", d.Stats()) })
	return d.Stats()
}

func cbNum(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case string:
		var n int
		_, _ = fmt.Sscan(x, &n)
		return n
	}
	return -1
}

func cbWant(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v (event %v)", k, got[k], v, got)
		}
	}
}

func TestCallbackEventShapes(t *testing.T) {
	d := NewDispatcher(DispatcherConfig{BaseURL: "http://127.0.0.1:8080/"})
	at := time.Date(2013, 7, 12, 20, 53, 11, 646_000_000, time.FixedZone("x", -2*3600))
	const u, cf, m, c = "u-1", "conf-1", "member-1", "c-1"
	tests := []struct {
		ev   bridge.Event
		cb   bridge.Callback
		want string
	}{
		{bridge.Event{Type: bridge.EventConference, UserID: u, ConferenceID: cf, State: "created", Time: at}, bridge.Callback{},
			`{"eventType":"conference","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","status":"created","state":"created","createdTime":"2013-07-12T22:53:11.646Z","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventConference, UserID: u, ConferenceID: cf, State: "completed", Time: at, Tag: "t"}, bridge.Callback{},
			`{"eventType":"conference","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","status":"completed","state":"completed","createdTime":"2013-07-12T22:53:11.646Z","completedTime":"2013-07-12T22:53:11.646Z","time":"2013-07-12T22:53:11.646Z","tag":"t"}`},
		{bridge.Event{Type: bridge.EventConferenceMember, UserID: u, ConferenceID: cf, MemberID: m, CallID: c, State: "active", ActiveMembers: 1, Time: at}, bridge.Callback{Tag: "conf-tag"},
			`{"eventType":"conference-member","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","memberId":"member-1","memberUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1/members/member-1","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","state":"active","activeMembers":1,"hold":false,"mute":false,"phoneHold":false,"time":"2013-07-12T22:53:11.646Z","tag":"conf-tag"}`},
		{bridge.Event{Type: bridge.EventConferenceMember, UserID: u, ConferenceID: cf, MemberID: m, CallID: c, State: "active", ActiveMembers: 2, Mute: true, Time: at}, bridge.Callback{},
			`{"eventType":"conference-member","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","memberId":"member-1","memberUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1/members/member-1","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","state":"active","activeMembers":2,"hold":false,"mute":true,"phoneHold":false,"time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventConferencePlayback, UserID: u, ConferenceID: cf, State: "start", Time: at, Tag: "audio-tag"}, bridge.Callback{Tag: "conf-tag"},
			`{"eventType":"conference-playback","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","status":"started","time":"2013-07-12T22:53:11.646Z","tag":"audio-tag"}`},
		{bridge.Event{Type: bridge.EventConferenceSpeak, UserID: u, ConferenceID: cf, State: "done", Status: "stopped", Time: at}, bridge.Callback{},
			`{"eventType":"conference-speak","conferenceId":"conf-1","conferenceUri":"http://127.0.0.1:8080/v1/users/u-1/conferences/conf-1","status":"done","endReason":"stopped","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventAnswer, UserID: u, CallID: c, From: "+15753222083", To: "+13865245000", Time: at, Tag: "example-tag"}, bridge.Callback{},
			`{"eventType":"answer","from":"+15753222083","to":"+13865245000","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","callState":"active","time":"2013-07-12T22:53:11.646Z","tag":"example-tag"}`},
		{bridge.Event{Type: bridge.EventHangup, UserID: u, CallID: c, From: "+1", To: "+2", Cause: "hangup", Time: at}, bridge.Callback{},
			`{"eventType":"hangup","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","from":"+1","to":"+2","cause":"NORMAL_CLEARING","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventHangup, UserID: u, CallID: c, Cause: "USER_BUSY", Time: at}, bridge.Callback{},
			`{"eventType":"hangup","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","cause":"USER_BUSY","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventDTMF, UserID: u, ConferenceID: cf, MemberID: m, CallID: c, Digit: "5", Time: at}, bridge.Callback{},
			`{"eventType":"dtmf","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","dtmfDigit":"5","conferenceId":"conf-1","memberId":"member-1","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventSpeak, UserID: u, CallID: c, State: "started", Time: at, Tag: "s"}, bridge.Callback{},
			`{"eventType":"speak","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","status":"started","state":"PLAYBACK_START","time":"2013-07-12T22:53:11.646Z","tag":"s"}`},
		{bridge.Event{Type: bridge.EventSpeak, UserID: u, CallID: c, State: "done", Status: "done", Time: at}, bridge.Callback{},
			`{"eventType":"speak","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","status":"done","endReason":"done","state":"PLAYBACK_STOP","time":"2013-07-12T22:53:11.646Z"}`},
		{bridge.Event{Type: bridge.EventPlayback, UserID: u, CallID: c, State: "done", Status: "error", Time: at}, bridge.Callback{},
			`{"eventType":"playback","callId":"c-1","callUri":"http://127.0.0.1:8080/v1/users/u-1/calls/c-1","status":"done","endReason":"error","time":"2013-07-12T22:53:11.646Z"}`},
	}
	for _, tc := range tests {
		got := string(d.eventPayload(tc.ev, tc.cb).json())
		if got != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.ev.Type, tc.ev.State, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}

	// Without a base URL the URIs are left out.
	d2 := NewDispatcher(DispatcherConfig{})
	got := string(d2.eventPayload(tests[2].ev, bridge.Callback{}).json())
	if strings.Contains(got, "Uri") {
		t.Errorf("URIs without BaseURL: %s", got)
	}
}

// TestCallbackBridgeLifecycle drives a real bridge (real media sessions)
// through a conference's life and checks what its application receives,
// in order.
func TestCallbackBridgeLifecycle(t *testing.T) {
	app := cbNewApp(t, nil)
	callApp := cbNewApp(t, nil)
	b, d := cbSetup(t, DispatcherConfig{BaseURL: "http://api.test"})
	conf, err := b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", From: "+15550001000",
		Profile: bridge.ProfilePassthruDigits, Callback: bridge.Callback{URL: app.url("/conf"), Tag: "room-1"}})
	if err != nil {
		t.Fatal(err)
	}
	// call 1 has no callback of its own: its events go to the conference's.
	// call 2 has its own.
	c1 := b.NewCall("u-test", "+1001", "+15550001000", bridge.DirectionIn, newLeg(t), bridge.Callback{})
	c2 := b.NewCall("u-test", "+1002", "+15550001000", bridge.DirectionIn, newLeg(t),
		bridge.Callback{URL: callApp.url("/call"), Tag: "call-2"})
	c1.Answered()
	c2.Answered()
	callApp.waitOK(1, 5*time.Second)
	cbWaitFor(t, 5*time.Second, func() bool { return d.Stats().NoCallback == 1 }, func() string {
		return fmt.Sprintf("stats %+v", d.Stats())
	}) // c1's answer: no callback of its own, and not a member yet
	m1, err := conf.AddMember(c1, bridge.MemberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conf.AddMember(c2, bridge.MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	m1.SetMute(true)
	c1.Digit('5')
	c1.Ended("hangup")
	c2.Ended("hangup")

	want := []string{
		"conference created",
		"conference-member active 1 mute=false",
		"conference-member active 2 mute=false",
		"conference-member active 2 mute=true",
		"dtmf 5",
		"conference-member completed 1 mute=false",
		"hangup " + c1.ID(),
		"conference-member completed 0 mute=false",
		"conference completed",
	}
	got := app.waitOK(len(want), 5*time.Second)
	time.Sleep(50 * time.Millisecond) // nothing more should come
	got = app.ok()
	var sum []string
	for _, r := range got {
		e := r.Body
		s := fmt.Sprint(e["eventType"])
		switch s {
		case "conference":
			s += " " + fmt.Sprint(e["status"])
		case "conference-member":
			s += fmt.Sprintf(" %v %v mute=%v", e["state"], cbNum(e["activeMembers"]), e["mute"])
		case "dtmf":
			s += " " + fmt.Sprint(e["dtmfDigit"])
		case "hangup":
			s += " " + fmt.Sprint(e["callId"])
		}
		sum = append(sum, s)
		if e["tag"] != "room-1" {
			t.Errorf("tag = %v in %v", e["tag"], e)
		}
		if r.Method != http.MethodPost || r.Path != "/conf" {
			t.Errorf("%s %s", r.Method, r.Path)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
		if ua := r.Header.Get("User-Agent"); ua != CallbackDefaultUserAgent {
			t.Errorf("User-Agent %q", ua)
		}
		if _, err := time.Parse(CallbackTimeFormat, fmt.Sprint(e["time"])); err != nil {
			t.Errorf("time %v: %v", e["time"], err)
		}
	}
	if strings.Join(sum, "\n") != strings.Join(want, "\n") {
		t.Errorf("conference app received:\n%s\nwant:\n%s", strings.Join(sum, "\n"), strings.Join(want, "\n"))
	}
	first := got[0].Body
	cbWant(t, first, map[string]any{"conferenceId": conf.ID(),
		"conferenceUri": "http://api.test/v1/users/u-test/conferences/" + conf.ID()})
	if ct := fmt.Sprint(first["createdTime"]); ct != cbTime(conf.Created()) {
		t.Errorf("createdTime %s, want %s", ct, cbTime(conf.Created()))
	}
	last := got[len(got)-1].Body
	if _, ok := last["completedTime"]; !ok {
		t.Errorf("no completedTime in %v", last)
	}
	for _, r := range got {
		if r.Body["eventType"] == "conference-member" {
			cbWant(t, r.Body, map[string]any{"memberUri": "http://api.test/v1/users/u-test/conferences/" +
				conf.ID() + "/members/" + fmt.Sprint(r.Body["memberId"])})
		}
	}

	// call 2's own events went to its own URL.
	cr := callApp.waitOK(2, 5*time.Second)
	cbWant(t, cr[0].Body, map[string]any{"eventType": "answer", "callId": c2.ID(), "callState": "active",
		"from": "+1002", "to": "+15550001000", "tag": "call-2", "callUri": "http://api.test/v1/users/u-test/calls/" + c2.ID()})
	cbWant(t, cr[1].Body, map[string]any{"eventType": "hangup", "callId": c2.ID(), "cause": "NORMAL_CLEARING", "tag": "call-2"})
	if st := cbIdle(t, d); st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCallbackGETQueryAndCredentials(t *testing.T) {
	app := cbNewApp(t, nil)
	b, _ := cbSetup(t, DispatcherConfig{UserAgent: "test-agent/1"})
	u, _ := url.Parse(app.url("/ev?app=1"))
	u.User = url.UserPassword("alice", "s3cret")
	conf := cbConf(t, b, bridge.Callback{URL: u.String(), Method: "get", Tag: "a b&c"})
	r := app.waitOK(1, 5*time.Second)[0]
	if r.Method != http.MethodGet || r.Raw != "" {
		t.Fatalf("%s with body %q", r.Method, r.Raw)
	}
	if r.User != "alice" {
		t.Errorf("basic auth user %q", r.User)
	}
	q := r.Query
	for k, v := range map[string]string{"eventType": "conference", "status": "created", "conferenceId": conf.ID(),
		"tag": "a b&c", "app": "1"} {
		if q.Get(k) != v {
			t.Errorf("query %s = %q, want %q (%s)", k, q.Get(k), v, q.Encode())
		}
	}
	if _, err := time.Parse(CallbackTimeFormat, q.Get("time")); err != nil {
		t.Error(err)
	}
	if r.Header.Get("User-Agent") != "test-agent/1" {
		t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
	}

	// Booleans and numbers as text.
	ev := cbMemberEvent(conf, 3)
	ev.Mute = true
	b.Publish(ev)
	r = app.waitOK(2, 5*time.Second)[1]
	if r.Query.Get("activeMembers") != "3" || r.Query.Get("mute") != "true" || r.Query.Get("hold") != "false" {
		t.Errorf("query %s", r.Query.Encode())
	}
}

func TestDispatcherOrderWithSlowFlakyApp(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	app := cbNewApp(t, func(r *http.Request, e map[string]any) int {
		time.Sleep(2 * time.Millisecond)
		if e["eventType"] != "conference-member" {
			return 200
		}
		n := cbNum(e["activeMembers"])
		mu.Lock()
		seen[n]++
		tries := seen[n]
		mu.Unlock()
		if n%3 == 0 && tries == 1 {
			return http.StatusServiceUnavailable
		}
		if n%7 == 0 && tries < 3 {
			return http.StatusInternalServerError
		}
		return 200
	})
	b, d := cbSetup(t, DispatcherConfig{Backoff: time.Millisecond})
	conf := cbConf(t, b, bridge.Callback{URL: app.url("/")})
	for i := range 50 {
		b.Publish(cbMemberEvent(conf, i))
	}
	got := app.waitOK(51, 10*time.Second)
	for i, r := range got[1:] {
		if n := cbNum(r.Body["activeMembers"]); n != i {
			t.Fatalf("event %d arrived as #%d", n, i)
		}
	}
	st := cbIdle(t, d)
	if st.Delivered != 51 || st.Failed != 0 || st.Retried < 17 {
		t.Errorf("stats %+v", st)
	}
}

func TestDispatcherRetryBackoffThenSuccess(t *testing.T) {
	var mu sync.Mutex
	n := 0
	app := cbNewApp(t, func(*http.Request, map[string]any) int {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n <= 2 {
			return http.StatusBadGateway
		}
		return http.StatusNoContent
	})
	b, d := cbSetup(t, DispatcherConfig{Backoff: 30 * time.Millisecond, MaxRetries: 3})
	cbConf(t, b, bridge.Callback{URL: app.url("/")})
	app.waitOK(1, 5*time.Second)
	all := app.all()
	if len(all) != 3 {
		t.Fatalf("%d attempts", len(all))
	}
	if g := all[1].At.Sub(all[0].At); g < 30*time.Millisecond {
		t.Errorf("first retry after %v, want ≥ 30ms", g)
	}
	if g := all[2].At.Sub(all[1].At); g < 60*time.Millisecond {
		t.Errorf("second retry after %v, want ≥ 60ms (doubling)", g)
	}
	if st := cbIdle(t, d); st.Retried != 2 || st.Fallback != 0 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDispatcherFallbackAndGiveUp(t *testing.T) {
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&cbLockedWriter{w: &logBuf, mu: &logMu}, nil))
	var dead sync.Map // event eventType+status the main app refuses
	main := cbNewApp(t, func(r *http.Request, e map[string]any) int {
		if _, ok := dead.Load(cbNum(e["activeMembers"])); ok {
			return 500
		}
		return 200
	})
	fallbackDown := false
	var fbMu sync.Mutex
	fallback := cbNewApp(t, func(r *http.Request, e map[string]any) int {
		fbMu.Lock()
		defer fbMu.Unlock()
		if fallbackDown {
			return 503
		}
		return 200
	})
	b, d := cbSetup(t, DispatcherConfig{Backoff: time.Millisecond, MaxRetries: 2, Log: log})
	conf := cbConf(t, b, bridge.Callback{URL: main.url("/main"), FallbackURL: fallback.url("/fb")})
	main.waitOK(1, 5*time.Second)

	// callbackUrl fails persistently: fallbackUrl receives the event.
	dead.Store(1, true)
	b.Publish(cbMemberEvent(conf, 1))
	fb := fallback.waitOK(1, 5*time.Second)
	if n := cbNum(fb[0].Body["activeMembers"]); n != 1 || fb[0].Path != "/fb" {
		t.Errorf("fallback got %v at %s", fb[0].Body, fb[0].Path)
	}
	if n := len(main.all()); n != 1+2 {
		t.Errorf("main got %d requests, want 1 + 2 attempts", n)
	}

	// Both fail: given up, counted, logged once; the next event still goes.
	fbMu.Lock()
	fallbackDown = true
	fbMu.Unlock()
	dead.Store(2, true)
	b.Publish(cbMemberEvent(conf, 2))
	b.Publish(cbMemberEvent(conf, 3))
	got := main.waitOK(2, 5*time.Second)
	if n := cbNum(got[1].Body["activeMembers"]); n != 3 {
		t.Errorf("after the given-up event main got %d", n)
	}
	st := cbIdle(t, d)
	if st.Failed != 1 || st.Fallback != 2 || st.Delivered != 3 {
		t.Errorf("stats %+v", st)
	}
	if len(fallback.all()) != 1+2 {
		t.Errorf("fallback got %d requests", len(fallback.all()))
	}
	logMu.Lock()
	logs := logBuf.String()
	logMu.Unlock()
	if c := strings.Count(logs, "callback given up"); c != 1 {
		t.Errorf("%d give-up logs:\n%s", c, logs)
	}
	if !strings.Contains(logs, "event=conference-member") || !strings.Contains(logs, "conference="+conf.ID()) {
		t.Errorf("give-up log lacks the event: %s", logs)
	}
}

type cbLockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *cbLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestDispatcherCallbackTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := cbNewApp(t, func(r *http.Request, _ map[string]any) int {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		case <-release:
		}
		return 200
	})
	fallback := cbNewApp(t, nil)
	b, d := cbSetup(t, DispatcherConfig{MaxRetries: 2})
	start := time.Now()
	cbConf(t, b, bridge.Callback{URL: slow.url("/"), FallbackURL: fallback.url("/"), Timeout: 100 * time.Millisecond})
	fallback.waitOK(1, 5*time.Second)
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("fallback reached after %v; callbackTimeout is 100ms", el)
	}
	if st := cbIdle(t, d); st.Fallback != 1 || st.Retried != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestDispatcherPublishNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	rel := func() { once.Do(func() { close(release) }) }
	defer rel()
	entered := make(chan struct{}, 1)
	app := cbNewApp(t, func(r *http.Request, _ map[string]any) int {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200
	})
	b, d := cbSetup(t, DispatcherConfig{QueueLimit: 100})
	conf := cbConf(t, b, bridge.Callback{URL: app.url("/")})
	<-entered // the created event is in flight, stuck

	const n = 10000
	evs := make([]bridge.Event, n)
	for i := range evs {
		evs[i] = cbMemberEvent(conf, i)
	}
	start := time.Now()
	for _, ev := range evs {
		d.Publish(ev)
	}
	el := time.Since(start)
	t.Logf("%d Publish calls took %v", n, el)
	if el > 100*time.Millisecond {
		t.Errorf("publishing %d events to a stuck app took %v", n, el)
	}
	st := d.Stats()
	if st.Dropped != n-100 || st.Pending != 101 {
		t.Errorf("stats %+v, want %d dropped, 101 pending", st, n-100)
	}

	rel()
	got := app.waitOK(101, 10*time.Second)
	if first := got[1].Body; cbNum(first["activeMembers"]) != n-100 {
		t.Errorf("first kept event is %v, want the newest 100 kept", first["activeMembers"])
	}
	if last := got[len(got)-1].Body; cbNum(last["activeMembers"]) != n-1 {
		t.Errorf("last event %v", last["activeMembers"])
	}
}

func TestDispatcherConferencesInParallel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := cbNewApp(t, func(r *http.Request, _ map[string]any) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200
	})
	fast := cbNewApp(t, nil)
	b, _ := cbSetup(t, DispatcherConfig{})
	a := cbConf(t, b, bridge.Callback{URL: stuck.url("/a")})
	for i := range 5 {
		b.Publish(cbMemberEvent(a, i))
	}
	c := cbConf(t, b, bridge.Callback{URL: fast.url("/b")})
	for i := range 5 {
		b.Publish(cbMemberEvent(c, i))
	}
	start := time.Now()
	fast.waitOK(6, 2*time.Second)
	if el := time.Since(start); el > time.Second {
		t.Errorf("conference b delayed %v by a's stuck app", el)
	}
	if n := len(stuck.all()); n != 0 {
		t.Errorf("stuck app answered %d", n)
	}
}

func TestDispatcherCallEventsOutsideConference(t *testing.T) {
	app := cbNewApp(t, func(*http.Request, map[string]any) int {
		time.Sleep(time.Millisecond)
		return 200
	})
	b, d := cbSetup(t, DispatcherConfig{})
	call := b.NewCall("u-test", "+1", "+2", bridge.DirectionOut, nil, bridge.Callback{URL: app.url("/c"), Tag: "t"})
	call.Answered()
	for i := range 20 {
		b.Publish(bridge.Event{Type: bridge.EventSpeak, UserID: "u-test", CallID: call.ID(), State: "done", Tag: fmt.Sprint(i)})
	}
	call.Ended("cancel")
	got := app.waitOK(22, 5*time.Second)
	if got[0].Body["eventType"] != "answer" || got[21].Body["eventType"] != "hangup" {
		t.Errorf("first %v, last %v", got[0].Body, got[21].Body)
	}
	for i := range 20 {
		if got[i+1].Body["tag"] != fmt.Sprint(i) {
			t.Fatalf("speak #%d has tag %v", i, got[i+1].Body["tag"])
		}
	}
	if got[21].Body["cause"] != "ORIGINATOR_CANCEL" {
		t.Errorf("cause %v", got[21].Body["cause"])
	}

	// A resource without a callback URL: dropped silently and counted.
	before := d.Stats().NoCallback
	cbConf(t, b, bridge.Callback{})
	b.Publish(bridge.Event{Type: bridge.EventAnswer, CallID: "c-unknown"})
	cbWaitFor(t, 2*time.Second, func() bool { return d.Stats().NoCallback == before+2 }, func() string { return fmt.Sprint(d.Stats()) })
}

func TestDispatcherNoGoroutineLeak(t *testing.T) {
	app := cbNewApp(t, nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	b, d := cbSetup(t, DispatcherConfig{Client: client})
	// Warm up once so that lazily started runtime goroutines are counted.
	cbConf(t, b, bridge.Callback{URL: app.url("/")})
	app.waitOK(1, 5*time.Second)
	cbWaitFor(t, 2*time.Second, func() bool { return d.Stats().Workers == 0 }, func() string { return "" })
	time.Sleep(20 * time.Millisecond)
	base := runtime.NumGoroutine()

	const confs = 30
	for range confs {
		c := cbConf(t, b, bridge.Callback{URL: app.url("/")})
		for i := range 5 {
			b.Publish(cbMemberEvent(c, i))
		}
		c.Complete()
	}
	app.waitOK(1+confs*7, 10*time.Second)
	cbWaitFor(t, 5*time.Second, func() bool {
		return d.Stats().Workers == 0 && runtime.NumGoroutine() <= base
	}, func() string {
		return fmt.Sprintf("workers %d, goroutines %d (before %d)", d.Stats().Workers, runtime.NumGoroutine(), base)
	})
	d.mu.Lock()
	nq := len(d.queues)
	d.mu.Unlock()
	if nq != 0 {
		t.Errorf("%d queues left", nq)
	}
}

func TestDispatcherClose(t *testing.T) {
	app := cbNewApp(t, func(r *http.Request, _ map[string]any) int {
		<-r.Context().Done()
		return 200
	})
	b, d := cbSetup(t, DispatcherConfig{})
	conf := cbConf(t, b, bridge.Callback{URL: app.url("/")})
	for i := range 10 {
		b.Publish(cbMemberEvent(conf, i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := d.Close(ctx); err != context.DeadlineExceeded {
		t.Errorf("Close: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v", el)
	}
	b.Publish(cbMemberEvent(conf, 99))
	st := d.Stats()
	// 10 queued + the created event in flight + 1 after Close.
	if st.Workers != 0 || st.Pending != 0 || st.Dropped != 12 || st.Failed != 0 || st.Delivered != 0 {
		t.Errorf("stats %+v", st)
	}

	// A dispatcher with nothing to do closes at once.
	d2 := NewDispatcher(DispatcherConfig{})
	if err := d2.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func BenchmarkDispatcherPublish(b *testing.B) {
	d := NewDispatcher(DispatcherConfig{QueueLimit: 1000}) // no bridge: every event is "no callback"
	ev := bridge.Event{Type: bridge.EventConferenceMember, UserID: "u-test", ConferenceID: "conf-x",
		MemberID: "member-x", CallID: "c-x", State: bridge.StateActive, Time: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		d.Publish(ev)
	}
	b.StopTimer()
	_ = d.Close(context.Background())
}
