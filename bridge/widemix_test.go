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
