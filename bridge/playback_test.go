package bridge

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/audiofile"
)

// wavFile returns a 16-bit mono WAV file of the sum of tones (Hz → dBFS)
// at rate, seconds long.
func wavFile(rate int, seconds float64, tones map[float64]float64) []byte {
	n := int(seconds * float64(rate))
	pcm := make([]int16, n)
	part := make([]int16, n)
	for f, db := range tones {
		audiotest.Tone(part, f, db, rate, new(float64))
		for i, v := range part {
			pcm[i] += v
		}
	}
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	return b
}

// decodedPlayback decodes a WAV file as the API does and makes a
// playback of it at the rate it decoded to.
func decodedPlayback(t testing.TB, file []byte, loop bool) (*Playback, int) {
	t.Helper()
	a, err := audiofile.Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlaybackAt(a.Samples, a.Rate, loop, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, a.Rate
}

// TestMemWidebandFilePlayback: a 16 kHz WAV of a 6 kHz tone (and a 1 kHz
// one) played into a room with a wideband member (G.722 at 16 kHz, Opus
// at 48) and a G.711 one: the file decodes at 16 kHz, the wideband member
// hears both tones at their level ±1 dB, the G.711 member hears 1 kHz at
// its level and nothing of 6 kHz (below -50 dBFS, and no alias at 2 kHz).
func TestMemWidebandFilePlayback(t *testing.T) {
	file := wavFile(16000, 2, map[float64]float64{6000: -10, 1000: -20})
	for _, codec := range []media.Codec{media.G722, media.Opus} {
		t.Run(codec.String(), func(t *testing.T) {
			rate := codec.AudioRate()
			r := newMemRoom(t, Config{})
			r.setRate(rate)
			wide, _ := r.join(codec, nil)
			r.setRate(0)
			narrow, _ := r.join(media.PCMA, nil)
			p, src := decodedPlayback(t, file, true)
			if src != 16000 {
				t.Fatalf("a 16 kHz WAV decodes at %d Hz", src)
			}
			r.conf.Play(p)
			wide.record, narrow.record = true, true
			r.step(30)
			if r.conf.mix.rate != rate {
				t.Fatalf("the room mixes at %d Hz, want %d", r.conf.mix.rate, rate)
			}
			rec := wide.rec[5*rate/50:]
			for f, want := range map[float64]float64{6000: -10, 1000: -20} {
				if got := audiotest.LevelDBFS(rec, f, rate); math.Abs(got-want) > 1 {
					t.Errorf("the %s member hears %.0f Hz at %.2f dBFS, want %.0f ± 1", codec, f, got, want)
				}
			}
			nb := narrow.rec[5*media.FrameSamples:]
			t.Logf("%s member: 6 kHz %.2f dBFS, 1 kHz %.2f dBFS; G.711 member: 1 kHz %.2f dBFS, 2 kHz %.1f dBFS, besides 1 kHz %.1f dBFS",
				codec, audiotest.LevelDBFS(rec, 6000, rate), audiotest.LevelDBFS(rec, 1000, rate),
				audiotest.LevelDBFS(nb, 1000, media.ClockRate), audiotest.LevelDBFS(nb, 2000, media.ClockRate), residualDBFS(nb, 1000))
			if got := audiotest.LevelDBFS(nb, 1000, media.ClockRate); math.Abs(got+20) > 1 {
				t.Errorf("the G.711 member hears 1 kHz at %.2f dBFS, want -20 ± 1", got)
			}
			if got := audiotest.LevelDBFS(nb, 2000, media.ClockRate); got > -50 {
				t.Errorf("the G.711 member hears an alias at 2 kHz at %.1f dBFS", got)
			}
			// What is left of the file once 1 kHz is taken out: the 6 kHz
			// tone would be all of it.
			if got := residualDBFS(nb, 1000); got > -50 {
				t.Errorf("the G.711 member hears %.1f dBFS besides the 1 kHz tone", got)
			}
		})
	}
}

// residualDBFS is the RMS level of rec (at 8 kHz) less its tone at freq:
// its power minus the tone's, good to about -60 dBFS for a tone at -20.
func residualDBFS(rec []int16, freq float64) float64 {
	total := math.Pow(10, audiotest.RMSDBFS(rec)/10)
	tone := math.Pow(10, audiotest.LevelDBFS(rec, freq, media.ClockRate)/10)
	return 10 * math.Log10(math.Max(total-tone, 1e-12))
}

// TestMemPlaybackRates: files at 8, 16 and 48 kHz played to a member of
// rooms at 8, 16 and 48 kHz (its own audio, which it gets as PCM at the
// room's rate) arrive at their level ±0.5 dB: a narrowband prompt in an
// Opus room as much as a 48 kHz file in a G.711 room. A tone above what
// the room carries is gone.
func TestMemPlaybackRates(t *testing.T) {
	for _, room := range mixRates {
		for _, file := range mixRates {
			t.Run(fmt.Sprintf("file=%d/room=%d", file, room), func(t *testing.T) {
				r := newMemRoom(t, Config{})
				r.setRate(room)
				ep, m := r.join(media.PCMU, nil)
				tones := map[float64]float64{1000: -20}
				if file > 8000 {
					tones[6000] = -20
				}
				p, src := decodedPlayback(t, wavFile(file, 1, tones), true)
				if src != file {
					t.Fatalf("a %d Hz WAV decodes at %d Hz", file, src)
				}
				m.Play(p)
				ep.record = true
				r.step(20)
				rec := ep.rec[5*room/50:]
				if got := audiotest.LevelDBFS(rec, 1000, room); math.Abs(got+20) > 0.5 {
					t.Errorf("1 kHz at %.2f dBFS, want -20 ± 0.5", got)
				}
				if file > 8000 && room > 8000 {
					if got := audiotest.LevelDBFS(rec, 6000, room); math.Abs(got+20) > 0.5 {
						t.Errorf("6 kHz at %.2f dBFS, want -20 ± 0.5", got)
					}
				}
				if file > 8000 && room == 8000 {
					if got := audiotest.LevelDBFS(rec, 2000, room); got > -60 {
						t.Errorf("6 kHz aliased to 2 kHz at %.1f dBFS in an 8 kHz room", got)
					}
					if got := residualDBFS(rec, 1000); got > -50 {
						t.Errorf("%.1f dBFS besides 1 kHz in an 8 kHz room", got)
					}
				}
			})
		}
	}
}

// TestMemPlaybackEnds: a playback in a room faster than 8 kHz lets its
// path's delay out (one frame more than its samples) and then ends as
// done; in an 8 kHz room, where its path has no delay (8 kHz samples as
// they are, faster ones read ahead), it ends with its last frame, as
// before rooms had rates.
func TestMemPlaybackEnds(t *testing.T) {
	for _, c := range []struct{ file, room, frames int }{{8000, 8000, 5}, {16000, 8000, 5}, {48000, 8000, 5}, {8000, 48000, 6}, {48000, 48000, 6}, {16000, 16000, 6}} {
		t.Run(fmt.Sprintf("file=%d/room=%d", c.file, c.room), func(t *testing.T) {
			r := newMemRoom(t, Config{})
			r.setRate(c.room)
			ep, m := r.join(media.PCMU, nil)
			r.step(2)
			done := make(chan string, 1)
			tone := make([]int16, c.file/10) // 100 ms: 5 frames
			audiotest.Tone(tone, 1000, -20, c.file, nil)
			p, err := NewPlaybackAt(tone, c.file, false, func(s string) { done <- s })
			if err != nil {
				t.Fatal(err)
			}
			m.Play(p)
			frames := 0
			for range 10 {
				before := ep.pushes
				r.step(1)
				if ep.pushes > before {
					frames++
				}
			}
			if frames != c.frames {
				t.Errorf("%d frames of its own audio, want %d", frames, c.frames)
			}
			if s := <-done; s != PlaybackDone {
				t.Errorf("ended as %q", s)
			}
		})
	}
}

// TestNewPlaybackAtRates: only the mix rates are accepted.
func TestNewPlaybackAtRates(t *testing.T) {
	for _, rate := range []int{0, 11025, 22050, 44100, -8000} {
		if _, err := NewPlaybackAt(make([]int16, 10), rate, false, nil); err == nil {
			t.Errorf("a playback at %d Hz was accepted", rate)
		}
	}
}

// TestMemPlaybackTickAllocs: ticks of a 48 kHz room playing a 16 kHz file
// to the room and an 8 kHz one to a member (both resampled) allocate
// nothing once the playbacks have started.
func TestMemPlaybackTickAllocs(t *testing.T) {
	r := newMemRoom(t, Config{})
	r.setRate(48000)
	r.join(media.Opus, audiotest.ToneSource(400, -10, 48000))
	_, m := r.join(media.G722, nil)
	r.setRate(0)
	r.join(media.PCMU, nil)
	room, _ := decodedPlayback(t, wavFile(16000, 1, map[float64]float64{6000: -20}), true)
	own, _ := decodedPlayback(t, wavFile(8000, 1, map[float64]float64{1000: -20}), true)
	r.conf.Play(room)
	m.Play(own)
	r.step(5)
	if allocs := testing.AllocsPerRun(50, func() { r.step(1) }); allocs != 0 {
		t.Errorf("a tick allocates %.1f times", allocs)
	}
}

// BenchmarkPlaybackRead is the mixer's cost of a playback's frame: a
// copy at equal rates, else one resampler frame.
func BenchmarkPlaybackRead(b *testing.B) {
	for _, c := range []struct{ file, room int }{{8000, 8000}, {16000, 8000}, {8000, 16000}, {16000, 48000}, {8000, 48000}, {48000, 48000}} {
		b.Run(fmt.Sprintf("file=%d/room=%d", c.file, c.room), func(b *testing.B) {
			pcm := make([]int16, c.file)
			audiotest.Tone(pcm, 1000, -20, c.file, nil)
			p, err := NewPlaybackAt(pcm, c.file, true, nil)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]int16, c.room/50)
			p.read(nil, dst)
			b.ReportAllocs()
			for b.Loop() {
				p.read(nil, dst)
			}
		})
	}
}

// TestPromptsRate: lobby prompts play at their rate (speech at 16 kHz);
// prompts at a rate the mixer does not play are the tone prompts.
func TestPromptsRate(t *testing.T) {
	speech := Prompts{EnterPIN: make([]int16, 3200), WrongPIN: make([]int16, 3200), Goodbye: make([]int16, 3200), Rate: 16000}.valid()
	if pb := speech.playback(speech.EnterPIN, nil); pb.Rate() != 16000 {
		t.Errorf("16 kHz prompts play at %d Hz", pb.Rate())
	}
	old := Prompts{EnterPIN: make([]int16, 1600)}.valid() // Rate unset: 8 kHz
	if pb := old.playback(old.EnterPIN, nil); pb.Rate() != 8000 || len(old.EnterPIN) != 1600 {
		t.Errorf("prompts without a rate play at %d Hz", pb.Rate())
	}
	bad := Prompts{EnterPIN: make([]int16, 2205), Rate: 22050}.valid()
	if want := TonePrompts(); len(bad.EnterPIN) != len(want.EnterPIN) || bad.Rate != want.Rate {
		t.Error("prompts at 22050 Hz were not replaced by the tone prompts")
	}
}
