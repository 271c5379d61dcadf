package opus

import "fmt"

// Audio format and packet sizes.
const (
	// SampleRate is the PCM rate of the encoder and decoder, and the RTP
	// clock rate of Opus (RFC 7587 §4.1).
	SampleRate = 48000
	// FrameSamples is one 20 ms frame at SampleRate, what Chorus sends.
	FrameSamples = SampleRate / 50
	// MaxFrameSamples is the longest packet Opus can carry, 120 ms
	// (RFC 6716 §3.2.5), so a decode buffer of this size takes any packet.
	MaxFrameSamples = SampleRate * 120 / 1000
	// quantumSamples is 2.5 ms, the unit of every Opus frame duration.
	quantumSamples = SampleRate / 400
	// MaxPacketBytes is enough for any single-frame packet Encode makes:
	// a TOC byte and at most 1275 bytes of frame (RFC 6716 §3.2.1).
	MaxPacketBytes = 1 + 1275
)

// Encoder defaults for conference voice.
const (
	// DefaultBitrate is 32 kbit/s: RFC 7587 §3.1.1 gives 28–40 kbit/s for
	// fullband speech, and 32 kbit/s is the lowest at which libopus 1.3
	// keeps fullband (hybrid) coding with in-band FEC at DefaultExpectedLoss:
	// to make room for FEC it narrows the band to super-wideband at 28,
	// wideband at 24 and mediumband at 20 kbit/s. About 80 bytes a frame.
	DefaultBitrate = 32000
	// DefaultComplexity is 5 of libopus' 0–10 (its own default is 10). A
	// bridge encodes for many listeners, and 5 halves the encoder's CPU
	// (BenchmarkEncode: about 0.19 ms against 0.38 ms a 20 ms frame on this
	// project's 2-core EPYC VM) at the quality WebRTC settles for on
	// mobile; the tone, FEC and band tests pass alike at 5 and 10.
	DefaultComplexity = 5
	// DefaultExpectedLoss is the packet loss, in percent, the encoder plans
	// in-band FEC for.
	DefaultExpectedLoss = 10
)

// Config sets up an Encoder. Start from DefaultConfig: the zero value is
// not valid.
type Config struct {
	// Bitrate is the target in bit/s, 6000 to 510000 (RFC 7587 §3.1.1).
	Bitrate int
	// Complexity trades CPU for quality, 0 to 10.
	Complexity int
	// FEC turns on in-band forward error correction (RFC 7587 §3.3): each
	// packet also carries a coarse copy of the previous frame.
	FEC bool
	// ExpectedLoss is the packet loss in percent (0 to 100) that the FEC
	// data and the encoder's robustness are sized for.
	ExpectedLoss int
	// DTX turns on discontinuous transmission: in silence the encoder
	// emits 1–2 byte packets (RFC 7587 §3.1.3) that need not be sent.
	DTX bool
	// MaxPlaybackRate is the receiver's highest useful sample rate in Hz,
	// 8000 to 48000 (the fmtp maxplaybackrate of RFC 7587 §6.1); the
	// encoder spends no bits above its band.
	MaxPlaybackRate int
}

// DefaultConfig is what Chorus sends unless told otherwise: fullband voice
// at DefaultBitrate with FEC for DefaultExpectedLoss and no DTX.
func DefaultConfig() Config {
	return Config{
		Bitrate:         DefaultBitrate,
		Complexity:      DefaultComplexity,
		FEC:             true,
		ExpectedLoss:    DefaultExpectedLoss,
		MaxPlaybackRate: SampleRate,
	}
}

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	switch {
	case c.Bitrate < 6000 || c.Bitrate > 510000:
		return fmt.Errorf("%w: bitrate %d bit/s not in 6000..510000", ErrConfig, c.Bitrate)
	case c.Complexity < 0 || c.Complexity > 10:
		return fmt.Errorf("%w: complexity %d not in 0..10", ErrConfig, c.Complexity)
	case c.ExpectedLoss < 0 || c.ExpectedLoss > 100:
		return fmt.Errorf("%w: expected loss %d%% not in 0..100", ErrConfig, c.ExpectedLoss)
	case c.MaxPlaybackRate < 8000 || c.MaxPlaybackRate > SampleRate:
		return fmt.Errorf("%w: max playback rate %d Hz not in 8000..48000", ErrConfig, c.MaxPlaybackRate)
	}
	return nil
}

// validEncodeSize reports whether n samples is a frame duration the encoder
// takes: 2.5, 5, 10, 20, 40 or 60 ms (RFC 6716 §2.1.4).
func validEncodeSize(n int) bool {
	switch n {
	case 120, 240, 480, 960, 1920, 2880:
		return true
	}
	return false
}

// validLossSize reports whether n samples can be concealed or recovered in
// one call: a whole number of 2.5 ms quanta up to MaxFrameSamples.
func validLossSize(n int) bool {
	return n > 0 && n <= MaxFrameSamples && n%quantumSamples == 0
}
