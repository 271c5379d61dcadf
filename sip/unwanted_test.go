package sip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
)

// headerValue returns the value of the first header called name (or its
// compact form) in a SIP message.
func headerValue(msg, name, compact string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(n), name) || (compact != "" && strings.TrimSpace(n) == compact)) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestUnwantedMethodsAnsweredStatelessly: REGISTER and friends get 405,
// an unknown method 501, each with Allow and a To tag that is the same for
// a retransmission; all are counted, none is logged one by one.
func TestUnwantedMethodsAnsweredStatelessly(t *testing.T) {
	out := &logLines{}
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25300, 25399, func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(out, nil))
	})
	raw := newRawSIP(t, tb.udp)
	reg := raw.request("REGISTER", "100", "", "")
	code, res := raw.final(reg, 5*time.Second)
	if code != 405 || !strings.Contains(headerValue(res, "Allow", ""), "INVITE") {
		t.Fatalf("REGISTER: %d\n%s", code, res)
	}
	if headerValue(res, "Call-ID", "i") == "" || headerValue(res, "CSeq", "") != "1 REGISTER" || !strings.Contains(headerValue(res, "Via", "v"), "received=127.0.0.1") {
		t.Errorf("405 does not echo the request:\n%s", res)
	}
	tag := toTag(res)
	if _, again := raw.final(reg, 5*time.Second); tag == "" || toTag(again) != tag {
		t.Errorf("To tags %q and %q for one request", tag, toTag(again))
	}
	for method, want := range map[string]int{"SUBSCRIBE": 405, "MESSAGE": 405, "PUBLISH": 405, "FROBNICATE": 501} {
		if code, res := raw.final(raw.request(method, "100", "", ""), 5*time.Second); code != want {
			t.Errorf("%s: %d, want %d\n%s", method, code, want, res)
		}
	}
	// Served methods are not screened.
	if code, _ := raw.final(raw.request("OPTIONS", "chorus", "", ""), 5*time.Second); code != 200 {
		t.Errorf("OPTIONS: %d", code)
	}
	if code, _ := raw.final(raw.request("BYE", "1000", "", ""), 5*time.Second); code != 481 {
		t.Errorf("BYE outside a dialog: %d", code)
	}
	raw.send("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKstray\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	raw.send("NOT SIP AT ALL\r\n\r\n")
	raw.send("REGISTER sip:x SIP/2.0\r\nthis is: not a request\r\n\r\n")
	want := map[TrafficKind]uint64{TrafficUnwantedMethod: 6, TrafficOutOfDialog: 1, TrafficStrayResponse: 1, TrafficMalformed: 2}
	waitFor(t, "counts", func() bool {
		for k, n := range want {
			if tb.srv.TrafficCount(k) != n {
				return false
			}
		}
		return true
	})
	for _, l := range out.lines() {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "handler not found") {
			t.Errorf("logged: %s", l)
		}
	}
}

// TestUnwantedOverTCP: over TCP, where there is no screen, the no-route
// handler answers 405 with Allow and counts it.
func TestUnwantedOverTCP(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25400, 25499)
	c := dialFrom(t, "127.0.0.1", tb.tcp.String())
	local := c.LocalAddr().String()
	for i, method := range []string{"REGISTER", "FROBNICATE"} {
		req := fmt.Sprintf("%s sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:t@%s>;tag=1\r\nTo: <sip:t@%s>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n",
			method, tb.tcp, local, randHex(6), local, tb.tcp, randHex(8), method)
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		res := string(buf[:n])
		want := []string{"SIP/2.0 405", "SIP/2.0 501"}[i]
		if err != nil || !strings.HasPrefix(res, want) || headerValue(res, "Allow", "") == "" {
			t.Errorf("%s over TCP: %v\n%s", method, err, res)
		}
	}
	if got := tb.srv.TrafficCount(TrafficUnwantedMethod); got != 2 {
		t.Errorf("counted %d, want 2", got)
	}
}

// dialFrom opens a TCP connection to addr from the loopback address src.
// A connection the bridge resets at once may fail to dial; it is then
// returned as nil.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// discardPacketConn swallows writes.
type discardPacketConn struct{ net.PacketConn }

func (discardPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

// newTestScreen is a screen over a socket that swallows what it writes.
func newTestScreen(t testing.TB, served []string) *screenedConn {
	sum := newTrafficSummary(slog.New(slog.DiscardHandler), newFakeClock(), time.Second)
	options := func() (int, string, []sip.Header) { return 200, "OK", nil }
	return newScreenedConn(discardPacketConn{}, served, allowMethods, "chorus", sum, newCallIDSet(nil, callIDPeriod), options)
}

// TestScreenPassesServedCheaply: the screen's look at a served request (a
// new INVITE, whose Call-ID it notes, or a BYE of a call it knows)
// allocates nothing.
func TestScreenPassesServedCheaply(t *testing.T) {
	c := newTestScreen(t, []string{"INVITE", "ACK", "BYE", "CANCEL"})
	invite := []byte("INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n" +
		"To: <sip:1000@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: abc@test\r\n\r\n")
	bye := []byte("BYE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK2\r\n" +
		"To: <sip:1000@127.0.0.1>;tag=2\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\ni:  known@test \r\n\r\n")
	c.callIDs.add("known@test")
	for name, msg := range map[string][]byte{"INVITE": invite, "BYE": bye} {
		if a := testing.AllocsPerRun(1000, func() {
			if v := c.screen(msg); v != verdictPass {
				t.Fatalf("%s screened: %d", name, v)
			}
		}); a != 0 {
			t.Errorf("screen allocates %.1f per %s", a, name)
		}
	}
	// The new INVITE's Call-ID is known now: its CANCEL passes.
	if v := c.screen([]byte("CANCEL sip:1000@127.0.0.1 SIP/2.0\r\nCall-ID: abc@test\r\n\r\n")); v != verdictPass {
		t.Errorf("CANCEL of a new INVITE: %d", v)
	}
	for d, want := range map[string]verdict{
		"SIP/2.0 200 OK\r\n": verdictPass, "\r\n\r\n": verdictPass, "": verdictPass, "REGISTER": verdictPass,
		"x y": verdictUnwanted, "REGISTER sip:x SIP/2.0\r\n": verdictUnwanted,
		"BYE sip:x SIP/2.0\r\nCall-ID: other@test\r\n\r\n":                          verdictMaybeStray,
		"BYE sip:x SIP/2.0\r\nCall-ID: known@test\r\n\r\n":                          verdictPass,
		"BYE sip:x SIP/2.0\r\nCall-ID: known@test\r\n more\r\n\r\n":                 verdictMaybeStray, // folded
		"INVITE sip:x SIP/2.0\r\nCall-ID: n@test\r\nTo: <sip:x@y>;tag=1\r\n\r\n":    verdictMaybeStray,
		"INVITE sip:x SIP/2.0\r\nCall-ID: known@test\r\nt: <sip:x@y>;TAG=1\r\n\r\n": verdictPass,
		"INVITE sip:x SIP/2.0\r\nTo: <sip:x@y>\r\n\r\n":                             verdictMaybeStray, // no Call-ID
	} {
		if got := c.screen([]byte(d)); got != want {
			t.Errorf("screen(%q) = %d, want %d", d, got, want)
		}
	}
}

// TestCallIDSetForgets: a Call-ID noted stays known one to two periods; a
// live one until it is removed, and a period after.
func TestCallIDSetForgets(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newCallIDSet(func() time.Time { return now }, 10*time.Second)
	invite, call := s.hashString("invite"), s.hashString("call")
	s.seen(invite)
	s.add("call")
	now = now.Add(15 * time.Second)
	s.seen(s.hashString("other")) // rotates: invite is in the older generation
	if !s.known(invite) || !s.known(call) {
		t.Fatal("forgot too early")
	}
	now = now.Add(10 * time.Second)
	s.seen(s.hashString("other2"))
	if s.known(invite) {
		t.Error("an INVITE 25 s old is still known")
	}
	if !s.known(call) {
		t.Error("a live call is forgotten")
	}
	s.remove("call")
	if !s.known(call) {
		t.Error("an ended call is forgotten at once")
	}
	now = now.Add(25 * time.Second)
	s.seen(s.hashString("other3"))
	if s.known(call) || len(s.live) != 0 {
		t.Errorf("an ended call is known 25 s later (live %v)", s.live)
	}
	if s.hashString("x") != s.hash([]byte("x")) {
		t.Error("the hashes of a string and its bytes differ")
	}
}

// FuzzScreen: whatever arrives, screening and answering it never panics.
func FuzzScreen(f *testing.F) {
	f.Add([]byte("REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1;rport\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: 1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\ni: 1\r\nCSeq: 1 OPTIONS\r\n\r\n"))
	f.Add([]byte("FOO sip:x SIP/2.0\r\nVia: x\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"))
	f.Add([]byte("\x00\x01 \xff"))
	c := newTestScreen(f, []string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE"})
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	f.Fuzz(func(t *testing.T, data []byte) {
		switch c.screen(data) {
		case verdictUnwanted:
			c.answer(data, addr)
		case verdictMaybeStray:
			c.answerStray(data, addr)
		}
	})
}

// BenchmarkScreen: the screen's glance at a new INVITE (its Call-ID
// noted) and at a BYE of a known call.
func BenchmarkScreen(b *testing.B) {
	c := newTestScreen(b, []string{"INVITE", "ACK", "BYE"})
	c.callIDs.add("known@test")
	for name, msg := range map[string][]byte{
		"invite": []byte("INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n" +
			"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: abc@test\r\nCSeq: 1 INVITE\r\n\r\n"),
		"bye": []byte("BYE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK2\r\nMax-Forwards: 70\r\n" +
			"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1000@127.0.0.1>;tag=2\r\nCall-ID: known@test\r\nCSeq: 2 BYE\r\n\r\n"),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.screen(msg) != verdictPass {
					b.Fatal("screened")
				}
			}
		})
	}
}
