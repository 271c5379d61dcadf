package opus

import "fmt"

// frameSamples is the duration at 48 kHz of one frame of each TOC
// configuration (RFC 6716 §3.1, Table 2): SILK-only NB, MB and WB at 10,
// 20, 40 and 60 ms; hybrid SWB and FB at 10 and 20 ms; CELT-only NB, WB,
// SWB and FB at 2.5, 5, 10 and 20 ms.
var frameSamples = [32]int16{
	480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 1920, 2880,
	480, 960, 480, 960,
	120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960,
}

// PacketSamples returns the duration of an Opus packet in samples at
// 48 kHz, read from its TOC byte and, for code 3, its frame count byte
// (RFC 6716 §3.1–3.2). It checks only what those bytes say (R5 of §3.4:
// at most 120 ms; a count of at least one frame), not the frame lengths;
// the decoder checks the rest. The jitter buffer can use it to place a
// packet of any ptime without decoding it.
func PacketSamples(payload []byte) (int, error) {
	if len(payload) == 0 {
		return 0, ErrEmptyPayload
	}
	per := int(frameSamples[payload[0]>>3])
	frames := 1
	switch payload[0] & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(payload) < 2 {
			return 0, fmt.Errorf("%w: code 3 packet without a frame count", ErrInvalidPacket)
		}
		frames = int(payload[1] & 0x3f)
		if frames == 0 {
			return 0, fmt.Errorf("%w: code 3 packet of zero frames", ErrInvalidPacket)
		}
	}
	if n := per * frames; n <= MaxFrameSamples {
		return n, nil
	}
	return 0, fmt.Errorf("%w: %d frames of %d samples exceed 120 ms", ErrInvalidPacket, frames, per)
}

// IsDTX reports whether payload is a DTX frame, 1 or 2 bytes (RFC 7587
// §3.1.3): the sender is in silence, and Decode turns it into comfort noise
// or silence. Such a frame is a normal packet to decode, not a loss.
func IsDTX(payload []byte) bool {
	return len(payload) == 1 || len(payload) == 2
}
