package tts

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chorus/media/audiofile"
)

// requireEspeak fails (never skips) the test when espeak-ng cannot run.
func requireEspeak(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.Available(); err != nil {
		t.Fatalf("espeak-ng is required for these tests: install it (apt-get install espeak-ng): %v", err)
	}
}

// frameDBFS returns the RMS level in dBFS of each 20 ms frame of a.
func frameDBFS(a audiofile.Audio) []float64 {
	var out []float64
	pcm, n := a.Samples, a.Rate/50
	for i := 0; i+n <= len(pcm); i += n {
		var sum float64
		for _, v := range pcm[i : i+n] {
			f := float64(v) / 32768
			sum += f * f
		}
		out = append(out, 10*math.Log10(sum/float64(n)+1e-20))
	}
	return out
}

// medianPitch estimates the median fundamental frequency, in Hz, of the
// loud 40 ms frames of speech by autocorrelation over 60-400 Hz.
func medianPitch(a audiofile.Audio) float64 {
	var f0s []float64
	pcm, n := a.Samples, a.Rate/25
	lo, hi := a.Rate/400, a.Rate/60
	for i := 0; i+n+hi+1 <= len(pcm); i += n {
		x := pcm[i : i+n+hi+1]
		var energy float64
		for _, v := range x[:n] {
			energy += float64(v) * float64(v)
		}
		if 10*math.Log10(energy/float64(n)/(32768*32768)+1e-20) < -35 {
			continue
		}
		bestLag, best := 0, 0.0
		for lag := lo; lag <= hi; lag++ { // 400 Hz down to 60 Hz
			var c float64
			for k := range n {
				c += float64(x[k]) * float64(x[k+lag])
			}
			if c > best {
				bestLag, best = lag, c
			}
		}
		if bestLag > 0 && best > 0.3*energy {
			f0s = append(f0s, float64(a.Rate)/float64(bestLag))
		}
	}
	if len(f0s) == 0 {
		return 0
	}
	slices.Sort(f0s)
	return f0s[len(f0s)/2]
}

// TestSpeakIsWideband: the speech keeps what espeak-ng puts above 4 kHz
// (its fricatives), which wideband listeners hear: the 4.5-7.5 kHz band
// carries a measurable share of the energy, where 8 kHz speech has none.
func TestSpeakIsWideband(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	pcm, err := e.Speak(context.Background(), "Six sharp scissors, sixty-six thistles.", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if pcm.Rate != SpeechRate {
		t.Fatalf("speech at %d Hz, want %d", pcm.Rate, SpeechRate)
	}
	band := func(lo, hi float64) float64 {
		var sum float64
		for f := lo; f <= hi; f += 50 {
			sum += bandPower(pcm, f)
		}
		return sum
	}
	ratio := 10 * math.Log10(band(4500, 7500)/band(200, 3400))
	t.Logf("4.5-7.5 kHz at %.1f dB relative to 0.2-3.4 kHz", ratio)
	if ratio < -40 {
		t.Errorf("4.5-7.5 kHz at %.1f dB relative to 0.2-3.4 kHz: the speech lost its upper band", ratio)
	}
}

// bandPower is the power of a at freq over the whole signal (Goertzel).
func bandPower(a audiofile.Audio, freq float64) float64 {
	w := 2 * math.Pi * freq / float64(a.Rate)
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range a.Samples {
		s1, s2 = float64(v)+c*s1-s2, s1
	}
	return (s1*s1 + s2*s2 - c*s1*s2) / float64(len(a.Samples)*len(a.Samples))
}

const sentence = "Welcome to the conference. Please hold while we connect the other participants."

func TestSpeakProducesSpeech(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	pcm, err := e.Speak(context.Background(), sentence, "female", "en_US", "susan")
	if err != nil {
		t.Fatal(err)
	}
	if pcm.Rate != SpeechRate {
		t.Errorf("speech at %d Hz, want %d", pcm.Rate, SpeechRate)
	}
	secs := pcm.Duration().Seconds()
	if secs < 2 || secs > 12 {
		t.Errorf("%.2f s of audio for %d characters; want 2-12 s", secs, len(sentence))
	}
	frames := frameDBFS(pcm)
	var voiced []float64
	for _, db := range frames {
		if db > -50 {
			voiced = append(voiced, db)
		}
	}
	if len(voiced) < len(frames)/3 {
		t.Fatalf("only %d of %d frames above -50 dBFS", len(voiced), len(frames))
	}
	var sum float64
	for _, db := range voiced {
		sum += math.Pow(10, db/10)
	}
	level := 10 * math.Log10(sum/float64(len(voiced)))
	if level < -40 {
		t.Errorf("voiced parts at %.1f dBFS, want above -40", level)
	}
	t.Logf("%.2f s, %d/%d frames voiced at %.1f dBFS", secs, len(voiced), len(frames), level)
}

func TestSpeakLocales(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	for _, loc := range []string{"en_US", "en_UK", "en_GB", "es", "es_MX", "fr_FR", "de_DE", "it_IT", "pt_BR", "xx_YY"} {
		pcm, err := e.Speak(context.Background(), "Uno dos tres, one two three.", "", loc, "")
		if err != nil || pcm.Duration() < 500*time.Millisecond {
			t.Errorf("%s: %s of audio, %v", loc, pcm.Duration(), err)
		}
	}
}

func TestMaleAndFemaleDiffer(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	female, err := e.Speak(context.Background(), sentence, "female", "en_US", "")
	if err != nil {
		t.Fatal(err)
	}
	male, err := e.Speak(context.Background(), sentence, "male", "en_US", "")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(female.Samples, male.Samples) {
		t.Fatal("male and female voices gave identical audio")
	}
	ff, fm := medianPitch(female), medianPitch(male)
	t.Logf("median pitch: female %.0f Hz, male %.0f Hz", ff, fm)
	if ff < 1.3*fm || fm == 0 {
		t.Errorf("female pitch %.0f Hz not clearly above male %.0f Hz", ff, fm)
	}
	// A male voice name wins over the gender parameter.
	dave, err := e.Speak(context.Background(), sentence, "female", "en_US", "Dave")
	if err != nil {
		t.Fatal(err)
	}
	if fd := medianPitch(dave); ff < 1.3*fd {
		t.Errorf("voice Dave pitch %.0f Hz not clearly below female %.0f Hz", fd, ff)
	}
}

func TestSpeakCache(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	ctx := context.Background()
	start := time.Now()
	first, err := e.Speak(ctx, sentence, "female", "en_US", "kate")
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	start = time.Now()
	second, err := e.Speak(ctx, sentence, "female", "en_US", "KATE")
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	if !slices.Equal(first.Samples, second.Samples) || first.Rate != second.Rate {
		t.Fatal("cached speech differs")
	}
	if warm > cold/5 && warm > 5*time.Millisecond {
		t.Errorf("cache hit took %v, first render %v", warm, cold)
	}
	t.Logf("first render %v, cache hit %v", cold, warm)
	// The caller owns the result: changing it does not change the cache.
	clear(second.Samples)
	third, _ := e.Speak(ctx, sentence, "female", "en_US", "kate")
	if !slices.Equal(first.Samples, third.Samples) {
		t.Fatal("changing a result changed the cache")
	}
}

func TestCacheEviction(t *testing.T) {
	e := &Engine{CacheEntries: 2}
	requireEspeak(t, e)
	ctx := context.Background()
	for _, s := range []string{"one", "two", "three"} {
		if _, err := e.Speak(ctx, s, "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if e.lru.Len() != 2 {
		t.Fatalf("%d entries cached, want 2", e.lru.Len())
	}
	if _, ok := e.cached(VoiceFor("", "", "") + "\x00one"); ok {
		t.Error("least recently used entry not evicted")
	}
	off := &Engine{CacheEntries: -1}
	if _, err := off.Speak(ctx, "one", "", "", ""); err != nil {
		t.Fatal(err)
	}
	if off.lru != nil {
		t.Error("cache used with CacheEntries < 0")
	}
}

func TestSpeakConcurrent(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := e.Speak(context.Background(), "Number "+strconv.Itoa(i%3), "", "", "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestSpeakRejects(t *testing.T) {
	e := New("")
	ctx := context.Background()
	for _, text := range []string{"", "   ", "\n\t", "\x00"} {
		if _, err := e.Speak(ctx, text, "", "", ""); !errors.Is(err, ErrEmptyText) {
			t.Errorf("%q: err = %v, want ErrEmptyText", text, err)
		}
	}
	if _, err := e.Speak(ctx, strings.Repeat("a", MaxSentence+1), "", "", ""); !errors.Is(err, ErrTooLong) {
		t.Errorf("%d characters: err = %v, want ErrTooLong", MaxSentence+1, err)
	}
	// The limit is in characters, not bytes.
	requireEspeak(t, e)
	if _, err := e.Speak(ctx, strings.Repeat("é", MaxSentence), "", "fr_FR", ""); err != nil {
		t.Errorf("%d two-byte characters: %v", MaxSentence, err)
	}
}

func TestSpeakLeadingDash(t *testing.T) {
	e := New("")
	requireEspeak(t, e)
	for _, text := range []string{"-v hello there", "--version", "--help me please"} {
		pcm, err := e.Speak(context.Background(), text, "", "", "")
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if pcm.Duration() < 500*time.Millisecond {
			t.Errorf("%q: %s of audio; the text was not spoken", text, pcm.Duration())
		}
	}
}

func TestSpeakCancelKillsProcess(t *testing.T) {
	// A stand-in binary that records its PID and hangs.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	bin := filepath.Join(dir, "fake-espeak")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\nexec sleep 60\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := New(bin)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.Speak(ctx, "hello", "", "", "")
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(5 * time.Second); pid == 0; {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		} else if time.Now().After(deadline) {
			t.Fatal("fake espeak-ng never started")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Speak did not return after cancel")
	}
	// Speak waited for the child, so it is gone, not even a zombie.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after cancel (kill 0: %v)", pid, err)
	}
}

func TestSpeakTimeout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-espeak")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := &Engine{Binary: bin, Timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := e.Speak(context.Background(), "hello", "", "", "")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func TestSpeakBadBinary(t *testing.T) {
	e := New(filepath.Join(t.TempDir(), "no-such-espeak"))
	if err := e.Available(); err == nil || !strings.Contains(err.Error(), "install espeak-ng") {
		t.Errorf("Available = %v, want an error saying to install espeak-ng", err)
	}
	if _, err := e.Speak(context.Background(), "hello", "", "", ""); err == nil {
		t.Error("Speak with a missing binary succeeded")
	}
	// A program that is not espeak-ng and prints garbage.
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake")
	os.WriteFile(bin, []byte("#!/bin/sh\necho garbage\n"), 0o755)
	e = New(bin)
	if _, err := e.Speak(context.Background(), "hello", "", "", ""); err == nil || !strings.Contains(err.Error(), "decoding") {
		t.Errorf("Speak with garbage output: %v", err)
	}
}

func TestVoiceFor(t *testing.T) {
	for _, tc := range []struct{ gender, locale, voice, want string }{
		{"", "", "", "en-us+f3"},
		{"female", "en_US", "", "en-us+f3"},
		{"male", "en_US", "", "en-us+m3"},
		{"MALE", "en-us", "", "en-us+m3"},
		{"", "en_US", "Susan", "en-us+f3"},
		{"male", "en_US", "kate", "en-us+f2"},
		{"female", "", "dave", "en-us+m3"},
		{"", "", "PAUL", "en-us+m1"},
		{"", "en_UK", "", "en-gb+f3"},
		{"", "en_GB", "bridget", "en-gb+f3"},
		{"", "", "bridget", "en-gb+f3"},
		{"", "es", "", "es+f3"},
		{"", "es_MX", "jorge", "es-419+m3"},
		{"", "", "Jorge", "es-419+m3"},
		{"", "fr_FR", "", "fr-fr+f3"},
		{"male", "fr", "", "fr-fr+m3"},
		{"", "de_DE", "stefan", "de+m3"},
		{"", "it_IT", "paola", "it+f3"},
		{"", "pt_BR", "", "pt-br+f3"},
		{"male", "xx_YY", "", "en-us+m3"},
		{"other", "", "nobody", "en-us+f3"},
		{"", "en_US", "jorge", "en-us+m3"},
	} {
		if got := VoiceFor(tc.gender, tc.locale, tc.voice); got != tc.want {
			t.Errorf("VoiceFor(%q, %q, %q) = %q, want %q", tc.gender, tc.locale, tc.voice, got, tc.want)
		}
	}
}
