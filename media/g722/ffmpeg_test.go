package g722

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"chorus/internal/audiotest"
)

// need returns the path of an external tool; a missing tool fails the test
// (house rule: never skip), and .ci/run installs them.
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (.ci/run does)", tool, pkg)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, stderr.String())
	}
	return out
}

// ffmpegEncode returns FFmpeg's G.722 encoding of 16 kHz PCM (default
// options: no trellis search, as a telephone encoder).
func ffmpegEncode(t *testing.T, ffmpeg string, pcm []int16) []byte {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.raw")
	if err := os.WriteFile(in, pcmToBytes(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	return run(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "s16le", "-ar", "16000", "-ac", "1", "-i", in, "-c:a", "g722", "-f", "g722", "-")
}

// ffmpegDecode returns FFmpeg's decoding of a raw G.722 bitstream.
func ffmpegDecode(t *testing.T, ffmpeg string, payload []byte) []int16 {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.g722")
	if err := os.WriteFile(in, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	return bytesToPCM(run(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "g722", "-i", in, "-f", "s16le", "-ac", "1", "-ar", "16000", "-"))
}

// freshSpeech makes speech the committed references do not contain: a
// different voice and text through espeak-ng, resampled to 16 kHz by sox,
// cut to whole 20 ms frames.
func freshSpeech(t *testing.T) []int16 {
	t.Helper()
	espeak := need(t, "espeak-ng", "espeak-ng")
	sox := need(t, "sox", "sox")
	dir := t.TempDir()
	wav := filepath.Join(dir, "s.wav")
	run(t, espeak, "-v", "en-us+f3", "-s", "170", "-w", wav,
		"Join the conference, press star six to mute, and say something in high definition.")
	pcm := bytesToPCM(run(t, sox, wav, "-D", "-r", "16000", "-b", "16", "-c", "1", "-e", "signed", "-t", "raw", "-"))
	return pcm[:len(pcm)/FrameSamples*FrameSamples]
}

// multiTone is a sum of tones in both sub-bands and near the crossover.
func multiTone() []int16 {
	pcm := make([]int16, SampleRate)
	part := make([]int16, len(pcm))
	for _, hz := range []float64{313, 1709, 3911, 4111, 6007} {
		audiotest.Tone(part, hz, -20, SampleRate, nil)
		for i := range pcm {
			pcm[i] += part[i]
		}
	}
	return pcm
}

// overload drives every limit of the ADPCM state (quantizer scale, pole
// and zero coefficients, the clamps of the reconstructed signals): white
// noise clipped at full scale, then a full-scale square wave at 8 kHz and
// at 100 Hz, then silence while the state decays.
func overload() []int16 {
	pcm := make([]int16, SampleRate)
	audiotest.Noise(pcm[:SampleRate/4], 3, rand.New(rand.NewPCG(1, 2)))
	for i := SampleRate / 4; i < SampleRate/2; i++ {
		pcm[i] = int16(32767 - 65535*(i&1))
	}
	for i := SampleRate / 2; i < 3*SampleRate/4; i++ {
		if i/80%2 == 0 {
			pcm[i] = 32767
		} else {
			pcm[i] = -32768
		}
	}
	return pcm
}

// TestFFmpegCrossCheck runs FFmpeg's G.722 encoder and decoder beside ours:
// on the committed inputs (so a change in FFmpeg shows against the
// committed bitstreams), on fresh espeak-ng speech and on a multi-tone.
// Bitstreams must agree bit for bit, and decodings sample for sample, both
// of FFmpeg's bitstream and of ours.
func TestFFmpegCrossCheck(t *testing.T) {
	ffmpeg := need(t, "ffmpeg", "ffmpeg")
	inputs := []struct {
		name string
		pcm  []int16
		ref  string // committed FFmpeg bitstream of pcm, if any
	}{
		{"speech", readPCM(t, filepath.Join("testdata", "speech.raw")), "speech.g722"},
		{"sweep", readPCM(t, filepath.Join("testdata", "sweep.raw")), "sweep.g722"},
		{"fresh speech", freshSpeech(t), ""},
		{"multi-tone", multiTone(), ""},
		{"overload", overload(), ""},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			theirs := ffmpegEncode(t, ffmpeg, in.pcm)
			ours := encodeFrames(NewEncoder(), in.pcm)
			if len(theirs) != len(ours) {
				t.Fatalf("FFmpeg encoded %d samples to %d bytes, we to %d", len(in.pcm), len(theirs), len(ours))
			}
			share, first := bitAgreement(ours, theirs)
			t.Logf("encoder: %d bytes, %.3f %% agree with FFmpeg", len(ours), 100*share)
			if first >= 0 {
				t.Errorf("bitstreams differ from byte %d (%d ms)", first, first/8)
			}
			if in.ref != "" {
				ref, err := os.ReadFile(filepath.Join("testdata", in.ref))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(theirs, ref) {
					t.Errorf("this FFmpeg's encoding differs from testdata/%s", in.ref)
				}
			}

			for _, s := range []struct {
				what    string
				payload []byte
			}{{"FFmpeg's bitstream", theirs}, {"our bitstream", ours}} {
				want := ffmpegDecode(t, ffmpeg, s.payload)
				got := decodeFrames(NewDecoder(), s.payload)
				if len(got) != len(want) {
					t.Fatalf("%s: decoded %d samples, FFmpeg %d", s.what, len(got), len(want))
				}
				n, maxAbs := sampleDiff(got, want)
				t.Logf("decoder on %s: %d samples, %d differ from FFmpeg's (max %d LSB)", s.what, len(got), n, maxAbs)
				if n != 0 {
					t.Errorf("decoder on %s: %d of %d samples differ from FFmpeg's, by up to %d", s.what, n, len(got), maxAbs)
				}
			}
		})
	}
}

// TestFFmpegDecodesRandomBytes: every byte is a code word, and a stream no
// encoder would make (random bytes: scale factors and predictors pushed to
// their limits) decodes exactly as FFmpeg decodes it.
func TestFFmpegDecodesRandomBytes(t *testing.T) {
	ffmpeg := need(t, "ffmpeg", "ffmpeg")
	rng := rand.New(rand.NewPCG(3, 4))
	payload := make([]byte, 2*SampleRate) // 4 s
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	// Runs of the extreme code words, which drive the scale factors to
	// their bounds and hold them there.
	for i := SampleRate; i < SampleRate+4000; i++ {
		payload[i] = []byte{0x00, 0xff, 0x84, 0x7b}[i/1000%4]
	}
	want := ffmpegDecode(t, ffmpeg, payload)
	got := decodeFrames(NewDecoder(), payload)
	if len(got) != len(want) {
		t.Fatalf("decoded %d samples, FFmpeg %d", len(got), len(want))
	}
	if n, maxAbs := sampleDiff(got, want); n != 0 {
		t.Fatalf("%d of %d samples differ from FFmpeg's, by up to %d", n, len(got), maxAbs)
	}
}
