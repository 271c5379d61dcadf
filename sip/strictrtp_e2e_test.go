package sip

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

// The tests of strict RTP end to end (issue 10): strangers spraying the RTP
// range, a caller behind NAT, a forged SDP aimed at a third party, and an
// inactive call that holds a port.

// sprayRange returns the low end of n consecutive free ports above the
// kernel's ephemeral range (32768-60999), where no other test binds: the
// strangers below spray every port of the bridge's range and must not hit
// another process's sockets.
func sprayRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		low := 61000 + 2*rand.IntN((65000-61000-n)/2)
		ok := true
		for p := low; p < low+n && ok; p++ {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return low
		}
	}
	t.Fatal("no free port range above 61000")
	return 0
}

// strangers are sockets on loopback that spray RTP at a port range, each
// stream (socket, port) with consecutive sequence numbers, as an attacker
// trying to pass probation would, carrying a tone; they count what they
// receive back.
type strangers struct {
	conns    []*net.UDPConn
	received atomic.Int64
	sent     atomic.Int64
	seq      map[[2]int]uint16
	frames   [][]byte // PCMU frames of the tone, cycled
	wg       sync.WaitGroup
}

func newStrangers(t *testing.T, n int, freq float64) *strangers {
	t.Helper()
	s := &strangers{seq: map[[2]int]uint16{}}
	// Seven frames of the tone: the tone's period divides 7×160 samples
	// for the frequencies used here (8000/7 Hz and its kin), and a small
	// phase jump elsewhere does not move its Goertzel level much.
	pcm := make([]int16, 7*media.FrameSamples)
	audiotest.Tone(pcm, freq, -10, 8000, new(float64))
	for i := range 7 {
		f := make([]byte, media.FrameSamples)
		for j, v := range pcm[i*media.FrameSamples : (i+1)*media.FrameSamples] {
			f[j] = g711.EncodeUlawFrame(v)
		}
		s.frames = append(s.frames, f)
	}
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		s.conns = append(s.conns, c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				s.received.Add(1)
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range s.conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return s
}

// spray sends pps packets a second for d, spread over every even port of
// [low, high] on 127.0.0.1 from every socket, and returns when done.
func (s *strangers) spray(low, high, pps int, d time.Duration) {
	var targets [][2]int // socket, port
	for port := low; port <= high; port += 2 {
		for i := range s.conns {
			targets = append(targets, [2]int{i, port})
		}
	}
	buf := make([]byte, 12+media.FrameSamples)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0}}
	const tick = 10 * time.Millisecond
	perTick := pps * int(tick) / int(time.Second)
	k := 0
	start := time.Now()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for time.Since(start) < d {
		for range perTick {
			tg := targets[k%len(targets)]
			k++
			seq := s.seq[tg]
			s.seq[tg] = seq + 1
			pkt.SSRC = uint32(0xbad0000 + tg[0])
			pkt.SequenceNumber = seq
			pkt.Timestamp = uint32(seq) * media.FrameSamples
			pkt.Payload = s.frames[int(seq)%len(s.frames)]
			n, err := pkt.MarshalTo(buf)
			if err != nil {
				panic(err)
			}
			if _, err := s.conns[tg[0]].WriteToUDPAddrPort(buf[:n], netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(tg[1]))); err == nil {
				s.sent.Add(1)
			}
		}
		<-tk.C
	}
}

// maxBlockLevel is the loudest 100 ms block of rec at f: a hijack of even
// a moment shows, where a median would hide it.
func maxBlockLevel(rec []int16, f float64) float64 {
	top := math.Inf(-1)
	for i := 0; i+800 <= len(rec); i += 800 {
		top = max(top, audiotest.LevelDBFS(rec[i:i+800], f, 8000))
	}
	return top
}

// TestStrangersCannotHijackRTP: strangers spray every port of the bridge's
// RTP range at call set-up and again after the caller has been silent for
// a while (the old code re-latched after 2 s). The caller keeps hearing
// the room, the strangers receive nothing, the room never hears them.
func TestStrangersCannotHijackRTP(t *testing.T) {
	const rangeLen = 400 // 200 RTP ports
	low := sprayRange(t, rangeLen)
	high := low + rangeLen - 1
	tb := startBridge(t, bridge.Config{AutoCreate: true}, low, high)
	roomTone, callerTone, strangerTone := distinctTones[0], distinctTones[1], distinctTones[2]
	st := newStrangers(t, 4, strangerTone)

	// Set-up under fire: the spray runs while both call.
	sprayDone := make(chan struct{})
	go func() {
		defer close(sprayDone)
		st.spray(low, high, 1500, 3*time.Second)
	}()
	room := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(roomTone, -15, 8000)})
	caller := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(callerTone, -15, 8000)})
	<-sprayDone
	recs := listen(time.Second, room, caller)
	check := func(phase string, recs [][]int16, callerSending bool) {
		t.Helper()
		roomRec, callerRec := recs[0], recs[1]
		if len(callerRec) < 4000 {
			t.Fatalf("%s: the caller received %d samples in a second", phase, len(callerRec))
		}
		if got := level(callerRec, roomTone); math.Abs(got+15) > 2 {
			t.Errorf("%s: the caller hears the room at %.1f dBFS, want -15", phase, got)
		}
		if callerSending {
			if got := level(roomRec, callerTone); math.Abs(got+15) > 2 {
				t.Errorf("%s: the room hears the caller at %.1f dBFS, want -15", phase, got)
			}
		}
		for who, rec := range map[string][]int16{"room": roomRec, "caller": callerRec} {
			if got := maxBlockLevel(rec, strangerTone); got > -50 {
				t.Errorf("%s: the %s heard the strangers' tone at %.1f dBFS", phase, who, got)
			}
		}
	}
	check("after set-up", recs, true)
	// What the room and the caller heard from the start, while the spray
	// ran, must not hold the strangers' tone either.
	check("during set-up", [][]int16{room.Recording(), caller.Recording()}, false)

	// The caller falls silent (muted, silence suppression): nothing is sent
	// for 5 s; after 2 s of it the strangers spray again for 3 s.
	caller.SetSending(false)
	marks := []int{room.Mark(), caller.Mark()}
	time.Sleep(2 * time.Second)
	st.spray(low, high, 1500, 3*time.Second)
	silent := [][]int16{room.RecordingSince(marks[0]), caller.RecordingSince(marks[1])}
	if len(silent[1]) < 5*8000*8/10 {
		t.Errorf("the silent caller received %d samples in 5 s: the bridge stopped sending to it", len(silent[1]))
	}
	check("caller silent", silent, false)
	caller.SetSending(true)
	time.Sleep(300 * time.Millisecond) // the jitter buffer primes again
	check("caller back", listen(time.Second, room, caller), true)

	if n := st.received.Load(); n != 0 {
		t.Errorf("the strangers received %d packets from the bridge", n)
	}
	if st.sent.Load() < 3000 {
		t.Errorf("only %d stranger packets sent: the test did not spray", st.sent.Load())
	}
	var strangerPackets uint64
	for _, m := range waitConference(t, tb, "1000").Members() {
		s := m.Call().Leg().Media().Stats()
		strangerPackets += s.Strangers + s.Unproven
	}
	if strangerPackets == 0 {
		t.Error("the members' sessions counted no stranger packets: the spray missed them")
	}
	t.Logf("strangers sent %d packets; the two calls dropped %d", st.sent.Load(), strangerPackets)
}

// rawCall is a call placed with hand-written SDP through rawSIP.
type rawCall struct {
	r       *rawSIP
	invite  string
	resp    string
	rtpPort int // the bridge's RTP port from the answer
	cseq    int
}

// sdpBody is an offer of PCMU from addr:port in direction dir.
func sdpBody(addr string, port int, dir string) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=%s\r\n", addr, addr, port, dir)
}

// dialRaw sends an INVITE with body, waits for the 200 and ACKs it.
func dialRaw(t *testing.T, tb *testBridge, body string) *rawCall {
	t.Helper()
	c := &rawCall{r: newRawSIP(t, tb.udp), cseq: 1}
	c.invite = c.r.request("INVITE", "1000", "application/sdp", body)
	code, resp := c.r.final(c.invite, 5*time.Second)
	if code != 200 {
		t.Fatalf("INVITE: %d\n%s", code, resp)
	}
	c.resp = resp
	for _, line := range strings.Split(resp, "\r\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "m=audio" {
			c.rtpPort, _ = strconv.Atoi(f[1])
		}
	}
	if c.rtpPort == 0 {
		t.Fatalf("no m=audio port in the answer:\n%s", resp)
	}
	c.r.send(c.inDialog("ACK", 1))
	return c
}

// inDialog turns the INVITE's headers into an in-dialog request.
func (c *rawCall) inDialog(method string, seq int) string {
	head := strings.SplitN(c.invite, "\r\n\r\n", 2)[0]
	var b strings.Builder
	for i, line := range strings.Split(head, "\r\n") {
		switch {
		case i == 0:
			line = strings.Replace(line, "INVITE", method, 1)
		case strings.HasPrefix(line, "Via:"):
			line = line[:strings.Index(line, "branch=")] + "branch=z9hG4bK" + randHex(8) + ";rport"
		case strings.HasPrefix(line, "To:"):
			line += ";tag=" + toTag(c.resp)
		case strings.HasPrefix(line, "CSeq:"):
			line = "CSeq: " + strconv.Itoa(seq) + " " + method
		case strings.HasPrefix(line, "Content-Type:"), strings.HasPrefix(line, "Content-Length:"):
			continue
		}
		b.WriteString(line + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// waitBye waits up to d for the bridge's BYE, answers it 200 and returns
// when it came.
func (c *rawCall) waitBye(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		msg := c.r.read(time.Until(deadline))
		if !strings.HasPrefix(msg, "BYE ") {
			continue
		}
		at := time.Now()
		var b strings.Builder
		b.WriteString("SIP/2.0 200 OK\r\n")
		for _, line := range strings.Split(strings.SplitN(msg, "\r\n\r\n", 2)[0], "\r\n")[1:] {
			for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:", "v:", "f:", "t:", "i:"} {
				if strings.HasPrefix(line, h) {
					b.WriteString(line + "\r\n")
				}
			}
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		c.r.send(b.String())
		return at
	}
	t.Fatalf("no BYE within %v", d)
	return time.Time{}
}

// bye ends the call from the raw side.
func (c *rawCall) bye(t *testing.T) {
	t.Helper()
	c.cseq++
	if code, resp := c.r.final(c.inDialog("BYE", c.cseq), 3*time.Second); code != 200 {
		t.Errorf("BYE: %d\n%s", code, resp)
	}
}

// callOf returns the bridge's call whose session has local RTP port port.
func callOf(t *testing.T, tb *testBridge, port int) *bridge.Call {
	t.Helper()
	var found *bridge.Call
	waitFor(t, "the call on the bridge", func() bool {
		for _, c := range tb.b.Calls("u-test") {
			if leg := c.Leg(); leg != nil && int(leg.Media().LocalAddr().Port()) == port {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// leftCause waits for call to complete and returns the cause its member
// left the conference with. (The call's own cause may read "hangup": the
// dialog ending after our BYE races with the bridge recording why.)
func leftCause(t *testing.T, l *eventLog, call *bridge.Call) string {
	t.Helper()
	waitFor(t, "call completed", func() bool { return call.State() == bridge.CallCompleted })
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.evs {
		if ev.Type == bridge.EventConferenceMember && ev.CallID == call.ID() && ev.State == bridge.StateCompleted {
			return ev.Cause
		}
	}
	return ""
}

// TestNATCallerLearnedByProbation: a caller whose SDP names an unreachable
// private address, sending from its real (loopback) port, is learned after
// probation and hears the room there.
func TestNATCallerLearnedByProbation(t *testing.T) {
	low := sprayRange(t, 100)
	tb := startBridge(t, bridge.Config{AutoCreate: true}, low, low+99)
	roomTone, callerTone := distinctTones[0], distinctTones[1]
	room := tb.dial(t, testphone.Options{User: "1000", Source: audiotest.ToneSource(roomTone, -15, 8000)})

	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	c := dialRaw(t, tb, sdpBody("10.1.2.3", 4000, "sendrecv"))
	call := callOf(t, tb, c.rtpPort)
	sess := call.Leg().Media()
	bridgeRTP := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(c.rtpPort))

	// Send the caller's tone from the real port, 20 ms apart, and decode
	// what comes back.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var heard []int16
	wg.Add(2)
	go func() {
		defer wg.Done()
		src := audiotest.ToneSource(callerTone, -15, 8000)
		pcm := make([]int16, media.FrameSamples)
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 4242, SequenceNumber: 65533}, Payload: make([]byte, media.FrameSamples)}
		buf := make([]byte, 1500)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			src(pcm)
			for i, v := range pcm {
				pkt.Payload[i] = g711.EncodeUlawFrame(v)
			}
			n, _ := pkt.MarshalTo(buf)
			_, _ = sock.WriteToUDPAddrPort(buf[:n], bridgeRTP)
			pkt.SequenceNumber++
			pkt.Timestamp += media.FrameSamples
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) != nil || p.PayloadType != 0 {
				continue
			}
			mu.Lock()
			for _, b := range p.Payload {
				heard = append(heard, g711.DecodeUlawFrame(b))
			}
			mu.Unlock()
		}
	}()
	defer func() {
		cancel()
		sock.Close()
		wg.Wait()
	}()

	waitFor(t, "the NAT address proven", sess.Proven)
	if got, want := sess.RemoteAddr(), sock.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Fatalf("source %v, want the caller's real port %v", got, want)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	mark := len(heard)
	mu.Unlock()
	recRoom := listen(1500*time.Millisecond, room)[0]
	// One second of what the caller heard; on a loaded machine the test's
	// own reader may lag the mixer, so wait for it (the level is what
	// counts).
	var recCaller []int16
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		recCaller = append(recCaller[:0], heard[mark:]...)
		mu.Unlock()
		if len(recCaller) >= 8000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(recCaller) < 8000 {
		t.Fatalf("the NAT caller received %d samples in 11.5 s", len(recCaller))
	}
	if got := level(recCaller, roomTone); math.Abs(got+15) > 2 {
		t.Errorf("the NAT caller hears the room at %.1f dBFS, want -15", got)
	}
	if got := level(recRoom, callerTone); math.Abs(got+15) > 2 {
		t.Errorf("the room hears the NAT caller at %.1f dBFS, want -15", got)
	}
	if st := sess.Stats(); st.Unproven < media.Probation-1 || st.Unsent != 0 {
		t.Errorf("stats %+v: want the probation packets dropped and nothing withheld", st)
	}
	c.bye(t)
}

// TestNoReflection: an INVITE whose SDP is recvonly and names a third
// party (a listening socket that never sends) gets at most SendGrace of
// audio sent there, then nothing, and the call is hung up by the RTP
// timeout.
func TestNoReflection(t *testing.T) {
	const rtpTimeout = 7 * time.Second
	low := sprayRange(t, 100)
	tb := startBridge(t, bridge.Config{AutoCreate: true, RTPTimeout: rtpTimeout}, low, low+99)
	events := &eventLog{}
	tb.b.SetEventSink(events)
	_ = tb.b.Draining() // b.mu orders the sink before the SIP handlers' first look
	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var count atomic.Int64
	var first, last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, err := victim.Read(buf); err != nil {
				return
			}
			now := time.Now().UnixNano()
			first.CompareAndSwap(0, now)
			last.Store(now)
			count.Add(1)
		}
	}()
	start := time.Now()
	c := dialRaw(t, tb, sdpBody("127.0.0.1", int(victim.LocalAddr().(*net.UDPAddr).Port), "recvonly"))
	bye := c.waitBye(t, rtpTimeout+5*time.Second)
	victim.Close()
	<-done
	if d := bye.Sub(start); d < rtpTimeout-time.Second {
		t.Errorf("hung up after %v, before the RTP timeout of %v", d, rtpTimeout)
	}
	n := count.Load()
	span := time.Duration(last.Load() - first.Load())
	// 50 packets a second for the grace, and a little slack for a tick
	// that ran late and caught up.
	if maxN := int64(media.SendGrace/(20*time.Millisecond)) + 10; n > maxN || n == 0 {
		t.Errorf("the third party received %d packets, want 1..%d", n, maxN)
	}
	if span > media.SendGrace+500*time.Millisecond {
		t.Errorf("the third party received packets for %v, want at most the grace of %v", span, media.SendGrace)
	}
	call := tb.b.Calls("u-test")[0]
	if got := leftCause(t, events, call); got != bridge.CauseRTPTimeout {
		t.Errorf("member left with cause %q, want %q", got, bridge.CauseRTPTimeout)
	}
	t.Logf("third party got %d packets over %v; BYE after %v", n, span.Round(time.Millisecond), bye.Sub(start).Round(time.Millisecond))
}

// TestInactiveCallHoldTimeout: a call offered a=inactive (it never sends)
// is ended by the hold timeout, its port is freed, and a drain that waits
// for calls to end is not held up past it.
func TestInactiveCallHoldTimeout(t *testing.T) {
	const holdTimeout = 2 * time.Second
	low := sprayRange(t, 100)
	tb := startBridge(t, bridge.Config{AutoCreate: true, RTPHoldTimeout: holdTimeout}, low, low+99)
	events := &eventLog{}
	tb.b.SetEventSink(events)
	_ = tb.b.Draining() // b.mu orders the sink before the SIP handlers' first look
	start := time.Now()
	c := dialRaw(t, tb, sdpBody("127.0.0.1", 4000, "inactive"))
	if n := tb.srv.ports.InUse(); n != 1 {
		t.Fatalf("%d ports in use, want 1", n)
	}
	call := callOf(t, tb, c.rtpPort)
	tb.b.Drain()
	bye := c.waitBye(t, holdTimeout+5*time.Second)
	if d := bye.Sub(start); d < holdTimeout {
		t.Errorf("hung up after %v, before the hold timeout", d)
	}
	if got := leftCause(t, events, call); got != bridge.CauseHoldTimeout {
		t.Errorf("member left with cause %q, want %q", got, bridge.CauseHoldTimeout)
	}
	waitFor(t, "port released", func() bool { return tb.srv.ports.InUse() == 0 })
	waitFor(t, "drained", func() bool { return tb.b.ActiveCalls() == 0 })
}
