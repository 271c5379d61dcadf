package recfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// wavWriter writes a RIFF WAVE file of 16-bit PCM, mono (the canonical
// 44-byte header: RIFF, fmt with WAVE_FORMAT_PCM, data).
type wavWriter struct {
	w      io.Writer
	rate   int
	bytes  int64 // PCM bytes written
	buf    []byte
	closed bool
}

// wavHeaderLen is the canonical header's length.
const wavHeaderLen = 44

func newWAV(w io.Writer, rate int) (*wavWriter, error) {
	ww := &wavWriter{w: w, rate: rate}
	// While the file grows, its sizes say "to the end of the file"
	// (0xFFFFFFFF less the header), as streaming writers do.
	if _, err := w.Write(wavHeader(rate, math.MaxUint32-wavHeaderLen)); err != nil {
		return nil, fmt.Errorf("recfile: write wav header: %w", err)
	}
	return ww, nil
}

// wavHeader is the 44-byte header of data bytes of PCM at rate.
func wavHeader(rate int, data uint32) []byte {
	h := make([]byte, wavHeaderLen)
	le := binary.LittleEndian
	copy(h[0:], "RIFF")
	riff := uint64(data) + wavHeaderLen - 8
	le.PutUint32(h[4:], uint32(min(riff, math.MaxUint32)))
	copy(h[8:], "WAVEfmt ")
	le.PutUint32(h[16:], 16)             // fmt chunk size
	le.PutUint16(h[20:], 1)              // WAVE_FORMAT_PCM
	le.PutUint16(h[22:], 1)              // channels
	le.PutUint32(h[24:], uint32(rate))   // sample rate
	le.PutUint32(h[28:], uint32(rate*2)) // byte rate
	le.PutUint16(h[32:], 2)              // block align
	le.PutUint16(h[34:], 16)             // bits per sample
	copy(h[36:], "data")
	le.PutUint32(h[40:], data)
	return h
}

func (ww *wavWriter) Write(pcm []int16) error {
	if ww.closed {
		return ErrClosed
	}
	if !frameOK(len(pcm), ww.rate) {
		return fmt.Errorf("%w: %d samples at %d Hz", ErrFrame, len(pcm), ww.rate)
	}
	if cap(ww.buf) < 2*len(pcm) {
		ww.buf = make([]byte, 2*len(pcm))
	}
	b := ww.buf[:2*len(pcm)]
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	n, err := ww.w.Write(b)
	ww.bytes += int64(n)
	if err != nil {
		return fmt.Errorf("recfile: write wav: %w", err)
	}
	return nil
}

// Close writes the real sizes into the header when the file can seek, so
// that the file ends where its data does (a file longer than 4 GiB keeps
// the "to the end" sizes).
func (ww *wavWriter) Close() error {
	if ww.closed {
		return nil
	}
	ww.closed = true
	s, ok := ww.w.(io.WriteSeeker)
	if !ok || ww.bytes > math.MaxUint32-wavHeaderLen {
		return nil
	}
	if _, err := s.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("recfile: wav: seek to header: %w", err)
	}
	if _, err := s.Write(wavHeader(ww.rate, uint32(ww.bytes))); err != nil {
		return fmt.Errorf("recfile: wav: patch header: %w", err)
	}
	if _, err := s.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("recfile: wav: seek to end: %w", err)
	}
	return nil
}

// RepairWAV writes the real sizes into the header of a WAV file that its
// writer never closed (the process was killed while recording): its
// header still says "to the end of the file", which players treat
// differently (some refuse it, some read past the data). Half a sample at
// the end (a write cut short) is cut off. It returns the file's length
// after the repair. A file of more than 4 GiB keeps the "to the end"
// sizes, as Close leaves it.
func RepairWAV(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("recfile: repair wav: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("recfile: repair wav: %w", err)
	}
	size := st.Size()
	h := make([]byte, wavHeaderLen)
	if _, err := f.ReadAt(h, 0); err != nil {
		return size, fmt.Errorf("recfile: repair wav %s: no header (%d bytes): %w", path, size, err)
	}
	if string(h[0:4]) != "RIFF" || string(h[8:16]) != "WAVEfmt " || string(h[36:40]) != "data" {
		return size, fmt.Errorf("recfile: repair wav %s: not a canonical WAV header", path)
	}
	rate := binary.LittleEndian.Uint32(h[24:])
	data := size - wavHeaderLen
	if data%2 == 1 {
		data--
		if err := f.Truncate(wavHeaderLen + data); err != nil {
			return size, fmt.Errorf("recfile: repair wav %s: %w", path, err)
		}
	}
	if data > math.MaxUint32-wavHeaderLen {
		return wavHeaderLen + data, nil
	}
	if _, err := f.WriteAt(wavHeader(int(rate), uint32(data)), 0); err != nil {
		return size, fmt.Errorf("recfile: repair wav %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return size, fmt.Errorf("recfile: repair wav %s: %w", path, err)
	}
	return wavHeaderLen + data, nil
}
