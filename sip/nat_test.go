package sip

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/internal/egress"
)

// natPhone is a caller behind a NAT, played with raw sockets: its Via,
// Contact and SDP name a private address (10.9.9.9) that nothing can
// reach, while its packets come from loopback ports, as a NAT's public
// side would send them.
type natPhone struct {
	t       *testing.T
	sip     *rawSIP
	rtp     *net.UDPConn
	callID  string
	fromTag string
	toTag   string
	rtpTo   netip.AddrPort // the bridge's RTP address, from its answer
	seq     uint16
	cseq    int
}

const natPrivate = "10.9.9.9:5099"

func (p *natPhone) headers(method string, cseq int, withToTag bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", natPrivate, randHex(8))
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:natted@%s>;tag=%s\r\n", natPrivate, p.fromTag)
	to := fmt.Sprintf("To: <sip:1000@%s>", p.sip.to)
	if withToTag {
		to += ";tag=" + p.toTag
	}
	fmt.Fprintf(&b, "%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:natted@%s>\r\n", to, p.callID, cseq, method, natPrivate)
	return b.String()
}

// dialNAT places a call to room and ACKs it; the bridge has learned the
// phone's RTP source when it returns.
func dialNAT(t *testing.T, tb *testBridge, room string) *natPhone {
	t.Helper()
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rtpConn.Close() })
	p := &natPhone{t: t, sip: newRawSIP(t, tb.udp), rtp: rtpConn, callID: randHex(8) + "@nat", fromTag: randHex(4), cseq: 1}
	sdp := "v=0\r\no=natted 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	inv := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n%sContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		room, tb.udp, p.headers("INVITE", 1, false), len(sdp), sdp)
	code, resp := p.sip.final(inv, 5*time.Second)
	if code != 200 {
		t.Fatalf("INVITE from behind NAT: %d\n%s", code, resp)
	}
	p.toTag = toTag(resp)
	for _, line := range strings.Split(resp, "\r\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "m=audio ")); strings.HasPrefix(line, "m=audio ") && len(f) > 0 {
			port, _ := strconv.Atoi(f[0])
			p.rtpTo = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		}
	}
	if !p.rtpTo.IsValid() {
		t.Fatalf("no RTP port in the answer:\n%s", resp)
	}
	p.sip.send(fmt.Sprintf("ACK sip:chorus@%s SIP/2.0\r\n%sContent-Length: 0\r\n\r\n", tb.udp, p.headers("ACK", 1, true)))
	// A run of audio from the NAT's public side: the bridge learns it.
	silence := make([]byte, 160)
	for i := range silence {
		silence[i] = 0xff
	}
	for range 10 {
		p.sendRTP(0, false, silence)
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func (p *natPhone) sendRTP(pt byte, marker bool, payload []byte) {
	p.seq++
	pkt := make([]byte, 12, 12+len(payload))
	pkt[0] = 0x80
	pkt[1] = pt
	if marker {
		pkt[1] |= 0x80
	}
	binary.BigEndian.PutUint16(pkt[2:], p.seq)
	binary.BigEndian.PutUint32(pkt[4:], uint32(p.seq)*160)
	binary.BigEndian.PutUint32(pkt[8:], 0x4e415421)
	pkt = append(pkt, payload...)
	if _, err := p.rtp.WriteToUDPAddrPort(pkt, p.rtpTo); err != nil {
		p.t.Fatal(err)
	}
}

// pressHashRTP sends # as RFC 4733 events: a start packet, then an end.
func (p *natPhone) pressHashRTP() {
	p.sendRTP(101, true, []byte{11, 10, 0, 160})
	p.sendRTP(101, false, []byte{11, 0x80 | 10, 3, 0x20})
}

// pressHashInfo sends # by SIP INFO.
func (p *natPhone) pressHashInfo() {
	p.cseq++
	body := "Signal=#\r\nDuration=160\r\n"
	p.sip.send(fmt.Sprintf("INFO sip:chorus@%s SIP/2.0\r\n%sContent-Type: application/dtmf-relay\r\nContent-Length: %d\r\n\r\n%s",
		p.sip.to, p.headers("INFO", p.cseq, true), len(body), body))
}

// awaitBye waits for the bridge's BYE at the phone's real socket, answers
// it 200 at once and returns when it came; then it counts the BYEs that
// come in the next 0.7 s (Timer E would resend at 0.5 s).
func (p *natPhone) awaitBye(timeout time.Duration) (arrived time.Time, extra int, ok bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msg := p.sip.read(time.Until(deadline))
		if msg == "" {
			break
		}
		if !strings.HasPrefix(msg, "BYE ") {
			continue
		}
		if arrived.IsZero() {
			arrived = time.Now()
			deadline = arrived.Add(700 * time.Millisecond)
		} else {
			extra++
		}
		p.sip.send(okFor(msg))
	}
	return arrived, extra, !arrived.IsZero()
}

// okFor builds a 200 to a request from its own headers.
func okFor(req string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			b.WriteString(line + "\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// TestNATCallerGetsBye: a caller whose Contact, Via and SDP are private
// gets the bridge's BYE at the address its requests came from, whether the
// call ends by # (RFC 4733 or INFO) or by removal through the API's path;
// the BYE leaves at once and, answered at once, is sent exactly once.
func TestNATCallerGetsBye(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 30500, 30999)
	var removal []time.Duration
	check := func(name string, p *natPhone, trigger func()) time.Duration {
		t.Helper()
		start := time.Now()
		trigger()
		at, extra, ok := p.awaitBye(5 * time.Second)
		if !ok {
			t.Fatalf("%s: the caller behind NAT got no BYE", name)
		}
		if extra != 0 {
			t.Errorf("%s: BYE sent %d more times after a prompt 200, want once", name, extra)
		}
		d := at.Sub(start)
		// The issue asks for 100 ms; the bound is loose for a shared CI
		// machine, and the median is reported.
		if d > 500*time.Millisecond {
			t.Errorf("%s: BYE arrived %v after the trigger, want well under 500 ms", name, d)
		}
		return d
	}
	for i := range 7 {
		room := "71" + strconv.Itoa(i)
		p := dialNAT(t, tb, room)
		conf := waitConference(t, tb, room)
		waitFor(t, "member joined", func() bool { return conf.Info().ActiveMembers == 1 })
		removal = append(removal, check("removal", p, func() {
			if err := conf.RemoveMember(conf.Members()[0]); err != nil {
				t.Fatal(err)
			}
		}))
	}
	var hash []time.Duration
	for i, how := range []string{"rtp", "info", "rtp", "info", "rtp"} {
		room := "72" + strconv.Itoa(i)
		p := dialNAT(t, tb, room)
		conf := waitConference(t, tb, room)
		waitFor(t, "member joined", func() bool { return conf.Info().ActiveMembers == 1 })
		press := p.pressHashRTP
		if how == "info" {
			press = p.pressHashInfo
		}
		hash = append(hash, check("# by "+how, p, press))
	}
	slices.Sort(removal)
	slices.Sort(hash)
	t.Logf("BYE latency behind NAT: removal median %v (min %v, max %v); # median %v (min %v, max %v)",
		removal[len(removal)/2], removal[0], removal[len(removal)-1], hash[len(hash)/2], hash[0], hash[len(hash)-1])
}

// TestNATTarget: where in-dialog requests go, by the INVITE's headers and
// source.
func TestNATTarget(t *testing.T) {
	cases := []struct {
		name, via, source, extra, want string
	}{
		{"private Via and Contact", "SIP/2.0/UDP 10.9.9.9:5099;branch=z9hG4bK1;rport", "127.0.0.1:40001", "", "127.0.0.1:40001"},
		{"private Via without rport", "SIP/2.0/UDP 10.9.9.9:5099;branch=z9hG4bK1", "127.0.0.1:40001", "", "127.0.0.1:40001"},
		{"host name in Via", "SIP/2.0/UDP phone.example;branch=z9hG4bK1", "127.0.0.1:40001", "", "127.0.0.1:40001"},
		{"port mapped, rport", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK1;rport", "127.0.0.1:40001", "", "127.0.0.1:40001"},
		{"same address", "SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bK1;rport", "127.0.0.1:40001", "", ""},
		{"other port, no rport (not NAT)", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1", "127.0.0.1:40001", "", ""},
		{"Record-Route governs", "SIP/2.0/UDP 10.9.9.9:5099;branch=z9hG4bK1;rport", "127.0.0.1:40001", "Record-Route: <sip:127.0.0.5;lr>\r\n", ""},
		{"through a proxy", "SIP/2.0/UDP 127.0.0.5;branch=z9hG4bK2, SIP/2.0/UDP 10.9.9.9:5099;branch=z9hG4bK1;rport", "127.0.0.5:5060", "", ""},
		{"TCP", "SIP/2.0/TCP 10.9.9.9:5099;branch=z9hG4bK1;rport", "127.0.0.1:40001", "", "127.0.0.1:40001"},
	}
	for _, c := range cases {
		raw := "INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: " + c.via + "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1000@c>\r\n" +
			"Call-ID: x\r\nCSeq: 1 INVITE\r\nContact: <sip:a@10.9.9.9:5099>\r\n" + c.extra + "Content-Length: 0\r\n\r\n"
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		req := msg.(*sip.Request)
		req.SetSource(c.source)
		if got := natTarget(req); got != c.want {
			t.Errorf("%s: natTarget = %q, want %q", c.name, got, c.want)
		}
	}
}

// FuzzNATTarget: any INVITE that parses, from any source, gives an answer
// and never a panic.
func FuzzNATTarget(f *testing.F) {
	f.Add([]byte("INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.9.9:5099;rport\r\nContact: <sip:a@10.9.9.9>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"), "127.0.0.1:5")
	f.Add([]byte("INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:0;rport=\r\nRecord-Route: x\r\nContent-Length: 0\r\n\r\n"), "[::1]:0")
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nContact: <sip:a@192.168.1.2:5060>\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"), "127.0.0.1:9")
	f.Fuzz(func(t *testing.T, raw []byte, source string) {
		msg, err := sip.ParseMessage(raw)
		if err != nil {
			return
		}
		msg.SetSource(source)
		switch m := msg.(type) {
		case *sip.Request:
			_ = natTarget(m)
		case *sip.Response:
			_ = natTargetOfAnswer(m)
		}
	})
}

// TestDialOutNATCallee: a callee we dialled answers with a private Contact
// from its real socket; the ACK and the BYE reach it there.
func TestDialOutNATCallee(t *testing.T) {
	loopback := egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 31000, 31099, func(c *Config) { c.Targets = loopback })
	tb.b.SetDialer(tb.srv)
	callee := newRawSIP(t, tb.udp)
	call, err := tb.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "chorus", To: "sip:callee@" + callee.conn.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	inv := callee.read(5 * time.Second)
	if !strings.HasPrefix(inv, "INVITE ") {
		t.Fatalf("callee got %q, want the INVITE", inv)
	}
	// The callee tags its To and names its private address.
	ok := strings.TrimSuffix(okFor(inv), "\r\nContent-Length: 0\r\n\r\n")
	var b strings.Builder
	for _, line := range strings.Split(ok, "\r\n") {
		if n, _, _ := strings.Cut(line, ":"); strings.EqualFold(n, "To") {
			line += ";tag=callee1"
		}
		b.WriteString(line + "\r\n")
	}
	sdp := "v=0\r\no=callee 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	fmt.Fprintf(&b, "Contact: <sip:callee@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", natPrivate, len(sdp), sdp)
	callee.send(b.String())
	if ack := callee.read(5 * time.Second); !strings.HasPrefix(ack, "ACK ") {
		t.Fatalf("callee behind NAT got %q, want the ACK at its real address", ack)
	}
	waitFor(t, "call answered", func() bool { return call.State() == bridge.CallActive })
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = call.Hangup(ctx, "test")
	}()
	for {
		msg := callee.read(5 * time.Second)
		if msg == "" {
			t.Fatal("callee behind NAT got no BYE")
		}
		if strings.HasPrefix(msg, "BYE ") {
			callee.send(okFor(msg))
			break
		}
	}
	waitFor(t, "call completed", func() bool { return call.State() == bridge.CallCompleted })
}
