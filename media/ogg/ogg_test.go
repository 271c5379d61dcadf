package ogg

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// pages splits a stream into its pages' headers and segment tables,
// checking each page's CRC.
func pages(t *testing.T, b []byte) (flags []byte, segs [][]byte, granules []int64) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatalf("no page at % x", b[:min(len(b), 8)])
		}
		n := int(b[26])
		body := 0
		for _, s := range b[27 : 27+n] {
			body += int(s)
		}
		page := append([]byte(nil), b[:27+n+body]...)
		want := binary.LittleEndian.Uint32(page[22:])
		clear(page[22:26])
		if got := crc(page); got != want {
			t.Errorf("page CRC %08x, header says %08x", got, want)
		}
		flags = append(flags, b[5])
		segs = append(segs, append([]byte(nil), b[27:27+n]...))
		granules = append(granules, int64(binary.LittleEndian.Uint64(b[6:])))
		b = b[27+n+body:]
	}
	return flags, segs, granules
}

// TestLacing: a packet of a multiple of 255 bytes ends with a 0 lacing
// value (RFC 3533 §5); a page that would pass 255 segments is cut before
// the packet; the first page is BOS and the last EOS.
func TestLacing(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 7)
	if err := w.WritePacket(make([]byte, 255), 10); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(make([]byte, 3), 20); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 60 { // 60 packets of 5 segments: 51 fit a page
		if err := w.WritePacket(make([]byte, 1100), 30); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	flags, segs, granules := pages(t, buf.Bytes())
	if len(flags) != 3 {
		t.Fatalf("%d pages, want 3", len(flags))
	}
	if !bytes.Equal(segs[0], []byte{255, 0, 3}) || granules[0] != 20 {
		t.Errorf("first page segments %v granule %d", segs[0], granules[0])
	}
	if len(segs[1]) != 255 || len(segs[2]) != 45 {
		t.Errorf("pages of %d and %d segments, want 255 and 45", len(segs[1]), len(segs[2]))
	}
	if flags[0] != flagBOS || flags[1] != 0 || flags[2] != flagEOS {
		t.Errorf("flags %v", flags)
	}
	if err := w.WritePacket(make([]byte, MaxPacket+1), 0); err == nil {
		t.Error("an oversized packet accepted")
	}
}
