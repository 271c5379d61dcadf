package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// authClock is an injected clock a test moves by hand.
type authClock struct{ t time.Time }

func (c *authClock) now() time.Time      { return c.t }
func (c *authClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newAuthClock() *authClock           { return &authClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

func mustURI(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// warnCounter counts log records at warn level and above.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(context.Context, slog.Record) error    { w.n.Add(1); return nil }
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnCounter) WithGroup(string) slog.Handler                { return w }

func testGate(t testing.TB, clk *authClock, mod ...func(*AuthConfig)) (*authGate, *warnCounter) {
	t.Helper()
	cfg := AuthConfig{Accounts: []Account{{Name: "alice", Password: "pw", UserID: "u-alice"}}, Now: clk.now}
	for _, m := range mod {
		m(&cfg)
	}
	wc := &warnCounter{}
	g, err := newAuthGate(cfg, slog.New(wc))
	if err != nil {
		t.Fatal(err)
	}
	return g, wc
}

const testReqURI = "sip:1000@192.0.2.1:5060"

// answer computes the Authorization a UAC would send for a challenge.
func answer(t testing.TB, g *authGate, nonce, alg, user, password, uri string, qop bool) string {
	t.Helper()
	ch := &digest.Challenge{Realm: g.cfg.Realm, Nonce: nonce, Algorithm: alg}
	if qop {
		ch.QOP = []string{"auth"}
	}
	cred, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: uri, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// TestVerify covers RFC 3261 §22.4 checks one by one, with an injected clock.
func TestVerify(t *testing.T) {
	clk := newAuthClock()
	g, _ := testGate(t, clk)
	reqURI := mustURI(t, testReqURI)
	nonce := g.newNonce(clk.now())
	other, _ := testGate(t, clk)
	foreign := other.newNonce(clk.now())
	ok := func(alg string, qop bool) string {
		return answer(t, g, g.newNonce(clk.now()), alg, "alice", "pw", testReqURI, qop)
	}
	for _, tc := range []struct {
		name    string
		headers []string
		want    authOutcome
		err     error
	}{
		{"none", nil, authChallenge, errNoCredentials},
		{"basic", []string{"Basic YWxpY2U6cHc="}, authChallenge, errNoCredentials},
		{"other realm", []string{strings.Replace(ok("MD5", true), `realm="chorus"`, `realm="elsewhere"`, 1)}, authChallenge, errNoCredentials},
		{"sha-256", []string{ok("SHA-256", true)}, authOK, nil},
		{"md5", []string{ok("MD5", true)}, authOK, nil},
		{"md5 without qop (RFC 2069)", []string{ok("MD5", false)}, authOK, nil},
		{"no algorithm means MD5", []string{strings.Replace(ok("MD5", true), "algorithm=MD5, ", "", 1)}, authOK, nil},
		{"second header for our realm", []string{strings.Replace(ok("MD5", true), `realm="chorus"`, `realm="x"`, 1), ok("SHA-256", true)}, authOK, nil},
		{"wrong password", []string{answer(t, g, nonce, "SHA-256", "alice", "nope", testReqURI, true)}, authFailed, errWrongResponse},
		{"unknown user", []string{answer(t, g, nonce, "MD5", "mallory", "pw", testReqURI, true)}, authFailed, errUnknownUser},
		{"foreign nonce", []string{answer(t, g, foreign, "MD5", "alice", "pw", testReqURI, true)}, authChallenge, errNotOurNonce},
		{"garbage nonce", []string{answer(t, g, "abc", "MD5", "alice", "pw", testReqURI, true)}, authChallenge, errNotOurNonce},
		{"uri of another number", []string{answer(t, g, nonce, "MD5", "alice", "pw", "sip:2000@192.0.2.1:5060", true)}, authMalformed, errBadCredentials},
		{"uri of another port", []string{answer(t, g, nonce, "MD5", "alice", "pw", "sip:1000@192.0.2.1", true)}, authMalformed, errBadCredentials},
		{"uri with params", []string{answer(t, g, g.newNonce(clk.now()), "MD5", "alice", "pw", testReqURI+";transport=udp", true)}, authOK, nil},
		{"sha-512 not offered", []string{answer(t, g, nonce, "SHA-512", "alice", "pw", testReqURI, true)}, authMalformed, errBadCredentials},
		{"qop without cnonce", []string{strings.Replace(ok("MD5", true), "cnonce=", "x=", 1)}, authMalformed, errBadCredentials},
		{"unparsable", []string{`Digest username="alice`}, authMalformed, errBadCredentials},
		{"bad nc", []string{`Digest username="alice", nc=zz`}, authMalformed, errBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, acct, err := g.verify("INVITE", reqURI, tc.headers, clk.now())
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("verify = %v, %v; want %v, %v", got, err, tc.want, tc.err)
			}
			if got == authOK && acct.UserID != "u-alice" {
				t.Errorf("account %+v, want alice's", acct)
			}
		})
	}
}

// TestNonceExpiry: a nonce answered correctly after NonceTTL gets a stale
// challenge; answered wrongly, a failure. A nonce from the future is not
// ours.
func TestNonceExpiry(t *testing.T) {
	clk := newAuthClock()
	g, _ := testGate(t, clk)
	reqURI := mustURI(t, testReqURI)
	nonce := g.newNonce(clk.now())
	clk.add(defaultNonceTTL - time.Second)
	if got, _, err := g.verify("INVITE", reqURI, []string{answer(t, g, nonce, "MD5", "alice", "pw", testReqURI, true)}, clk.now()); got != authOK {
		t.Fatalf("just before expiry: %v %v, want ok", got, err)
	}
	clk.add(time.Second)
	if got, _, _ := g.verify("INVITE", reqURI, []string{answer(t, g, nonce, "MD5", "alice", "pw", testReqURI, true)}, clk.now()); got != authStale {
		t.Errorf("expired nonce, right password: %v, want stale", got)
	}
	if got, _, _ := g.verify("INVITE", reqURI, []string{answer(t, g, nonce, "MD5", "alice", "bad", testReqURI, true)}, clk.now()); got != authFailed {
		t.Errorf("expired nonce, wrong password: %v, want failed", got)
	}
	future := g.newNonce(clk.now().Add(time.Minute))
	if got, _, _ := g.verify("INVITE", reqURI, []string{answer(t, g, future, "MD5", "alice", "pw", testReqURI, true)}, clk.now()); got != authChallenge {
		t.Errorf("nonce from the future: %v, want challenge", got)
	}
	hs := g.challenges(clk.now(), true)
	if len(hs) != 2 || !strings.Contains(hs[0].Value(), "algorithm=SHA-256") || !strings.Contains(hs[0].Value(), "stale=true") ||
		!strings.Contains(hs[1].Value(), "algorithm=MD5") {
		t.Errorf("stale challenges %v, want SHA-256 then MD5 with stale=true", hs)
	}
}

// TestFailureLimit: MaxFailures failures within the window block a source
// for Block, logged once; failures spread over windows do not; another
// source is not affected; IPv6 sources count by /64.
func TestFailureLimit(t *testing.T) {
	clk := newAuthClock()
	g, warns := testGate(t, clk, func(c *AuthConfig) { c.MaxFailures = 3 })
	a := netip.MustParseAddr("192.0.2.7")
	for range 2 {
		g.failed(a, clk.now())
	}
	clk.add(time.Minute) // the window ends: the count starts again
	for i := range 2 {
		g.failed(a, clk.now())
		if g.blocked(a, clk.now()) {
			t.Fatalf("blocked after %d failures in a new window", i+1)
		}
	}
	g.failed(a, clk.now())
	if !g.blocked(a, clk.now()) {
		t.Fatal("not blocked after 3 failures within a minute")
	}
	if g.blocked(netip.MustParseAddr("192.0.2.8"), clk.now()) {
		t.Error("another source is blocked")
	}
	clk.add(time.Minute - time.Millisecond)
	if !g.blocked(a, clk.now()) {
		t.Error("block ended early")
	}
	clk.add(time.Millisecond)
	if g.blocked(a, clk.now()) {
		t.Error("block did not end after a minute")
	}
	if n := warns.n.Load(); n != 1 {
		t.Errorf("%d warnings, want one per episode", n)
	}
	if g.stats.Blocks.Load() != 1 {
		t.Errorf("blocks %d, want 1", g.stats.Blocks.Load())
	}
	v6a, v6b := sourceKey(netip.MustParseAddr("2001:db8::1")), sourceKey(netip.MustParseAddr("2001:db8::ffff:2"))
	if v6a != v6b {
		t.Errorf("IPv6 sources of one /64 have keys %v and %v", v6a, v6b)
	}
}

// TestSourcesBounded: the failure records stay within MaxSources, idle
// ones expire, and blocked ones are kept while they are blocked.
func TestSourcesBounded(t *testing.T) {
	clk := newAuthClock()
	g, _ := testGate(t, clk, func(c *AuthConfig) { c.MaxFailures = 2; c.MaxSources = 50 })
	blocked := netip.MustParseAddr("198.51.100.1")
	g.failed(blocked, clk.now())
	g.failed(blocked, clk.now())
	for i := range 1000 {
		g.failed(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), clk.now())
		if len(g.sources) > 50 {
			t.Fatalf("%d sources tracked, cap 50", len(g.sources))
		}
	}
	if !g.blocked(blocked, clk.now()) {
		t.Error("a blocked source was evicted")
	}
	clk.add(2 * time.Minute)
	g.failed(netip.MustParseAddr("192.0.2.1"), clk.now())
	if len(g.sources) != 1 {
		t.Errorf("%d sources after all went idle, want 1", len(g.sources))
	}
}

// TestReplayCacheBounded: accepted credentials are remembered until their
// nonce expires, and forgotten after.
func TestReplayCacheBounded(t *testing.T) {
	clk := newAuthClock()
	g, _ := testGate(t, clk)
	reqURI := mustURI(t, testReqURI)
	for i := range 100 {
		h := answer(t, g, g.newNonce(clk.now()), "MD5", "alice", "pw", testReqURI, true)
		if got, _, err := g.verify("INVITE", reqURI, []string{h}, clk.now()); got != authOK {
			t.Fatalf("call %d: %v %v", i, got, err)
		}
	}
	clk.add(defaultNonceTTL + time.Second)
	h := answer(t, g, g.newNonce(clk.now()), "MD5", "alice", "pw", testReqURI, true)
	if got, _, _ := g.verify("INVITE", reqURI, []string{h}, clk.now()); got != authOK {
		t.Fatal("fresh credentials refused")
	}
	if len(g.used) != 1 {
		t.Errorf("%d remembered credentials after the old nonces expired, want 1", len(g.used))
	}
}

// TestAuthConfigErrors: bad accounts and algorithms are refused with a
// clear error.
func TestAuthConfigErrors(t *testing.T) {
	for _, cfg := range []AuthConfig{
		{Accounts: []Account{{Name: "a", Password: "", UserID: "u"}}},
		{Accounts: []Account{{Name: "a", Password: "p", UserID: "u"}, {Name: "a", Password: "q", UserID: "u"}}},
		{Algorithms: []string{"SHA-512"}},
	} {
		if _, err := newAuthGate(cfg, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	g, err := newAuthGate(AuthConfig{Algorithms: []string{"md5", "MD5"}}, slog.New(slog.DiscardHandler))
	if err != nil || fmt.Sprint(g.cfg.Algorithms) != "[MD5]" {
		t.Errorf("algorithms %v, %v; want [MD5]", g.cfg.Algorithms, err)
	}
}

// FuzzVerify: no Authorization header, however malformed, panics the
// check or admits a caller without the password.
func FuzzVerify(f *testing.F) {
	clk := newAuthClock()
	g, _ := testGate(f, clk)
	// A fixed key and clock keep the nonces of the committed corpus valid,
	// so that the fuzzer gets past the nonce to the checks behind it.
	g.key = []byte("FuzzVerify: fixed key, not secret")
	nonce := g.newNonce(clk.now())
	f.Add(answer(f, g, nonce, "MD5", "alice", "pw", testReqURI, true))
	f.Add(answer(f, g, nonce, "SHA-256", "alice", "wrong", testReqURI, true))
	f.Add(`Digest username="alice", realm="chorus", nonce="` + nonce + `", uri="sip:1000@192.0.2.1:5060", response="00", qop=auth, nc=00000001, cnonce="x"`)
	f.Add(`Digest username="a\"b", realm="chorus", nc=ffffffffff`)
	f.Add(`Digest ,,,=,"`)
	f.Add(`digest realm=chorus, uri="sip:[::1", nonce=` + nonce)
	f.Add("Basic Zm9vOmJhcg==")
	reqURI := mustURI(f, testReqURI)
	f.Fuzz(func(t *testing.T, h string) {
		got, _, _ := g.verify("INVITE", reqURI, []string{h}, clk.now())
		if got == authOK {
			cred, err := digest.ParseCredentials(h)
			if err != nil || cred.Username != "alice" {
				t.Fatalf("admitted %q", h)
			}
		}
	})
}

// BenchmarkAuth measures what an untrusted INVITE costs the check: a 401
// challenge (nonce and two headers) and the verification of an answer.
func BenchmarkAuth(b *testing.B) {
	clk := newAuthClock()
	g, _ := testGate(b, clk)
	reqURI := mustURI(b, testReqURI)
	b.Run("challenge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = g.challenges(clk.now(), false)
		}
	})
	b.Run("verify-wrong-password", func(b *testing.B) {
		h := []string{answer(b, g, g.newNonce(clk.now()), "SHA-256", "alice", "nope", testReqURI, true)}
		b.ReportAllocs()
		for b.Loop() {
			if got, _, _ := g.verify("INVITE", reqURI, h, clk.now()); got != authFailed {
				b.Fatal(got)
			}
		}
	})
}
