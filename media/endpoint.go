package media

import (
	"fmt"
	"time"

	"chorus/dtmf"
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
// room's mix rate: 8000, 16000 or 48000 Hz). At the codec's own rate the
// Codec value itself encodes (G.711 is stateless); at another, the encoder
// band-limits and resamples first (media/resample), so it keeps state and
// belongs to one stream.
func NewEncoder(codec Codec, rate int) (Encoder, error) {
	if codec != PCMA {
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
	// taken is the low 32 bits of the jitter buffer's counters as
	// TakeStats last saw them (Packets, Late, Concealed, Underruns,
	// Resyncs): the growth between two takes, a second apart, is far
	// below 2³², so the difference modulo 2³² is exact.
	taken [5]uint32
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

// SetRate sets the room's mix rate (8000, 16000 or 48000 Hz), the rate of
// the frames Pull gives and Push takes: the endpoint resamples between it
// and its codec's. It is called between ticks, from the goroutine that
// drives the endpoint, and may allocate. This first version switches cold
// (the resamplers start from silence, a few milliseconds of the frame
// after a change are faded in by the filter); the hand-over of package
// resample without a click is for when rooms follow their members' rates.
func (e *Endpoint) SetRate(rate int) error {
	if rate == ClockRate {
		e.st.up, e.st.down = nil, nil
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
	e.st.up, e.st.down = up, down
	return nil
}

// MaxRate returns the highest mix rate the call can hear: its codec's
// audio rate, 8000 Hz for G.711.
func (e *Endpoint) MaxRate() int { return ClockRate }

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
	e.st.nDigits = 0
	return e.sess.PollInto(now, (*endpointHandler)(e.st), rx)
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
	if e.st.down != nil {
		n := e.st.down.Process(e.st.nb[:], pcm)
		pcm = e.st.nb[:n]
	}
	n := e.sess.Codec().Encode(e.st.payload[:], pcm)
	return e.sess.WriteAudio(e.st.payload[:n])
}

// PushShared sends a frame already encoded in the endpoint's codec (by
// an Encoder the mixer shares among listeners that hear the same mix).
func (e *Endpoint) PushShared(payload []byte) error { return e.sess.WriteAudio(payload) }

// JitterStats returns the counters of the endpoint's jitter buffer, for
// whoever drives it (the zero Endpoint has none).
func (e *Endpoint) JitterStats() JitterStats {
	if e.st == nil {
		return JitterStats{}
	}
	return e.st.jb.Stats()
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
	js, t := &e.st.jb.stats, &e.st.taken
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
	h.jb.Put(ssrc, ts, codec, payload)
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
