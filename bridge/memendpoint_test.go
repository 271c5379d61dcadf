package bridge

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/g722"
	"chorus/media/opus"
	"chorus/media/resample"
)

// memEndpoint is a call's audio in memory: what the mixer pulls comes from
// a source function, what it pushes is kept. No socket, no RTP: the mixer
// steps as fast as the test drives it.
type memEndpoint struct {
	codec   media.Codec
	source  func(dst []int16) // nil: a live stream of silence
	dead    bool              // Pull reports no stream
	pending []rune            // digits the next Receive delivers
	digits  []rune
	rate    int             // the room's, from SetRate (0: 8 kHz)
	maxRate int             // what it can hear (0: 8 kHz)
	sent    [maxFrame]int16 // what this tick's Pull gave the mixer
	heard   [maxFrame]int16 // the last frame pushed, decoded
	heardN  int             // samples in heard
	shared  *byte           // the first byte of the last shared payload
	pushes  int             // own frames pushed
	sharedN int             // shared payloads pushed
	record  bool
	rec     []int16
	bare    bool // keep nothing of what is pulled and pushed (benchmarks)
	fmtp    opus.Fmtp
	// clock, when set, makes the endpoint send a tone as a function of
	// time, at whatever rate the room asks, delayed as a real endpoint's
	// path is (see toneClock): what a rate change must carry across.
	clock *toneClock
	// decoders of the shared G.722 and Opus payloads, made at the first
	// such payload
	g722 *g722.Decoder
	opus *opus.Decoder
}

func (e *memEndpoint) Receive(time.Time, *media.RecvBuffer) int {
	e.digits = append(e.digits[:0], e.pending...)
	e.pending = e.pending[:0]
	return 1
}

func (e *memEndpoint) Digits() []rune { return e.digits }

func (e *memEndpoint) Pull(dst []int16) bool {
	if e.clock != nil {
		e.clock.frame(dst, e.rateOr8k(), e.codec)
		e.clock.t += TickInterval.Seconds()
	} else if e.source != nil {
		e.source(dst)
	} else {
		clear(dst)
	}
	if !e.bare {
		copy(e.sent[:], dst)
	}
	if len(dst) != e.frame() {
		panic("the mixer pulled a frame not at the room's rate")
	}
	return !e.dead
}

func (e *memEndpoint) PullSwitch(old, cur []int16) bool {
	if e.clock != nil {
		e.clock.frame(old, len(old)*50, e.codec)
	} else {
		clear(old)
	}
	return e.Pull(cur)
}

func (e *memEndpoint) PushSwitch(old, cur []int16) error { return e.Push(cur) }

func (e *memEndpoint) rateOr8k() int {
	if e.rate == 0 {
		return media.ClockRate
	}
	return e.rate
}

// toneClock is a tone as a function of time.
type toneClock struct {
	freq, amp float64
	t         float64 // seconds at the start of the next frame
}

// frame writes the tone's next frame at rate as a codec's endpoint gives
// it to a room mixed at that rate: a G.711 one undelayed at 8 kHz and
// through a resampler (resample.Delay) above, a wideband one always
// through one (a delay line at equal rates).
func (c *toneClock) frame(dst []int16, rate int, codec media.Codec) {
	t0 := c.t
	if !codec.Stateless() || rate != media.ClockRate {
		t0 -= resample.Delay.Seconds()
	}
	for i := range dst {
		t := t0 + float64(i)/float64(rate)
		dst[i] = int16(math.Round(c.amp * math.Sin(2*math.Pi*c.freq*t)))
	}
}

func (e *memEndpoint) Push(pcm []int16) error {
	e.pushes++
	if len(pcm) != e.frame() {
		panic("the mixer pushed a frame not at the room's rate")
	}
	e.heardN = copy(e.heard[:], pcm)
	e.keep()
	return nil
}

func (e *memEndpoint) PushShared(payload []byte) error {
	e.sharedN++
	e.shared = &payload[0]
	if e.bare {
		return nil
	}
	switch e.codec {
	case media.G722:
		if e.g722 == nil {
			e.g722 = g722.NewDecoder()
		}
		e.heardN = e.g722.Decode(e.heard[:], payload)
	case media.Opus:
		if e.opus == nil {
			d, err := opus.NewDecoder()
			if err != nil {
				return err
			}
			e.opus = d
		}
		n, err := e.opus.Decode(e.heard[:], payload)
		if err != nil {
			return err
		}
		e.heardN = n
	default:
		e.heardN = e.codec.Decode(e.heard[:], payload)
	}
	e.keep()
	return nil
}

func (e *memEndpoint) keep() {
	if e.record {
		e.rec = append(e.rec, e.heard[:e.heardN]...)
	}
}

// maxFrame is a 20 ms frame at 48 kHz.
const maxFrame = 960

func (e *memEndpoint) frame() int {
	if e.rate == 0 {
		return media.FrameSamples
	}
	return e.rate / 50
}

func (e *memEndpoint) MaxRate() int { return max(e.maxRate, media.ClockRate) }

func (e *memEndpoint) SetRate(rate int) error {
	e.rate = rate
	return nil
}

func (e *memEndpoint) Codec() media.Codec           { return e.codec }
func (e *memEndpoint) OpusConfig() opus.Config      { return media.OpusConfig(e.fmtp, 0) }
func (e *memEndpoint) Flush()                       {}
func (e *memEndpoint) Proven() bool                 { return true }
func (e *memEndpoint) LastReceived() time.Time      { return time.Now() }
func (e *memEndpoint) HeldSince() (time.Time, bool) { return time.Time{}, false }

// memLeg is the signalling of a call whose audio is a memEndpoint.
type memLeg struct{ ep *memEndpoint }

func (l *memLeg) Media() *media.Session                { return nil }
func (l *memLeg) Hangup(context.Context, string) error { return nil }
func (l *memLeg) endpoint() Endpoint                   { return l.ep }

// memRoom is a conference of in-memory endpoints stepped by hand.
type memRoom struct {
	t    testing.TB
	b    *Bridge
	conf *Conference
	now  time.Time
	rate int // what the endpoints that join can hear (0: 8 kHz)
}

func newMemRoom(t testing.TB, cfg Config) *memRoom {
	t.Helper()
	r := newRoom(t, cfg)
	return &memRoom{t: t, b: r.b, conf: r.conf, now: r.now}
}

// join adds a member whose endpoint sends source in codec.
func (r *memRoom) join(codec media.Codec, source func([]int16)) (*memEndpoint, *Member) {
	r.t.Helper()
	ep := &memEndpoint{codec: codec, source: source, maxRate: r.rate}
	call := r.b.NewCall("u-test", "caller", "1000", DirectionIn, &memLeg{ep: ep}, Callback{})
	call.Answered()
	m, err := r.conf.AddMember(call, MemberOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return ep, m
}

func (r *memRoom) step(n int) {
	for range n {
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
	}
}

// mixRates are the rates a room mixes at.
var mixRates = []int{8000, 16000, 48000}

// setRate makes the endpoints that join from now on hear rate, so that
// the room mixes at it.
func (r *memRoom) setRate(rate int) { r.rate = rate }

// TestMemMixMinusOneExact: with endpoints in memory, at every mix rate,
// each talker hears exactly the sum of the others, sample for sample; at
// 8 kHz a listener gets the shared encode of the whole sum.
func TestMemMixMinusOneExact(t *testing.T) {
	for _, rate := range mixRates {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			r := newMemRoom(t, Config{})
			r.setRate(rate)
			var eps []*memEndpoint
			for _, f := range distinctTones {
				ep, _ := r.join(media.PCMU, audiotest.ToneSource(f, -15, rate))
				eps = append(eps, ep)
			}
			listener, _ := r.join(media.PCMA, nil)
			r.step(5)
			n := rate / 50
			for tick := range 20 {
				r.step(1)
				sum := make([]int32, n)
				for _, e := range eps {
					for i, s := range e.sent[:n] {
						sum[i] += int32(s)
					}
				}
				for k, e := range eps {
					if e.heardN != n {
						t.Fatalf("talker %d heard %d samples, want %d", k, e.heardN, n)
					}
					for i, s := range e.heard[:n] {
						if want := sum[i] - int32(e.sent[i]); int32(s) != want {
							t.Fatalf("tick %d: talker %d sample %d is %d, want %d", tick, k, i, s, want)
						}
					}
				}
				if rate != media.ClockRate {
					continue
				}
				var want, got [media.FrameSamples]byte
				var sum16 [media.FrameSamples]int16
				for i, v := range sum {
					sum16[i] = int16(v)
				}
				media.PCMA.Encode(want[:], sum16[:])
				media.PCMA.Encode(got[:], listener.heard[:media.FrameSamples])
				if got != want {
					t.Fatalf("tick %d: the listener did not get the encode of the whole sum", tick)
				}
			}
			if listener.pushes != 0 || listener.sharedN == 0 {
				t.Errorf("listener: %d own frames, %d shared: want only shared", listener.pushes, listener.sharedN)
			}
		})
	}
}

// TestMemGains: a talk step of +2 is 6 dB, exactly in Q14, at every mix
// rate; a listener at receive −1 hears 3 dB less through its shared
// output, band-limited to its codec's 8 kHz when the room mixes faster.
func TestMemGains(t *testing.T) {
	for _, rate := range mixRates {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			r := newMemRoom(t, Config{})
			r.setRate(rate)
			a, am := r.join(media.PCMU, audiotest.ToneSource(500, -20, rate))
			b, _ := r.join(media.PCMU, audiotest.ToneSource(900, -20, rate))
			c, cm := r.join(media.PCMU, nil)
			am.SetLevels(2, 0, 0)
			cm.SetLevels(0, -1, 0)
			r.step(3)
			n := rate / 50
			for i := range b.heard[:n] {
				want := int32(a.sent[i]) * gainQ14[2-MinLevel] >> 14
				if int32(b.heard[i]) != want {
					t.Fatalf("b hears sample %d at %d, want %d (a's talk +2)", i, b.heard[i], want)
				}
			}
			if d := 20 * math.Log10(float64(gainQ14[2-MinLevel])/16384); math.Abs(d-6) > 0.05 {
				t.Errorf("talk +2 is %.2f dB", d)
			}
			c.record = true
			r.step(25)
			got := audiotest.LevelDBFS(c.rec[5*media.FrameSamples:], 500, media.ClockRate)
			if math.Abs(got-(-20+6-3)) > 0.5 {
				t.Errorf("c hears a at %.1f dBFS, want %.1f", got, -20+6-3.0)
			}
		})
	}
}

// TestMemWideToNarrow: in a room mixed at 16 or 48 kHz, a 6 kHz tone
// reaches a wideband talker whole and is filtered out (no alias at
// 2 kHz) of what a G.711 listener gets.
func TestMemWideToNarrow(t *testing.T) {
	for _, rate := range mixRates[1:] {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			r := newMemRoom(t, Config{})
			r.setRate(rate)
			r.join(media.PCMU, audiotest.ToneSource(6000, -10, rate))
			wide, _ := r.join(media.PCMU, audiotest.ToneSource(1000, -20, rate))
			narrow, _ := r.join(media.PCMU, nil)
			wide.record, narrow.record = true, true
			r.step(30)
			if got := audiotest.LevelDBFS(wide.rec[5*rate/50:], 6000, rate); math.Abs(got+10) > 0.5 {
				t.Errorf("the wideband talker hears 6 kHz at %.1f dBFS, want -10", got)
			}
			rec := narrow.rec[5*media.FrameSamples:]
			if got := audiotest.LevelDBFS(rec, 2000, media.ClockRate); got > -50 {
				t.Errorf("the narrowband listener hears an alias at 2 kHz at %.1f dBFS", got)
			}
			if got := audiotest.LevelDBFS(rec, 1000, media.ClockRate); math.Abs(got+20) > 1 {
				t.Errorf("the narrowband listener hears 1 kHz at %.1f dBFS, want -20", got)
			}
		})
	}
}

// TestMemRateFollowsMembers: a room mixes at the highest rate its members
// hear, up to Config.MaxMixRate, and goes back down when they leave.
func TestMemRateFollowsMembers(t *testing.T) {
	r := newMemRoom(t, Config{})
	r.join(media.PCMU, tone(400, -20))
	r.join(media.PCMA, nil)
	r.step(2)
	if got := r.conf.mix.rate; got != 8000 {
		t.Fatalf("a G.711 room mixes at %d Hz", got)
	}
	r.setRate(16000)
	wide, wm := r.join(media.PCMU, nil)
	r.step(2)
	if got := r.conf.mix.rate; got != 16000 || wide.rate != 16000 {
		t.Fatalf("with a 16 kHz member the room mixes at %d Hz, its endpoint at %d", got, wide.rate)
	}
	r.conf.removeMember(wm, false, "test")
	r.step(2)
	if got := r.conf.mix.rate; got != 8000 {
		t.Fatalf("after the 16 kHz member left the room mixes at %d Hz", got)
	}

	capped := newMemRoom(t, Config{MaxMixRate: 20000})
	capped.setRate(48000)
	a, _ := capped.join(media.PCMU, audiotest.ToneSource(1000, -20, 16000))
	b, _ := capped.join(media.PCMU, nil)
	capped.step(3)
	if got := capped.conf.mix.rate; got != 16000 {
		t.Fatalf("48 kHz members with a cap of 20000 mix at %d Hz, want 16000", got)
	}
	// The talker gets its own frame at the mix rate, the listener the
	// shared G.711 payload, encoded at its codec's 8 kHz.
	if a.heardN != 320 || b.heardN != media.FrameSamples {
		t.Errorf("the talker got %d samples (want 320), the listener %d (want 160)", a.heardN, b.heardN)
	}
}

// TestMemGateAndLimiter: hiss below the gate is not mixed, and two loud
// talkers are limited into range instead of wrapping.
func TestMemGateAndLimiter(t *testing.T) {
	r := newMemRoom(t, Config{})
	rng := rand.New(rand.NewPCG(3, 4))
	_, hm := r.join(media.PCMU, func(dst []int16) { audiotest.Noise(dst, -55, rng) })
	l, _ := r.join(media.PCMU, nil)
	l.record = true
	r.step(25)
	if hm.Talking() {
		t.Error("hiss at -55 dBFS opens the gate")
	}
	if got := audiotest.RMSDBFS(l.rec); got > -80 {
		t.Errorf("the listener hears the gated hiss at %.1f dBFS", got)
	}
	full := func(dst []int16) {
		for i := range dst {
			dst[i] = 30000
		}
	}
	r.join(media.PCMU, full)
	r.join(media.PCMU, full)
	r.step(3)
	for i, s := range l.heard[:l.heardN] {
		if s < limiterKnee || s >= 32767 {
			t.Fatalf("two talkers at 30000: the listener's sample %d is %d, want limited in (%d, 32767)", i, s, limiterKnee)
		}
	}
}

// TestMemSharedEncode: 100 listeners and 3 talkers cost 4 encodes a tick,
// and the listeners are all sent one payload.
func TestMemSharedEncode(t *testing.T) {
	r := newMemRoom(t, Config{MaxMembers: 200})
	for _, f := range distinctTones {
		r.join(media.PCMU, tone(f, -15))
	}
	var ls []*memEndpoint
	for range 100 {
		l, _ := r.join(media.PCMU, nil)
		ls = append(ls, l)
	}
	r.step(5)
	before := r.b.stats.Encodes.Load()
	r.step(10)
	if got := r.b.stats.Encodes.Load() - before; got != 40 {
		t.Errorf("%d encodes in 10 ticks, want 40 (3 talkers + 1 shared a tick)", got)
	}
	for _, l := range ls {
		if l.shared != ls[0].shared || l.pushes != 0 {
			t.Fatal("the listeners do not share one payload")
		}
	}
}

// TestMemDigits: a digit an endpoint received acts on its member.
func TestMemDigits(t *testing.T) {
	r := newMemRoom(t, Config{})
	ep, m := r.join(media.PCMU, nil)
	r.step(1)
	ep.pending = append(ep.pending, '6') // receive up
	r.step(1)
	if _, rx, _ := m.Levels(); rx != 1 {
		t.Errorf("receive level %d after 6, want 1", rx)
	}
}

// TestMemTickAllocs: the mixer's tick allocates nothing with in-memory
// endpoints (the endpoints' own costs are measured in package media).
func TestMemTickAllocs(t *testing.T) {
	r := newMemRoom(t, Config{})
	r.join(media.PCMU, tone(400, -10))
	r.join(media.PCMA, tone(700, -10))
	r.join(media.PCMU, nil)
	r.step(20)
	if allocs := testing.AllocsPerRun(50, func() { r.step(1) }); allocs != 0 {
		t.Errorf("a tick allocates %.1f times", allocs)
	}
}

// BenchmarkMixTickMemory measures the mixer alone, with n in-memory
// endpoints of whom 3 talk: no socket, no system call, so what it shows is
// the cost of pulling, gating, mixing, the shared and private outputs and
// the encodes (BenchmarkMixTick adds the network to that), plus the three
// talkers' tone generators. At 8 kHz every member is G.711; at 16 kHz
// G.722 and at 48 kHz Opus, so that the shared encode a tick is the
// codec's own (in-memory endpoints do not encode their private frames).
func BenchmarkMixTickMemory(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for _, c := range []struct {
				rate  int
				codec media.Codec
			}{{8000, media.PCMU}, {16000, media.G722}, {48000, media.Opus}} {
				b.Run(fmt.Sprintf("rate=%d", c.rate), func(b *testing.B) {
					r := newMemRoom(b, Config{MaxMembers: n})
					r.setRate(c.rate)
					alt := c.codec
					if alt == media.PCMU {
						alt = media.PCMA
					}
					r.join(c.codec, audiotest.ToneSource(400, -12, c.rate))
					r.join(alt, audiotest.ToneSource(700, -12, c.rate))
					r.join(c.codec, audiotest.ToneSource(1100, -12, c.rate))
					for range n - 3 {
						ep, _ := r.join(c.codec, nil)
						ep.bare = true
					}
					r.step(20)
					if r.conf.mix.rate != c.rate {
						b.Fatalf("the room mixes at %d Hz", r.conf.mix.rate)
					}
					b.ReportAllocs()
					for b.Loop() {
						r.step(1)
					}
				})
			}
		})
	}
}
