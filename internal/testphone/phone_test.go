package testphone

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"chorus/internal/audiotest"
)

func dial(t *testing.T, opts Options) *Phone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := Dial(ctx, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// checkTone sends freq at level for about 1 s and checks the echo.
func checkTone(t *testing.T, p *Phone, freq, level float64) {
	t.Helper()
	p.SetSource(audiotest.ToneSource(freq, level, 8000))
	time.Sleep(300 * time.Millisecond) // let the echo settle
	mark := p.Mark()
	time.Sleep(time.Second)
	got := p.RecordingSince(mark)
	if len(got) < 7000 {
		t.Fatalf("recorded %d samples in 1 s, want ~8000 (stats %+v)", len(got), p.Stats())
	}
	got = got[:7000]
	if l := audiotest.LevelDBFS(got, freq, 8000); math.Abs(l-level) > 0.5 {
		zeros := 0
		for _, v := range got {
			if v == 0 {
				zeros++
			}
		}
		t.Errorf("echoed %v Hz reads %.2f dBFS, want %v (%d zero samples; stats %+v)", freq, l, level, zeros, p.Stats())
	}
	if l := audiotest.LevelDBFS(got, 400, 8000); l > -50 {
		t.Errorf("400 Hz reads %.2f dBFS in an echo of %v Hz", l, freq)
	}
}

func TestToneEchoUDP(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("udp"), User: "1000"})
	c := u.nextCall(t)
	if got := p.Codec(); got != "PCMU" {
		t.Errorf("Codec = %q, want PCMU", got)
	}
	if req := c.dlg.InviteRequest; req.Recipient.User != "1000" {
		t.Errorf("Request-URI user = %q", req.Recipient.User)
	}
	// Via and Contact name the phone's listener, which also sent the INVITE.
	via := c.dlg.InviteRequest.Via()
	if via.Port != int(p.SIPAddr().Port()) || c.dlg.InviteRequest.Contact().Address.Port != int(p.SIPAddr().Port()) {
		t.Errorf("Via %s / Contact %s, want port %d", via.Value(), c.dlg.InviteRequest.Contact().Value(), p.SIPAddr().Port())
	}
	if src := c.dlg.InviteRequest.Source(); src != p.SIPAddr().String() {
		t.Errorf("INVITE came from %s, want %s", src, p.SIPAddr())
	}
	checkTone(t, p, 1000, -10)
	st := p.Stats()
	if st.PacketsSent < 60 || st.AudioPacketsReceived < 50 || st.PayloadTypes[0] != st.AudioPacketsReceived {
		t.Errorf("stats %+v", st)
	}
	if err := p.Hangup(context.Background()); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	select {
	case <-c.dlg.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("UAS dialog did not end after Hangup")
	}
	select {
	case <-p.Ended():
	default:
		t.Fatal("Ended not closed after Hangup")
	}
}

// TestWidebandEcho: a phone offering only G.722, or only Opus, gets it
// (Opus at the phone's own dynamic payload type), sends a 6 kHz tone that
// G.711 could not carry at its codec's rate with the codec's RTP clock
// (160 or 960 ticks a packet), and decodes the echo at the same level.
func TestWidebandEcho(t *testing.T) {
	for _, c := range []struct {
		codec       string
		pt          uint8
		rate, ticks int
	}{{"G722", 9, 16000, 160}, {"OPUS", ptOpus, 48000, 960}} {
		t.Run(c.codec, func(t *testing.T) {
			u := newTestUAS(t)
			var mu sync.Mutex
			var stamps []uint32
			p := dial(t, Options{Target: u.target("udp"), User: "1000", Codecs: []string{strings.ToLower(c.codec)},
				OnDatagram: func(b []byte) {
					var h rtp.Header
					if _, err := h.Unmarshal(b); err == nil && h.PayloadType == c.pt {
						mu.Lock()
						stamps = append(stamps, h.Timestamp)
						mu.Unlock()
					}
				}})
			u.nextCall(t)
			if p.Codec() != c.codec || p.PayloadType() != c.pt || p.AudioRate() != c.rate {
				t.Fatalf("negotiated %s pt %d rate %d", p.Codec(), p.PayloadType(), p.AudioRate())
			}
			p.SetSource(audiotest.ToneSource(6000, -20, c.rate))
			time.Sleep(300 * time.Millisecond) // let the echo settle
			mark := p.Mark()
			time.Sleep(time.Second)
			got := p.RecordingSince(mark)
			if len(got) < c.rate*7/10 {
				t.Fatalf("recorded %d samples in 1 s at %d Hz (stats %+v)", len(got), c.rate, p.Stats())
			}
			got = got[:c.rate*7/10]
			if l := audiotest.LevelDBFS(got, 6000, c.rate); math.Abs(l+20) > 1 {
				t.Errorf("echoed 6 kHz reads %.2f dBFS, want -20", l)
			}
			if l := audiotest.LevelDBFS(got, 2000, c.rate); l > -50 {
				t.Errorf("2 kHz reads %.2f dBFS in an echo of 6 kHz", l)
			}
			mu.Lock()
			defer mu.Unlock()
			steps := map[uint32]int{}
			for i := 1; i < len(stamps); i++ {
				steps[stamps[i]-stamps[i-1]]++
			}
			if steps[uint32(c.ticks)] < len(stamps)*9/10 {
				t.Errorf("timestamp steps %v, want mostly %d", steps, c.ticks)
			}
		})
	}
}

func TestPCMAOverTCPRemoteBye(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("tcp"), Transport: "tcp", User: "conf-x", Codecs: []string{"PCMA"}, Ptime: 30})
	c := u.nextCall(t)
	if got := p.Codec(); got != "PCMA" {
		t.Errorf("Codec = %q, want PCMA", got)
	}
	if tr := c.dlg.InviteRequest.Transport(); tr != "TCP" {
		t.Errorf("INVITE transport %q", tr)
	}
	checkTone(t, p, 700, -20)
	if st := p.Stats(); st.PayloadTypes[8] == 0 {
		t.Errorf("no PCMA received: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.dlg.Bye(ctx); err != nil {
		t.Fatalf("UAS BYE: %v", err)
	}
	select {
	case <-p.Ended():
	case <-time.After(2 * time.Second):
		t.Fatal("Ended not closed after remote BYE")
	}
	// Audio stops after the remote BYE.
	time.Sleep(100 * time.Millisecond)
	before := p.Stats().PacketsSent
	time.Sleep(200 * time.Millisecond)
	if after := p.Stats().PacketsSent; after != before {
		t.Errorf("still sending after BYE: %d -> %d", before, after)
	}
	if err := p.Hangup(ctx); err != nil {
		t.Errorf("Hangup after remote BYE: %v", err)
	}
}

func TestRemoteByeUDP(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("udp"), User: "1"})
	c := u.nextCall(t)
	<-c.confirmed
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.dlg.Bye(ctx); err != nil {
		t.Fatalf("UAS BYE: %v", err)
	}
	select {
	case <-p.Ended():
	case <-time.After(2 * time.Second):
		t.Fatal("Ended not closed after remote BYE")
	}
	if err := p.SendInfo(ctx, '1'); !errors.Is(err, ErrEnded) {
		t.Errorf("SendInfo after end: %v, want ErrEnded", err)
	}
}

func TestDTMF(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("udp"), User: "1000", TelephoneEventPT: 96})
	c := u.nextCall(t)
	for _, d := range "5#" {
		if err := p.SendDTMF(d); err != nil {
			t.Fatalf("SendDTMF(%c): %v", d, err)
		}
	}
	if err := p.SendDTMF('x'); err == nil {
		t.Error("SendDTMF('x') succeeded")
	}
	time.Sleep(100 * time.Millisecond)
	_, evs, _, _, _ := c.snapshot()
	if got := eventDigits(evs); got != "5#" {
		t.Fatalf("UAS decoded digits %q, want 5#", got)
	}
	// 100 ms at 20 ms = 5 tone packets, then 3 end packets, per digit.
	if len(evs) != 16 {
		t.Errorf("%d event packets, want 16", len(evs))
	}
	for i, e := range evs[:8] {
		wantEnd := i >= 5
		end := e.Payload[1]&0x80 != 0
		if e.Marker != (i == 0) || end != wantEnd || e.PayloadType != 96 || e.Timestamp != evs[0].Timestamp {
			t.Errorf("packet %d: %s pt=%d", i, describe(e), e.PayloadType)
		}
	}
	if st := p.Stats(); st.EventPacketsSent != 16 {
		t.Errorf("EventPacketsSent = %d", st.EventPacketsSent)
	}
	// Sequence numbers continue across audio and events.
	if evs[1].SequenceNumber != evs[0].SequenceNumber+1 {
		t.Errorf("event sequence numbers %d, %d", evs[0].SequenceNumber, evs[1].SequenceNumber)
	}
}

func TestInfoAndReInvite(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("udp"), User: "1000"})
	c := u.nextCall(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.SendInfo(ctx, '5'); err != nil {
		t.Fatalf("SendInfo: %v", err)
	}
	for _, dir := range []string{"sendonly", "inactive"} {
		if err := p.ReInvite(ctx, dir); err != nil {
			t.Fatalf("ReInvite(%s): %v", dir, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	a1, _, _, _, _ := c.snapshot()
	time.Sleep(300 * time.Millisecond)
	a2, _, _, _, _ := c.snapshot()
	if a2 != a1 {
		t.Errorf("audio sent while inactive: %d -> %d packets", a1, a2)
	}
	if err := p.ReInvite(ctx, "sendrecv"); err != nil {
		t.Fatalf("ReInvite(sendrecv): %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	a3, _, infos, types, dirs := c.snapshot()
	if a3 <= a2 {
		t.Errorf("no audio after sendrecv: %d -> %d", a2, a3)
	}
	if !slices.Equal(infos, []string{"Signal=5\r\nDuration=160\r\n"}) || !slices.Equal(types, []string{"application/dtmf-relay"}) {
		t.Errorf("INFO bodies %q types %q", infos, types)
	}
	if !slices.Equal(dirs, []string{"sendonly", "inactive", "sendrecv"}) {
		t.Errorf("re-INVITE directions %q", dirs)
	}
	// The dialog still works after the re-INVITEs.
	if err := p.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
}

func TestLateOffer(t *testing.T) {
	u := newTestUAS(t)
	p := dial(t, Options{Target: u.target("udp"), User: "1000", NoSDPInOffer: true, Codecs: []string{"PCMA", "PCMU"}})
	c := u.nextCall(t)
	select {
	case <-c.confirmed:
	case <-time.After(2 * time.Second):
		t.Fatal("UAS got no ACK")
	}
	if got := p.Codec(); got != "PCMU" { // the offer (in the 200) lists PCMU first
		t.Errorf("Codec = %q", got)
	}
	c.mu.Lock()
	ack := string(c.ackSDP)
	c.mu.Unlock()
	rm, err := parseSDP([]byte(ack))
	if err != nil {
		t.Fatalf("ACK SDP %q: %v", ack, err)
	}
	if rm.addr != p.RTPAddr() || !slices.Equal(rm.formats, []uint8{0, 101}) {
		t.Errorf("ACK SDP answer: addr %v formats %v", rm.addr, rm.formats)
	}
	checkTone(t, p, 1000, -6)
}

func TestRejected(t *testing.T) {
	u := newTestUAS(t)
	u.rejectCode.Store(486)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, Options{Target: u.target("udp"), User: "1000"})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("Dial error %v, want StatusError 486", err)
	}
}

func TestDialTimeoutCancels(t *testing.T) {
	u := newTestUAS(t)
	u.noAnswer.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, Options{Target: u.target("udp"), User: "1000"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v to give up", d)
	}
	c := u.nextCall(t)
	select {
	case <-c.canceled:
	case <-time.After(2 * time.Second):
		t.Error("UAS saw no CANCEL")
	}
}

func TestDialNoServer(t *testing.T) {
	// Nothing answers: a bound UDP socket that never reads.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	p, err := Dial(ctx, Options{Target: "127.0.0.1:9", User: "x"})
	if err == nil {
		p.Close()
		t.Fatal("Dial succeeded with no server")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{Target: "127.0.0.1:5060", Transport: "sctp"},
		{Target: "127.0.0.1:5060", Codecs: []string{"G729"}},
		{Target: "127.0.0.1:5060", Ptime: 5},
		{Target: "127.0.0.1:5060", User: "a\r\nb"},
	} {
		if _, err := Dial(context.Background(), o); err == nil {
			t.Errorf("Dial(%+v) succeeded", o)
		}
	}
}

func TestRecordingPlacement(t *testing.T) {
	p := &Phone{}
	pk := func(v int16) []int16 { return []int16{v, v} }
	p.recordLocked(1, 1000, pk(1), 1, 8000)
	p.recordLocked(1, 1004, pk(3), 1, 8000) // gap of 2 samples
	p.recordLocked(1, 1002, pk(2), 1, 8000) // late packet fills it
	p.recordLocked(1, 1010, pk(4), 1, 8000) // gap left as zeros
	p.recordLocked(1, 998, pk(9), 1, 8000)  // before the start: dropped
	want := []int16{1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 4, 4}
	if !slices.Equal(p.rec, want) {
		t.Fatalf("rec %v, want %v", p.rec, want)
	}
	p.recordLocked(2, 5, pk(5), 1, 8000)         // new SSRC continues at the end
	p.recordLocked(2, 7, pk(6), 1, 8000)         //
	p.recordLocked(2, 7+10*8000, pk(7), 1, 8000) // 10 s forward jump: zeros
	n := len(p.rec)
	p.recordLocked(2, 1<<31, pk(8), 1, 8000) // absurd jump: continues at the end
	if len(p.rec) != n+2 || p.rec[n] != 8 {
		t.Fatalf("absurd jump: len %d -> %d", n, len(p.rec))
	}
	if !slices.Equal(p.rec[12:16], []int16{5, 5, 6, 6}) || len(p.rec) != 16+80000-2+2+2 {
		t.Errorf("after SSRC change: %v... len %d", p.rec[12:16], len(p.rec))
	}
}
