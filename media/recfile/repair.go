package recfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"chorus/media/ogg"
)

// Repairing a file a crash cut short (a kill -9 while the writer was
// writing, or a disk that took part of a write). A WAV file's header
// lacks its sizes (RepairWAV); an MP3 or Ogg file may end in part of a
// frame or page, which some decoders report as an error (ffmpeg: an MP3
// "invalid new backstep"). Each repair cuts the file at the end of its
// last whole frame or page, so that what is left decodes cleanly up to
// the cut.

// Repair repairs the file at path of format and returns its length
// after the repair.
func Repair(format Format, path string) (int64, error) {
	switch format {
	case WAV:
		return RepairWAV(path)
	case MP3:
		return RepairMP3(path)
	case OGG:
		return RepairOgg(path)
	}
	return 0, fmt.Errorf("%w: %q", ErrFormat, format)
}

// RepairMP3 cuts an MP3 file (MPEG audio Layer III frames, as LAME
// writes them, after an optional ID3v2 tag) at the end of its last whole
// frame. A file that starts with no frame is an error and left alone.
func RepairMP3(path string) (int64, error) {
	return repairFile(path, "mp3", wholeMP3)
}

// RepairOgg cuts an Ogg file at the end of its last whole page (its CRC
// checked). An Ogg Opus file left with its two header pages and no audio
// page (ffmpeg refuses such a file) gets a last page holding one empty
// Opus frame whose granule position ends the stream before any sample
// (RFC 7845 §4.4), so that it decodes to nothing without an error. A
// file whose first page is not whole is an error and left alone.
func RepairOgg(path string) (int64, error) {
	return repairFile(path, "ogg", wholeOgg)
}

// repairFile cuts the file at path to the length whole finds, then lets
// whole's appendix, if any, follow.
func repairFile(path, what string, whole func(r *bufio.Reader) (n int64, tail []byte, err error)) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("recfile: repair %s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("recfile: repair %s: %w", what, err)
	}
	size := st.Size()
	n, tail, err := whole(bufio.NewReaderSize(f, 1<<17))
	if err != nil {
		return size, fmt.Errorf("recfile: repair %s %s: %w", what, path, err)
	}
	if n == size && tail == nil {
		return size, nil
	}
	if err := f.Truncate(n); err != nil {
		return size, fmt.Errorf("recfile: repair %s %s: %w", what, path, err)
	}
	if tail != nil {
		if _, err := f.WriteAt(tail, n); err != nil {
			return n, fmt.Errorf("recfile: repair %s %s: %w", what, path, err)
		}
		n += int64(len(tail))
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("recfile: repair %s %s: %w", what, path, err)
	}
	return n, nil
}

// errNoFrame: the file does not start with what its format starts with.
var errNoFrame = errors.New("no whole first frame or page")

// wholeMP3 returns the length of r's whole frames (an ID3v2 tag first
// counted with them).
func wholeMP3(r *bufio.Reader) (int64, []byte, error) {
	var n int64
	if h, err := r.Peek(10); err == nil && string(h[:3]) == "ID3" {
		// ID3v2: a 10-byte header, its size in four 7-bit bytes.
		size := 10 + (int(h[6]&0x7f)<<21 | int(h[7]&0x7f)<<14 | int(h[8]&0x7f)<<7 | int(h[9]&0x7f))
		if d, _ := r.Discard(size); d < size {
			return 0, nil, errNoFrame
		}
		n = int64(size)
	}
	frames := 0
	for {
		h, err := r.Peek(4)
		if err != nil {
			break
		}
		l := mp3FrameLen(h)
		if l == 0 {
			break
		}
		if d, _ := r.Discard(l); d < l {
			break
		}
		n += int64(l)
		frames++
	}
	if frames == 0 {
		return 0, nil, errNoFrame
	}
	return n, nil, nil
}

// Layer III bitrates (kbit/s) by index, for MPEG-1 and for MPEG-2 and
// 2.5 (ISO/IEC 11172-3 §2.4.2.3, ISO/IEC 13818-3 §2.4.2.3); 0 is free
// format, which LAME does not write.
var (
	mp3Rates1 = [15]int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320}
	mp3Rates2 = [15]int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160}
)

// mp3FrameLen returns the length of the Layer III frame whose 4-byte
// header is h, or 0 if h is not one.
func mp3FrameLen(h []byte) int {
	if len(h) < 4 || h[0] != 0xff || h[1]&0xe0 != 0xe0 {
		return 0
	}
	version := h[1] >> 3 & 3 // 0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1
	if version == 1 || h[1]>>1&3 != 1 {
		return 0 // reserved version, or not Layer III
	}
	bi, si, pad := int(h[2]>>4), int(h[2]>>2&3), int(h[2]>>1&1)
	if bi == 0 || bi == 15 || si == 3 {
		return 0
	}
	rate := [3]int{44100, 48000, 32000}[si]
	switch version {
	case 3:
		return 144*mp3Rates1[bi]*1000/rate + pad
	case 2:
		rate /= 2
	default:
		rate /= 4
	}
	return 72*mp3Rates2[bi]*1000/rate + pad
}

// wholeOgg returns the length of r's whole pages, and the page to
// append to an Ogg Opus stream that has no audio page.
func wholeOgg(r *bufio.Reader) (int64, []byte, error) {
	var (
		n     int64
		pages int
		last  ogg.Page
	)
	for {
		p, err := peekPage(r)
		if err != nil {
			break
		}
		if _, err := r.Discard(p.Len); err != nil {
			return 0, nil, err
		}
		n += int64(p.Len)
		pages++
		last = p
	}
	if pages == 0 {
		return 0, nil, errNoFrame
	}
	if pages != 2 || last.EOS() {
		return n, nil, nil
	}
	// The identification and comment headers alone (RFC 7845 §3): one
	// empty 20 ms CELT frame (TOC 0xf8: config 31, mono, one frame,
	// RFC 6716 §3.1), the stream ending at the pre-skip, zero samples in.
	var tail bytes.Buffer
	w := ogg.ContinueWriter(&tail, last.Serial, last.Seq+1, 0)
	if err := w.WritePacket([]byte{0xf8}, oggPreSkip); err != nil {
		return 0, nil, err
	}
	if err := w.Close(); err != nil {
		return 0, nil, err
	}
	return n, tail.Bytes(), nil
}

// peekPage parses the whole page at r's position without consuming it.
func peekPage(r *bufio.Reader) (ogg.Page, error) {
	h, err := r.Peek(27)
	if err != nil {
		return ogg.Page{}, shortOr(err)
	}
	size := 27 + int(h[26])
	seg, err := r.Peek(size)
	if err != nil {
		return ogg.Page{}, shortOr(err)
	}
	for _, l := range seg[27:] {
		size += int(l)
	}
	b, err := r.Peek(size)
	if err != nil {
		return ogg.Page{}, shortOr(err)
	}
	return ogg.ParsePage(b)
}

// shortOr reads an end of file as a page cut short.
func shortOr(err error) error {
	if errors.Is(err, io.EOF) {
		return ogg.ErrShortPage
	}
	return err
}
