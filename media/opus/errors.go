package opus

import "errors"

// Errors returned by the package. Failures inside libopus are wrapped with
// context around the library's own error value.
var (
	// ErrNoCgo means the binary was built without cgo, so libopus is absent.
	ErrNoCgo = errors.New("opus: built without cgo, libopus unavailable")
	// ErrEmptyPayload means Decode or DecodeFEC got no bytes. A lost packet
	// is concealed with Conceal, never decoded from nothing.
	ErrEmptyPayload = errors.New("opus: empty payload")
	// ErrInvalidPacket means a payload breaks the framing of RFC 6716 §3.
	ErrInvalidPacket = errors.New("opus: invalid packet")
	// ErrFrameSize means a frame duration Opus cannot code: a multiple of
	// 2.5 ms is needed (120 samples at 48 kHz), at most MaxFrameSamples, and
	// for Encode one of 2.5, 5, 10, 20, 40 or 60 ms.
	ErrFrameSize = errors.New("opus: unsupported frame size")
	// ErrShortBuffer means a destination buffer cannot hold the result.
	ErrShortBuffer = errors.New("opus: destination buffer too short")
	// ErrConfig means an encoder setting is out of range.
	ErrConfig = errors.New("opus: invalid encoder setting")
	// ErrFmtp means a known fmtp parameter has a malformed or out-of-range
	// value.
	ErrFmtp = errors.New("opus: malformed fmtp parameter")
)
