package audiotest

import (
	"math"
	"math/rand/v2"
	"testing"
)

const rate = 8000

func tone(n int, f, level float64) []int16 {
	b := make([]int16, n)
	Tone(b, f, level, rate, nil)
	return b
}

func TestLevelDBFSPureTone(t *testing.T) {
	for _, tc := range []struct {
		f, level float64
		n        int
	}{
		{1000, 0, rate},
		{1000, -20, rate},
		{400, -6, rate},
		{697, -30, rate},
		{1633, -10, rate},
		{3000, -40, rate},
		{1000, -20, 160}, // one 20 ms frame
		{700, -12, 800},  // 100 ms
	} {
		got := LevelDBFS(tone(tc.n, tc.f, tc.level), tc.f, rate)
		if math.Abs(got-tc.level) > 0.2 {
			t.Errorf("%v Hz at %v dBFS over %d samples: LevelDBFS = %.3f", tc.f, tc.level, tc.n, got)
		}
	}
}

func TestLevelDBFSRejectsNeighbour(t *testing.T) {
	s := tone(rate, 700, 0)
	if got := LevelDBFS(s, 400, rate); got >= -60 {
		t.Fatalf("700 Hz tone read at 400 Hz: %.1f dBFS, want < -60", got)
	}
	// Two tones together: each reads its own level.
	a := tone(rate, 400, -10)
	b := tone(rate, 700, -20)
	for i := range a {
		a[i] += b[i]
	}
	if got := LevelDBFS(a, 400, rate); math.Abs(got+10) > 0.2 {
		t.Errorf("400 Hz in mix: %.3f, want -10", got)
	}
	if got := LevelDBFS(a, 700, rate); math.Abs(got+20) > 0.2 {
		t.Errorf("700 Hz in mix: %.3f, want -20", got)
	}
}

func TestToneContinuesPhase(t *testing.T) {
	whole := tone(1000, 440, -3)
	parts := make([]int16, 1000)
	var ph float64
	for i := 0; i < 1000; i += 160 {
		end := min(i+160, 1000)
		Tone(parts[i:end], 440, -3, rate, &ph)
	}
	for i := range whole {
		if d := int(whole[i]) - int(parts[i]); d < -1 || d > 1 {
			t.Fatalf("sample %d: whole %d, chunked %d", i, whole[i], parts[i])
		}
	}
	src := ToneSource(440, -3, rate)
	buf := make([]int16, 1000)
	for i := 0; i < 1000; i += 200 {
		src(buf[i : i+200])
	}
	for i := range whole {
		if d := int(whole[i]) - int(buf[i]); d < -1 || d > 1 {
			t.Fatalf("ToneSource sample %d: %d vs %d", i, buf[i], whole[i])
		}
	}
}

func TestRMSDBFS(t *testing.T) {
	if got := RMSDBFS(tone(rate, 1000, 0)); math.Abs(got) > 0.05 {
		t.Errorf("full-scale sine RMS = %.3f, want 0", got)
	}
	if got := RMSDBFS(tone(rate, 1000, -26)); math.Abs(got+26) > 0.05 {
		t.Errorf("-26 dBFS sine RMS = %.3f", got)
	}
	if got := RMSDBFS(make([]int16, 100)); got != Silence {
		t.Errorf("silence = %v, want %v", got, Silence)
	}
	if got := RMSDBFS(nil); got != Silence {
		t.Errorf("empty = %v", got)
	}
	if got := LevelDBFS(make([]int16, 100), 1000, rate); got != Silence {
		t.Errorf("LevelDBFS of silence = %v", got)
	}
}

func TestNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]int16, rate)
	for _, level := range []float64{-10, -30, -50} {
		Noise(b, level, rng)
		if got := RMSDBFS(b); math.Abs(got-level) > 0.2 {
			t.Errorf("noise at %v dBFS reads %.3f", level, got)
		}
		// White noise spreads over ~4000 Hz: a single Goertzel bin sees far less.
		if got := LevelDBFS(b, 1000, rate); got > level-20 {
			t.Errorf("noise at %v dBFS: 1 kHz bin reads %.1f", level, got)
		}
	}
}

func TestMedianLevelIgnoresGaps(t *testing.T) {
	x := make([]int16, 8000)
	Tone(x, 1000, -20, 8000, nil)
	clear(x[1600:3200]) // a 200 ms gap
	if got := MedianLevelDBFS(x, 1000, 8000, 800); math.Abs(got+20) > 0.3 {
		t.Errorf("median level %.2f, want -20", got)
	}
	if got := LevelDBFS(x, 1000, 8000); got > -20.5 {
		t.Errorf("whole-window level %.2f should dip below -20 with the gap", got)
	}
}
