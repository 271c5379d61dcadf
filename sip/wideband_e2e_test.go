package sip

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

// rateLevel is what a phone heard at f most of the time, at the phone's
// own audio rate: the median over 100 ms blocks.
func rateLevel(p *testphone.Phone, rec []int16, f float64) float64 {
	r := p.AudioRate()
	return audiotest.MedianLevelDBFS(rec, f, r, r/10)
}

// medianRMS is the median RMS level of rec's blocks, in dBFS: what is
// there most of the time, not a transient of a loaded machine.
func medianRMS(rec []int16, block int) float64 {
	var levels []float64
	for i := 0; i+block <= len(rec); i += block {
		levels = append(levels, audiotest.RMSDBFS(rec[i:i+block]))
	}
	if len(levels) == 0 {
		return 0
	}
	slices.Sort(levels)
	return levels[len(levels)/2]
}

// TestWidebandThreeCallers is issue 12's end-to-end check: an Opus caller,
// a G.722 caller and a PCMU caller in one room each hear the other two at
// the sent level ± 1.5 dB and themselves below −60 dBFS; then a 6 kHz
// tone from the Opus caller reaches the G.722 caller at its level ± 2 dB
// and the PCMU caller not at all (below −50 dBFS, and no alias at 2 kHz).
func TestWidebandThreeCallers(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24400, 24499)
	const sent = -20.0
	callers := []struct {
		codec string
		rate  int
	}{{"OPUS", 48000}, {"G722", 16000}, {"PCMU", 8000}}
	var phones []*testphone.Phone
	for i, c := range callers {
		p := tb.dial(t, testphone.Options{User: "3000", Codecs: []string{c.codec},
			Source: audiotest.ToneSource(distinctTones[i], sent, c.rate)})
		if p.Codec() != c.codec || p.AudioRate() != c.rate {
			t.Fatalf("caller %d negotiated %s at %d Hz, want %s", i, p.Codec(), p.AudioRate(), c.codec)
		}
		phones = append(phones, p)
	}
	conf := waitConference(t, tb, "3000")
	waitFor(t, "three members", func() bool { return conf.Info().ActiveMembers == 3 })
	time.Sleep(700 * time.Millisecond) // jitter buffers prime, the room settles at 48 kHz
	recs := listen(2*time.Second, phones...)
	for i, rec := range recs {
		if len(rec) < phones[i].AudioRate() {
			t.Fatalf("caller %d (%s) received %d samples in 2 s; stats %+v", i, callers[i].codec, len(rec), phones[i].Stats())
		}
		for j, f := range distinctTones[:3] {
			got := rateLevel(phones[i], rec, f)
			t.Logf("%s hears %s at %.2f dBFS", callers[i].codec, callers[j].codec, got)
			if i == j {
				if got > -60 {
					t.Errorf("%s caller hears itself at %.1f dBFS, want < -60", callers[i].codec, got)
				}
				continue
			}
			if math.Abs(got-sent) > 1.5 {
				t.Errorf("%s caller hears the %s caller at %.1f dBFS, want %.0f ± 1.5", callers[i].codec, callers[j].codec, got, sent)
			}
		}
	}

	// Only the Opus caller talks now, at 6 kHz: above what G.711 carries.
	phones[0].SetSource(audiotest.ToneSource(6000, sent, 48000))
	phones[1].SetSource(nil)
	phones[2].SetSource(nil)
	time.Sleep(500 * time.Millisecond)
	recs = listen(2*time.Second, phones[1], phones[2])
	t.Logf("6 kHz from Opus: G.722 caller %.2f dBFS; PCMU caller median RMS %.1f dBFS, 2 kHz %.1f dBFS",
		rateLevel(phones[1], recs[0], 6000), medianRMS(recs[1], 800), rateLevel(phones[2], recs[1], 2000))
	if got := rateLevel(phones[1], recs[0], 6000); math.Abs(got-sent) > 2 {
		t.Errorf("the G.722 caller hears the Opus caller's 6 kHz at %.1f dBFS, want %.0f ± 2", got, sent)
	}
	if got := medianRMS(recs[1], 800); got > -50 {
		t.Errorf("the PCMU caller hears %.1f dBFS (median of 100 ms blocks) while only a 6 kHz tone is sent, want < -50", got)
	}
	if got := rateLevel(phones[2], recs[1], 2000); got > -50 {
		t.Errorf("the PCMU caller hears a 2 kHz alias of 6 kHz at %.1f dBFS, want < -50", got)
	}
}

// TestWidebandDTMF: RFC 4733 events at Opus's 48 kHz clock are keys like
// any other: '#' from an Opus caller makes it leave (the bridge hangs up).
func TestWidebandDTMF(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24500, 24549)
	stay := tb.dial(t, testphone.Options{User: "3100", Codecs: []string{"PCMU"}})
	p := tb.dial(t, testphone.Options{User: "3100", Codecs: []string{"OPUS"}, Source: audiotest.ToneSource(500, -20, 48000)})
	conf := waitConference(t, tb, "3100")
	waitFor(t, "two members", func() bool { return conf.Info().ActiveMembers == 2 })
	if got := inLeg(t, tb, p.CallID()).sess.Params(); got.Codec != media.Opus || got.TelephoneEventPT == 0 {
		t.Fatalf("Opus caller: %v te %d", got.Codec, got.TelephoneEventPT)
	}
	// The bridge hangs up at the event's first packet, so the phone may
	// see its call end before it has sent the last.
	if err := p.SendDTMF('#'); err != nil && !errors.Is(err, testphone.ErrEnded) {
		t.Fatal(err)
	}
	select {
	case <-p.Ended():
	case <-time.After(5 * time.Second):
		t.Fatal("the Opus caller's # did not end its call")
	}
	waitFor(t, "one member left", func() bool { return conf.Info().ActiveMembers == 1 })
	_ = stay
}
