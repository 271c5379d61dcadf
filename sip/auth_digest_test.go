package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"github.com/icholy/digest"
)

// digestCaller is a small UDP UAC on its own loopback address that answers
// digest challenges with github.com/icholy/digest, for what sipp 3.6 cannot
// do (SHA-256).
type digestCaller struct {
	raw              *rawSIP
	user             string
	callID, fromTag  string
	cseq             int
	lastBranch, toTg string
}

func newDigestCaller(t *testing.T, ip string, to netip.AddrPort, user string) *digestCaller {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &digestCaller{raw: &rawSIP{t: t, conn: conn, to: to}, user: user, callID: randHex(8) + "@digest", fromTag: randHex(4)}
}

func (c *digestCaller) uri() string { return fmt.Sprintf("sip:%s@%s", c.user, c.raw.to) }

// request builds an in-call request; a new CSeq and branch unless ack.
func (c *digestCaller) request(method string, hdrs ...string) string {
	local := c.raw.conn.LocalAddr().String()
	if method != "ACK" {
		c.cseq++
		c.lastBranch = "z9hG4bK" + randHex(8)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\n", method, c.uri(), local, c.lastBranch)
	to := fmt.Sprintf("<%s>", c.uri())
	if c.toTg != "" {
		to += ";tag=" + c.toTg
	}
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:tester@%s>;tag=%s\r\nTo: %s\r\n", local, c.fromTag, to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:tester@%s>\r\n", c.callID, c.cseq, method, local)
	for _, h := range hdrs {
		b.WriteString(h + "\r\n")
	}
	body := ""
	if method == "INVITE" {
		body = offerSDP(30000, "0", "0 PCMU/8000")
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// invite sends an INVITE and returns the final response, ACKing a non-2xx
// one as its transaction wants.
func (c *digestCaller) invite(t *testing.T, hdrs ...string) *sip.Response {
	t.Helper()
	code, text := c.raw.final(c.request("INVITE", hdrs...), 10*time.Second)
	if code == 0 {
		t.Fatal("no final response to INVITE")
	}
	msg, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("parse response: %v\n%s", err, text)
	}
	res := msg.(*sip.Response)
	if code >= 300 {
		c.toTg = toTag(text)
		c.raw.send(c.request("ACK"))
		c.toTg = ""
	}
	return res
}

// ack2xx confirms the dialog of a 200.
func (c *digestCaller) ack2xx(res *sip.Response) {
	c.toTg = toTag(res.String())
	c.lastBranch = "z9hG4bK" + randHex(8) // the ACK of a 2xx is a transaction of its own
	c.raw.send(c.request("ACK"))
}

// hangup sends BYE and waits for its 200 (a retransmitted 200 of the
// INVITE does not count).
func (c *digestCaller) hangup(t *testing.T) {
	t.Helper()
	c.raw.send(c.request("BYE"))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if msg := c.raw.read(time.Until(deadline)); strings.HasPrefix(msg, "SIP/2.0 200") && strings.Contains(msg, " BYE\r\n") {
			return
		}
	}
	t.Error("no 200 to BYE (in-dialog requests need no credentials)")
}

// challenges parses the WWW-Authenticate headers of a 401.
func challenges(t *testing.T, res *sip.Response) []*digest.Challenge {
	t.Helper()
	var out []*digest.Challenge
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("challenge %q: %v", h.Value(), err)
		}
		out = append(out, ch)
	}
	return out
}

func (c *digestCaller) authorization(t *testing.T, ch *digest.Challenge, user, password string) string {
	t.Helper()
	cred, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: c.uri(), Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return "Authorization: " + cred.String()
}

// TestDigestSHA256AndMD5: with the default challenge order a UAC sees
// SHA-256 first and MD5 second, sharing one nonce, realm and qop=auth; a
// caller answering either joins, and its room is its account's user's.
func TestDigestSHA256AndMD5(t *testing.T) {
	tb := authBridge(t, 40500, 40599)
	for i, alg := range []string{"SHA-256", "MD5"} {
		t.Run(alg, func(t *testing.T) {
			number := fmt.Sprint(5000 + i)
			c := newDigestCaller(t, "127.0.0.4", tb.udp, number)
			res := c.invite(t)
			if res.StatusCode != 401 {
				t.Fatalf("first INVITE: %d, want 401", res.StatusCode)
			}
			chs := challenges(t, res)
			if len(chs) != 2 || chs[0].Algorithm != "SHA-256" || chs[1].Algorithm != "MD5" {
				t.Fatalf("challenges %+v, want SHA-256 then MD5", chs)
			}
			for _, ch := range chs {
				if ch.Realm != DefaultRealm || ch.Nonce != chs[0].Nonce || !ch.SupportsQOP("auth") || ch.Stale {
					t.Errorf("challenge %+v: want realm %q, one nonce, qop auth, not stale", ch, DefaultRealm)
				}
			}
			ch := chs[i]
			res = c.invite(t, c.authorization(t, ch, "x", "bobpass"))
			if res.StatusCode != 200 {
				t.Fatalf("INVITE with %s credentials: %d %s, want 200", alg, res.StatusCode, res.Reason)
			}
			c.ack2xx(res)
			var conf *bridge.Conference
			waitFor(t, "bob's room "+number, func() bool {
				for _, cf := range tb.b.Conferences("bob") {
					if cf.From() == number && cf.Info().ActiveMembers == 1 {
						conf = cf
						return true
					}
				}
				return false
			})
			c.hangup(t)
			waitFor(t, "the caller left", func() bool { return conf.Info().ActiveMembers == 0 })
		})
	}
	if st := tb.srv.AuthStats(); st.Accepted.Load() != 2 || st.Failures.Load() != 0 {
		t.Errorf("accepted %d failures %d, want 2 0", st.Accepted.Load(), st.Failures.Load())
	}
}

// TestDigestReplayAndOptions: the same Authorization sent again for a new
// call (a captured INVITE replayed) is answered with a stale challenge,
// never a second call; OPTIONS from an untrusted source is answered
// without credentials; an out-of-dialog REGISTER gets 405.
func TestDigestReplayAndOptions(t *testing.T) {
	tb := authBridge(t, 40600, 40699)
	c := newDigestCaller(t, "127.0.0.5", tb.udp, "6000")
	chs := challenges(t, c.invite(t))
	auth := c.authorization(t, chs[0], "alice", "s3cret:pw")
	res := c.invite(t, auth)
	if res.StatusCode != 200 {
		t.Fatalf("authenticated INVITE: %d, want 200", res.StatusCode)
	}
	c.ack2xx(res)
	defer c.hangup(t)
	replay := newDigestCaller(t, "127.0.0.5", tb.udp, "6000")
	res = replay.invite(t, auth)
	if res.StatusCode != 401 {
		t.Fatalf("replayed INVITE: %d, want 401", res.StatusCode)
	}
	if chs := challenges(t, res); len(chs) == 0 || !chs[0].Stale {
		t.Errorf("replay challenge %+v, want stale=true", chs)
	}
	if code, _ := replay.raw.final(replay.request("OPTIONS"), 5*time.Second); code != 200 {
		t.Errorf("OPTIONS: %d, want 200", code)
	}
	if code, _ := replay.raw.final(replay.request("REGISTER"), 5*time.Second); code != 405 {
		t.Errorf("REGISTER: %d, want 405", code)
	}
	if st := tb.srv.AuthStats(); st.Accepted.Load() != 1 || st.Failures.Load() != 0 {
		t.Errorf("accepted %d failures %d, want 1 0", st.Accepted.Load(), st.Failures.Load())
	}
}

// TestPasswordFlood: 300 wrong passwords from one address, as fast as they
// are answered: the first 10 (the default limit) are checked and fail, the
// rest are refused unchallenged, as is that address's next INVITE without
// credentials, while another address is still challenged.
func TestPasswordFlood(t *testing.T) {
	tb := authBridge(t, 40700, 40799)
	c := newDigestCaller(t, "127.0.0.6", tb.udp, "7000")
	chs := challenges(t, c.invite(t))
	start := time.Now()
	const n = 300
	for i := range n {
		if res := c.invite(t, c.authorization(t, chs[0], "alice", fmt.Sprint("guess", i))); res.StatusCode != 403 {
			t.Fatalf("guess %d: %d, want 403", i, res.StatusCode)
		}
	}
	elapsed := time.Since(start)
	if res := c.invite(t); res.StatusCode != 403 || res.GetHeader("WWW-Authenticate") != nil {
		t.Errorf("INVITE from the blocked address: %d with challenge %v, want 403 without", res.StatusCode, res.GetHeader("WWW-Authenticate"))
	}
	other := newDigestCaller(t, "127.0.0.7", tb.udp, "7000")
	if res := other.invite(t); res.StatusCode != 401 {
		t.Errorf("another address: %d, want 401", res.StatusCode)
	}
	st := tb.srv.AuthStats()
	if st.Failures.Load() != DefaultMaxAuthFailure || st.Refused.Load() != n-DefaultMaxAuthFailure+1 || st.Blocks.Load() != 1 {
		t.Errorf("failures %d refused %d blocks %d, want %d %d 1", st.Failures.Load(), st.Refused.Load(), st.Blocks.Load(),
			DefaultMaxAuthFailure, n-DefaultMaxAuthFailure+1)
	}
	t.Logf("%d wrong passwords answered in %v (%.0f/s), %d of them checked", n, elapsed, n/elapsed.Seconds(), st.Failures.Load())
}
