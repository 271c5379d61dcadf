package recfile

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzWriters: any format name, rate and stream of PCM writes (whole
// frames or not) gives an error or a file, never a panic.
func FuzzWriters(f *testing.F) {
	f.Add("wav", uint8(0), []byte{1, 2, 3, 4}, uint16(160))
	f.Add("MP3", uint8(2), make([]byte, 3840), uint16(960))
	f.Add("ogg", uint8(1), make([]byte, 1280), uint16(320))
	f.Add("flac", uint8(0), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, name string, rateIdx uint8, data []byte, chunk uint16) {
		format, err := ParseFormat(name)
		if err != nil {
			return
		}
		rate := []int{8000, 16000, 48000, 44100}[rateIdx%4]
		var out bytes.Buffer
		w, err := New(format, &out, rate)
		if err != nil {
			return
		}
		pcm := make([]int16, len(data)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
		}
		n := int(chunk)%2000 + 1
		for len(pcm) > 0 {
			k := min(n, len(pcm))
			_ = w.Write(pcm[:k])
			pcm = pcm[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	})
}
