package media

import (
	"fmt"
	"time"

	"chorus/dtmf"
	"chorus/media/opus"
	"chorus/media/resample"
)

// Encoder turns PCM frames into payloads of one codec. A mixer keeps one
// per shared output (listeners that hear the same thing share one encode,
// see Endpoint.PushShared). G.711 keeps no state; codecs that do (G.722,
// Opus) need an Encoder per output stream, which is why this is a value
// made per use and not a method of the codec alone.
type Encoder interface {
	// Encode encodes one frame of pcm into dst and returns the payload
	// length.
	Encode(dst []byte, pcm []int16) int
}

// RateSwitcher is an Encoder that follows its room's rate changes without
// a click (package resample): SetRate makes it take frames at a new rate,
// and the next EncodeSwitch gets that tick mixed at the old rate (old) and
// the new (cur) and hands over from one path to the other. Every Encoder
// NewEncoder makes is one.
type RateSwitcher interface {
	Encoder
	// SetRate makes the encoder take frames at rate from the next frame
	// on. It allocates.
	SetRate(rate int) error
	// EncodeSwitch encodes the tick of a rate change into dst (for G.711
	// to or from 8 kHz a payload 2·HandoverSamples shorter or longer than
	// a frame, so dst needs MaxHandoverBytes).
	EncodeSwitch(dst []byte, old, cur []int16) int
}

// NewEncoder returns an encoder for codec that takes frames at rate (the
// room's mix rate: 8000, 16000 or 48000 Hz). G.711 at its own rate is
// encoded as it is; at another, the encoder band-limits and resamples
// first (media/resample). G.722 and Opus encoders keep state and belong to
// one stream (a shared output is one stream, sent to many listeners); cfg
// sets up Opus (see OpusConfig; the zero Config means opus.DefaultConfig)
// and is ignored for the others. The Encoder is a RateSwitcher.
func NewEncoder(codec Codec, rate int, cfg opus.Config) (Encoder, error) {
	switch codec {
	case G722, Opus:
		return newWideEncoder(codec, rate, cfg)
	case PCMA:
	default:
		codec = PCMU
	}
	e := &g711Encoder{codec: codec}
	if err := e.SetRate(rate); err != nil {
		return nil, err
	}
	e.handover = false // a new stream has nothing to hand over from
	return e, nil
}

// g711Encoder encodes G.711 frames of a mix rate.
type g711Encoder struct {
	codec          Codec
	down, prevDown *resample.Resampler // nil at 8 kHz
	handover       bool                // SetRate changed the rate; EncodeSwitch hands over
	nb             [FrameSamples]int16
	x              [maxHandoverFrame]int16
}

func (g *g711Encoder) Encode(dst []byte, pcm []int16) int {
	g.handover, g.prevDown = false, nil
	if g.down == nil {
		return g.codec.Encode(dst, pcm)
	}
	n := g.down.Process(g.nb[:], pcm)
	return g.codec.Encode(dst, g.nb[:n])
}

func (g *g711Encoder) SetRate(rate int) error {
	var down *resample.Resampler
	if rate != ClockRate {
		var err error
		if down, err = resample.New(rate, ClockRate); err != nil {
			return fmt.Errorf("media: encoder for %s at %d Hz: %w", g.codec, rate, err)
		}
	}
	g.prevDown, g.down, g.handover = g.down, down, true
	return nil
}

func (g *g711Encoder) EncodeSwitch(dst []byte, old, cur []int16) int {
	if !g.handover || (g.prevDown == nil && g.down == nil) {
		return g.Encode(dst, cur)
	}
	n := g711Handover(g.x[:], old, cur, g.prevDown, g.down, g.nb[:])
	g.handover, g.prevDown = false, nil
	return g.codec.Encode(dst, g.x[:n])
}

// maxDigitsPerReceive bounds the digits one Receive collects: a telephone
// event takes tens of milliseconds, so a tick sees one at most; the bound
// only stops a flood of forged events from costing memory.
const maxDigitsPerReceive = 4

// Endpoint is one call's audio as a mixer sees it: PCM frames in and out
// at the room's rate. It owns everything codec- and network-specific about
// the call: the RTP Session (socket, strict source, SRTP), the jitter
// buffer and decoder, the RFC 4733 digit detector, and the encoder.
//
// A tick drives it in three steps, all from the one goroutine that mixes
// the room: Receive drains the socket (one receive system call in the
// common case, into memory the caller owns and shares among endpoints),
// Pull takes the next frame, and Push or PushShared sends this tick's
// output. Nothing allocates in steady state and no goroutine runs per call.
// An Endpoint is not safe for concurrent use, except for the methods that
// only read the Session's atomics (Codec, Proven, LastReceived, HeldSince)
// and Flush.
//
// An Endpoint is a small handle (two pointers) that its owner keeps by
// value, next to what it reads every tick: a mixer reaching a listener's
// session then costs no cache line more than it did when it held the
// session itself (at 1000 members a tick is mostly such misses and
// system calls). Copies share their state: drive one.
type Endpoint struct {
	sess *Session
	st   *endpointState
}

// endpointState is an endpoint's working memory.
type endpointState struct {
	// The first cache line holds what every tick reads of a listener
	// besides its jitter buffer (the digit count Receive resets, the
	// session generation, the wideband state and the hand-over marks), so
	// that wideband support costs a G.711 listener no cache line more.
	// (Small integer types keep the whole state in its 9728-byte size
	// class.)
	nDigits int32
	// opusBitrate is what an Opus encoder aims at (SetOpusBitrate).
	opusBitrate int32
	// gen is the session's Generation this state was set up for; a
	// re-INVITE changes it, and the next Receive follows (reconfigure).
	gen uint32
	// rate is the room's mix rate (0: 8000 Hz).
	rate int32
	// inFrom and outFrom are the room's rate before the last SetRate
	// until PullSwitch and PushSwitch have handed over from it (0: no
	// hand-over); prevUp and prevDown are the paths of that rate.
	inFrom, outFrom int32
	// taken is the low 32 bits of the jitter buffer's counters as
	// TakeStats last saw them (Packets, Late, Concealed, Underruns,
	// Resyncs): the growth between two takes, a second apart, is far
	// below 2³², so the difference modulo 2³² is exact.
	taken [5]uint32
	// quiet counts the reads the stream has not been live (see quiet).
	quiet uint8
	// w is the state of a G.722 or Opus call (decoder, packet buffer,
	// encoder), nil for G.711, whose endpoint is the other fields alone.
	w      *wideState
	digits [maxDigitsPerReceive]rune
	jb     JitterBuffer
	det    dtmf.Detector
	// detect, when set (SetDetector), replaces det: the detector of a
	// call that outlives this endpoint.
	detect func(ssrc, ts uint32, payload []byte) (rune, bool)
	// payload is this endpoint's own encoded output (Push).
	payload [FrameSamples]byte
	// up and down convert between the codec's rate and the room's when
	// they differ (nil at 8 kHz: the G.711 room pays nothing); nb is
	// their frame at the codec's rate.
	up, down         *resample.Resampler
	nb               [FrameSamples]int16
	prevUp, prevDown *resample.Resampler
}

// HandoverSamples is the delay of every resampler (resample.Delay) in
// samples at 8 kHz. A G.711 call in a room mixed at 8 kHz has no
// resampler in its path, and one in a faster room has one each way, so
// when its room changes rate to or from 8 kHz, what a G.711 caller hears
// of another is two resamplers' delay later or earlier. Rather than a gap
// or a repeat (a click), the output sends the tick of the change as one
// packet 2·HandoverSamples shorter (to the faster room) or longer (back
// to 8 kHz): G.711 packets may hold any number of samples and the
// timestamps count them, so the caller's jitter buffer takes the 7.25 ms
// up as delay, and the audio stays continuous. A shared G.711 output does
// the same (RateSwitcher).
const HandoverSamples = int(resample.Delay * ClockRate / time.Second)

// maxHandoverFrame is the longest G.711 frame of a hand-over.
const maxHandoverFrame = FrameSamples + 2*HandoverSamples

// MaxHandoverBytes is the longest G.711 payload an Encoder writes: the
// tick a room goes back to 8 kHz (see HandoverSamples).
const MaxHandoverBytes = maxHandoverFrame

// NewEndpoint returns the endpoint of sess, to be kept by value. The
// Session stays the caller's to configure (SetParams on re-INVITE) and
// close.
func NewEndpoint(sess *Session) Endpoint {
	e := Endpoint{sess: sess, st: &endpointState{}}
	e.follow() // the negotiated codec from the start: MaxRate is asked before the first Receive
	return e
}

// follow picks up a SetParams (answer, re-INVITE) not yet followed.
func (e *Endpoint) follow() {
	if e.sess == nil {
		return
	}
	if g := e.sess.Generation(); g != e.st.gen {
		e.st.gen = g
		e.reconfigure()
	}
}

// SetDetector makes the endpoint feed its telephone-events to detect
// rather than to a detector of its own. A call that moves between rooms
// gets a new endpoint each time; its detector must stay, or the repeated
// end packets of the key that moved it (a gather's "#") fire that key
// again in the new room. Call it before the endpoint is driven.
func (e *Endpoint) SetDetector(detect func(ssrc, ts uint32, payload []byte) (rune, bool)) {
	e.st.detect = detect
}

// SetOpusBitrate sets the bitrate (bit/s) the endpoint's Opus encoder
// aims at, before a peer's maxaveragebitrate lowers it; 0 means
// opus.DefaultBitrate. Call it before the endpoint is driven.
func (e *Endpoint) SetOpusBitrate(bps int) {
	e.st.opusBitrate = int32(bps)
	if w := e.st.w; w != nil && w.codec == Opus {
		w.opusCfg = OpusConfig(e.sess.Params().Opus, bps)
		w.maxRate, w.enc = w.opusCfg.MaxPlaybackRate, nil
	}
}

// SetRate sets the room's mix rate (8000, 16000 or 48000 Hz), the rate of
// the frames Pull gives and Push takes: the endpoint resamples between it
// and its codec's (a G.711 call in an 8 kHz room not at all). It is called
// between ticks, from the goroutine that drives the endpoint, and may
// allocate. The tick after it hands over from the old rate to the new
// without a click when the mixer calls PullSwitch and PushSwitch (the mix
// of that tick at both rates, see package resample); Pull and Push switch
// cold instead. A codec's own state (G.722, Opus) is kept either way.
func (e *Endpoint) SetRate(rate int) error {
	st := e.st
	from := st.roomRate()
	if st.w != nil {
		if err := st.w.setRoomRate(rate, from); err != nil {
			return err
		}
		st.rate = int32(rate)
		return nil
	}
	var up, down *resample.Resampler
	if rate != ClockRate {
		var err error
		if up, err = resample.New(ClockRate, rate); err != nil {
			return fmt.Errorf("media: endpoint at %d Hz: %w", rate, err)
		}
		if down, err = resample.New(rate, ClockRate); err != nil {
			return fmt.Errorf("media: endpoint at %d Hz: %w", rate, err)
		}
	}
	st.prevUp, st.prevDown = st.up, st.down
	st.inFrom, st.outFrom = int32(from), int32(from)
	st.up, st.down = up, down
	st.rate = int32(rate)
	return nil
}

// roomRate returns the room's mix rate.
func (st *endpointState) roomRate() int {
	if st.rate == 0 {
		return ClockRate
	}
	return int(st.rate)
}

// MaxRate returns the highest mix rate the call can hear: its codec's
// audio rate (8000 Hz for G.711, 16000 for G.722, 48000 for Opus), for
// Opus no more than the peer's maxplaybackrate rounded up to a mix rate
// (RFC 7587 §6.1). It follows a re-INVITE from the next Receive on.
func (e *Endpoint) MaxRate() int {
	e.follow()
	if w := e.st.w; w != nil {
		return w.maxRate
	}
	return ClockRate
}

// OpusConfig returns the configuration of the endpoint's Opus encoder
// (see OpusConfig): listeners whose configurations are equal can share
// one encoded output. It is meaningful only while Codec is Opus.
func (e *Endpoint) OpusConfig() opus.Config {
	if w := e.st.w; w != nil {
		return w.opusCfg
	}
	return opus.Config{}
}

// reconfigure follows the session's parameters after SetParams (the
// answer, a re-INVITE): a new codec gets its decoder, buffer and
// resamplers, a new Opus fmtp a new encoder. It allocates, once per
// re-INVITE. A codec this build cannot run (Opus without cgo) leaves the
// endpoint silent rather than failing the tick.
func (e *Endpoint) reconfigure() {
	st := e.st
	p := e.sess.Params()
	if p.Codec != G722 && p.Codec != Opus {
		if st.w != nil {
			st.w = nil
			_ = e.SetRate(st.roomRate()) // G.711 resamplers again
			st.inFrom, st.outFrom, st.prevUp, st.prevDown = 0, 0, nil, nil
		}
		return
	}
	if w := st.w; w != nil && w.codec == p.Codec {
		if p.Codec == Opus {
			if cfg := OpusConfig(p.Opus, int(st.opusBitrate)); cfg != w.opusCfg {
				w.opusCfg, w.maxRate, w.enc = cfg, cfg.MaxPlaybackRate, nil
			}
		}
		return
	}
	st.jb.Reset()
	st.up, st.down, st.prevUp, st.prevDown = nil, nil, nil, nil
	st.inFrom, st.outFrom = 0, 0
	w, err := newWideState(p, int(st.opusBitrate))
	if err == nil {
		err = w.setRoomRate(st.roomRate(), 0)
	}
	if err != nil {
		st.w = nil
		return
	}
	st.w = w
}

// setRoomRate sets the path from the codec's rate to the room's: a
// resampler, or a delay line of the same delay when the rates are equal,
// so that every path of a wideband call delays alike and a rate change can
// hand over from one to the next without a click (package resample). The
// encoder's path follows inside it. from is the rate before (0: none).
func (w *wideState) setRoomRate(rate, from int) error {
	up, err := resample.New(w.rate, rate)
	if err != nil {
		return fmt.Errorf("media: %s endpoint at %d Hz: %w", w.codec, rate, err)
	}
	w.prevUp, w.up, w.inFrom = w.up, up, from
	if w.enc != nil {
		return w.enc.setRate(rate)
	}
	return nil
}

// Session returns the endpoint's RTP session.
func (e *Endpoint) Session() *Session { return e.sess }

// Codec returns the codec the endpoint sends: listeners that share an
// encoded output (PushShared) must agree on it.
func (e *Endpoint) Codec() Codec { return e.sess.Codec() }

// Receive reads every datagram queued on the socket (up to a bound) into
// rx without blocking: audio goes into the jitter buffer, telephone-events
// to the digit detector. It returns the number of datagrams read. The
// digits it found are in Digits until the next Receive.
func (e *Endpoint) Receive(now time.Time, rx *RecvBuffer) int {
	st := e.st
	st.nDigits = 0
	e.follow()
	return e.sess.PollInto(now, (*endpointHandler)(st), rx)
}

// Digits returns the digits the last Receive found, in order. The slice
// aliases the endpoint and is valid until the next Receive.
func (e *Endpoint) Digits() []rune { return e.st.digits[:e.st.nDigits] }

// Pull fills dst (one frame at the rate of SetRate: FrameSamples long at
// the default 8 kHz) with the next audio and
// reports whether the stream is live; when it is not, dst is silence
// (nothing received yet, or the caller stopped sending). A lost packet is
// concealed.
func (e *Endpoint) Pull(dst []int16) bool {
	st := e.st
	if w := st.w; w != nil {
		w.inFrom, w.prevUp = 0, nil
		if !w.buf.primed && w.quiet >= 2 {
			clear(dst) // a silent call: nothing to decode or resample
			return false
		}
		frame := w.frame[:w.rate/50]
		live := w.buf.read(frame)
		if quiet(&w.quiet, live) {
			clear(dst)
			return false
		}
		w.up.Process(dst, frame)
		return live
	}
	if st.inFrom != 0 {
		st.inFrom, st.prevUp = 0, nil // a cold switch
	}
	if st.up == nil {
		return st.jb.Read(dst)
	}
	live := st.jb.Read(st.nb[:])
	if quiet(&st.quiet, live) {
		clear(dst)
		return false
	}
	st.up.Process(dst, st.nb[:])
	return live
}

// quiet counts the frames a stream has not been live in *run and reports
// whether its resampler may be skipped: after two silent frames its
// history is silence (its filter is shorter than a frame), which silence
// in keeps, so silence out is exact. Most members of a big room are
// silent, and this spares each a resampler's work a tick.
func quiet(run *uint8, live bool) bool {
	if live {
		*run = 0
		return false
	}
	if *run < 2 {
		*run++
		return false
	}
	return true
}

// Push encodes one frame of pcm (at the rate of SetRate) in the
// endpoint's codec and sends it.
func (e *Endpoint) Push(pcm []int16) error {
	st := e.st
	if w := st.w; w != nil {
		if w.enc == nil {
			enc, err := newWideEncoder(w.codec, st.roomRate(), w.opusCfg)
			if err != nil {
				return err
			}
			w.enc = enc
		}
		w.enc.prevDown = nil
		n := w.enc.Encode(w.payload[:], pcm)
		if n == 0 {
			return nil
		}
		return e.sess.writeAudio(w.codec, w.payload[:n])
	}
	if st.outFrom != 0 {
		st.outFrom, st.prevDown = 0, nil // a cold switch
	}
	if st.down != nil {
		n := st.down.Process(st.nb[:], pcm)
		pcm = st.nb[:n]
	}
	codec := e.sess.Codec()
	if codec == G722 || codec == Opus {
		return nil // a re-INVITE changed the codec: the next Receive follows
	}
	n := codec.Encode(st.payload[:], pcm)
	return e.sess.WriteAudio(st.payload[:n])
}

// PullSwitch is Pull for the tick after SetRate changed the rate: it
// fills old with the frame at the old rate and cur with the same instant
// at the new rate, handing the call's audio over to the new path without
// a gap or a repeat, so that the mixer can mix the tick at both rates
// (see package resample). Without a change pending it is Pull into cur.
func (e *Endpoint) PullSwitch(old, cur []int16) bool {
	st := e.st
	if w := st.w; w != nil {
		return w.pullSwitch(old, cur)
	}
	from, rate := int(st.inFrom), st.roomRate()
	if from == 0 || from == rate || len(old) != from/50 {
		clear(old)
		return e.Pull(cur)
	}
	st.inFrom = 0
	up, prevUp := st.up, st.prevUp
	st.prevUp = nil
	live := st.jb.Read(st.nb[:])
	if prevUp == nil { // from 8 kHz: the old path is the frame itself
		copy(old, st.nb[:])
	} else {
		prevUp.Process(old, st.nb[:])
	}
	if up == nil { // to 8 kHz
		copy(cur, st.nb[:])
		return live
	}
	// The new path, primed with the frame before, continues where the
	// old one stopped; to or from 8 kHz the audio is then a resampler's
	// delay later or earlier, which the output's hand-over absorbs (see
	// HandoverSamples).
	if st.quiet < 2 { // a silent stream's last audio is long gone
		var p [FrameSamples]int16
		st.jb.lastBefore(p[:], FrameSamples)
		up.Prime(p[:])
	}
	up.Process(cur, st.nb[:])
	return live
}

// PushSwitch is Push for the tick after SetRate changed the rate: old is
// this tick's frame mixed at the old rate, cur at the new one. The call
// hears the old path hand over to the new (package resample's Crossfade;
// for G.711 to or from an 8 kHz room, one packet HandoverSamples shorter
// or longer). Without a change pending it is Push of cur.
func (e *Endpoint) PushSwitch(old, cur []int16) error {
	st := e.st
	if w := st.w; w != nil {
		if w.enc == nil || w.enc.prevDown == nil {
			return e.Push(cur)
		}
		n := w.enc.encodeSwitch(w.payload[:], old, cur)
		if n == 0 {
			return nil
		}
		return e.sess.writeAudio(w.codec, w.payload[:n])
	}
	from, rate := int(st.outFrom), st.roomRate()
	if from == 0 || from == rate || len(old) != from/50 {
		return e.Push(cur)
	}
	st.outFrom = 0
	down, prevDown := st.down, st.prevDown
	st.prevDown = nil
	var x [maxHandoverFrame]int16
	n := g711Handover(x[:], old, cur, prevDown, down, st.nb[:])
	codec := e.sess.Codec()
	if codec == G722 || codec == Opus {
		return nil
	}
	var payload [maxHandoverFrame]byte
	m := codec.Encode(payload[:], x[:n])
	return e.sess.WriteAudio(payload[:m])
}

// g711Handover makes the 8 kHz audio of the tick a G.711 output changes
// rate, into x (maxHandoverFrame long), and returns its length: old and
// cur are the tick mixed at the old and the new rate, prevDown and down
// their paths to 8 kHz (nil in an 8 kHz room), nb a frame of scratch. See
// HandoverSamples.
func g711Handover(x, old, cur []int16, prevDown, down *resample.Resampler, nb []int16) int {
	const d = 2 * HandoverSamples
	switch {
	case prevDown == nil: // from 8 kHz: two resamplers' delay enter
		down.Process(nb, cur) // fills the new path; its output is not yet due
		return copy(x, old[:FrameSamples-d])
	case down == nil: // to 8 kHz: two resamplers' delay leave
		prevDown.Process(x[:FrameSamples], old)
		return FrameSamples + copy(x[FrameSamples:], cur[FrameSamples-d:])
	default:
		prevDown.Process(x[:FrameSamples], old)
		down.Process(nb, cur)
		resample.Crossfade(x[:FrameSamples], x[:FrameSamples], nb, ClockRate)
		return FrameSamples
	}
}

// PushShared sends a frame already encoded in the endpoint's codec (by
// an Encoder the mixer shares among listeners that hear the same mix).
func (e *Endpoint) PushShared(payload []byte) error { return e.sess.WriteAudio(payload) }

// JitterStats returns the counters of the endpoint's jitter buffer, for
// whoever drives it (the zero Endpoint has none). Sample counts are at
// 8 kHz whatever the codec, so that they add up across calls.
func (e *Endpoint) JitterStats() JitterStats {
	if e.st == nil {
		return JitterStats{}
	}
	js := e.st.jb.Stats()
	if w := e.st.w; w != nil {
		ws := w.buf.stats
		js.Packets += ws.Packets
		js.Late += ws.Late
		js.Concealed += ws.Concealed * ClockRate / uint64(w.rate)
		js.Underruns += ws.Underruns
		js.Resyncs += ws.Resyncs
		js.Shrinks += ws.Shrinks
		js.Invalid += ws.Invalid
		js.Recovered += ws.Recovered * ClockRate / uint64(w.rate)
	}
	return js
}

// LiveStats is how an endpoint's reception went since the last TakeStats.
type LiveStats struct {
	// Buffer is the growth of the jitter buffer's counters (Shrinks
	// aside).
	Buffer JitterStats
	// Lost is the growth of the session's packets lost (see Reception).
	Lost uint64
	// Jitter is the session's interarrival jitter now.
	Jitter time.Duration
}

// TakeStats returns what the endpoint's counters gained since the last
// TakeStats, so that whoever drives it (the mixer, once a second) can
// publish a live call's figures as deltas: summed over every TakeStats of
// the endpoint's life they are its totals. It takes the session's lock
// once. A call that moves to another room gets a new Endpoint on the
// same Session: the session remembers the loss already taken.
func (e *Endpoint) TakeStats() LiveStats {
	if e.st == nil {
		return LiveStats{}
	}
	js, t := e.JitterStats(), &e.st.taken
	grow := func(i int, v uint64) uint64 {
		d := uint32(v) - t[i]
		t[i] = uint32(v)
		return uint64(d)
	}
	d := LiveStats{Buffer: JitterStats{Packets: grow(0, js.Packets), Late: grow(1, js.Late),
		Concealed: grow(2, js.Concealed), Underruns: grow(3, js.Underruns), Resyncs: grow(4, js.Resyncs)}}
	d.Lost, d.Jitter = e.sess.takeReception()
	return d
}

// Flush discards whatever is queued on the socket: audio that arrived
// while nobody read it would otherwise be played late.
func (e *Endpoint) Flush() { e.sess.Flush() }

// Proven reports whether the session has proven its source (see Session).
func (e *Endpoint) Proven() bool { return e.sess.Proven() }

// LastReceived returns when the last valid RTP packet arrived.
func (e *Endpoint) LastReceived() time.Time { return e.sess.LastReceived() }

// HeldSince reports when the call stopped receiving our audio by its
// direction, if it did (see Session.HeldSince).
func (e *Endpoint) HeldSince() (time.Time, bool) { return e.sess.HeldSince() }

// endpointHandler is the Endpoint's state seen as the Session's Handler,
// so that Audio and Event are not part of Endpoint's API.
type endpointHandler endpointState

// Audio implements Handler: audio goes into the jitter buffer.
func (h *endpointHandler) Audio(ssrc, ts uint32, codec Codec, payload []byte) {
	if w := h.w; w != nil {
		if codec == w.codec {
			w.buf.put(ssrc, ts, payload)
		}
		return
	}
	if codec.Stateless() {
		h.jb.Put(ssrc, ts, codec, payload)
	}
}

// Event implements Handler: telephone-events go to the detector and never
// into the audio.
func (h *endpointHandler) Event(ssrc, ts uint32, payload []byte) {
	var d rune
	var ok bool
	if h.detect != nil {
		d, ok = h.detect(ssrc, ts, payload)
	} else {
		d, ok = h.det.Feed(ssrc, ts, payload)
	}
	if ok && int(h.nDigits) < len(h.digits) {
		h.digits[h.nDigits] = d
		h.nDigits++
	}
}
