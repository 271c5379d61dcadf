package recfile

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
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

// FuzzRepair: any file given to Repair as an MP3 or an Ogg file is left
// alone with an error, or cut to a prefix of itself (an Ogg file left
// with its headers alone: and one page appended); never a panic.
func FuzzRepair(f *testing.F) {
	f.Add(uint8(0), []byte{0xff, 0xfb, 0x90, 0x64, 0, 0, 0})
	f.Add(uint8(1), []byte("OggS\x00\x02"))
	f.Add(uint8(0), append([]byte("ID3\x04\x00\x00\x00\x00\x00\x02\x00\x00"), 0xff, 0xf3, 0x14, 0xc4))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		format := []Format{MP3, OGG}[which%2]
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := Repair(format, path)
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if int64(len(b)) != n && err == nil {
			t.Fatalf("said %d bytes, the file has %d", n, len(b))
		}
		if err != nil && !bytes.Equal(b, data) {
			t.Fatalf("a failed repair changed the file")
		}
		if err == nil && format == MP3 && !bytes.HasPrefix(data, b) {
			t.Fatalf("an MP3 repair that is not a cut")
		}
	})
}
