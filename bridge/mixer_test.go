package bridge

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
)

const rate = media.ClockRate

// distinctTones are tones whose periods are 17, 11 and 7 samples. G.711
// distorts a mix of two tones into lines at multiples of 8000/lcm(periods)
// Hz (harmonics, their aliases and intermodulation, near −60 dB); with
// prime periods none of those lines falls on the third tone, so a level
// measured at a caller's own frequency shows only what leaks of its own
// voice. (400, 700 and 1100 Hz would not do: 1100 − 400 = 700.)
var distinctTones = []float64{8000.0 / 17, 8000.0 / 11, 8000.0 / 7}

func tone(freq, dBFS float64) func([]int16) { return audiotest.ToneSource(freq, dBFS, rate) }

func level(rec []int16, freq float64) float64 { return audiotest.LevelDBFS(rec, freq, rate) }

// TestMixMinusOne: three callers with their own tones, one on PCMA; each
// hears the other two at their level and not itself.
func TestMixMinusOne(t *testing.T) {
	r := newRoom(t, Config{})
	freqs := distinctTones
	codecs := []media.Codec{media.PCMU, media.PCMA, media.PCMU}
	for i, f := range freqs {
		r.join(codecs[i], tone(f, -12))
	}
	r.step(10) // prime
	m := r.mark()
	r.step(50)
	for i, p := range r.peers {
		rec := p.rec[m[i]:]
		if len(rec) < 40*media.FrameSamples {
			t.Fatalf("caller %d got %d samples", i, len(rec))
		}
		for j, f := range freqs {
			got := level(rec, f)
			if i == j {
				if got > -12-60 {
					t.Errorf("caller %d hears itself at %.1f dBFS", i, got)
				}
				continue
			}
			if math.Abs(got-(-12)) > 1 {
				t.Errorf("caller %d hears %.0f Hz at %.1f dBFS, want -12 ± 1", i, f, got)
			}
		}
	}
}

// TestTalkAndReceiveVolume: a talk step of +1 raises what others hear by
// 3 dB; a receive step raises what the listener hears by 3 dB.
func TestTalkAndReceiveVolume(t *testing.T) {
	r := newRoom(t, Config{})
	a := r.join(media.PCMU, tone(500, -20))
	b := r.join(media.PCMU, nil)
	c := r.join(media.PCMU, nil)
	r.step(10)
	m := r.mark()
	r.step(25)
	base := level(b.rec[m[1]:], 500)

	a.member.SetLevels(1, 0, 0)
	r.step(5)
	m = r.mark()
	r.step(25)
	up := level(b.rec[m[1]:], 500)
	if d := up - base; math.Abs(d-3) > 0.5 {
		t.Errorf("talk +1: listener level changed by %.2f dB, want 3 ± 0.5", d)
	}
	a.member.SetLevels(0, 0, 0)
	c.member.SetLevels(0, 2, 0)
	r.step(5)
	m = r.mark()
	r.step(25)
	rx := level(c.rec[m[2]:], 500)
	other := level(b.rec[m[1]:], 500)
	if d := rx - other; math.Abs(d-6) > 0.5 {
		t.Errorf("receive +2: %.2f dB above a default listener, want 6 ± 0.5", d)
	}
}

// TestNoiseGate: −55 dBFS hiss is gated at the default sensitivity while a
// −20 dBFS tone passes, and the start of a talk spurt is not cut.
func TestNoiseGate(t *testing.T) {
	r := newRoom(t, Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	hiss := r.join(media.PCMU, func(dst []int16) { audiotest.Noise(dst, -55, rng) })
	talker := r.join(media.PCMU, nil)
	listener := r.join(media.PCMU, nil)
	r.step(10)
	m := r.mark()
	r.step(25)
	if got := audiotest.RMSDBFS(listener.rec[m[2]:]); got > -75 {
		t.Errorf("hiss at -55 dBFS reaches the listener at %.1f dBFS RMS", got)
	}
	if hiss.member.Talking() {
		t.Error("hiss member is marked talking")
	}
	// A talk spurt: 300 ms of a -20 dBFS tone after silence.
	src := tone(800, -20)
	n := 0
	talker.source = func(dst []int16) {
		if n < 15 {
			src(dst)
		} else {
			clear(dst)
		}
		n++
	}
	m = r.mark()
	r.step(20)
	rec := listener.rec[m[2]:]
	// Find the first loud sample: the spurt must be there from its first 40 ms.
	first := -1
	for i, s := range rec {
		if s > 1000 || s < -1000 {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatal("talk spurt not heard")
	}
	spurt := rec[first:min(len(rec), first+320)]
	if got := level(spurt, 800); got < -21.5 {
		t.Errorf("first 40 ms of the spurt at %.1f dBFS, want about -20", got)
	}
	if !talker.member.Talking() {
		t.Error("talker not in hangover after its spurt")
	}
}

// TestMuteAndHold: a muted member is not heard; a held member neither hears
// nor is heard.
func TestMuteAndHold(t *testing.T) {
	r := newRoom(t, Config{})
	a := r.join(media.PCMU, tone(600, -15))
	b := r.join(media.PCMU, tone(900, -15))
	r.step(10)
	a.member.SetMute(true)
	r.step(25) // let the hangover pass
	m := r.mark()
	r.step(25)
	if got := level(b.rec[m[1]:], 600); got > -70 {
		t.Errorf("muted member heard at %.1f dBFS", got)
	}
	if got := level(a.rec[m[0]:], 900); math.Abs(got+15) > 1 {
		t.Errorf("muted member hears others at %.1f dBFS, want -15", got)
	}
	a.member.SetMute(false)
	b.member.SetHold(true)
	r.step(5)
	m = r.mark()
	r.step(25)
	if got := level(a.rec[m[0]:], 900); got > -70 {
		t.Errorf("held member heard at %.1f dBFS", got)
	}
	if got := audiotest.RMSDBFS(b.rec[m[1]:]); got > -70 {
		t.Errorf("held member hears %.1f dBFS", got)
	}
}

// TestLimiter: several loud talkers never wrap around and stay below full
// scale.
func TestLimiter(t *testing.T) {
	r := newRoom(t, Config{})
	for _, f := range []float64{300, 500, 700, 900} {
		r.join(media.PCMU, tone(f, -1))
	}
	listener := r.join(media.PCMU, nil)
	r.step(10)
	m := r.mark()
	r.step(25)
	rec := listener.rec[m[4]:]
	for _, f := range []float64{300, 500, 700, 900} {
		if got := level(rec, f); got < -14 {
			t.Errorf("%.0f Hz at %.1f dBFS in a loud mix, want it present", f, got)
		}
	}
	// Wraparound would put full-scale steps between neighbours.
	for i := 1; i < len(rec); i++ {
		if d := int(rec[i]) - int(rec[i-1]); d > 40000 || d < -40000 {
			t.Fatalf("sample jump of %d at %d: wraparound", d, i)
		}
	}
}

// TestLoudestN: with LoudestN 2, only the two loudest of three talkers are
// mixed.
func TestLoudestN(t *testing.T) {
	r := newRoom(t, Config{LoudestN: 2})
	r.join(media.PCMU, tone(distinctTones[0], -10))
	r.join(media.PCMU, tone(distinctTones[1], -14))
	r.join(media.PCMU, tone(distinctTones[2], -30))
	listener := r.join(media.PCMU, nil)
	r.step(20)
	m := r.mark()
	r.step(25)
	rec := listener.rec[m[3]:]
	if got := level(rec, distinctTones[2]); got > -70 {
		t.Errorf("third talker mixed at %.1f dBFS", got)
	}
	if got := level(rec, distinctTones[0]); math.Abs(got+10) > 1 {
		t.Errorf("loudest at %.1f dBFS", got)
	}
}

// TestSharedEncode: silent listeners with the same codec and level share
// one encode per tick.
func TestSharedEncode(t *testing.T) {
	r := newRoom(t, Config{})
	r.join(media.PCMU, tone(400, -10))
	for range 6 {
		r.join(media.PCMU, nil)
	}
	r.step(10)
	before := r.b.stats.Encodes.Load()
	r.step(10)
	if got := r.b.stats.Encodes.Load() - before; got != 20 { // talker's own + one shared, per tick
		t.Errorf("%d encodes in 10 ticks, want 20", got)
	}
}

// TestTickAllocs: a tick allocates nothing in steady state.
func TestTickAllocs(t *testing.T) {
	r := newRoom(t, Config{})
	r.join(media.PCMU, tone(400, -10))
	r.join(media.PCMA, tone(700, -10))
	r.join(media.PCMU, nil)
	r.step(20)
	allocs := testing.AllocsPerRun(50, func() {
		for _, p := range r.peers {
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
		for _, p := range r.peers {
			p.receive()
		}
	})
	// The peers' receive appends to their recordings; measure the mixer alone.
	for _, p := range r.peers {
		p.rec = p.rec[:0]
	}
	allocs = testing.AllocsPerRun(50, func() {
		for _, p := range r.peers {
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
	})
	if allocs != 0 {
		t.Errorf("mixOnce allocates %.1f times per tick", allocs)
	}
}

// TestLastMemberCompletes: the last member leaving completes the conference.
func TestLastMemberCompletes(t *testing.T) {
	r := newRoom(t, Config{})
	a := r.join(media.PCMU, nil)
	b := r.join(media.PCMU, nil)
	if got := r.conf.State(); got != StateActive {
		t.Fatalf("state %s, want active", got)
	}
	a.call.Ended("bye")
	if got := r.conf.State(); got != StateActive {
		t.Fatalf("state %s after one left, want active", got)
	}
	if err := r.conf.RemoveMember(b.member); err != nil {
		t.Fatal(err)
	}
	if got := r.conf.State(); got != StateCompleted {
		t.Fatalf("state %s, want completed", got)
	}
	if _, err := r.b.Route(r.conf.ID(), ""); err == nil {
		t.Error("a completed conference still routes")
	}
}

// TestRTPTimeout: a member whose RTP stops for longer than the timeout is
// removed and hung up; one still sending stays.
func TestRTPTimeout(t *testing.T) {
	r := newRoom(t, Config{RTPTimeout: time.Second})
	quiet := r.join(media.PCMU, nil)
	talker := r.join(media.PCMU, tone(500, -20))
	r.step(10)
	// quiet stops sending; talker goes on for 2 s of ticks (timeouts are
	// checked once a second).
	for range 100 {
		talker.send()
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
	}
	deadline := time.Now().Add(2 * time.Second)
	for quiet.leg.hungUp.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if quiet.leg.hungUp.Load() != 1 {
		t.Fatal("silent member not hung up after the RTP timeout")
	}
	if quiet.member.Active() {
		t.Error("silent member still active")
	}
	if talker.leg.hungUp.Load() != 0 || !talker.member.Active() {
		t.Error("talking member hung up")
	}
}
