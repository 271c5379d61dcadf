package recfile

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"chorus/internal/audiotest"
)

// writeTones writes seconds of two tones (-12 dBFS at 440 Hz, -20 dBFS at
// 1000 Hz) in 20 ms frames to a file of format at rate.
func writeTones(t *testing.T, format Format, rate int, seconds float64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec."+format.Ext())
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := New(format, f, rate)
	if err != nil {
		t.Fatal(err)
	}
	a, b := audiotest.ToneSource(440, -12, rate), audiotest.ToneSource(1000, -20, rate)
	n := rate / 50
	fa, fb, frame := make([]int16, n), make([]int16, n), make([]int16, n)
	for range int(seconds * 50) {
		a(fa)
		b(fb)
		for i := range frame {
			frame[i] = fa[i] + fb[i]
		}
		if err := w.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFormatsDecode: each format at each rate decodes with ffmpeg to the
// length written, holding both tones at their levels (WAV exactly, the
// lossy codecs within 1 dB).
func TestFormatsDecode(t *testing.T) {
	for _, format := range Formats {
		for _, rate := range []int{8000, 16000, 48000} {
			t.Run(fmt.Sprintf("%s/%d", format, rate), func(t *testing.T) {
				path := writeTones(t, format, rate, 2)
				pcm, err := audiotest.DecodeFile(path, rate)
				if err != nil {
					t.Fatal(err)
				}
				want := 2 * rate
				slack := 0
				if format == MP3 {
					slack = 1152 + 576 // LAME's delay and padding: the decoded stream may be up to a frame longer
				}
				if len(pcm) < want-rate/100 || len(pcm) > want+slack+rate/100 {
					t.Errorf("decoded %d samples, want %d", len(pcm), want)
				}
				mid := pcm[len(pcm)/4 : 3*len(pcm)/4]
				tol := 1.0
				if format == WAV {
					tol = 0.05
				}
				for _, tone := range []struct{ f, level float64 }{{440, -12}, {1000, -20}} {
					got := audiotest.LevelDBFS(mid, tone.f, rate)
					if math.Abs(got-tone.level) > tol {
						t.Errorf("%v Hz at %.2f dBFS, want %v ± %v", tone.f, got, tone.level, tol)
					}
				}
			})
		}
	}
}

// TestOggPagesCheck: ffmpeg reads every Ogg page's CRC and finds none
// wrong, and ffprobe sees one Opus stream of the length written.
func TestOggPagesCheck(t *testing.T) {
	path := writeTones(t, OGG, 16000, 3)
	var errOut bytes.Buffer
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "warning", "-err_detect", "crccheck", "-i", path, "-f", "null", "-")
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil || errOut.Len() > 0 {
		t.Fatalf("ffmpeg check: %v: %s", err, errOut.String())
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate:format=duration",
		"-of", "default=nw=1", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"codec_name=opus", "channels=1", "sample_rate=48000", "duration=3.0"} {
		if !strings.Contains(s, want) {
			t.Errorf("ffprobe says %q, want %s", s, want)
		}
	}
}

// TestWAVHeaderPatched: a closed WAV file's sizes match its length; a
// writer that cannot seek leaves the streaming sizes, which ffmpeg reads
// to the end.
func TestWAVHeaderPatched(t *testing.T) {
	path := writeTones(t, WAV, 8000, 1)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != wavHeaderLen+2*8000 || !bytes.Equal(b[:wavHeaderLen], wavHeader(8000, 2*8000)) {
		t.Errorf("file of %d bytes, header % x", len(b), b[:wavHeaderLen])
	}
	var buf bytes.Buffer
	w, err := New(WAV, &buf, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(make([]int16, 8000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(t.TempDir(), "stream.wav")
	if err := os.WriteFile(stream, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pcm, err := audiotest.DecodeFile(stream, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm) != 8000 {
		t.Errorf("streamed WAV decodes to %d samples, want 8000", len(pcm))
	}
}

// TestBadInput: unknown formats and rates and partial frames are errors.
func TestBadInput(t *testing.T) {
	if _, err := ParseFormat("flac"); err == nil {
		t.Error("flac accepted")
	}
	if f, err := ParseFormat(" MP3 "); err != nil || f != MP3 {
		t.Errorf("ParseFormat(MP3) = %q, %v", f, err)
	}
	if _, err := New(WAV, &bytes.Buffer{}, 44100); err == nil {
		t.Error("44.1 kHz accepted")
	}
	for _, f := range Formats {
		w, err := New(f, &bytes.Buffer{}, 16000)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(make([]int16, 100)); err == nil {
			t.Errorf("%s: a partial frame accepted", f)
		}
		_ = w.Close()
		if err := w.Write(make([]int16, 320)); err == nil {
			t.Errorf("%s: a write after Close accepted", f)
		}
	}
}
