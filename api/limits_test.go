package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chorus/bridge"
)

// TestPagingLimits: page and size at and past their limits, on every list
// that pages. Nothing crashes; every bad value is a 400 naming the
// parameter.
func TestPagingLimits(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	lists := []string{"/conferences", "/calls", "/calls?conferenceId=" + conf}
	bad := []string{"-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"99999999999999999999999999", "x", "1e3", "1.5", "0x10", "%2B", "1+2", "%00", "%E2%80%8B1"} // query-encoded
	for _, list := range lists {
		sep := "?"
		if strings.Contains(list, "?") {
			sep = "&"
		}
		for _, param := range []string{"page", "size"} {
			vals := append([]string{}, bad...)
			if param == "size" {
				vals = append(vals, "0", "1001")
			} else {
				vals = append(vals, "100001")
			}
			for _, v := range vals {
				r := e.as(alice, "GET", list+sep+param+"="+v, "")
				ae := r.expectError(t, 400, "validation-error")
				if len(ae.Details) == 0 || ae.Details[0].Value != param {
					t.Errorf("%s %s=%s: details %+v", list, param, v, ae.Details)
				}
			}
		}
		// The limits themselves are served: page 0 is the first page,
		// the last page number and the largest size answer (empty or not).
		for _, q := range []string{"page=0", "page=100000", "size=1", "size=1000", "page=100000&size=1000", "page=", "size="} {
			var out []json0
			e.getJSON(alice, list+sep+q, &out)
		}
	}
}

// json0 decodes any list element.
type json0 = map[string]any

// TestListConferenceCallsCapped: the calls of a conference are listed
// whole only up to the page size limit; Link names the rest.
func TestListConferenceCallsCapped(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	for range maxPageSize + 1 { // calls dialled to join the conference (and refused at once)
		if _, err := e.b.DialOut(bridge.DialOptions{UserID: alice.ID, From: "+1", To: "sip:busy@127.0.0.1", ConferenceID: conf}); err != nil {
			t.Fatal(err)
		}
	}
	var out []json0
	r := e.getJSON(alice, "/calls?conferenceId="+conf, &out)
	if len(out) != maxPageSize || !strings.Contains(r.header.Get("Link"), "page=1") {
		t.Fatalf("%d calls, Link %q", len(out), r.header.Get("Link"))
	}
}

// TestTagAndURLLimits: a tag is at most 256 characters (not bytes), URLs
// at most 2048, on every resource that takes them.
func TestTagAndURLLimits(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	member, _, _ := e.addMember(alice, conf, "")
	okTag := strings.Repeat("é", maxTagLen)
	longTag := strings.Repeat("x", maxTagLen+1)
	longURL := "http://app.example/" + strings.Repeat("a", maxURLLen)
	for _, tc := range []struct{ method, path, base string }{
		{"POST", "/conferences", `"from":"+1"`},
		{"POST", "/conferences/" + conf, `"mute":false`},
		{"POST", "/calls", `"from":"+1","to":"sip:x@127.0.0.1"`},
		{"POST", "/conferences/" + conf + "/audio", `"sentence":"hi"`},
		{"POST", "/conferences/" + conf + "/members/" + member + "/audio", `"sentence":"hi"`},
	} {
		r := e.as(alice, tc.method, tc.path, `{`+tc.base+`,"tag":"`+longTag+`"}`)
		if ae := r.expectError(t, 400, "validation-error"); !strings.Contains(ae.Message, "256") {
			t.Errorf("%s: %s", tc.path, ae.Message)
		}
		if r := e.as(alice, tc.method, tc.path, `{`+tc.base+`,"tag":"`+okTag+`"}`); r.status >= 300 {
			t.Errorf("%s with a 256-character tag: %d %s", tc.path, r.status, r.body)
		}
		if strings.HasSuffix(tc.path, "/audio") {
			r = e.as(alice, tc.method, tc.path, `{"fileUrl":"`+longURL+`"}`)
		} else {
			r = e.as(alice, tc.method, tc.path, `{`+tc.base+`,"callbackUrl":"`+longURL+`"}`)
		}
		r.expectError(t, 400, "validation-error")
	}
	e.as(alice, "POST", "/conferences", `{"from":"+1","fallbackUrl":"`+longURL+`"}`).expectError(t, 400, "validation-error")
}

// TestLiveConferenceLimit: a user's live conferences are capped, the cap
// holds under concurrent creates, completing one frees a place, and one
// user at the cap does not limit another.
func TestLiveConferenceLimit(t *testing.T) {
	const limit = 5
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.MaxLiveConferences = limit })
	var wg sync.WaitGroup
	var created, refused atomic.Int32
	for i := range 3 * limit {
		wg.Go(func() {
			body := fmt.Sprintf(`{"from":"+1%03d"}`, i) // numbers are held by one live room each
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/users/u-alice/conferences", strings.NewReader(body))
			req.SetBasicAuth(alice.Token, alice.Secret)
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			switch res.StatusCode {
			case 201:
				created.Add(1)
			case 403:
				refused.Add(1)
			default:
				t.Errorf("status %d", res.StatusCode)
			}
		})
	}
	wg.Wait()
	if created.Load() != limit || refused.Load() != 2*limit {
		t.Fatalf("%d created, %d refused; want %d and %d", created.Load(), refused.Load(), limit, 2*limit)
	}
	ae := e.as(alice, "POST", "/conferences", `{"from":"+1999"}`).expectError(t, 403, "max-live-conferences")
	if ae.Category != "limit" || !strings.Contains(ae.Message, strconv.Itoa(limit)) {
		t.Errorf("%+v", ae)
	}
	// Bob is not limited by Alice's rooms.
	e.createConf(bob)
	// A completed conference frees its place.
	confs := e.b.Conferences(alice.ID)
	e.as(alice, "POST", "/conferences/"+confs[0].ID(), `{"state":"completed"}`).mustOK(t)
	e.createConf(alice)
	e.as(alice, "POST", "/conferences", `{"from":"+1999"}`).expectError(t, 403, "max-live-conferences")
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clientFrom is an HTTP client whose connections come from local (an
// address of 127.0.0.0/8).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

// TestAuthFailureLimit: after the limit of wrong credentials from one
// address, that address gets 429 with Retry-After, even with the right
// credentials; another address still authenticates; the source regains
// one try per window/limit.
func TestAuthFailureLimit(t *testing.T) {
	const limit = 5
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.AuthFailures = limit; c.Now = clock.now })
	here, there := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	get := func(c *http.Client, secret string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/users/u-alice/conferences", nil)
		req.SetBasicAuth(alice.Token, secret)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	// Missing credentials and a valid user on another's path are not
	// guesses: they do not count.
	for range 2 * limit {
		e.do(nil, "GET", "/v1/users/u-alice/conferences", "").expectError(t, 401, "unauthorized")
		e.do(&alice, "GET", "/v1/users/u-bob/conferences", "").expectError(t, 401, "user-access-denied")
	}
	for i := range limit {
		if res := get(here, "wrong"); res.StatusCode != 401 {
			t.Fatalf("failure %d: %d", i+1, res.StatusCode)
		}
	}
	res := get(here, "wrong")
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "12" || !res.Close {
		t.Fatalf("failure %d: %d Retry-After %q close %v", limit+1, res.StatusCode, res.Header.Get("Retry-After"), res.Close)
	}
	reset, _ := strconv.ParseInt(res.Header.Get("X-RateLimit-Reset"), 10, 64)
	if want := clock.now().Add(12 * time.Second).UnixMilli(); reset != want {
		t.Errorf("X-RateLimit-Reset %d, want %d", reset, want)
	}
	r := e.as(alice, "GET", "/conferences", "")
	if ae := r.expectError(t, 429, "rate-limit-reached"); ae.Category != "too-many-requests" {
		t.Errorf("category %q", ae.Category)
	}
	if res := get(there, alice.Secret); res.StatusCode != 200 {
		t.Fatalf("another address: %d", res.StatusCode)
	}
	// Not logged in from the other address by a wrong secret either.
	if res := get(there, "wrong"); res.StatusCode != 401 {
		t.Fatalf("another address, wrong secret: %d", res.StatusCode)
	}
	// Unauthenticated routes still answer.
	if r := e.do(nil, "GET", "/openapi.json", ""); r.status != 200 {
		t.Errorf("openapi.json: %d", r.status)
	}
	clock.advance(11 * time.Second)
	if res := get(here, alice.Secret); res.StatusCode != 429 || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("after 11 s: %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	clock.advance(time.Second)
	if res := get(here, alice.Secret); res.StatusCode != 200 {
		t.Fatalf("after 12 s: %d", res.StatusCode)
	}
	// One more failure spends it again.
	get(here, "wrong")
	if res := get(here, alice.Secret); res.StatusCode != 429 {
		t.Fatalf("after another failure: %d", res.StatusCode)
	}
	// A minute on, the source is clean: limit failures again.
	clock.advance(time.Minute)
	for i := range limit {
		if res := get(here, "wrong"); res.StatusCode != 401 {
			t.Fatalf("next minute, failure %d: %d", i+1, res.StatusCode)
		}
	}
}

// TestAuthLimiterMemoryBounded: a flood of failures from many sources
// keeps at most maxSources entries; sources beyond share one entry and are
// limited together; a sweep makes room again once sources are clean.
func TestAuthLimiterMemoryBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newAuthLimiter(3, 100, clock.now, discardLog())
	for i := range 10000 {
		src := sourceKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + ":1")
		if _, blocked := l.blocked(src); !blocked {
			l.fail(src)
		}
	}
	if n := len(l.tat); n != 100 {
		t.Fatalf("%d sources remembered, want 100", n)
	}
	newcomer := sourceKey("10.200.0.1:1")
	if _, blocked := l.blocked(newcomer); !blocked {
		t.Fatal("the overflow sources are not limited together")
	}
	clock.advance(2 * time.Minute)
	if _, blocked := l.blocked(newcomer); blocked {
		t.Fatal("still blocked two minutes later")
	}
	l.fail(newcomer)
	if _, ok := l.tat[newcomer]; !ok || len(l.tat) != 1 {
		t.Fatalf("sweep did not make room: %d entries", len(l.tat))
	}
	// IPv6 counts per /64; v4-mapped counts as IPv4.
	if sourceKey("[2001:db8::1]:5") != sourceKey("[2001:db8::ffff:2]:6") || sourceKey("[::ffff:10.0.0.1]:1") != sourceKey("10.0.0.1:2") {
		t.Error("source keys")
	}
}

// TestAuthFailureLimitConcurrent: guesses sent at once from one address
// may pass the check before the first is counted, but every failure is
// counted: the source stays refused for as long as its failures, at the
// limit's rate, take.
func TestAuthFailureLimitConcurrent(t *testing.T) {
	const limit = 10 // one every 6 s
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.AuthFailures = limit; c.Now = clock.now })
	var wg sync.WaitGroup
	var n401, n429 atomic.Int32
	for range 100 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/users/u-alice/calls", nil)
			req.SetBasicAuth(alice.Token, "guess")
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			switch res.StatusCode {
			case 401:
				n401.Add(1)
			case 429:
				n429.Add(1)
			}
		})
	}
	wg.Wait()
	if n401.Load() < limit || n401.Load()+n429.Load() != 100 {
		t.Fatalf("%d 401 and %d 429 of 100", n401.Load(), n429.Load())
	}
	r := e.as(alice, "GET", "/calls", "")
	r.expectError(t, 429, "rate-limit-reached")
	want := (int(n401.Load()) - limit + 1) * 6
	if got := r.header.Get("Retry-After"); got != strconv.Itoa(want) {
		t.Fatalf("after %d failures Retry-After %s, want %d", n401.Load(), got, want)
	}
	t.Logf("%d of 100 concurrent guesses answered 401, %d got 429", n401.Load(), n429.Load())
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestOpenAPIDocumentsLimits: every authenticated operation documents the
// 429, and the limits and their codes are written down.
func TestOpenAPIDocumentsLimits(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json0 `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if !rt.auth {
			continue
		}
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)].Responses["429"]; !ok {
			t.Errorf("%s %s: no 429", rt.method, rt.path)
		}
	}
	if _, ok := doc.Paths[userBase+"/conferences"]["post"].Responses["403"]; !ok {
		t.Error("create conference: no 403")
	}
	for _, want := range []string{"max-live-conferences", "rate-limit-reached", "Retry-After", `"maxLength": 256`, `"maximum": 100000`} {
		if !strings.Contains(string(openAPIDoc), want) {
			t.Errorf("openapi.json does not mention %s", want)
		}
	}
}
