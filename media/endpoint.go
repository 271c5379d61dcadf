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

// NewEncoder returns an encoder for codec that takes frames at rate (the
// room's mix rate: 8000, 16000 or 48000 Hz). For G.711 at its own rate the
// Codec value itself encodes (it is stateless); at another, the encoder
// band-limits and resamples first (media/resample). G.722 and Opus
// encoders keep state and belong to one stream (a shared output is one
// stream, sent to many listeners); cfg sets up Opus (see OpusConfig; the
// zero Config means opus.DefaultConfig) and is ignored for the others.
func NewEncoder(codec Codec, rate int, cfg opus.Config) (Encoder, error) {
	switch codec {
	case G722, Opus:
		return newWideEncoder(codec, rate, cfg)
	case PCMA:
	default:
		codec = PCMU
	}
	if rate == ClockRate {
		return codec, nil
	}
	down, err := resample.New(rate, ClockRate)
	if err != nil {
		return nil, fmt.Errorf("media: encoder for %s at %d Hz: %w", codec, rate, err)
	}
	return &rateEncoder{codec: codec, down: down}, nil
}

// rateEncoder encodes frames of a mix rate above the codec's.
type rateEncoder struct {
	codec Codec
	down  *resample.Resampler
	nb    [FrameSamples]int16
}

func (r *rateEncoder) Encode(dst []byte, pcm []int16) int {
	n := r.down.Process(r.nb[:], pcm)
	return r.codec.Encode(dst, r.nb[:n])
}

// maxDigitsPerReceive bounds the digits one Receive collects: a telephone
// event takes tens of milliseconds, so a tick sees one at most; the bound
// only stops a flood of forged events from costing memory.
const maxDigitsPerReceive = 8

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
	nDigits int
	digits  [maxDigitsPerReceive]rune
	jb      JitterBuffer
	det     dtmf.Detector
	// detect, when set (SetDetector), replaces det: the detector of a
	// call that outlives this endpoint.
	detect func(ssrc, ts uint32, payload []byte) (rune, bool)
	// payload is this endpoint's own encoded output (Push).
	payload [FrameSamples]byte
	// up and down convert between the codec's rate and the room's when
	// they differ (nil at 8 kHz: the G.711 room pays nothing); nb is
	// their frame at the codec's rate.
	up, down *resample.Resampler
	nb       [FrameSamples]int16
	// gen is the session's Generation this state was set up for; a
	// re-INVITE changes it, and the next Receive follows (reconfigure).
	gen uint32
	// rate is the room's mix rate (0: 8000 Hz).
	rate int32
	// opusBitrate is what an Opus encoder aims at (SetOpusBitrate).
	opusBitrate int32
	// w is the state of a G.722 or Opus call (decoder, packet buffer,
	// encoder), nil for G.711, whose endpoint is the fields above alone.
	w *wideState
}

// NewEndpoint returns the endpoint of sess, to be kept by value. The
// Session stays the caller's to configure (SetParams on re-INVITE) and
// close.
func NewEndpoint(sess *Session) Endpoint { return Endpoint{sess: sess, st: &endpointState{}} }

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
func (e *Endpoint) SetOpusBitrate(bps int) { e.st.opusBitrate = int32(bps) }

// SetRate sets the room's mix rate (8000, 16000 or 48000 Hz), the rate of
// the frames Pull gives and Push takes: the endpoint resamples between it
// and its codec's, and not at all when they are equal. It is called
// between ticks, from the goroutine that drives the endpoint, and may
// allocate. This first version switches cold (the resamplers start from
// silence, a few milliseconds of the frame after a change are faded in by
// the filter); a codec's own state (G.722, Opus) is kept.
func (e *Endpoint) SetRate(rate int) error {
	st := e.st
	st.rate = int32(rate)
	if st.w != nil {
		st.up, st.down = nil, nil
		return st.w.setRoomRate(rate)
	}
	if rate == ClockRate {
		st.up, st.down = nil, nil
		return nil
	}
	up, err := resample.New(ClockRate, rate)
	if err != nil {
		return fmt.Errorf("media: endpoint at %d Hz: %w", rate, err)
	}
	down, err := resample.New(rate, ClockRate)
	if err != nil {
		return fmt.Errorf("media: endpoint at %d Hz: %w", rate, err)
	}
	st.up, st.down = up, down
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
	st.up, st.down = nil, nil
	w, err := newWideState(p, int(st.opusBitrate))
	if err == nil {
		err = w.setRoomRate(st.roomRate())
	}
	if err != nil {
		st.w = nil
		return
	}
	st.w = w
}

// setRoomRate sets the resampler from the codec's rate to the room's (the
// encoder's follows inside it).
func (w *wideState) setRoomRate(rate int) error {
	w.up = nil
	if rate != w.rate {
		up, err := resample.New(w.rate, rate)
		if err != nil {
			return fmt.Errorf("media: %s endpoint at %d Hz: %w", w.codec, rate, err)
		}
		w.up = up
	}
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
	if g := e.sess.Generation(); g != st.gen {
		st.gen = g
		e.reconfigure()
	}
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
		if w.up == nil {
			return w.buf.read(dst)
		}
		frame := w.frame[:w.rate/50]
		live := w.buf.read(frame)
		w.up.Process(dst, frame)
		return live
	}
	if st.up == nil {
		return st.jb.Read(dst)
	}
	live := st.jb.Read(st.nb[:])
	st.up.Process(dst, st.nb[:])
	return live
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
		n := w.enc.Encode(w.payload[:], pcm)
		if n == 0 {
			return nil
		}
		return e.sess.writeAudio(w.codec, w.payload[:n])
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

// PushShared sends a frame already encoded in the endpoint's codec (by
// an Encoder the mixer shares among listeners that hear the same mix).
func (e *Endpoint) PushShared(payload []byte) error { return e.sess.WriteAudio(payload) }

// Flush discards whatever is queued on the socket: audio that arrived
// while nobody read it would otherwise be played late.
// JitterStats returns the counters of the endpoint's jitter buffer, for
// whoever drives it (the zero Endpoint has none).
func (e *Endpoint) JitterStats() JitterStats {
	if e.st == nil {
		return JitterStats{}
	}
	js := e.st.jb.Stats()
	if w := e.st.w; w != nil {
		ws := w.buf.stats
		js.Packets += ws.Packets
		js.Late += ws.Late
		js.Concealed += ws.Concealed
		js.Underruns += ws.Underruns
		js.Resyncs += ws.Resyncs
		js.Shrinks += ws.Shrinks
		js.Invalid += ws.Invalid
		js.Recovered += ws.Recovered
	}
	return js
}

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
	if ok && h.nDigits < len(h.digits) {
		h.digits[h.nDigits] = d
		h.nDigits++
	}
}
