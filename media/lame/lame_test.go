package lame

import (
	"errors"
	"testing"

	"chorus/internal/audiotest"
)

// TestEncode: a second of tone at each rate becomes MP3 frames (each
// starting with the frame sync, 11 set bits), and a rate LAME cannot
// write without resampling is refused.
func TestEncode(t *testing.T) {
	for _, rate := range []int{8000, 16000, 48000} {
		e, err := NewEncoder(rate, BitrateFor(rate))
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, rate/50)
		src := audiotest.ToneSource(440, -12, rate)
		var out []byte
		buf := make([]byte, MaxOutput(len(pcm)))
		for range 50 {
			src(pcm)
			n, err := e.Encode(buf, pcm)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, buf[:n]...)
		}
		n, err := e.Flush(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
		_ = e.Close()
		_ = e.Close()
		if len(out) < 2 || out[0] != 0xFF || out[1]&0xE0 != 0xE0 {
			t.Errorf("%d Hz: %d bytes not starting with a frame sync", rate, len(out))
		}
		// A constant bitrate: the stream is about a second at that rate.
		if want := BitrateFor(rate) * 1000 / 8; len(out) < want*8/10 || len(out) > want*13/10 {
			t.Errorf("%d Hz: %d bytes for a second at %d kbit/s", rate, len(out), BitrateFor(rate))
		}
		if _, err := e.Encode(buf, pcm); !errors.Is(err, ErrClosed) {
			t.Errorf("encode after close: %v", err)
		}
	}
	if _, err := NewEncoder(44000, 64); !errors.Is(err, ErrRate) {
		t.Errorf("44 kHz: %v", err)
	}
}
