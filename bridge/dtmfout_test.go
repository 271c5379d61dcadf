package bridge

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestDTMFOutOnTheRTPClock: digits sent to a member go out in its ticks'
// slots, in place of its audio: per digit, 7 telephone-event packets (4
// start and update packets, 3 end packets) one tick apart, all with the
// event's start timestamp and the marker on the first only; then the audio
// resumes with a timestamp moved by the ticks the event took, as if it had
// never stopped (RFC 4733 §2.5).
func TestDTMFOutOnTheRTPClock(t *testing.T) {
	r := newRoom(t, Config{})
	p := r.join(0, nil)
	r.step(3)
	p.receive()
	if err := p.call.SendDTMF("1#"); err != nil {
		t.Fatal(err)
	}
	var pkts []rtp.Packet
	for range 2*10 + 2 {
		p.send()
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
		_ = p.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := p.conn.ReadFromUDPAddrPort(p.buf[:])
		if err != nil {
			t.Fatal(err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(append([]byte(nil), p.buf[:n]...)); err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, pkt)
	}
	ts0 := pkts[0].Timestamp
	for d, code := range []byte{1, 11} {
		base := d * 10
		start := ts0 + uint32(d)*10*160
		for i := range 7 {
			k := pkts[base+i]
			end := k.Payload[1]&0x80 != 0
			if k.PayloadType != 101 || k.Payload[0] != code || k.Timestamp != start || k.Marker != (i == 0) || end != (i >= 4) {
				t.Errorf("digit %d packet %d: pt %d code %d ts %d (want %d) marker %v end %v", d, i, k.PayloadType,
					k.Payload[0], k.Timestamp, start, k.Marker, end)
			}
		}
		for i := 7; i < 10; i++ {
			k := pkts[base+i]
			if want := start + uint32(i)*160; k.PayloadType != 0 || k.Timestamp != want {
				t.Errorf("digit %d gap packet %d: pt %d ts %d, want audio at %d", d, i, k.PayloadType, k.Timestamp, want)
			}
		}
	}
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap at packet %d", i)
		}
	}
	if k := pkts[len(pkts)-1]; k.PayloadType != 0 {
		t.Errorf("after the digits: pt %d, want audio", k.PayloadType)
	}
	if p.member.dtmfOut.Load() != nil {
		t.Error("the drained queue is still attached")
	}
}
