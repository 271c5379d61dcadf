package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/media"
	"chorus/media/audiofile"
)

var (
	alice = User{ID: "u-alice", Token: "t-alice", Secret: "s-alice"}
	bob   = User{ID: "u-bob", Token: "t-bob", Secret: "s-bob"}
)

// eventLog is the bridge's event sink: it keeps every event.
type eventLog struct {
	mu  sync.Mutex
	evs []bridge.Event
}

func (l *eventLog) Publish(ev bridge.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []bridge.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bridge.Event(nil), l.evs...)
}

// waitFor returns the first event that matches, waiting up to 5 s.
func (l *eventLog) waitFor(t *testing.T, what string, match func(bridge.Event) bool) bridge.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range l.all() {
			if match(ev) {
				return ev
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s event; have %+v", what, l.all())
	return bridge.Event{}
}

// fakeLeg is a call's signalling reduced to what the bridge uses; the
// media session under it is real.
type fakeLeg struct {
	sess   *media.Session
	hungUp atomic.Int32
}

func (l *fakeLeg) Media() *media.Session { return l.sess }
func (l *fakeLeg) Hangup(context.Context, string) error {
	l.hungUp.Add(1)
	return nil
}

// newLeg makes a leg with a real RTP session on 127.0.0.1 that sends to a
// phone socket nobody reads.
func newLeg(t testing.TB) *fakeLeg {
	t.Helper()
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := media.NewSession(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.SetParams(media.Params{Remote: phone.LocalAddr().(*net.UDPAddr).AddrPort(), Codec: media.PCMU,
		TelephoneEventPT: 101, Direction: media.SendRecv})
	t.Cleanup(func() {
		_ = sess.Close()
		_ = phone.Close()
	})
	return &fakeLeg{sess: sess}
}

// fakeAudio returns a tone for every file and sentence, except for URLs
// containing "missing" (an error) and "slow" (blocks until cancelled).
type fakeAudio struct {
	ms      int // tone length
	fetches atomic.Int32
	speaks  atomic.Int32
	mu      sync.Mutex
	last    []string // gender, locale, voice of the last Speak
}

var errMissingFile = errors.New("fetch: HTTP 404")

func (a *fakeAudio) Fetch(ctx context.Context, u string) (audiofile.Audio, error) {
	a.fetches.Add(1)
	switch {
	case strings.Contains(u, "missing"):
		return audiofile.Audio{}, errMissingFile
	case strings.Contains(u, "slow"):
		<-ctx.Done()
		return audiofile.Audio{}, ctx.Err()
	case strings.Contains(u, "empty"):
		return audiofile.Audio{Rate: media.ClockRate}, nil
	}
	return audiofile.Audio{Samples: media.Tone(1000, -10, a.ms), Rate: media.ClockRate}, nil
}

func (a *fakeAudio) Speak(ctx context.Context, text, gender, locale, voice string) (audiofile.Audio, error) {
	a.speaks.Add(1)
	a.mu.Lock()
	a.last = []string{gender, locale, voice}
	a.mu.Unlock()
	if strings.Contains(text, "slow") {
		<-ctx.Done()
		return audiofile.Audio{}, ctx.Err()
	}
	return audiofile.Audio{Samples: media.Tone(500, -10, a.ms), Rate: media.ClockRate}, nil
}

// fakeDialer answers every call at once, except: to containing "busy"
// fails with 486, "ring" rings until cancelled, "late" answers after
// 150 ms.
type fakeDialer struct {
	t    *testing.T
	legs sync.Map // call id → *fakeLeg
}

func (d *fakeDialer) Dial(ctx context.Context, call *bridge.Call, from, to string) error {
	switch {
	case strings.Contains(to, "busy"):
		return &bridge.DialError{Status: 486, Reason: "Busy Here"}
	case strings.Contains(to, "ring"):
		<-ctx.Done()
		return ctx.Err()
	case strings.Contains(to, "late"):
		time.Sleep(150 * time.Millisecond)
	}
	leg := newLeg(d.t)
	d.legs.Store(call.ID(), leg)
	call.SetLeg(leg)
	call.Answered()
	return nil
}

// env is a real bridge behind a real HTTP server.
type env struct {
	t      *testing.T
	b      *bridge.Bridge
	srv    *httptest.Server
	events *eventLog
	audio  *fakeAudio
	dialer *fakeDialer
	nconf  int // numbers given to conferences: a live number is held once
}

type envOption func(*bridge.Config, *Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, events: &eventLog{}, audio: &fakeAudio{ms: 200}, dialer: &fakeDialer{t: t}}
	bcfg := bridge.Config{DefaultUser: alice.ID, AutoCreate: true}
	cfg := Config{Users: []User{alice, bob}, Audio: e.audio, AnswerWait: 2 * time.Second, Targets: allowLoopback()}
	for _, o := range opts {
		o(&bcfg, &cfg)
	}
	e.b = bridge.New(bcfg, nil, e.events)
	e.b.SetDialer(e.dialer)
	cfg.Bridge = e.b
	e.srv = httptest.NewServer(New(cfg))
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.b.HangupAll(ctx, "test-over")
	})
	return e
}

// resp is an HTTP answer, read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errBody decodes an error answer and checks its shape.
func (r resp) errBody(t *testing.T) apiError {
	t.Helper()
	var raw map[string]any
	r.decode(t, &raw)
	for _, k := range []string{"category", "code", "message", "details"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("error body %s lacks %q", r.body, k)
		}
	}
	if _, ok := raw["details"].([]any); !ok {
		t.Fatalf("details of %s is not an array", r.body)
	}
	var ae apiError
	r.decode(t, &ae)
	return ae
}

// expectError checks status and code of an error answer.
func (r resp) expectError(t *testing.T, status int, code string) apiError {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	ae := r.errBody(t)
	if ae.Code != code {
		t.Fatalf("code %q, want %q; body %s", ae.Code, code, r.body)
	}
	if ae.Message == "" || ae.Category == "" {
		t.Fatalf("empty message or category: %s", r.body)
	}
	return ae
}

// do sends a request with u's credentials (nil: none) to an absolute path.
func (e *env) do(u *User, method, p, body string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+p, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if u != nil {
		req.SetBasicAuth(u.Token, u.Secret)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

// as sends a request as u to a path under u's own /v1/users/{id}.
func (e *env) as(u User, method, rel, body string) resp {
	e.t.Helper()
	return e.do(&u, method, "/v1/users/"+u.ID+rel, body)
}

// mustOK expects a 200 with an empty body.
func (r resp) mustOK(t *testing.T) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.status, r.body)
	}
	if len(r.body) != 0 {
		t.Fatalf("200 with body %s, want empty", r.body)
	}
}

// mustCreate expects 201, an empty body and an absolute Location under
// want (an absolute URL prefix); it returns the id.
func (e *env) mustCreate(r resp, want string) string {
	e.t.Helper()
	if r.status != http.StatusCreated {
		e.t.Fatalf("status %d, want 201; body %s", r.status, r.body)
	}
	if len(r.body) != 0 {
		e.t.Fatalf("201 with body %s", r.body)
	}
	loc := r.header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() {
		e.t.Fatalf("Location %q is not absolute", loc)
	}
	if !strings.HasPrefix(loc, e.srv.URL+want+"/") {
		e.t.Fatalf("Location %q, want under %s%s/", loc, e.srv.URL, want)
	}
	return path.Base(u.Path)
}

// createConf makes a conference of u and returns its id.
func (e *env) createConf(u User) string {
	e.t.Helper()
	e.nconf++
	r := e.as(u, "POST", "/conferences", fmt.Sprintf(`{"from":"+1555123%04d"}`, e.nconf))
	return e.mustCreate(r, "/v1/users/"+u.ID+"/conferences")
}

// newCall registers an answered inbound call of u with a real media session.
func (e *env) newCall(u User) (*bridge.Call, *fakeLeg) {
	e.t.Helper()
	leg := newLeg(e.t)
	c := e.b.NewCall(u.ID, "sip:caller@127.0.0.1", "+15551230000", bridge.DirectionIn, leg, bridge.Callback{})
	c.Answered()
	return c, leg
}

// addMember adds a new answered call of u to conf and returns member and call.
func (e *env) addMember(u User, conf string, body string) (string, *bridge.Call, *fakeLeg) {
	e.t.Helper()
	call, leg := e.newCall(u)
	if body == "" {
		body = `{"callId":"` + call.ID() + `"}`
	} else {
		body = strings.Replace(body, "{callId}", call.ID(), 1)
	}
	r := e.as(u, "POST", "/conferences/"+conf+"/members", body)
	id := e.mustCreate(r, "/v1/users/"+u.ID+"/conferences/"+conf+"/members")
	return id, call, leg
}

// getJSON GETs a path of u and decodes it.
func (e *env) getJSON(u User, rel string, v any) resp {
	e.t.Helper()
	r := e.as(u, "GET", rel, "")
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", rel, r.status, r.body)
	}
	r.decode(e.t, v)
	return r
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthMissingAndWrong(t *testing.T) {
	e := newEnv(t)
	wrong := User{ID: alice.ID, Token: alice.Token, Secret: "nope"}
	unknown := User{ID: alice.ID, Token: "who", Secret: alice.Secret}
	empty := User{ID: alice.ID}
	for _, tc := range []struct {
		name string
		u    *User
	}{{"none", nil}, {"wrong secret", &wrong}, {"unknown token", &unknown}, {"empty", &empty}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []string{"GET", "POST"} {
				r := e.do(tc.u, m, "/v1/users/u-alice/conferences", `{"from":"+1"}`)
				ae := r.expectError(t, 401, "unauthorized")
				if ae.Category != "authentication" {
					t.Errorf("category %q", ae.Category)
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="chorus"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			}
		})
	}
	if n := len(e.b.Conferences(alice.ID)); n != 0 {
		t.Fatalf("unauthenticated requests created %d conferences", n)
	}
}

func TestAuthEmptyCredentialsNeverMatch(t *testing.T) {
	e := newEnv(t, func(_ *bridge.Config, c *Config) {
		c.Users = append(c.Users, User{ID: "u-blank"})
	})
	blank := User{ID: "u-blank"}
	e.as(blank, "GET", "/conferences", "").expectError(t, 401, "unauthorized")
}

func TestAuthOtherUsersPath(t *testing.T) {
	e := newEnv(t)
	// Alice's valid credentials on Bob's (and on a nonexistent user's) path.
	for _, p := range []string{"/v1/users/u-bob/conferences", "/v1/users/u-nobody/conferences"} {
		r := e.do(&alice, "GET", p, "")
		ae := r.expectError(t, 401, "user-access-denied")
		if ae.Category != "authorization" {
			t.Errorf("category %q", ae.Category)
		}
	}
}

func TestNotFoundAndMethodNotAllowedAreJSON(t *testing.T) {
	e := newEnv(t)
	e.do(&alice, "GET", "/v1/users/u-alice/nothing", "").expectError(t, 404, "resource-not-found")
	e.do(nil, "GET", "/", "").expectError(t, 404, "resource-not-found")
	r := e.do(&alice, "DELETE", "/v1/users/u-alice/conferences", "")
	r.expectError(t, 405, "method-not-allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "POST") || !strings.Contains(allow, "GET") {
		t.Errorf("Allow %q", allow)
	}
	e.do(&alice, "PUT", "/v1/users/u-alice/conferences/conf-x", "{}").expectError(t, 405, "method-not-allowed")
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.MaxBody = 1024 })
	big := `{"from":"+1555","tag":"` + strings.Repeat("x", 2000) + `"}`
	e.as(alice, "POST", "/conferences", big).expectError(t, 413, "request-too-large")

	// Without Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/users/u-alice/conferences", io.MultiReader(strings.NewReader(big)))
	req.SetBasicAuth(alice.Token, alice.Secret)
	req.ContentLength = -1
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	resp{status: res.StatusCode, header: res.Header, body: data}.expectError(t, 413, "request-too-large")

	// The default limit is 64 KiB (unknown properties are ignored, but
	// read).
	e2 := newEnv(t)
	ok := `{"from":"+1555","unknown":"` + strings.Repeat("x", 60<<10) + `"}`
	e2.mustCreate(e2.as(alice, "POST", "/conferences", ok), "/v1/users/u-alice/conferences")
	huge := `{"from":"+1555","tag":"` + strings.Repeat("x", 65<<10) + `"}`
	e2.as(alice, "POST", "/conferences", huge).expectError(t, 413, "request-too-large")
}

func TestBadJSON(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	for _, b := range []string{`{`, `{"from":}`, `[1,2]`, `"x"`, `{"from":"+1"} trailing`, `nope`} {
		e.as(alice, "POST", "/conferences", b).expectError(t, 400, "invalid-json")
		e.as(alice, "POST", "/conferences/"+conf, b).expectError(t, 400, "invalid-json")
	}
}

func TestLenientValues(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	get := func() conferenceJSON {
		var c conferenceJSON
		e.getJSON(alice, "/conferences/"+conf, &c)
		return c
	}
	// Strings for booleans and numbers; text/plain content type.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/users/u-alice/conferences/"+conf,
		strings.NewReader(`{"mute":"true","hold":"TRUE","callbackTimeout":"2000","callbackUrl":"http://app.example/cb","unknown":{"x":[1]}}`))
	req.SetBasicAuth(alice.Token, alice.Secret)
	req.Header.Set("Content-Type", "text/plain")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	c := get()
	if !c.Mute || !c.Hold || c.CallbackTimeout != 2000 {
		t.Fatalf("lenient update not applied: %+v", c)
	}
	// null is absent: nothing changes (Python sends every key).
	e.as(alice, "POST", "/conferences/"+conf, `{"state":null,"mute":null,"hold":null,"callbackUrl":null,"callbackTimeout":null,"callbackHttpMethod":null,"fallbackUrl":null,"tag":null}`).mustOK(t)
	if c2 := get(); c2 != c {
		t.Fatalf("nulls changed the conference: %+v → %+v", c, c2)
	}
	// {} and an empty body are no-ops.
	e.as(alice, "POST", "/conferences/"+conf, `{}`).mustOK(t)
	e.do(&alice, "POST", "/v1/users/u-alice/conferences/"+conf, "").mustOK(t)
	// Real JSON types.
	e.as(alice, "POST", "/conferences/"+conf, `{"mute":false,"hold":"false","callbackTimeout":3000}`).mustOK(t)
	if c3 := get(); c3.Mute || c3.Hold || c3.CallbackTimeout != 3000 {
		t.Fatalf("%+v", c3)
	}
	// Wrong types are 400 validation-error naming the property.
	for _, b := range []string{`{"mute":"yes"}`, `{"hold":1}`, `{"callbackTimeout":"soon"}`, `{"callbackTimeout":2.5}`, `{"tag":{"a":1}}`, `{"mute":[true]}`} {
		ae := e.as(alice, "POST", "/conferences/"+conf, b).expectError(t, 400, "validation-error")
		if len(ae.Details) == 0 || ae.Details[0].Name != "property" {
			t.Errorf("%s: details %+v", b, ae.Details)
		}
	}
}

func TestOpenAPI(t *testing.T) {
	e := newEnv(t)
	r := e.do(nil, "GET", "/openapi.json", "")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, rt := range routes {
		served[rt.method+" "+rt.path] = true
		ops, ok := doc.Paths[rt.path]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.method, rt.path)
			continue
		}
		if _, ok := ops[strings.ToLower(rt.method)]; !ok {
			t.Errorf("route %s %s: method not in openapi.json", rt.method, rt.path)
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			if !served[strings.ToUpper(m)+" "+p] {
				t.Errorf("openapi.json documents %s %s, which is not served", m, p)
			}
		}
	}
	// Every $ref resolves.
	var whole map[string]any
	r.decode(t, &whole)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
				var cur any = whole
				for _, p := range parts {
					m, _ := cur.(map[string]any)
					cur = m[p]
				}
				if cur == nil {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(whole)
}

// TestCrossUserMatrix: Alice's credentials against every one of Bob's
// resources, with every method. On Bob's paths she is denied (401
// user-access-denied); with Bob's ids on her own paths she finds nothing,
// with exactly the answer a nonexistent id gets; Bob's resources are
// untouched.
func TestCrossUserMatrix(t *testing.T) {
	e := newEnv(t, withRecordings(t))
	bConf := e.createConf(bob)
	bMember, bCall, bLeg := e.addMember(bob, bConf, "")
	bc, _ := e.b.Conference(bConf)
	bRec, err := bc.StartRecording("wav")
	if err != nil {
		t.Fatal(err)
	}
	aConf := e.createConf(alice)
	bApp := e.mustCreate(e.as(bob, "POST", "/applications", `{"name":"b","incomingCallUrl":"http://127.0.0.1:9/b"}`), "/v1/users/"+bob.ID+"/applications")
	bNum := e.mustCreate(e.as(bob, "POST", "/phoneNumbers", `{"number":"+15559990001","applicationId":"`+bApp+`"}`), "/v1/users/"+bob.ID+"/phoneNumbers")

	bGather, err := bCall.StartGather(bridge.GatherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"conferenceId": bConf, "memberId": bMember, "callId": bCall.ID(), "applicationId": bApp, "numberId": bNum,
		"recordingId": bRec.ID(), "mediaName": bRec.Media(), "gatherId": bGather.ID()}
	fill := func(p, user string, ids map[string]string) string {
		p = strings.ReplaceAll(p, "{userId}", user)
		for k, v := range ids {
			p = strings.ReplaceAll(p, "{"+k+"}", v)
		}
		return p
	}
	bodies := map[string]string{
		"POST": `{"state":"completed","mute":true,"from":"+1","callId":"` + bCall.ID() + `","fileUrl":"http://x.example/a.wav","to":"sip:a@127.0.0.1","conferenceId":"` + bConf + `"}`,
	}
	for _, rt := range routes {
		if !rt.auth {
			continue
		}
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			p := fill(rt.path, bob.ID, ids)
			r := e.do(&alice, m, p, bodies[m])
			if r.status == 405 {
				continue // method not served on this path, for anyone
			}
			r.expectError(t, 401, "user-access-denied")
		}
	}

	// Bob's ids on Alice's own paths look exactly like ids that never existed.
	ghost := map[string]string{"conferenceId": "conf-doesnotexist0000000000", "memberId": "member-doesnotexist000000000", "callId": "c-doesnotexist00000000000",
		"applicationId": "a-doesnotexist00000000000", "numberId": "n-doesnotexist00000000000",
		"recordingId": "rec-doesnotexist00000000000", "mediaName": "rec-doesnotexist00000000000.wav",
		"gatherId": "gather-doesnotexist000000000"}
	normalize := func(b []byte, from map[string]string) string {
		s := string(b)
		// Longest first: a media name holds its recording's id.
		keys := slices.SortedFunc(maps.Keys(from), func(x, y string) int { return len(from[y]) - len(from[x]) })
		for _, k := range keys {
			s = strings.ReplaceAll(s, from[k], "<"+k+">")
		}
		return s
	}
	for _, rt := range routes {
		if !rt.auth || !strings.Contains(rt.path, "{") || rt.path == userBase+"/conferences" || rt.path == userBase+"/calls" ||
			rt.path == userBase+"/events" || rt.path == userBase+"/applications" || rt.path == userBase+"/phoneNumbers" ||
			rt.path == userBase+"/undeliveredEvents" ||
			rt.path == userBase+"/recordings" {
			continue
		}
		body := bodies[rt.method]
		p1 := fill(rt.path, alice.ID, ids)
		p2 := fill(rt.path, alice.ID, ghost)
		r1 := e.do(&alice, rt.method, p1, body)
		r2 := e.do(&alice, rt.method, p2, strings.NewReplacer(bCall.ID(), ghost["callId"], bConf, ghost["conferenceId"]).Replace(body))
		if r1.status != 404 {
			t.Errorf("%s %s with Bob's ids: %d %s", rt.method, p1, r1.status, r1.body)
		}
		if r1.status != r2.status || normalize(r1.body, ids) != normalize(r2.body, ghost) {
			t.Errorf("%s %s leaks existence: %d %s vs %d %s", rt.method, rt.path, r1.status, r1.body, r2.status, r2.body)
		}
	}
	// Adding Bob's call to Alice's conference: the same 403 as a call that
	// does not exist.
	r1 := e.as(alice, "POST", "/conferences/"+aConf+"/members", `{"callId":"`+bCall.ID()+`"}`)
	r2 := e.as(alice, "POST", "/conferences/"+aConf+"/members", `{"callId":"c-doesnotexist00000000000"}`)
	r1.expectError(t, 403, "call-id-not-found")
	r2.expectError(t, 403, "call-id-not-found")
	// Dialling into Bob's conference: the same as a conference that does not exist.
	r1 = e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:x@127.0.0.1","conferenceId":"`+bConf+`"}`)
	r2 = e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:x@127.0.0.1","conferenceId":"conf-doesnotexist0000000000"}`)
	r1.expectError(t, 403, "invalid-call-conference-id")
	r2.expectError(t, 403, "invalid-call-conference-id")
	// Lists show nothing of Bob's.
	var calls []callJSON
	e.getJSON(alice, "/calls?conferenceId="+bConf, &calls)
	if len(calls) != 0 {
		t.Errorf("Alice lists Bob's calls: %+v", calls)
	}
	e.getJSON(alice, "/calls", &calls)
	for _, c := range calls {
		if c.ID == bCall.ID() {
			t.Errorf("Alice lists Bob's call")
		}
	}
	var confs []conferenceJSON
	e.getJSON(alice, "/conferences", &confs)
	if len(confs) != 1 || confs[0].ID != aConf {
		t.Errorf("Alice's conference list: %+v", confs)
	}

	// Bob's resources are untouched.
	var c conferenceJSON
	e.getJSON(bob, "/conferences/"+bConf, &c)
	if c.State != "active" || c.Mute || c.ActiveMembers != 1 {
		t.Errorf("Bob's conference changed: %+v", c)
	}
	var mj memberJSON
	e.getJSON(bob, "/conferences/"+bConf+"/members/"+bMember, &mj)
	if mj.State != "active" || mj.Mute {
		t.Errorf("Bob's member changed: %+v", mj)
	}
	if bCall.State() != bridge.CallActive || bLeg.hungUp.Load() != 0 {
		t.Errorf("Bob's call changed: %s", bCall.State())
	}
	if n := e.audio.fetches.Load(); n != 0 {
		t.Errorf("Alice made %d fetches on Bob's behalf", n)
	}
	var app applicationJSON
	e.getJSON(bob, "/applications/"+bApp, &app)
	var num numberJSON
	e.getJSON(bob, "/phoneNumbers/"+bNum, &num)
	if app.Name != "b" || num.ApplicationID != bApp {
		t.Errorf("Bob's application or number changed: %+v %+v", app, num)
	}
}

// TestCrossUserNumbers: a dial-in number belongs to the one live
// conference that holds it, whoever's it is. Bob cannot take Alice's live
// number (409 number-in-use, naming nothing of hers), Alice's callers
// always land in Alice's room, and the number is free again once her
// conference completes.
func TestCrossUserNumbers(t *testing.T) {
	e := newEnv(t)
	aConf := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"1000"}`), "/v1/users/"+alice.ID+"/conferences")
	bConf := e.mustCreate(e.as(bob, "POST", "/conferences", `{"from":"2000"}`), "/v1/users/"+bob.ID+"/conferences")

	r := e.as(bob, "POST", "/conferences", `{"from":"1000"}`)
	ae := r.expectError(t, 409, "number-in-use")
	if ae.Category != "conflict" || strings.Contains(string(r.body), aConf) || strings.Contains(string(r.body), alice.ID) {
		t.Errorf("409 body %s", r.body)
	}
	e.as(alice, "POST", "/conferences", `{"from":"1000"}`).expectError(t, 409, "number-in-use")
	e.as(alice, "POST", "/conferences", `{"from":"2000"}`).expectError(t, 409, "number-in-use")
	var bobs []conferenceJSON
	e.getJSON(bob, "/conferences", &bobs)
	if len(bobs) != 1 || bobs[0].ID != bConf {
		t.Errorf("Bob's conferences after the refused create: %+v", bobs)
	}

	// Dial-ins land in the room of the number's owner, every time.
	for range 5 {
		c, err := e.b.Route("1000", "")
		if err != nil || c.ID() != aConf || c.UserID() != alice.ID {
			t.Fatalf("a caller to Alice's 1000 landed in %v (%v)", c, err)
		}
		c, err = e.b.Route("2000", "")
		if err != nil || c.ID() != bConf || c.UserID() != bob.ID {
			t.Fatalf("a caller to Bob's 2000 landed in %v (%v)", c, err)
		}
	}

	// Completing Alice's conference frees 1000; now Bob's room gets its callers.
	e.as(alice, "POST", "/conferences/"+aConf, `{"state":"completed"}`).mustOK(t)
	bConf2 := e.mustCreate(e.as(bob, "POST", "/conferences", `{"from":"1000"}`), "/v1/users/"+bob.ID+"/conferences")
	if c, err := e.b.Route("1000", ""); err != nil || c.ID() != bConf2 {
		t.Fatalf("after Alice's room completed, a caller to 1000 landed in %v (%v), want Bob's new room", c, err)
	}
}
