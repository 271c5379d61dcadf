package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/testphone"
)

// handClock is a clock a test moves by hand (the limiter reads it, sets no timers).
type handClock struct{ t time.Time }

func (c *handClock) now() time.Time          { return c.t }
func (c *handClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestSourceLimiter(t *testing.T) {
	clk := &handClock{t: time.Unix(1_700_000_000, 0)}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")

	t.Run("rate", func(t *testing.T) {
		l := newSourceLimiter(Limits{InviteRate: 10, InviteBurst: 5}, clk.now)
		for i := range 5 {
			if _, why, _ := l.admit(a); why != admitted {
				t.Fatalf("INVITE %d within the burst turned away (%d)", i, why)
			}
		}
		_, why, wait := l.admit(a)
		if why != rejectRate || wait <= 0 || wait > 100*time.Millisecond {
			t.Fatalf("past the burst: %d, retry after %v; want the rate limit and ≤ 100 ms", why, wait)
		}
		if _, why, _ := l.admit(b); why != admitted {
			t.Fatal("another source was limited by the first one's calls")
		}
		clk.advance(100 * time.Millisecond)
		if _, why, _ := l.admit(a); why != admitted {
			t.Fatal("a token did not come back after 1/rate")
		}
		if got := retryAfterSeconds(wait); got != 1 {
			t.Errorf("Retry-After for %v = %d, want 1", wait, got)
		}
	})

	t.Run("unconfirmed", func(t *testing.T) {
		l := newSourceLimiter(Limits{MaxUnconfirmed: 2}, clk.now)
		c1, _, _ := l.admit(a)
		_, _, _ = l.admit(a)
		if _, why, _ := l.admit(a); why != rejectUnconfirmed {
			t.Fatalf("third unconfirmed call: %d, want rejectUnconfirmed", why)
		}
		if _, why, _ := l.admit(netip.MustParseAddr("::ffff:192.0.2.1")); why != rejectUnconfirmed {
			t.Fatal("the same address written as IPv4-mapped IPv6 escaped the limit")
		}
		c1()
		c1() // a second confirm of the same call changes nothing
		if _, why, _ := l.admit(a); why != admitted {
			t.Fatal("an ACK did not make room")
		}
		if _, why, _ := l.admit(a); why != rejectUnconfirmed {
			t.Fatal("a doubled confirm made room twice")
		}
	})

	t.Run("exempt", func(t *testing.T) {
		l := newSourceLimiter(Limits{InviteRate: 1, InviteBurst: 1, MaxUnconfirmed: 1,
			Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}}, clk.now)
		for range 100 {
			if _, why, _ := l.admit(a); why != admitted {
				t.Fatal("an exempt source (a PBX in front) was limited")
			}
		}
		if l.tracked() != 0 {
			t.Error("an exempt source was tracked")
		}
	})

	t.Run("memory", func(t *testing.T) {
		l := newSourceLimiter(Limits{InviteRate: 5, InviteBurst: 5, MaxUnconfirmed: 3}, clk.now)
		var pending func()
		for i := range 5000 {
			src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			confirm, _, _ := l.admit(src)
			if i == 0 {
				pending = confirm // one call still awaits its ACK
				continue
			}
			confirm()
		}
		if l.tracked() != 5000 {
			t.Fatalf("tracked %d sources, want 5000 while their buckets refill", l.tracked())
		}
		clk.advance(2 * time.Second)
		l.admit(b)
		if got := l.tracked(); got != 2 {
			t.Fatalf("after the buckets refilled %d sources are kept, want 2 (the one awaiting an ACK and the new one)", got)
		}
		pending()
		clk.advance(2 * time.Second)
		l.admit(b)
		if got := l.tracked(); got != 1 {
			t.Fatalf("kept %d sources, want 1", got)
		}
	})
}

// flood sends n INVITEs from conn that it never ACKs and counts the final
// answers: 200s, 503s, and the 503s by reason phrase. It runs on its own
// goroutine, so it reports with t.Error.
func flood(t *testing.T, conn *net.UDPConn, to netip.AddrPort, n int) (answered, limited int, reasons map[string]int) {
	t.Helper()
	local := conn.LocalAddr().String()
	calls := map[string]bool{}
	reasons = map[string]int{}
	for i := range n {
		id := fmt.Sprintf("flood-%d-%s", i, randHex(4))
		calls[id] = true
		sdp := offerSDP(4000, "0")
		msg := fmt.Sprintf("INVITE sip:7300@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:flood@%s>;tag=%s\r\nTo: <sip:7300@%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@%s>\r\n"+
			"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
			to, local, randHex(8), local, randHex(4), to, id, local, len(sdp), sdp)
		if _, err := conn.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Error(err)
			return 0, 0, nil
		}
	}
	final := map[string]bool{}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(10 * time.Second)
	for len(final) < n && time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		k, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		resp := string(buf[:k])
		f := strings.Fields(resp)
		if len(f) < 3 || f[0] != "SIP/2.0" || f[1] == "100" {
			continue
		}
		id := ""
		for _, line := range strings.Split(resp, "\r\n") {
			if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
				id = v
			}
		}
		if !calls[id] || final[id] {
			continue // a 2xx retransmission
		}
		final[id] = true
		switch f[1] {
		case "200":
			answered++
		case "503":
			limited++
			line, _, _ := strings.Cut(resp, "\r\n")
			reasons[strings.Join(strings.Fields(line)[2:], " ")]++
			if !strings.Contains(resp, "\r\nRetry-After: ") {
				t.Errorf("503 without Retry-After:\n%s", resp)
			}
		default:
			t.Errorf("flooder got %s", f[1])
		}
	}
	if len(final) != n {
		t.Errorf("flooder got a final answer to %d of %d INVITEs", len(final), n)
	}
	return answered, limited, reasons
}

// TestOneSourceCannotExhaust: one source (127.0.0.2) floods INVITEs that
// it never ACKs while another (127.0.0.1) places calls. Every call of the
// second source is answered; the flooder gets 503 with Retry-After past
// its limits; the ports of its unACKed calls are freed when the 2xx
// window closes.
func TestOneSourceCannotExhaust(t *testing.T) {
	const window = 2 * time.Second
	limits := Limits{InviteRate: 10, InviteBurst: 8, MaxUnconfirmed: 4}
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 31500, 31599, func(c *Config) {
		c.Limits = limits
		c.AckWindow = window
	})
	flooder, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()

	var wg sync.WaitGroup
	var answered, limited int
	var reasons map[string]int
	var flooded time.Time
	wg.Go(func() {
		answered, limited, reasons = flood(t, flooder, tb.udp, 30)
		flooded = time.Now()
	})
	// The other source's calls, placed during the flood.
	var phones []*testphone.Phone
	for range 6 {
		phones = append(phones, tb.dial(t, testphone.Options{User: "7301"}))
	}
	wg.Wait()
	if len(phones) != 6 {
		t.Fatalf("second source: %d of 6 calls answered", len(phones))
	}
	if answered != limits.MaxUnconfirmed || limited != 30-limits.MaxUnconfirmed {
		t.Errorf("flooder: %d answered and %d turned away, want %d and %d", answered, limited, limits.MaxUnconfirmed, 30-limits.MaxUnconfirmed)
	}
	if len(reasons) != 2 {
		t.Errorf("flooder's 503s: %v; want both limits (rate, unconfirmed) to show", reasons)
	}
	if st := tb.srv.LimitStats(); st.LimitedRate+st.LimitedUnconfirmed != uint64(limited) {
		t.Errorf("limit counters %+v, want %d turned away in all", st, limited)
	}
	if got := tb.srv.ports.InUse(); got != 6+limits.MaxUnconfirmed {
		t.Errorf("%d ports in use during the flood, want %d", got, 6+limits.MaxUnconfirmed)
	}
	// The unACKed calls end when the window closes, and their ports go.
	waitFor(t, "unACKed calls' ports freed", func() bool { return tb.srv.ports.InUse() == 6 })
	if got := tb.srv.LimitStats().NoAck; got != uint64(limits.MaxUnconfirmed) {
		t.Errorf("%d calls counted as ended without ACK, want %d", got, limits.MaxUnconfirmed)
	}
	if d := time.Since(flooded); d > window+1500*time.Millisecond {
		t.Errorf("unACKed calls' ports freed %v after they were answered, want about %v", d, window)
	}
	// With its calls gone, the flooder may call again (within its rate).
	raw := &rawSIP{t: t, conn: flooder, to: tb.udp}
	for raw.read(100*time.Millisecond) != "" {
		// 2xx retransmissions and the bridge's BYEs to the unACKed calls
	}
	inv := raw.request("INVITE", "7300", "application/sdp", offerSDP(4000, "0"))
	code, resp := raw.final(inv, 3*time.Second)
	if code != 200 {
		t.Fatalf("after the window the flooder's new call got %d, want 200\n%s", code, resp)
	}
	// It behaves this time: ACK, then BYE.
	for _, method := range []string{"ACK", "BYE"} {
		req := strings.Replace(strings.Replace(inv, "INVITE sip:", method+" sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 "+method, 1)
		req = strings.Replace(req, ";branch=z9hG4bK", ";branch=z9hG4bK"+method, 1)
		if method == "BYE" {
			req = strings.Replace(req, "CSeq: 1 BYE", "CSeq: 2 BYE", 1)
		}
		req = strings.Replace(req, "\r\nTo: <sip:7300@"+tb.udp.String()+">", "\r\nTo: <sip:7300@"+tb.udp.String()+">;tag="+toTag(resp), 1)
		raw.send(req)
	}
	waitFor(t, "the well-behaved call ended", func() bool { return tb.srv.ports.InUse() == 6 })
}

// FuzzSourceLimiter drives the limiter with a sequence of operations
// (admit from one of 8 sources, confirm a pending call, move the clock)
// and checks its invariants: a source never has more unconfirmed calls
// than the limit, counts never go negative, a rejection always says when
// to retry, and a quiet limiter forgets every source.
func FuzzSourceLimiter(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0x40, 0x80, 0x81, 0xc5, 0})
	f.Add([]byte{1, 2, 3, 1, 2, 3, 0xff, 0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, ops []byte) {
		clk := &handClock{t: time.Unix(1_700_000_000, 0)}
		const maxUnconfirmed = 3
		l := newSourceLimiter(Limits{InviteRate: 4, InviteBurst: 2, MaxUnconfirmed: maxUnconfirmed}, clk.now)
		pending := map[netip.Addr][]func(){}
		for _, op := range ops {
			src := netip.AddrFrom4([4]byte{192, 0, 2, op & 7})
			switch op >> 6 {
			case 0, 1: // admit
				confirm, why, wait := l.admit(src)
				switch why {
				case admitted:
					pending[src] = append(pending[src], confirm)
					if len(pending[src]) > maxUnconfirmed {
						t.Fatalf("%v has %d unconfirmed calls, limit %d", src, len(pending[src]), maxUnconfirmed)
					}
				default:
					if wait <= 0 || retryAfterSeconds(wait) < 1 {
						t.Fatalf("rejection without a retry time: %v", wait)
					}
				}
			case 2: // confirm the oldest pending call of src (twice: idempotent)
				if p := pending[src]; len(p) > 0 {
					p[0]()
					p[0]()
					pending[src] = p[1:]
				}
			case 3: // time passes
				clk.advance(time.Duration(op&0x3f) * 50 * time.Millisecond)
			}
		}
		for _, p := range pending {
			for _, c := range p {
				c()
			}
		}
		l.mu.Lock()
		for a, st := range l.sources {
			if st.unconfirmed != 0 {
				t.Fatalf("%v: %d unconfirmed after every call was confirmed", a, st.unconfirmed)
			}
		}
		l.mu.Unlock()
		clk.advance(time.Hour)
		l.admit(netip.MustParseAddr("198.51.100.1"))
		if n := l.tracked(); n != 1 {
			t.Fatalf("a quiet limiter keeps %d sources, want 1", n)
		}
	})
}
