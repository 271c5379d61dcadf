package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/sip"
)

func TestMain(m *testing.M) {
	sip.SetLibraryLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// TestHarnessInProcess runs the harness at tiny scale against a bridge in
// this process: 6 callers in 2 rooms, 2 talkers a room. No call may fail,
// no packet may be lost on loopback, and every listener must hear its
// room's other talkers (and not itself). No timing is asserted.
func TestHarnessInProcess(t *testing.T) { runInProcess(t, media.PCMU) }

// TestHarnessInProcessWideband is the same with G.722 and with Opus
// callers: the harness's own SDP, timestamps and decoding at 16 and 48 kHz.
func TestHarnessInProcessWideband(t *testing.T) {
	for _, codec := range []media.Codec{media.G722, media.Opus} {
		t.Run(codec.String(), func(t *testing.T) { runInProcess(t, codec) })
	}
}

func runInProcess(t *testing.T, codec media.Codec) {
	ib, err := startInProcess("127.0.0.1", 20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ib.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := Run(ctx, Config{
		Target: ib.Target.String(), Callers: 6, Rooms: 2, TalkersPerRoom: 2, Rate: 50,
		Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Codec: codec,
		Sample: 6, Metrics: ib.Metrics, BridgePID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Log("\n" + out.String())
	if res.Calls.Answered != 6 || res.Calls.Failed != 0 || res.Calls.ByeFailed != 0 || res.Calls.DroppedByBridge != 0 {
		t.Errorf("calls: %+v", res.Calls)
	}
	if res.Heard.Sampled != 6 || res.Heard.Correct != 6 {
		t.Errorf("heard: %+v", res.Heard)
	}
	if res.RTP.Sent == 0 || res.RTP.Received == 0 || res.RTP.Lost != 0 || res.RTP.UpstreamLost != 0 {
		t.Errorf("rtp: %+v", res.RTP)
	}
	if !res.Mixer.Available || res.Mixer.Ticks == 0 {
		t.Errorf("mixer metrics: %+v", res.Mixer)
	}
	if !res.Pass {
		t.Errorf("run failed: %v", res.Problems)
	}
	if b, err := json.Marshal(res); err != nil || !strings.Contains(string(b), `"answered":6`) {
		t.Errorf("JSON: %v %s", err, b)
	}
}

// TestAudioLoops: the pre-encoded loops of every codec decode to the
// talkers' tones at talkDBFS, across the loop's seam too.
func TestAudioLoops(t *testing.T) {
	for _, codec := range []media.Codec{media.PCMU, media.PCMA, media.G722, media.Opus} {
		a, err := newAudio(codec)
		if err != nil {
			t.Fatal(err)
		}
		rate := codec.AudioRate()
		for slot, frames := range a.tones[:3] {
			dec, err := newDecoder(codec)
			if err != nil {
				t.Fatal(err)
			}
			r := newReader(codec, nil)
			c := &caller{rec: make([]int16, 0, 3*len(frames)*rate/50), dec: dec}
			for range 3 { // three times round the loop
				for _, p := range frames {
					if dec != nil {
						r.pkt.PayloadType = codec.PayloadType()
						r.record(c, p)
					} else {
						l := len(c.rec)
						c.rec = c.rec[:l+len(p)]
						codec.Decode(c.rec[l:], p)
					}
				}
			}
			got := c.rec[len(c.rec)/3:] // past the decoder's start
			if l := audiotest.MedianLevelDBFS(got, 8000/float64(tonePeriods[slot]), rate, rate/50); math.Abs(l-talkDBFS) > 0.5 {
				t.Errorf("%s tone %d decodes at %.2f dBFS, want %.0f", codec, slot, l, talkDBFS)
			}
		}
	}
}

// TestOfferPerCodec: the harness's offer reads back, through the bridge's
// own parser, as the codec at its payload type with telephone-event at
// its clock rate.
func TestOfferPerCodec(t *testing.T) {
	for _, codec := range []media.Codec{media.PCMU, media.PCMA, media.G722, media.Opus} {
		b, err := buildOffer(netip.MustParseAddrPort("127.0.0.1:4000"), codec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := sip.ParseSDP(b)
		if err != nil || len(d.Formats) != 1 || d.Formats[0].Codec != codec || d.Formats[0].PT != codec.PayloadType() ||
			d.TelephoneEventPT(codec) != 101 {
			t.Errorf("%s: %+v %v\n%s", codec, d, err, b)
		}
	}
}

func TestLatenessP99(t *testing.T) {
	le := []float64{0.0005, 0.001, 0.002, 0.005}
	before := Metrics{OK: true, LatenessLE: append(le, inf()), LatenessCum: []uint64{0, 0, 0, 0, 0}}
	// 1000 ticks: 980 under 0.5 ms, 15 in (0.5, 1], 5 in (1, 2].
	after := Metrics{OK: true, LatenessLE: append(le, inf()), LatenessCum: []uint64{980, 995, 1000, 1000, 1000}}
	p99, within := latenessP99(before, after)
	if p99 < 0.5 || p99 > 1 || within != 1 {
		t.Errorf("p99 %.3f ms within2 %.3f; want in (0.5, 1] and 1", p99, within)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP chorus_mixer_ticks_total Mixer ticks.
chorus_mixer_ticks_total 500
chorus_rtp_packets_in_total 42
chorus_mixer_tick_seconds_total 0.25
chorus_mixer_tick_lateness_seconds_bucket{le="0.0005"} 490
chorus_mixer_tick_lateness_seconds_bucket{le="0.002"} 500
chorus_mixer_tick_lateness_seconds_bucket{le="+Inf"} 500
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.Ticks != 500 || m.PacketsIn != 42 || len(m.LatenessLE) != 3 || m.LatenessCum[1] != 500 || m.TickSeconds != 0.25 {
		t.Errorf("parsed %+v", m)
	}
}

func TestSeqLoss(t *testing.T) {
	c := &caller{}
	for _, s := range []uint16{65533, 65534, 65535, 1, 2} { // 0 missing across the wrap
		c.gotSeq(s)
		c.recvCount.Add(1)
	}
	if got := c.lost(); got != 1 {
		t.Errorf("lost %d, want 1", got)
	}
}

func inf() float64 { return math.Inf(1) }
