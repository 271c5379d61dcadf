package bridge

import (
	"time"

	"chorus/media"
	"chorus/media/opus"
)

// Endpoint is a call's audio as the mixer sees it: PCM frames in and out,
// one 20 ms frame a tick at the room's rate. The mixer owns the frames it
// passes (caller-owned buffers) and knows no socket, RTP or codec; calls
// use *media.Endpoint, and tests step the mixer with endpoints in memory.
//
// Every method is called from the goroutine that mixes the room, except
// Codec, Flush and the media-health reports, which must be safe to call
// from any goroutine.
type Endpoint interface {
	// Receive takes in what arrived since the last tick (one receive
	// system call into rx, which the caller owns and shares among the
	// endpoints it drives) and returns the number of packets read.
	Receive(now time.Time, rx *media.RecvBuffer) int
	// Digits returns the digits the last Receive found; the slice is
	// valid until the next Receive.
	Digits() []rune
	// Pull fills dst with the next frame and reports whether the stream
	// is live (dst is silence when it is not).
	Pull(dst []int16) bool
	// Push encodes and sends one frame that is the member's own.
	Push(pcm []int16) error
	// PushShared sends one frame already encoded in Codec by an Encoder
	// the mixer shares among listeners who hear the same mix.
	PushShared(payload []byte) error
	// SetRate sets the room's mix rate, the rate of the frames Pull
	// gives and Push takes (8000, 16000 or 48000 Hz; 8000 until called).
	// The mixer calls it between ticks; it may allocate. In the tick
	// after it the mixer mixes at both rates and calls PullSwitch and
	// PushSwitch (or PushShared) instead of Pull and Push, so that the
	// call hears no click (media.Endpoint.PullSwitch).
	SetRate(rate int) error
	// PullSwitch is Pull in the tick after SetRate: the frame at the old
	// rate into old and at the new into cur.
	PullSwitch(old, cur []int16) bool
	// PushSwitch is Push in the tick after SetRate: the member's own
	// frame mixed at the old rate and at the new.
	PushSwitch(old, cur []int16) error
	// MaxRate is the highest mix rate the call can hear: its codec's
	// audio rate (8000 for G.711). A room mixes at the highest of its
	// members', up to Config.MaxMixRate.
	MaxRate() int
	// Codec is what the endpoint sends: it picks the shared output.
	Codec() media.Codec
	// OpusConfig is the configuration of the endpoint's Opus encoder
	// (media.OpusConfig: bitrate, band, FEC from the peer's fmtp), asked
	// only while Codec is Opus: Opus listeners share an encoded output
	// only when theirs are equal.
	OpusConfig() opus.Config
	// Flush drops what arrived while nobody read it.
	Flush()
	// Proven, LastReceived and HeldSince report the media's health for
	// the RTP and hold timeouts (see media.Session).
	Proven() bool
	LastReceived() time.Time
	HeldSince() (time.Time, bool)
}

var _ Endpoint = (*media.Endpoint)(nil)

// endpointLeg is a Leg that brings its own Endpoint rather than a
// media.Session: the in-memory endpoints of the mixer's tests.
type endpointLeg interface {
	endpoint() Endpoint
}
