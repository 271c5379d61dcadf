package audiofile

import (
	"errors"
	"os"
	"testing"
	"time"
)

func FuzzDecode(f *testing.F) {
	// Mostly 8 kHz seeds: they skip the resampler, whose filter set-up would
	// dominate each run and slow the search through the parsers.
	for _, spec := range wavSpecs {
		f.Add(makeWAV(f, spec, 8000, sine(1000, 0.5, 8000, 0.01), sine(500, 0.5, 8000, 0.01)))
	}
	f.Add(makeWAV(f, wavSpecs[1], 11025, sine(1000, 0.5, 11025, 0.01)))
	f.Add(makeWAV(f, wavSpecs[0], 44100, sine(1000, 0.5, 44100, 0.01)))
	for _, name := range []string{"tone1k_44k_id3.mp3", "tone1k_22k_stereo.mp3"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:min(len(data), 1500)])
	}
	f.Add([]byte("ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64"))
	f.Add([]byte("RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\xff\xff\xff\x7f\x01\x02"))
	f.Add([]byte("not audio at all"))

	const limit = 10 * time.Second
	f.Fuzz(func(t *testing.T, data []byte) {
		pcm, err := DecodeLimit(data, limit, 0)
		if err != nil {
			for _, known := range []error{ErrUnsupportedFormat, ErrMalformed, ErrEmpty, ErrTooLong} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("error %v matches no sentinel", err)
		}
		if len(pcm.Samples) == 0 || pcm.Duration() > limit || pcm.Rate != SourceRate(pcm.Rate) {
			t.Fatalf("%d samples at %d Hz with no error (limit %s)", len(pcm.Samples), pcm.Rate, limit)
		}
	})
}
