package bridge

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtp"

	"chorus/media"
)

// TestDTMFOutOnTheRTPClock: digits sent to a member go out in its ticks'
// slots, in place of its audio: per digit, 7 telephone-event packets (4
// start and update packets, 3 end packets) one tick apart, all with the
// event's start timestamp and the marker on the first only; then the audio
// resumes with a timestamp moved by the ticks the event took, as if it had
// never stopped (RFC 4733 §2.5). The clock is the audio codec's (RFC 4733
// §2.1): 8000 for G.711 and G.722, 48000 for Opus, durations included.
func TestDTMFOutOnTheRTPClock(t *testing.T) {
	for _, codec := range []media.Codec{0, media.G722, media.Opus} {
		t.Run(codec.String(), func(t *testing.T) { testDTMFOut(t, codec) })
	}
}

func testDTMFOut(t *testing.T, codec media.Codec) {
	r := newRoom(t, Config{})
	p := r.join(codec, nil)
	step := uint32(codec.RTPClockRate() / 50)
	audioPT := codec.PayloadType()
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
		start := ts0 + uint32(d)*10*step
		for i := range 7 {
			k := pkts[base+i]
			end := k.Payload[1]&0x80 != 0
			if k.PayloadType != 101 || k.Payload[0] != code || k.Timestamp != start || k.Marker != (i == 0) || end != (i >= 4) {
				t.Errorf("digit %d packet %d: pt %d code %d ts %d (want %d) marker %v end %v", d, i, k.PayloadType,
					k.Payload[0], k.Timestamp, start, k.Marker, end)
			}
		}
		if dur := binary.BigEndian.Uint16(pkts[base+6].Payload[2:4]); uint32(dur) != 5*step {
			t.Errorf("digit %d lasts %d, want %d (100 ms at the codec's clock)", d, dur, 5*step)
		}
		for i := 7; i < 10; i++ {
			k := pkts[base+i]
			if want := start + uint32(i)*step; k.PayloadType != audioPT || k.Timestamp != want {
				t.Errorf("digit %d gap packet %d: pt %d ts %d, want audio at %d", d, i, k.PayloadType, k.Timestamp, want)
			}
		}
	}
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("sequence gap at packet %d", i)
		}
	}
	if k := pkts[len(pkts)-1]; k.PayloadType != audioPT {
		t.Errorf("after the digits: pt %d, want audio", k.PayloadType)
	}
	if p.member.dtmfOut.Load() != nil {
		t.Error("the drained queue is still attached")
	}
}
