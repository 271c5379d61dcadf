package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
)

// dialIn is one raw UDP caller placing one call: INVITE, ACK, BYE.
type dialIn struct {
	r               *rawSIP
	number          string
	callID, fromTag string
	toTag           string
	invite          string
	status          int
	byeStatus       int
	last            string // the final response to the INVITE
}

func newDialIn(t testing.TB, to netip.AddrPort) *dialIn {
	return &dialIn{r: newRawSIP(t, to)}
}

// prepare builds the INVITE for number; its SDP points RTP at the SIP
// socket itself (the reader skips RTP).
func (d *dialIn) prepare(number string) {
	d.number, d.callID, d.fromTag, d.toTag, d.status, d.byeStatus = number, randHex(8)+"@route", randHex(4), "", 0, 0
	port := d.r.conn.LocalAddr().(*net.UDPAddr).Port
	d.invite = d.msg("INVITE", 1, "application/sdp", offerSDP(port, "0", "0 PCMU/8000"))
}

func (d *dialIn) msg(method string, cseq int, contentType, body string) string {
	local := d.r.conn.LocalAddr().String()
	to := fmt.Sprintf("<sip:%s@%s>", d.number, d.r.to)
	if d.toTag != "" {
		to += ";tag=" + d.toTag
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:%s@%s SIP/2.0\r\n", method, d.number, d.r.to)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", local, randHex(8))
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:caller@%s>;tag=%s\r\nTo: %s\r\n", local, d.fromTag, to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:caller@%s>\r\n", d.callID, cseq, method, local)
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// finalFor reads until the final response to method, skipping RTP,
// provisional responses and requests; 0 on timeout.
func (d *dialIn) finalFor(method string, timeout time.Duration) (int, string) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for {
		_ = d.r.conn.SetReadDeadline(deadline)
		n, _, err := d.r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, ""
		}
		if n > 0 && buf[0] >= 0x80 {
			continue // RTP from the bridge
		}
		msg := string(buf[:n])
		line, _, _ := strings.Cut(msg, "\r\n")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "SIP/2.0" || !strings.Contains(msg, " "+method+"\r\n") {
			continue
		}
		if code, _ := strconv.Atoi(f[1]); code >= 200 {
			return code, msg
		}
	}
}

// TestSimultaneousDialInOneRoom: 20 callers dialling one new number in the
// same instant (released together from a barrier) land in one room, 50
// rounds in a row with a new number each round.
func TestSimultaneousDialInOneRoom(t *testing.T) {
	// A round takes milliseconds and a released port rests 200 ms: the
	// range holds every call of the test.
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 30000, 32099)
	const callers, rounds = 20, 50
	phones := make([]*dialIn, callers)
	for i := range phones {
		phones[i] = newDialIn(t, tb.udp)
	}
	start := time.Now()
	for round := range rounds {
		number := fmt.Sprintf("7%03d", round)
		for _, p := range phones {
			p.prepare(number)
		}
		barrier := make(chan struct{})
		var wg sync.WaitGroup
		for _, p := range phones {
			wg.Go(func() {
				<-barrier
				p.r.send(p.invite)
				code, res := p.finalFor("INVITE", 5*time.Second)
				p.status, p.toTag, p.last = code, toTag(res), res
				if code == 200 {
					p.r.send(p.msg("ACK", 1, "", ""))
				}
			})
		}
		close(barrier)
		wg.Wait()
		for i, p := range phones {
			if p.status != 200 {
				t.Fatalf("round %d: caller %d got %d: %s", round, i, p.status, p.last)
			}
		}
		var confs []*bridge.Conference
		waitUntil(t, 5*time.Second, func() bool {
			confs = confs[:0]
			for _, c := range tb.b.Conferences("u-test") {
				if c.From() == number {
					confs = append(confs, c)
				}
			}
			return len(confs) != 1 || confs[0].Info().ActiveMembers == callers
		})
		if len(confs) != 1 {
			t.Fatalf("round %d: %d callers to %s landed in %d rooms", round, callers, number, len(confs))
		}
		if n := confs[0].Info().ActiveMembers; n != callers {
			t.Fatalf("round %d: the room has %d members, want %d", round, n, callers)
		}
		// Everyone hangs up; the room completes and the number is free.
		for _, p := range phones {
			wg.Go(func() {
				p.r.send(p.msg("BYE", 2, "", ""))
				p.byeStatus, _ = p.finalFor("BYE", 5*time.Second)
			})
		}
		wg.Wait()
		for i, p := range phones {
			if p.byeStatus != 200 {
				t.Fatalf("round %d: caller %d's BYE got %d", round, i, p.byeStatus)
			}
		}
		waitUntil(t, 5*time.Second, func() bool { return confs[0].State() == bridge.StateCompleted })
	}
	t.Logf("%d rounds of %d simultaneous callers in %v", rounds, callers, time.Since(start).Round(time.Millisecond))
}

// waitUntil polls cond every few milliseconds until it holds or d passes.
func waitUntil(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// TestEscapedUserPartRoutes: a Request-URI user part with escapes names the
// same room as its unescaped form (RFC 3261 §19.1.4; RFC 4475 §3.1.1.3's
// esc01): "7%30%39%39" and "7099" meet in one room called 7099, and
// esc01's "sips%3Auser%40example.com" gets a room called
// "sips:user@example.com".
func TestEscapedUserPartRoutes(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 33100, 33199)
	var callers []*dialIn
	for i, number := range []string{"7%30%39%39", "7099", "sips%3Auser%40example.com"} {
		p := newDialIn(t, tb.udp)
		callers = append(callers, p)
		p.prepare(number)
		p.r.send(p.invite)
		code, res := p.finalFor("INVITE", 5*time.Second)
		if code != 200 {
			t.Fatalf("caller %d (%s): %d\n%s", i, number, code, res)
		}
		p.toTag = toTag(res)
		p.r.send(p.msg("ACK", 1, "", ""))
	}
	rooms := map[string]int{}
	waitUntil(t, 5*time.Second, func() bool {
		clear(rooms)
		for _, c := range tb.b.Conferences("u-test") {
			rooms[c.From()] = c.Info().ActiveMembers
		}
		return rooms["7099"] == 2 && rooms["sips:user@example.com"] == 1
	})
	if len(rooms) != 2 || rooms["7099"] != 2 || rooms["sips:user@example.com"] != 1 {
		t.Fatalf("rooms by number and members: %v", rooms)
	}
	for _, c := range tb.b.Calls("u-test") {
		if to := c.Info().To; to != "7099" && to != "sips:user@example.com" {
			t.Errorf("call to %q", to)
		}
	}
	for _, p := range callers {
		p.r.send(p.msg("BYE", 2, "", ""))
		if code, _ := p.finalFor("BYE", 5*time.Second); code != 200 {
			t.Errorf("BYE to %s: %d", p.number, code)
		}
	}
}

// ringing sends d's INVITE and waits for the bridge's 180.
func (d *dialIn) ringing(t *testing.T) {
	t.Helper()
	d.r.send(d.invite)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		msg := d.r.read(time.Until(deadline))
		if strings.HasPrefix(msg, "SIP/2.0 180") {
			d.toTag = toTag(msg)
			return
		}
		if strings.HasPrefix(msg, "SIP/2.0 ") && !strings.HasPrefix(msg, "SIP/2.0 100") {
			t.Fatalf("INVITE to %s: %s", d.number, msg)
		}
	}
	t.Fatalf("INVITE to %s: no 180", d.number)
}

// roomsOf returns the conferences that number created, newest first.
func roomsOf(tb *testBridge, number string) []*bridge.Conference {
	var out []*bridge.Conference
	for _, c := range tb.b.Conferences("u-test") {
		if c.From() == number {
			out = append(out, c)
		}
	}
	return out
}

// TestRoomCompletingBeforeJoinRoutesAfresh: a caller routed to a room that
// completes while it rings (its last member hung up) is not hung up with
// join-failed: it lands in a new room of the same number.
func TestRoomCompletingBeforeJoinRoutesAfresh(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 33400, 33499, func(c *Config) { c.AnswerDelay = time.Second })
	a, b := newDialIn(t, tb.udp), newDialIn(t, tb.udp)
	a.prepare("7300")
	a.r.send(a.invite)
	if code, res := a.finalFor("INVITE", 5*time.Second); code != 200 {
		t.Fatalf("first caller: %d\n%s", code, res)
	} else {
		a.toTag = toTag(res)
	}
	a.r.send(a.msg("ACK", 1, "", ""))
	waitFor(t, "first caller in", func() bool { r := roomsOf(tb, "7300"); return len(r) == 1 && r[0].Info().ActiveMembers == 1 })
	first := roomsOf(tb, "7300")[0]

	b.prepare("7300")
	b.ringing(t) // routed to the first room
	a.r.send(a.msg("BYE", 2, "", ""))
	if code, _ := a.finalFor("BYE", 5*time.Second); code != 200 {
		t.Fatalf("first caller's BYE: %d", code)
	}
	waitFor(t, "first room completed", func() bool { return first.State() == bridge.StateCompleted })
	code, res := b.finalFor("INVITE", 5*time.Second)
	if code != 200 {
		t.Fatalf("second caller: %d\n%s", code, res)
	}
	b.r.send(b.msg("ACK", 1, "", ""))
	waitFor(t, "second caller in a new room", func() bool {
		r := roomsOf(tb, "7300")
		return len(r) == 2 && r[0] != first && r[0].Info().ActiveMembers == 1
	})
	time.Sleep(300 * time.Millisecond) // a join-failed hang-up would come now
	for _, c := range tb.b.Calls("u-test") {
		if info := c.Info(); info.State == bridge.CallCompleted && info.Cause != "hangup" {
			t.Errorf("call %s ended with cause %q", info.ID, info.Cause)
		}
	}
	if n := roomsOf(tb, "7300")[0].Info().ActiveMembers; n != 1 {
		t.Errorf("the new room has %d members", n)
	}
	b.r.send(b.msg("BYE", 2, "", ""))
	if code, _ := b.finalFor("BYE", 5*time.Second); code != 200 {
		t.Errorf("second caller's BYE: %d", code)
	}
}

// TestFailedCallLeavesNoEmptyRoom: a room auto-created for a call that
// then fails before joining (cancelled while ringing; no RTP port) is
// completed, not left holding its number empty, while a room another
// caller is still on the way into stays.
func TestFailedCallLeavesNoEmptyRoom(t *testing.T) {
	// Two RTP ports (one even port pair each): enough for two calls. The
	// range is one found free above the ephemeral ports, so no client
	// socket of another test can hold one of the two.
	low := sprayRange(t, 4)
	tb := startBridge(t, bridge.Config{AutoCreate: true}, low, low+3, func(c *Config) { c.AnswerDelay = time.Second })

	// Cancelled while ringing, with a second caller ringing into the same
	// room: the room stays for the second, who joins it.
	a, b := newDialIn(t, tb.udp), newDialIn(t, tb.udp)
	a.prepare("7400")
	b.prepare("7400")
	a.ringing(t)
	b.ringing(t)
	a.r.send(strings.Replace(strings.Replace(strings.SplitN(a.invite, "\r\n\r\n", 2)[0], "INVITE sip:", "CANCEL sip:", 1),
		"CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)[:strings.Index(a.invite, "Content-Type:")] + "Content-Length: 0\r\n\r\n")
	if code, res := a.finalFor("INVITE", 5*time.Second); code != 487 {
		t.Fatalf("cancelled INVITE: %d\n%s", code, res)
	}
	if code, res := b.finalFor("INVITE", 5*time.Second); code != 200 {
		t.Fatalf("second caller: %d\n%s", code, res)
	}
	b.r.send(b.msg("ACK", 1, "", ""))
	waitFor(t, "second caller joined", func() bool { r := roomsOf(tb, "7400"); return len(r) == 1 && r[0].Info().ActiveMembers == 1 })

	// Now cancelled alone: its room goes.
	c := newDialIn(t, tb.udp)
	c.prepare("7500")
	c.ringing(t)
	c.r.send(strings.Replace(strings.Replace(strings.SplitN(c.invite, "\r\n\r\n", 2)[0], "INVITE sip:", "CANCEL sip:", 1),
		"CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)[:strings.Index(c.invite, "Content-Type:")] + "Content-Length: 0\r\n\r\n")
	if code, res := c.finalFor("INVITE", 5*time.Second); code != 487 {
		t.Fatalf("cancelled INVITE: %d\n%s", code, res)
	}
	waitFor(t, "cancelled caller's room completed", func() bool {
		r := roomsOf(tb, "7500")
		return len(r) == 1 && r[0].State() == bridge.StateCompleted
	})

	// No RTP port: one call holds the first port, a second the other; a
	// third, to a new number, gets 503 and leaves no room.
	// (A released port rests a moment before it is handed out again.)
	// A new socket each try: the 503s are retransmitted until ACKed.
	var d *dialIn
	code, res := 0, ""
	for deadline := time.Now().Add(5 * time.Second); code != 200 && time.Now().Before(deadline); {
		d = newDialIn(t, tb.udp)
		d.prepare("7600")
		d.r.send(d.invite)
		if code, res = d.finalFor("INVITE", 5*time.Second); code == 503 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code != 200 {
		t.Fatalf("caller holding the last port: %d\n%s", code, res)
	}
	e := newDialIn(t, tb.udp)
	e.prepare("7700")
	e.r.send(e.invite)
	if code, res := e.finalFor("INVITE", 5*time.Second); code != 503 {
		t.Fatalf("caller without a port: %d, want 503\n%s", code, res)
	}
	waitFor(t, "portless caller's room completed", func() bool {
		r := roomsOf(tb, "7700")
		return len(r) == 1 && r[0].State() == bridge.StateCompleted
	})
	if r := roomsOf(tb, "7400"); r[0].State() == bridge.StateCompleted {
		t.Error("the room with a member completed")
	}
	d.toTag = toTag(res)
	d.r.send(d.msg("ACK", 1, "", ""))
	for _, p := range []*dialIn{b, d} {
		p.r.send(p.msg("BYE", 2, "", ""))
		if code, _ := p.finalFor("BYE", 5*time.Second); code != 200 {
			t.Errorf("BYE to %s: %d", p.number, code)
		}
	}
}
