package opus

import (
	"testing"
)

// FuzzDecode feeds arbitrary payloads to Decode, DecodeFEC and
// PacketSamples: no panic, no write past the buffer, and a packet libopus
// accepts decodes to exactly the duration its TOC states.
func FuzzDecode(f *testing.F) {
	enc, err := NewEncoder(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	pkt := make([]byte, MaxPacketBytes)
	pcm := voice(FrameSamples * 4)
	for i := range 4 {
		n, err := enc.Encode(pkt, pcm[i*FrameSamples:(i+1)*FrameSamples])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), pkt[:n]...))
	}
	for _, p := range [][]byte{
		{0xf8}, {0x78, 0}, {0x79, 1, 2, 3}, {0x7a, 200, 1}, {0x7b, 0x03, 1, 2, 3},
		{0x7b, 0x43, 255, 255, 1}, {0xfb, 0x86, 1, 1, 1, 1, 1, 1, 1, 1}, {0x1b, 0x02, 7},
	} {
		f.Add(p)
	}
	const guard = 64
	buf := make([]int16, MaxFrameSamples+guard)
	f.Fuzz(func(t *testing.T, p []byte) {
		dec, err := NewDecoder() // fresh, so a failure reproduces from p alone
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf[MaxFrameSamples:] {
			buf[MaxFrameSamples+i] = 0x5a5a
		}
		n, err := dec.Decode(buf[:MaxFrameSamples], p)
		want, perr := PacketSamples(p)
		if err == nil && (perr != nil || n != want) {
			t.Fatalf("%x: decoded %d samples, PacketSamples %d, %v", p, n, want, perr)
		}
		if _, err := dec.DecodeFEC(buf[:FrameSamples], p); err != nil && len(p) > 0 && perr == nil && n > 0 {
			// FEC from a packet Decode accepted must not fail either.
			t.Fatalf("%x: decodes, but DecodeFEC fails: %v", p, err)
		}
		for i, v := range buf[MaxFrameSamples:] {
			if v != 0x5a5a {
				t.Fatalf("%x: wrote sample %d past the buffer", p, MaxFrameSamples+i)
			}
		}
	})
}
