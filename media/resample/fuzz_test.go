package resample

import (
	"encoding/binary"
	"testing"
)

// FuzzProcess feeds random frames of random lengths through a random
// conversion, with dst sized right or not: it must never panic, write
// exactly OutLen samples when dst has room and the length is whole, and
// never more than dst holds.
func FuzzProcess(f *testing.F) {
	f.Add(uint8(0), uint16(320), uint16(160), []byte{1, 2, 3, 4})
	f.Add(uint8(5), uint16(160), uint16(960), []byte{0xff, 0x7f, 0x00, 0x80})
	f.Add(uint8(4), uint16(965), uint16(160), []byte{0x00, 0x80})
	f.Add(uint8(3), uint16(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, pick uint8, srcLen, dstLen uint16, data []byte) {
		p := pairs[int(pick)%len(pairs)]
		r, err := New(p[0], p[1])
		if err != nil {
			t.Fatal(err)
		}
		src := make([]int16, int(srcLen)%4000)
		for i := range src {
			if len(data) >= 2 {
				j := (2 * i) % (len(data) - 1)
				src[i] = int16(binary.LittleEndian.Uint16(data[j:]))
			}
		}
		dst := make([]int16, int(dstLen)%25000)
		for range 3 { // state carried over calls
			n := r.Process(dst, src)
			if n < 0 || n > len(dst) {
				t.Fatalf("%d→%d: wrote %d into a dst of %d", p[0], p[1], n, len(dst))
			}
			if whole := len(src) - len(src)%r.InMultiple(); r.OutLen(whole) <= len(dst) && n != r.OutLen(whole) {
				t.Fatalf("%d→%d: %d in, %d out, want %d", p[0], p[1], len(src), n, r.OutLen(whole))
			}
			r.Prime(src)
			Crossfade(dst, dst, dst, p[1])
		}
	})
}
