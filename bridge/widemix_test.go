package bridge

import (
	"math"
	"testing"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/opus"
)

// TestMemSharedEncodeWide: 100 G.722 or Opus listeners and 3 talkers cost
// 4 encodes a tick, as with G.711, every listener is sent the one shared
// payload, and what they decode carries each talker at its level.
func TestMemSharedEncodeWide(t *testing.T) {
	for _, codec := range []media.Codec{media.G722, media.Opus} {
		t.Run(codec.String(), func(t *testing.T) {
			rate := codec.AudioRate()
			r := newMemRoom(t, Config{MaxMembers: 200})
			r.setRate(rate)
			for _, f := range distinctTones {
				r.join(codec, audiotest.ToneSource(f, -15, rate))
			}
			var ls []*memEndpoint
			for range 100 {
				l, _ := r.join(codec, nil)
				ls = append(ls, l)
			}
			ls[0].record = true
			r.step(5)
			before := r.b.stats.Encodes.Load()
			r.step(20)
			if got := r.b.stats.Encodes.Load() - before; got != 80 {
				t.Errorf("%d encodes in 20 ticks, want 80 (3 talkers + 1 shared a tick)", got)
			}
			for _, l := range ls {
				if l.shared != ls[0].shared || l.pushes != 0 {
					t.Fatal("the listeners do not share one payload")
				}
			}
			rec := ls[0].rec[10*rate/50:]
			for _, f := range distinctTones {
				if got := audiotest.LevelDBFS(rec, f, rate); math.Abs(got+15) > 1 {
					t.Errorf("a listener hears %.0f Hz at %.2f dBFS, want -15 ± 1", f, got)
				}
			}
		})
	}
}

// TestMemOpusSharingKey: Opus listeners share an encode only with those
// whose fmtp asks for the same encoder (media.OpusConfig): a
// maxplaybackrate of 12000 is rounded up to 16000 and shares with 16000;
// useinbandfec makes a group of its own. Three groups and three talkers
// are 6 encodes a tick.
func TestMemOpusSharingKey(t *testing.T) {
	r := newMemRoom(t, Config{MaxMembers: 200})
	r.setRate(48000)
	for _, f := range distinctTones {
		r.join(media.Opus, audiotest.ToneSource(f, -15, 48000))
	}
	groups := map[string][]opus.Fmtp{
		"default": {{}, {}, {}},
		"16k":     {{MaxPlaybackRate: 16000}, {MaxPlaybackRate: 12000}, {MaxPlaybackRate: 16000}},
		"fec":     {{UseInbandFEC: true}, {UseInbandFEC: true}},
	}
	eps := map[string][]*memEndpoint{}
	for g, fs := range groups {
		for _, f := range fs {
			ep, _ := r.join(media.Opus, nil)
			ep.fmtp = f
			eps[g] = append(eps[g], ep)
		}
	}
	r.step(5)
	before := r.b.stats.Encodes.Load()
	r.step(10)
	if got := r.b.stats.Encodes.Load() - before; got != 60 {
		t.Errorf("%d encodes in 10 ticks, want 60 (3 talkers + 3 shared a tick)", got)
	}
	seen := map[*byte]string{}
	for g, es := range eps {
		for _, e := range es {
			if e.shared != es[0].shared {
				t.Errorf("group %s: its listeners do not share a payload", g)
			}
		}
		if other, ok := seen[es[0].shared]; ok {
			t.Errorf("groups %s and %s share a payload", g, other)
		}
		seen[es[0].shared] = g
	}
}

// TestMemWideHeldSilence: held G.722 and Opus members get a valid frame
// of silence in their codec.
func TestMemWideHeldSilence(t *testing.T) {
	for _, codec := range []media.Codec{media.G722, media.Opus} {
		t.Run(codec.String(), func(t *testing.T) {
			r := newMemRoom(t, Config{})
			r.setRate(codec.AudioRate())
			r.join(codec, audiotest.ToneSource(500, -15, codec.AudioRate()))
			h, hm := r.join(codec, nil)
			hm.SetHold(true)
			h.record = true
			r.step(20)
			if h.sharedN != 20 || h.heardN == 0 {
				t.Fatalf("a held member got %d frames (%d samples the last)", h.sharedN, h.heardN)
			}
			if got := audiotest.RMSDBFS(h.rec); got > -60 {
				t.Errorf("a held member hears %.1f dBFS", got)
			}
		})
	}
}

// TestMemWideTickAllocs: a tick of a room of G.722, Opus and G.711
// members, talkers and listeners, allocates nothing once its shared
// outputs exist.
func TestMemWideTickAllocs(t *testing.T) {
	r := newMemRoom(t, Config{})
	r.setRate(48000)
	r.join(media.Opus, audiotest.ToneSource(400, -10, 48000))
	r.join(media.G722, audiotest.ToneSource(700, -10, 48000))
	r.join(media.PCMU, audiotest.ToneSource(900, -10, 48000))
	for _, c := range []media.Codec{media.Opus, media.G722, media.PCMA} {
		r.join(c, nil)
	}
	r.step(20)
	if allocs := testing.AllocsPerRun(50, func() { r.step(1) }); allocs != 0 {
		t.Errorf("a tick allocates %.1f times", allocs)
	}
}

// TestMemRateSwitchNoClick: a room goes 8 → 16 → 48 → 16 → 8 → 48 → 8 kHz
// as wideband members come and go, while a G.711 member sends a
// continuous tone, or the room plays one (from 8, 16 or 48 kHz samples).
// A G.711 listener who stays
// throughout, and a G.722 listener who stays from 16 kHz through 48 and
// back, hear it without a click: no sample step beyond the tone's own
// steepest by more than the codec's noise, and every 20 ms at its level
// ±1 dB. (Switching cold, the G.711 listener gets steps of the tone's
// whole amplitude.)
func TestMemRateSwitchNoClick(t *testing.T) {
	for _, source := range []string{"talker", "playback", "playback16", "playback48"} {
		t.Run(source, func(t *testing.T) { testRateSwitchNoClick(t, source) })
	}
}

func testRateSwitchNoClick(t *testing.T, source string) {
	const f, level = 500.0, -20.0
	amp := math.Pow(10, level/20) * 32767
	r := newMemRoom(t, Config{})
	if source == "talker" {
		talker, _ := r.join(media.PCMU, nil)
		talker.clock = &toneClock{freq: f, amp: amp}
	} else {
		// A file at 8, 16 or 48 kHz, played through its own resampler
		// to each rate the room goes through (Playback.read).
		src := map[string]int{"playback": 8000, "playback16": 16000, "playback48": 48000}[source]
		loop := make([]int16, src) // 500 whole periods
		audiotest.Tone(loop, f, level, src, new(float64))
		p, err := NewPlaybackAt(loop, src, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.conf.Play(p)
	}
	l8, _ := r.join(media.PCMA, nil)
	l8.record = true
	r.step(20)
	join := func(codec media.Codec) (*memEndpoint, *Member) {
		ep, m := r.join(codec, nil)
		ep.maxRate = codec.AudioRate()
		return ep, m
	}
	leave := func(m *Member) { r.conf.removeMember(m, false, "test") }
	l16, m16 := join(media.G722)
	r.step(20)
	if r.conf.mix.rate != 16000 {
		t.Fatalf("the room mixes at %d Hz, want 16000", r.conf.mix.rate)
	}
	l16.record = true
	_, m48 := join(media.Opus)
	r.step(20)
	if r.conf.mix.rate != 48000 {
		t.Fatalf("the room mixes at %d Hz, want 48000", r.conf.mix.rate)
	}
	leave(m48)
	r.step(20)
	l16.record = false
	leave(m16)
	r.step(20)
	_, m48 = join(media.Opus)
	r.step(20)
	leave(m48)
	r.step(20)
	if r.conf.mix.rate != 8000 {
		t.Fatalf("the room mixes at %d Hz, want 8000", r.conf.mix.rate)
	}
	check := func(name string, rec []int16, rate int, noise float64) {
		t.Helper()
		rec = rec[5*rate/50:]
		steep := amp * 2 * math.Sin(math.Pi*f/float64(rate))
		for i := 1; i < len(rec); i++ {
			if d := math.Abs(float64(rec[i]) - float64(rec[i-1])); d > steep*(1+noise) {
				t.Fatalf("%s: a click at sample %d: a step of %.0f, the tone's steepest is %.0f", name, i, d, steep)
			}
		}
		n := rate / 50
		for k := 0; k+n <= len(rec); k += n {
			if l := audiotest.LevelDBFS(rec[k:k+n], f, rate); math.Abs(l-level) > 1 {
				t.Fatalf("%s: at %d ms the tone is at %.1f dBFS, want %.0f ± 1", name, k*1000/rate, l, level)
			}
		}
	}
	check("the G.711 listener", l8.rec, 8000, 0.15)
	check("the G.722 listener", l16.rec, 16000, 0.2)
}

// TestWidebandRoom: an Opus, a G.722 and a PCMU caller (real RTP over
// loopback, each phone coding with its codec's own package) in one room:
// the room mixes at 48 kHz, each hears the other two at the sent level
// ±1.5 dB and itself below -60 dBFS; a 6 kHz tone from the Opus caller
// reaches the G.722 caller at its level ±2 dB and not the PCMU caller
// (below -50 dBFS, and no alias at 2 kHz).
func TestWidebandRoom(t *testing.T) {
	r := newRoom(t, Config{})
	tones := map[media.Codec]float64{media.Opus: 1000, media.G722: 700, media.PCMU: 400}
	codecs := []media.Codec{media.Opus, media.G722, media.PCMU}
	var peers []*peer
	for _, c := range codecs {
		src := audiotest.ToneSource(tones[c], -20, c.AudioRate())
		if c == media.Opus {
			lo, hi := src, audiotest.ToneSource(6000, -20, 48000)
			buf := make([]int16, 960)
			src = func(dst []int16) {
				lo(dst)
				hi(buf)
				for i := range dst {
					dst[i] += buf[i]
				}
			}
		}
		peers = append(peers, r.join(c, src))
	}
	r.step(25)
	if got := r.conf.mix.rate; got != 48000 {
		t.Fatalf("the room mixes at %d Hz, want 48000", got)
	}
	at := r.mark()
	r.step(50)
	for i, p := range peers {
		rate := p.codec.AudioRate()
		rec := p.rec[at[i]:]
		for _, c := range codecs {
			got := audiotest.LevelDBFS(rec, tones[c], rate)
			if c == p.codec {
				if got > -60 {
					t.Errorf("the %s caller hears itself at %.1f dBFS", p.codec, got)
				}
				continue
			}
			if math.Abs(got+20) > 1.5 {
				t.Errorf("the %s caller hears the %s caller at %.1f dBFS, want -20 ± 1.5", p.codec, c, got)
			}
		}
	}
	if got := audiotest.LevelDBFS(peers[1].rec[at[1]:], 6000, 16000); math.Abs(got+20) > 2 {
		t.Errorf("the G.722 caller hears 6 kHz at %.1f dBFS, want -20 ± 2", got)
	}
	narrow := peers[2].rec[at[2]:]
	if got := audiotest.LevelDBFS(narrow, 6000-8000+4000, 8000); got > -50 {
		t.Errorf("the PCMU caller hears an alias of 6 kHz at 2 kHz at %.1f dBFS", got)
	}
	for i, p := range peers {
		if js := p.member.epv.JitterStats(); js.Packets == 0 {
			t.Errorf("peer %d (%s): its endpoint played no packet", i, p.codec)
		}
	}
}

// TestMemRateChangeUndone: a rate change that is undone before any tick
// mixed at the new rate (a re-INVITE raises a member's rate at one tick's
// end, and the member leaves before the next) leaves the room mixing as
// before, with nothing to hand over.
func TestMemRateChangeUndone(t *testing.T) {
	r := newMemRoom(t, Config{})
	r.join(media.PCMU, tone(400, -20))
	l, _ := r.join(media.PCMU, nil)
	e, m := r.join(media.PCMU, nil)
	for r.conf.mix.tick%timeoutCheckTicks != timeoutCheckTicks-1 {
		r.step(1)
	}
	e.maxRate = 16000 // what a re-INVITE to G.722 does
	r.step(1)
	if !r.conf.mix.switching || r.conf.mix.rate != 16000 {
		t.Fatalf("the rate check did not start a change to 16 kHz (rate %d)", r.conf.mix.rate)
	}
	r.conf.removeMember(m, false, "test")
	l.record = true
	r.step(10)
	if r.conf.mix.rate != 8000 || r.conf.mix.switching {
		t.Fatalf("the room mixes at %d Hz (switching %v), want 8000", r.conf.mix.rate, r.conf.mix.switching)
	}
	if got := audiotest.LevelDBFS(l.rec, 400, 8000); math.Abs(got+20) > 1 {
		t.Errorf("the listener hears %.1f dBFS, want -20", got)
	}
}
