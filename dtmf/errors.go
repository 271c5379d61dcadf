package dtmf

import "errors"

// Sentinel errors. Functions wrap them with context where the path is not
// allocation-sensitive; test with [errors.Is].
var (
	// ErrShortPayload is returned when a telephone-event payload is shorter
	// than the 4 bytes of RFC 4733 §2.3.
	ErrShortPayload = errors.New("dtmf: telephone-event payload shorter than 4 bytes")
	// ErrShortBuffer is returned when a destination buffer cannot hold a
	// 4-byte payload.
	ErrShortBuffer = errors.New("dtmf: buffer shorter than 4 bytes")
	// ErrInvalidVolume is returned when a volume does not fit in 6 bits (0-63).
	ErrInvalidVolume = errors.New("dtmf: volume out of range 0-63")
	// ErrInvalidDigit is returned for a character or code that is not one of
	// 0-9, *, #, A-D.
	ErrInvalidDigit = errors.New("dtmf: not a DTMF digit")
	// ErrInvalidDuration is returned when a duration or packet interval is not
	// positive or does not fit the 16-bit duration field.
	ErrInvalidDuration = errors.New("dtmf: invalid duration")
	// ErrUnsupportedContentType is returned by [ParseInfo] for a SIP INFO body
	// type other than application/dtmf-relay and application/dtmf.
	ErrUnsupportedContentType = errors.New("dtmf: unsupported SIP INFO content type")
	// ErrNoSignal is returned by [ParseInfo] when an application/dtmf-relay
	// body has no Signal line or an application/dtmf body is empty.
	ErrNoSignal = errors.New("dtmf: SIP INFO body has no signal")
)
