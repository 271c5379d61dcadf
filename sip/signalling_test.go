package sip

import (
	"context"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// TestRouting: a conference id, the from number of a live conference, and
// auto-create; 404 for no route, 410 for a completed conference.
func TestRouting(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: false}, 22000, 22499)
	conf, err := tb.b.CreateConference(bridge.ConferenceOptions{UserID: "u-test", From: "+15551234567"})
	if err != nil {
		t.Fatal(err)
	}
	a := tb.dial(t, testphone.Options{User: conf.ID()})
	b := tb.dial(t, testphone.Options{User: "+15551234567"})
	waitFor(t, "two members", func() bool { return conf.Info().ActiveMembers == 2 })

	raw := newRawSIP(t, tb.udp)
	if code, _ := raw.final(raw.request("INVITE", "2000", "application/sdp", offerSDP(4000, "0")), 3*time.Second); code != 404 {
		t.Errorf("unknown number with auto-create off: %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.Hangup(ctx)
	_ = b.Hangup(ctx)
	waitFor(t, "conference completed", func() bool { return conf.State() == bridge.StateCompleted })
	if code, _ := raw.final(raw.request("INVITE", conf.ID(), "application/sdp", offerSDP(4000, "0")), 3*time.Second); code != 410 {
		t.Errorf("completed conference: %d, want 410", code)
	}
}

// TestBadSignalling: every malformed or unacceptable request gets a clear
// answer, and a call in progress goes on unharmed.
func TestBadSignalling(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 22500, 22999)
	talker := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(600, -15, 8000)})
	listener := tb.dial(t, testphone.Options{User: "1000"})
	raw := newRawSIP(t, tb.udp)

	cases := []struct {
		name, msg string
		want      int
	}{
		{"no common codec", raw.request("INVITE", "1000", "application/sdp", offerSDP(4000, "18 96", "18 G729/8000", "96 speex/16000")), 488},
		{"no audio stream", raw.request("INVITE", "1000", "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n"), 488},
		{"malformed SDP", raw.request("INVITE", "1000", "application/sdp", "this is not SDP\r\n"), 400},
		{"bad connection address", raw.request("INVITE", "1000", "application/sdp", strings.Replace(offerSDP(4000, "0"), "c=IN IP4 127.0.0.1", "c=IN IP4 not-an-ip", 1)), 400},
		{"OPTIONS", raw.request("OPTIONS", "1000", "", ""), 200},
		{"BYE outside a dialog", raw.request("BYE", "1000", "", ""), 481},
		{"INFO outside a dialog", raw.request("INFO", "1000", "application/dtmf", "5"), 481},
	}
	for _, c := range cases {
		if code, resp := raw.final(c.msg, 3*time.Second); code != c.want {
			t.Errorf("%s: got %d, want %d\n%s", c.name, code, c.want, resp)
		}
	}
	// Garbage datagrams get no answer and break nothing.
	for _, g := range []string{"", "\x00\x01\x02", "INVITE\r\n\r\n", "SIP/2.0 200 OK\r\n\r\n", strings.Repeat("A", 60000)} {
		raw.send(g)
	}
	if code, _ := raw.final(raw.request("OPTIONS", "1000", "", ""), 3*time.Second); code != 200 {
		t.Errorf("OPTIONS after garbage: %d", code)
	}
	time.Sleep(300 * time.Millisecond)
	rec := listen(time.Second, listener)[0]
	if got := level(rec, 600); math.Abs(got+15) > 1.5 {
		t.Errorf("call in progress hears the talker at %.1f dBFS after bad input, want -15", got)
	}
	_ = talker
}

// TestLateOffer: an INVITE without SDP gets our offer in the 200 and
// answers in the ACK.
func TestLateOffer(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 23000, 23499)
	talker := tb.dial(t, testphone.Options{User: "1000", NoSDPInOffer: true, Codecs: []string{"PCMA"}, Source: audiotest.ToneSource(500, -15, 8000)})
	listener := tb.dial(t, testphone.Options{User: "1000", NoSDPInOffer: true})
	if talker.Codec() != "PCMA" {
		t.Errorf("late-offer caller uses %s, want PCMA", talker.Codec())
	}
	time.Sleep(300 * time.Millisecond)
	rec := listen(time.Second, listener)[0]
	if got := level(rec, 500); math.Abs(got+15) > 1.5 {
		t.Errorf("late-offer talker heard at %.1f dBFS, want -15", got)
	}
}

// TestHoldByReInvite: a caller that puts the bridge on hold (sendonly)
// stops receiving audio, and what it goes on sending (hold music) no longer
// reaches the room (issue 10); resuming brings the audio back both ways.
func TestHoldByReInvite(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 23500, 23999)
	a := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(500, -15, 8000)})
	b := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(900, -15, 8000)})
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ReInvite(ctx, "sendonly"); err != nil {
		t.Fatalf("hold re-INVITE: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	before := a.Stats().AudioPacketsReceived
	recB := listen(time.Second, b)[0]
	if got := a.Stats().AudioPacketsReceived - before; got > 2 {
		t.Errorf("held caller received %d packets in 1 s", got)
	}
	if got := level(recB, 500); got > -60 {
		t.Errorf("held caller's audio heard at %.1f dBFS, want < -60", got)
	}
	if err := a.ReInvite(ctx, "sendrecv"); err != nil {
		t.Fatalf("resume re-INVITE: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	recs := listen(time.Second, a, b)
	if got := level(recs[0], 900); math.Abs(got+15) > 1.5 {
		t.Errorf("after resume the caller hears %.1f dBFS, want -15", got)
	}
	if got := level(recs[1], 500); math.Abs(got+15) > 1.5 {
		t.Errorf("after resume the room hears the caller at %.1f dBFS, want -15", got)
	}
}

// TestBridgeHangsUp: removing a member sends BYE to its phone.
func TestBridgeHangsUp(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24000, 24499)
	a := tb.dial(t, testphone.Options{User: "1000"})
	b := tb.dial(t, testphone.Options{User: "1000", Transport: "tcp"})
	conf := tb.b.Conferences("u-test")[0]
	waitFor(t, "two members", func() bool { return conf.Info().ActiveMembers == 2 })
	for _, m := range conf.Members() {
		if err := conf.RemoveMember(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []*testphone.Phone{a, b} {
		select {
		case <-p.Ended():
		case <-time.After(5 * time.Second):
			t.Fatalf("phone %d got no BYE", i)
		}
	}
	waitFor(t, "conference completed", func() bool { return conf.State() == bridge.StateCompleted })
}

// TestBadRTP: truncated and garbage RTP, and RTP from a stranger's
// address, are dropped and counted; the call goes on.
func TestBadRTP(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24500, 24999)
	talker := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(700, -15, 8000)})
	conf := waitConference(t, tb, "1000")
	waitFor(t, "talker joined", func() bool { return conf.Info().ActiveMembers == 1 })
	talkerCall := conf.Members()[0].Call()
	listener := tb.dial(t, testphone.Options{User: "1000"})
	time.Sleep(300 * time.Millisecond)
	for _, b := range [][]byte{{}, {0x80}, {0x80, 0, 0, 1}, []byte("garbage garbage garbage"), {0x40, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff}, {0xa0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0}} {
		if err := talker.SendRaw(b); err != nil {
			t.Fatal(err)
		}
	}
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 666}, Payload: make([]byte, 160)}
	for i := range 25 {
		pkt.SequenceNumber = uint16(i)
		pkt.Timestamp = uint32(i * 160)
		for j := range pkt.Payload {
			pkt.Payload[j] = byte(j) // loud noise
		}
		b, _ := pkt.Marshal()
		_, _ = stranger.WriteToUDPAddrPort(b, talker.RemoteRTPAddr())
	}
	rec := listen(time.Second, listener)[0]
	if got := level(rec, 700); math.Abs(got+15) > 1.5 {
		t.Errorf("talker heard at %.1f dBFS during bad RTP, want -15", got)
	}
	st := talkerCall.Leg().Media().Stats()
	if st.Malformed < 4 || st.Strangers < 20 {
		t.Errorf("bad packets not counted: %+v", st)
	}
}

// TestDrainAndNoPorts: a draining bridge answers 503, and so does one out
// of RTP ports.
func TestDrainAndNoPorts(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25000, 25001) // one port
	a := tb.dial(t, testphone.Options{User: "1000"})
	raw := newRawSIP(t, tb.udp)
	if code, _ := raw.final(raw.request("INVITE", "1000", "application/sdp", offerSDP(4000, "0")), 3*time.Second); code != 503 {
		t.Errorf("out of ports: %d, want 503", code)
	}
	tb.b.Drain()
	if code, _ := raw.final(raw.request("INVITE", "1000", "application/sdp", offerSDP(4000, "0")), 3*time.Second); code != 503 {
		t.Errorf("draining: %d, want 503", code)
	}
	select {
	case <-a.Ended():
		t.Error("draining ended a call in progress")
	default:
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancelWhileRinging: with a ringing phase, a CANCEL gets 200, the
// INVITE 487 with the same To-tag as the 180, and no member joins.
func TestCancelWhileRinging(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 27500, 27999, func(c *Config) { c.AnswerDelay = 3 * time.Second })
	raw := newRawSIP(t, tb.udp)
	invite := raw.request("INVITE", "1000", "application/sdp", offerSDP(4000, "0"))
	raw.send(invite)
	var ringing string
	for ringing == "" {
		msg := raw.read(3 * time.Second)
		if msg == "" {
			t.Fatal("no 180 Ringing")
		}
		if strings.HasPrefix(msg, "SIP/2.0 180") {
			ringing = msg
		}
	}
	// CANCEL: the INVITE's Via, From, To, Call-ID and CSeq number.
	cancel := strings.Replace(strings.SplitN(invite, "\r\n\r\n", 2)[0], "INVITE sip:", "CANCEL sip:", 1)
	cancel = strings.Replace(cancel, "CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1)
	cancel = strings.Replace(cancel, "Content-Type: application/sdp\r\n", "", 1)
	cancel = cancel[:strings.Index(cancel, "Content-Length:")] + "Content-Length: 0\r\n\r\n"
	raw.send(cancel)
	var got200, got487 string
	for got200 == "" || got487 == "" {
		msg := raw.read(3 * time.Second)
		if msg == "" {
			t.Fatalf("after CANCEL: 200 %t, 487 %t", got200 != "", got487 != "")
		}
		switch {
		case strings.HasPrefix(msg, "SIP/2.0 200") && strings.Contains(msg, "CANCEL"):
			got200 = msg
		case strings.HasPrefix(msg, "SIP/2.0 487"):
			got487 = msg
		}
	}
	if a, b := toTag(ringing), toTag(got487); a == "" || a != b {
		t.Errorf("487 To-tag %q differs from the 180's %q", b, a)
	}
	conf := waitConference(t, tb, "1000")
	time.Sleep(200 * time.Millisecond)
	if n := conf.Info().ActiveMembers; n != 0 {
		t.Errorf("%d members after a cancelled call", n)
	}
	calls := tb.b.Calls("u-test")
	if len(calls) != 1 || calls[0].State() != bridge.CallCompleted {
		t.Errorf("cancelled call not completed: %+v", calls)
	}
}

// TestSessionRefresh: a raw client's dialog is refreshed by UPDATE (with and
// without SDP) and by a re-INVITE without SDP, each answered 200.
func TestSessionRefresh(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 20000, 20499)
	raw := newRawSIP(t, tb.udp)
	invite := raw.request("INVITE", "1000", "application/sdp", offerSDP(4000, "0"))
	code, resp := raw.final(invite, 3*time.Second)
	if code != 200 {
		t.Fatalf("INVITE: %d", code)
	}
	tag := toTag(resp)
	head := strings.SplitN(invite, "\r\n\r\n", 2)[0]
	// inDialog rewrites the INVITE's headers into request method with CSeq
	// seq, the bridge's To-tag, a new branch, and body.
	inDialog := func(method string, seq int, contentType, body string) string {
		var b strings.Builder
		for i, line := range strings.Split(head, "\r\n") {
			switch {
			case i == 0:
				line = strings.Replace(line, "INVITE", method, 1)
			case strings.HasPrefix(line, "Via:"):
				line = line[:strings.Index(line, "branch=")] + "branch=z9hG4bK" + randHex(8) + ";rport"
			case strings.HasPrefix(line, "To:"):
				line += ";tag=" + tag
			case strings.HasPrefix(line, "CSeq:"):
				line = "CSeq: " + strconv.Itoa(seq) + " " + method
			case strings.HasPrefix(line, "Content-Type:"), strings.HasPrefix(line, "Content-Length:"):
				continue
			}
			b.WriteString(line + "\r\n")
		}
		if contentType != "" {
			b.WriteString("Content-Type: " + contentType + "\r\n")
		}
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
		return b.String()
	}
	raw.send(inDialog("ACK", 1, "", ""))
	if code, resp := raw.final(inDialog("UPDATE", 2, "", ""), 3*time.Second); code != 200 {
		t.Errorf("UPDATE without SDP: %d\n%s", code, resp)
	}
	if code, resp := raw.final(inDialog("UPDATE", 3, "application/sdp", offerSDP(4002, "0")), 3*time.Second); code != 200 || !strings.Contains(resp, "m=audio") {
		t.Errorf("UPDATE with SDP: %d\n%s", code, resp)
	}
	code, resp = raw.final(inDialog("INVITE", 4, "", ""), 3*time.Second)
	if code != 200 || !strings.Contains(resp, "m=audio") {
		t.Errorf("re-INVITE without SDP: %d\n%s", code, resp)
	}
	raw.send(inDialog("ACK", 4, "application/sdp", offerSDP(4002, "0")))
	if code, _ := raw.final(inDialog("BYE", 5, "", ""), 3*time.Second); code != 200 {
		t.Errorf("BYE: %d", code)
	}
	call := tb.b.Calls("u-test")[0]
	waitFor(t, "call completed", func() bool { return call.State() == bridge.CallCompleted })
	if got := call.Info(); got.ConferenceID == "" {
		t.Error("call never joined")
	}
}
