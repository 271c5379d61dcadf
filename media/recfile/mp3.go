package recfile

import (
	"fmt"
	"io"

	"chorus/media/lame"
)

// mp3Writer encodes with LAME at the recording's rate, constant bitrate.
type mp3Writer struct {
	w    io.Writer
	enc  *lame.Encoder
	rate int
	buf  []byte
}

func newMP3(w io.Writer, rate int) (*mp3Writer, error) {
	enc, err := lame.NewEncoder(rate, lame.BitrateFor(rate))
	if err != nil {
		return nil, fmt.Errorf("recfile: mp3: %w", err)
	}
	return &mp3Writer{w: w, enc: enc, rate: rate}, nil
}

func (m *mp3Writer) Write(pcm []int16) error {
	if m.enc == nil {
		return ErrClosed
	}
	if !frameOK(len(pcm), m.rate) {
		return fmt.Errorf("%w: %d samples at %d Hz", ErrFrame, len(pcm), m.rate)
	}
	if need := lame.MaxOutput(len(pcm)); cap(m.buf) < need {
		m.buf = make([]byte, need)
	}
	n, err := m.enc.Encode(m.buf[:cap(m.buf)], pcm)
	if err != nil {
		return fmt.Errorf("recfile: mp3: %w", err)
	}
	if _, err := m.w.Write(m.buf[:n]); err != nil {
		return fmt.Errorf("recfile: write mp3: %w", err)
	}
	return nil
}

func (m *mp3Writer) Close() error {
	if m.enc == nil {
		return nil
	}
	defer func() {
		_ = m.enc.Close()
		m.enc = nil
	}()
	if need := lame.MaxOutput(0); cap(m.buf) < need {
		m.buf = make([]byte, need)
	}
	n, err := m.enc.Flush(m.buf[:cap(m.buf)])
	if err != nil {
		return fmt.Errorf("recfile: mp3: %w", err)
	}
	if _, err := m.w.Write(m.buf[:n]); err != nil {
		return fmt.Errorf("recfile: write mp3: %w", err)
	}
	return nil
}
