package media

import "errors"

// Errors returned by the package.
var (
	// ErrNoPorts means every RTP port of the configured range is in use.
	ErrNoPorts = errors.New("media: no free RTP port")
	// ErrClosed means the session was closed.
	ErrClosed = errors.New("media: session closed")
	// ErrNoRemote means the session has no address to send to yet.
	ErrNoRemote = errors.New("media: no remote address")
	// ErrUnproven means a packet was not sent: no packet from the far end
	// proved its address within SendGrace.
	ErrUnproven = errors.New("media: remote address not proven")
	// ErrTooLarge means a payload does not fit the largest packet a
	// session sends (an RTP header and a 1276-byte Opus packet).
	ErrTooLarge = errors.New("media: payload too large")
)
