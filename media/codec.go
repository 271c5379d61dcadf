package media

import (
	"fmt"
	"strings"

	"github.com/zaf/g711"
)

// Codec is an audio codec Chorus speaks. The zero value is invalid.
type Codec uint8

// The supported codecs. G.711 is stateless and its Codec value encodes
// and decodes itself (Decode, Encode); G.722 (media/g722) and Opus
// (media/opus) keep state per stream and are driven through an
// Endpoint's decoder and an Encoder.
const (
	CodecInvalid Codec = iota
	PCMU               // G.711 µ-law, static payload type 0
	PCMA               // G.711 A-law, static payload type 8
	G722               // ITU-T G.722 at 64 kbit/s, static payload type 9 (RTP clock 8000, audio 16 kHz; RFC 3551 §4.5.2)
	Opus               // Opus, dynamic payload type, opus/48000/2 (RFC 7587)
)

// NumCodecs bounds the Codec values, for arrays indexed by codec.
const NumCodecs = int(Opus) + 1

// ClockRate is the RTP clock rate of every supported codec and of the mixer.
const ClockRate = 8000

// FrameSamples is the number of samples in one 20 ms frame at ClockRate.
const FrameSamples = ClockRate / 50

// Static payload types from RFC 3551 §6.
const (
	PayloadTypePCMU uint8 = 0
	PayloadTypePCMA uint8 = 8
	PayloadTypeG722 uint8 = 9
)

// PayloadTypeOpus is the dynamic payload type Chorus puts in its own
// offers for Opus; in an answer the offerer's number is kept (RFC 3264
// §6.1), which Params.PayloadType carries.
const PayloadTypeOpus uint8 = 111

// decode tables: G.711 has 256 code words, so a lookup decodes a sample.
var (
	ulawToLinear = func() (t [256]int16) {
		for i := range t {
			t[i] = g711.DecodeUlawFrame(uint8(i))
		}
		return t
	}()
	alawToLinear = func() (t [256]int16) {
		for i := range t {
			t[i] = g711.DecodeAlawFrame(uint8(i))
		}
		return t
	}()
)

// encode tables. µ-law's encoder looks only at a sample's top 14 bits and
// A-law's at its top 12 (g711.Encode*Frame shift the rest away, and a
// shift commutes with the complement they take of negative samples), so a
// table indexed by those bits encodes exactly as they do, without a call
// and a branch per sample (TestEncodeTables checks all 65536 inputs).
var (
	linearToUlaw = func() (t [1 << 14]byte) {
		for i := range t {
			t[i] = g711.EncodeUlawFrame(int16(uint16(i) << 2))
		}
		return t
	}()
	linearToAlaw = func() (t [1 << 12]byte) {
		for i := range t {
			t[i] = g711.EncodeAlawFrame(int16(uint16(i) << 4))
		}
		return t
	}()
)

// CodecByName returns the codec for an SDP encoding name such as "PCMU".
func CodecByName(name string) (Codec, bool) {
	switch strings.ToUpper(name) {
	case "PCMU":
		return PCMU, true
	case "PCMA":
		return PCMA, true
	case "G722":
		return G722, true
	case "OPUS":
		return Opus, true
	}
	return CodecInvalid, false
}

// CodecByPayloadType returns the codec of a static payload type.
func CodecByPayloadType(pt uint8) (Codec, bool) {
	switch pt {
	case PayloadTypePCMU:
		return PCMU, true
	case PayloadTypePCMA:
		return PCMA, true
	case PayloadTypeG722:
		return G722, true
	}
	return CodecInvalid, false
}

// String returns the SDP encoding name.
func (c Codec) String() string {
	switch c {
	case PCMU:
		return "PCMU"
	case PCMA:
		return "PCMA"
	case G722:
		return "G722"
	case Opus:
		return "opus"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// PayloadType returns the static RTP payload type of the codec, or for
// Opus the dynamic one Chorus offers (PayloadTypeOpus).
func (c Codec) PayloadType() uint8 {
	switch c {
	case PCMA:
		return PayloadTypePCMA
	case G722:
		return PayloadTypeG722
	case Opus:
		return PayloadTypeOpus
	}
	return PayloadTypePCMU
}

// RTPClockRate returns the codec's RTP timestamp rate as SDP's rtpmap
// names it: 48000 for Opus (RFC 7587 §4.1), 8000 for the others (G.722's
// is 8000 for a historical error kept by RFC 3551 §4.5.2).
func (c Codec) RTPClockRate() int {
	if c == Opus {
		return 48000
	}
	return ClockRate
}

// AudioRate returns the sample rate of the audio the codec carries, the
// highest mix rate a member using it can hear: 8000 for G.711, 16000 for
// G.722, 48000 for Opus.
func (c Codec) AudioRate() int {
	switch c {
	case G722:
		return 16000
	case Opus:
		return 48000
	}
	return ClockRate
}

// Channels returns the channel count of the codec's rtpmap: Opus is
// always signalled as 2 (RFC 7587 §7), the others as 1 (omitted).
func (c Codec) Channels() int {
	if c == Opus {
		return 2
	}
	return 1
}

// Stateless reports whether the Codec value itself encodes and decodes
// (G.711); the others need a per-stream encoder and decoder.
func (c Codec) Stateless() bool { return c == PCMU || c == PCMA }

// Decode decodes G.711 payload bytes into dst, one sample per byte, and
// returns the number of samples written (the shorter of the two lengths).
func (c Codec) Decode(dst []int16, payload []byte) int {
	n := min(len(dst), len(payload))
	table := &ulawToLinear
	if c == PCMA {
		table = &alawToLinear
	}
	for i := range n {
		dst[i] = table[payload[i]]
	}
	return n
}

// Encode encodes PCM samples into dst, one byte per sample, and returns the
// number of bytes written (the shorter of the two lengths).
func (c Codec) Encode(dst []byte, pcm []int16) int {
	n := min(len(dst), len(pcm))
	dst, pcm = dst[:n], pcm[:n]
	if c == PCMA {
		for i, x := range pcm {
			dst[i] = linearToAlaw[uint16(x)>>4]
		}
		return n
	}
	for i, x := range pcm {
		dst[i] = linearToUlaw[uint16(x)>>2]
	}
	return n
}

// EncodeSample encodes one sample, for loops that compute and encode in
// one pass; it inlines to a table lookup.
func (c Codec) EncodeSample(x int16) byte {
	if c == PCMA {
		return linearToAlaw[uint16(x)>>4]
	}
	return linearToUlaw[uint16(x)>>2]
}

// Silence returns the code word of a zero sample.
func (c Codec) Silence() byte {
	if c == PCMA {
		return 0xD5
	}
	return 0xFF
}
