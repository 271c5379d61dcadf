package recfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"chorus/internal/audiotest"
	"chorus/media/ogg"
)

// TestRepairWAV: a WAV file left with "to the end" sizes gets its real
// ones; a file that is not a canonical WAV, or shorter than a header, is
// a clear error and is left alone.
func TestRepairWAV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.wav")
	data := append(wavHeader(8000, 0xFFFFFFFF-wavHeaderLen), make([]byte, 1600)...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := RepairWAV(path)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("repair: %d, %v", n, err)
	}
	b, _ := os.ReadFile(path)
	if binary.LittleEndian.Uint32(b[40:]) != 1600 || binary.LittleEndian.Uint32(b[4:]) != 1600+36 || binary.LittleEndian.Uint32(b[24:]) != 8000 {
		t.Errorf("header after repair: % x", b[:44])
	}
	for name, body := range map[string][]byte{"short.wav": []byte("RIFF"), "text.wav": make([]byte, 100), "empty.wav": nil} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := RepairWAV(p); err == nil {
			t.Errorf("%s: repaired", name)
		}
		if b, _ := os.ReadFile(p); len(b) != len(body) {
			t.Errorf("%s: changed to %d bytes", name, len(b))
		}
	}
	if _, err := RepairWAV(filepath.Join(dir, "missing.wav")); err == nil {
		t.Error("a missing file repaired")
	}
}

// TestRepairCutShort: an MP3 or Ogg file cut anywhere past its first
// frame or page is cut back to its last whole one, and then decodes with
// ffmpeg without a complaint, to about the length of what is left; a
// whole file is left as it is; an Ogg file left with its headers alone
// decodes to nothing, cleanly; a file cut before its first frame or page
// is an error and left alone.
func TestRepairCutShort(t *testing.T) {
	for _, tc := range []struct {
		format Format
		rate   int
	}{{MP3, 48000}, {MP3, 8000}, {OGG, 48000}, {OGG, 16000}} {
		t.Run(fmt.Sprintf("%s/%d", tc.format, tc.rate), func(t *testing.T) {
			src := writeTones(t, tc.format, tc.rate, 4)
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := Repair(tc.format, src); err != nil || n != int64(len(data)) {
				t.Fatalf("repair of a whole file: %d, %v", n, err)
			}
			if b, _ := os.ReadFile(src); !bytes.Equal(b, data) {
				t.Fatal("a whole file changed")
			}
			for _, cut := range []int{len(data) - 1, len(data) - 77, len(data) * 3 / 4, len(data)/2 + 17, len(data)/4 + 1001, 1500} {
				path := filepath.Join(t.TempDir(), "cut."+tc.format.Ext())
				if err := os.WriteFile(path, data[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				n, err := Repair(tc.format, path)
				if err != nil {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				// The original's first bytes, and for an Ogg file left
				// with its headers alone one last page appended.
				b, _ := os.ReadFile(path)
				prefix := len(b) <= cut && bytes.Equal(b, data[:len(b)])
				if int64(len(b)) != n || !prefix && !(tc.format == OGG && headersAndLast(data, b)) {
					t.Fatalf("cut at %d: repaired to %d bytes, not a prefix of the original", cut, n)
				}
				pcm, err := audiotest.DecodeFile(path, tc.rate)
				if err != nil {
					t.Fatalf("cut at %d of %d, repaired to %d: %v", cut, len(data), n, err)
				}
				// What decodes is what was kept: at most a second (an
				// Ogg page) or a frame less than the cut's share.
				share := float64(cut) / float64(len(data)) * 4
				if got := float64(len(pcm)) / float64(tc.rate); got > share+0.2 || got < share-1.2 {
					t.Errorf("cut at %d (%.2f s of 4): %.2f s decoded", cut, share, got)
				}
			}
			short := filepath.Join(t.TempDir(), "short."+tc.format.Ext())
			if err := os.WriteFile(short, data[:20], 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Repair(tc.format, short); err == nil {
				t.Error("a file cut in its first frame or page repaired")
			}
			if b, _ := os.ReadFile(short); len(b) != 20 {
				t.Errorf("the short file changed to %d bytes", len(b))
			}
		})
	}
}

// headersAndLast says whether b is the two header pages of the Ogg file
// data and one whole page that ends the stream.
func headersAndLast(data, b []byte) bool {
	p1, err1 := ogg.ParsePage(data)
	if err1 != nil {
		return false
	}
	p2, err2 := ogg.ParsePage(data[p1.Len:])
	hdr := p1.Len + p2.Len
	if err2 != nil || len(b) <= hdr || !bytes.Equal(b[:hdr], data[:hdr]) {
		return false
	}
	p, err := ogg.ParsePage(b[hdr:])
	return err == nil && p.Len == len(b)-hdr && p.EOS()
}
