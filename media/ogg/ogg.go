// Package ogg writes an Ogg bitstream (RFC 3533): packets laced into
// pages, each page with its header, segment table and CRC. It writes one
// logical stream, which is what an Ogg Opus file (RFC 7845) is. It reads
// no more than a page's header (ParsePage), to find where a file cut
// short by a crash stops being whole.
package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Header types (RFC 3533 §6, header_type_flag).
const (
	flagContinued = 0x01 // the page starts with the rest of a packet
	flagBOS       = 0x02 // first page of the logical bitstream
	flagEOS       = 0x04 // last page of the logical bitstream
)

// maxSegments is the most lacing values a page holds (RFC 3533 §6:
// number_page_segments is one byte).
const maxSegments = 255

// MaxPacket bounds a packet Writer takes: 255 segments of 255 bytes, so
// that every packet fits one page and no page continues a packet.
const MaxPacket = maxSegments*255 - 1

// ErrPacketTooLarge: a packet longer than MaxPacket.
var ErrPacketTooLarge = errors.New("ogg: packet too large for one page")

// Writer lays packets into pages of one logical bitstream. Each packet is
// whole on one page; a page is written when Flush is called or when the
// next packet does not fit.
type Writer struct {
	w      io.Writer
	serial uint32
	seq    uint32
	// the page being filled
	segs    []byte
	body    []byte
	granule int64
	bos     bool // the next page written is the first
	buf     []byte
}

// NewWriter returns a Writer of the logical bitstream serial to w.
func NewWriter(w io.Writer, serial uint32) *Writer {
	return &Writer{w: w, serial: serial, bos: true, granule: -1}
}

// ContinueWriter returns a Writer that goes on with the logical
// bitstream serial after its page seq-1 ended at granule: what a repair
// appends to a stream cut short.
func ContinueWriter(w io.Writer, serial, seq uint32, granule int64) *Writer {
	return &Writer{w: w, serial: serial, seq: seq, granule: granule}
}

// Page is what a page's header says (RFC 3533 §6).
type Page struct {
	Flags   byte
	Granule int64
	Serial  uint32
	Seq     uint32
	// Len is the page's length, header and body.
	Len int
}

// BOS says whether the page begins the logical bitstream.
func (p Page) BOS() bool { return p.Flags&flagBOS != 0 }

// EOS says whether the page ends the logical bitstream.
func (p Page) EOS() bool { return p.Flags&flagEOS != 0 }

// Errors of ParsePage.
var (
	// ErrShortPage: b ends before the page does (a file cut short).
	ErrShortPage = errors.New("ogg: page cut short")
	// ErrBadPage: no capture pattern, an unknown version, or a CRC that
	// does not match.
	ErrBadPage = errors.New("ogg: not a valid page")
)

// ParsePage reads the page that starts b: its header, and its length
// once its CRC is checked. It does not look into the packets.
func ParsePage(b []byte) (Page, error) {
	if len(b) < 27 {
		if k := min(len(b), 4); string(b[:k]) == "OggS"[:k] {
			return Page{}, ErrShortPage
		}
		return Page{}, ErrBadPage
	}
	if string(b[:4]) != "OggS" || b[4] != 0 {
		return Page{}, ErrBadPage
	}
	n := int(b[26])
	if len(b) < 27+n {
		return Page{}, ErrShortPage
	}
	size := 27 + n
	for _, l := range b[27 : 27+n] {
		size += int(l)
	}
	if len(b) < size {
		return Page{}, ErrShortPage
	}
	want := binary.LittleEndian.Uint32(b[22:])
	c := crcOf(b[:22], 0)
	c = crcOf([]byte{0, 0, 0, 0}, c)
	if crcOf(b[26:size], c) != want {
		return Page{}, ErrBadPage
	}
	return Page{Flags: b[5], Granule: int64(binary.LittleEndian.Uint64(b[6:])), Serial: binary.LittleEndian.Uint32(b[14:]),
		Seq: binary.LittleEndian.Uint32(b[18:]), Len: size}, nil
}

// Segments reports how many lacing values the pending page holds (0: the
// page is empty).
func (w *Writer) Segments() int { return len(w.segs) }

// Pending reports the bytes of packet data waiting for the next page.
func (w *Writer) Pending() int { return len(w.body) }

// WritePacket adds a packet ending at granule (the codec's position
// after it, RFC 3533 §6 granule_position). It writes the pending page
// first if the packet does not fit on it.
func (w *Writer) WritePacket(p []byte, granule int64) error {
	if len(p) > MaxPacket {
		return fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, len(p))
	}
	n := len(p)/255 + 1 // lacing: 255s, then the remainder (0 when n%255 == 0)
	if len(w.segs)+n > maxSegments {
		if err := w.flush(0); err != nil {
			return err
		}
	}
	for k := len(p); ; k -= 255 {
		if k < 255 {
			w.segs = append(w.segs, byte(k))
			break
		}
		w.segs = append(w.segs, 255)
	}
	w.body = append(w.body, p...)
	w.granule = granule
	return nil
}

// Flush writes the pending packets as a page (none pending: nothing).
func (w *Writer) Flush() error { return w.flush(0) }

// Close writes the pending packets as the last page, flagged end of
// stream (RFC 3533 §6). With nothing pending it writes an empty last page
// at the last granule position.
func (w *Writer) Close() error { return w.flush(flagEOS) }

func (w *Writer) flush(flags byte) error {
	if len(w.segs) == 0 && flags&flagEOS == 0 {
		return nil
	}
	if w.bos {
		flags |= flagBOS
		w.bos = false
	}
	hdr := 27 + len(w.segs)
	w.buf = append(w.buf[:0], make([]byte, hdr)...)
	b := w.buf
	copy(b, "OggS")
	b[4] = 0 // stream_structure_version
	b[5] = flags
	g := w.granule
	if len(w.segs) == 0 && g < 0 {
		g = 0
	}
	binary.LittleEndian.PutUint64(b[6:], uint64(g))
	binary.LittleEndian.PutUint32(b[14:], w.serial)
	binary.LittleEndian.PutUint32(b[18:], w.seq)
	// b[22:26], the CRC, is zero while it is computed.
	b[26] = byte(len(w.segs))
	copy(b[27:], w.segs)
	w.buf = append(w.buf, w.body...)
	binary.LittleEndian.PutUint32(w.buf[22:], crc(w.buf))
	w.seq++
	w.segs, w.body = w.segs[:0], w.body[:0]
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("ogg: write page %d: %w", w.seq-1, err)
	}
	return nil
}

// crcTable is the CRC-32 of RFC 3533 §6: generator 0x04c11db7, initial 0,
// no reflection, no final xor (not the zlib CRC-32).
var crcTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

func crc(p []byte) uint32 { return crcOf(p, 0) }

// crcOf goes on with the CRC c over p.
func crcOf(p []byte, c uint32) uint32 {
	for _, b := range p {
		c = c<<8 ^ crcTable[byte(c>>24)^b]
	}
	return c
}
