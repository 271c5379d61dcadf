package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// checkHandler checks what handle delivers against the datagram it came
// from.
type checkHandler struct {
	t     *testing.T
	data  []byte
	count int
}

func (h *checkHandler) check(payload []byte) {
	if len(payload) > len(h.data)-12 {
		h.t.Fatalf("payload of %d bytes from a %d-byte datagram", len(payload), len(h.data))
	}
	for range payload { // touch it all
	}
	h.count++
}

func (h *checkHandler) Audio(ssrc, ts uint32, c Codec, p []byte) {
	if c != PCMU && c != PCMA {
		h.t.Fatalf("codec %v", c)
	}
	if len(p) == 0 {
		h.t.Fatal("empty audio delivered")
	}
	if binary.BigEndian.Uint32(h.data[8:12]) != ssrc || binary.BigEndian.Uint32(h.data[4:8]) != ts {
		h.t.Fatal("ssrc/timestamp differ from the header")
	}
	h.check(p)
}

func (h *checkHandler) Event(ssrc, ts uint32, p []byte) { h.check(p) }

// FuzzSessionPacket feeds arbitrary datagrams through the path Poll uses
// (handle), from a latched or a stranger's address, at times that do and do
// not allow a takeover.
func FuzzSessionPacket(f *testing.F) {
	valid := rtpPacket(f, 0, 1, 160, 42, make([]byte, 160))
	f.Add(valid, uint8(0), int64(0))
	f.Add(rtpPacket(f, 8, 1, 160, 42, []byte{1, 2, 3}), uint8(1), int64(3e9))
	f.Add(rtpPacket(f, 101, 1, 160, 42, []byte{1, 10, 0, 160}), uint8(0), int64(0))
	f.Add(rtpPacket(f, 96, 1, 160, 42, nil), uint8(0), int64(0))
	f.Add([]byte{}, uint8(0), int64(0))
	f.Add(valid[:11], uint8(0), int64(0))
	f.Add([]byte{0xbf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(0), int64(0))                                                            // all bits, 15 CSRCs
	f.Add([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0}, uint8(0), int64(0))                           // one-byte extension
	f.Add([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x00, 0, 1, 0x01, 0x05, 0, 0}, uint8(0), int64(0))                           // two-byte extension
	f.Add([]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 0, 3}, uint8(0), int64(0))                                                   // padding
	f.Add([]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 0, 255}, uint8(0), int64(0))                                                 // padding too long
	f.Add([]byte{0x81, 200, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(2), int64(0)) // RTCP SR
	s, err := NewSession(listenLoopback(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	s.SetParams(Params{Codec: PCMU, TelephoneEventPT: 101})
	sources := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:4000"),
		netip.MustParseAddrPort("192.0.2.2:4000"),
		netip.MustParseAddrPort("[2001:db8::1]:5004"),
	}
	base := time.Now().UnixNano()
	f.Fuzz(func(t *testing.T, data []byte, src uint8, dt int64) {
		h := &checkHandler{t: t, data: data}
		before := s.Stats()
		s.handle(base+dt, base+dt, sources[int(src)%len(sources)], data, h)
		after := s.Stats()
		counted := (after.Malformed - before.Malformed) + (after.Strangers - before.Strangers) +
			(after.UnknownPT - before.UnknownPT) + (after.PacketsIn - before.PacketsIn)
		if counted > 2 || h.count > 1 {
			t.Fatalf("one datagram counted %d times, delivered %d times", counted, h.count)
		}
		if h.count == 1 && after.PacketsIn != before.PacketsIn+1 {
			t.Fatal("delivered but not counted in PacketsIn")
		}
		if len(data) < 12 && after.Malformed != before.Malformed+1 {
			t.Fatal("a short datagram not counted as malformed")
		}
	})
}

// FuzzJitterPut drives a JitterBuffer with arbitrary packets and reads.
// Each 4-byte record is: flags, timestamp step (signed, in 8-sample units)
// and payload length. The buffer must never panic, never hold more than
// 100 ms plus a frame, and never play past the audio it has.
func FuzzJitterPut(f *testing.F) {
	f.Add([]byte{0, 20, 160, 1, 0, 20, 160, 1})
	f.Add([]byte{0, 10, 80, 1, 0, 10, 80, 0, 0, 10, 80, 1, 0, 30, 240, 1})
	f.Add([]byte{0, 0xec, 160, 1, 2, 100, 160, 1, 0, 0x80, 255, 3})
	f.Add([]byte{4, 20, 160, 1, 0, 0x7f, 200, 1, 0, 0x81, 200, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var jb JitterBuffer
		frame := make([]int16, FrameSamples)
		payload := make([]byte, 256*4)
		for i := range payload {
			payload[i] = byte(i)
		}
		ts := uint32(1000)
		ssrc := uint32(1)
		for len(ops) >= 4 {
			flags, step, n, reads := ops[0], int8(ops[1]), int(ops[2]), int(ops[3]&3)
			ops = ops[4:]
			if flags&1 != 0 {
				ssrc++
			}
			if flags&2 != 0 {
				ts += uint32(step) << 16 // a big jump
			}
			ts += uint32(int32(step) * 8)
			if flags&4 != 0 {
				n *= 4
			}
			codec := PCMU
			if flags&8 != 0 {
				codec = PCMA
			}
			jb.Put(ssrc, ts, codec, payload[:n])
			if d := jb.Delay(); d > maxDelaySamples+FrameSamples || d < 0 {
				t.Fatalf("delay %d after Put", d)
			}
			for range reads {
				live := jb.Read(frame)
				if d := jb.Delay(); d < 0 || d > maxDelaySamples+FrameSamples {
					t.Fatalf("delay %d after Read", d)
				}
				if live != jb.Primed() && live {
					t.Fatal("live read but not primed")
				}
			}
		}
	})
}
