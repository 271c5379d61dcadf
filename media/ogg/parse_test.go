package ogg

import (
	"bytes"
	"errors"
	"testing"
)

// TestParsePage: every page a Writer writes parses back with its flags,
// granule, serial, sequence and length; a page cut anywhere is
// ErrShortPage, and a flipped byte or a stranger's bytes ErrBadPage.
func TestParsePage(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0x1234)
	for i := range 3 {
		if err := w.WritePacket(bytes.Repeat([]byte{byte(i)}, 300+i), int64(960*(i+1))); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	var got []Page
	for off := 0; off < len(b); {
		p, err := ParsePage(b[off:])
		if err != nil {
			t.Fatalf("page at %d: %v", off, err)
		}
		got = append(got, p)
		first := b[off : off+p.Len]
		for cut := range len(first) {
			if _, err := ParsePage(first[:cut]); !errors.Is(err, ErrShortPage) {
				t.Fatalf("page at %d cut to %d: %v", off, cut, err)
			}
		}
		off += p.Len
	}
	if len(got) != 4 || !got[0].BOS() || got[1].BOS() || !got[3].EOS() || got[2].EOS() {
		t.Fatalf("pages %+v", got)
	}
	for i, p := range got {
		if p.Serial != 0x1234 || p.Seq != uint32(i) || (i < 3 && p.Granule != int64(960*(i+1))) {
			t.Errorf("page %d: %+v", i, p)
		}
	}
	bad := bytes.Clone(b[:got[0].Len])
	bad[30] ^= 1
	if _, err := ParsePage(bad); !errors.Is(err, ErrBadPage) {
		t.Errorf("a flipped body byte: %v", err)
	}
	for _, junk := range [][]byte{[]byte("RIFF...."), []byte("OggX" + string(make([]byte, 40)))} {
		if _, err := ParsePage(junk); !errors.Is(err, ErrBadPage) {
			t.Errorf("%q: %v", junk, err)
		}
	}

	// ContinueWriter goes on with the stream where it stopped.
	var more bytes.Buffer
	cw := ContinueWriter(&more, 0x1234, 4, 3840)
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := ParsePage(more.Bytes())
	if err != nil || p.Seq != 4 || p.BOS() || !p.EOS() || p.Granule != 3840 || p.Serial != 0x1234 {
		t.Errorf("continued page %+v, %v", p, err)
	}
}

// FuzzParsePage: any bytes give a page no longer than them, or an error;
// never a panic.
func FuzzParsePage(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 7)
	_ = w.WritePacket([]byte("OpusHead\x01\x01"), 0)
	_ = w.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("OggS"))
	f.Add(append([]byte("OggS\x00\x02"), make([]byte, 21)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePage(b)
		if err == nil && (p.Len > len(b) || p.Len < 27) {
			t.Fatalf("page of %d bytes from %d", p.Len, len(b))
		}
	})
}
