//go:build !cgo

package opus

// This file keeps the module building without cgo (CGO_ENABLED=0, cross
// builds): libopus cannot be linked, so nothing can be coded and every
// constructor says so. livekit/sip keeps a stub for the same reason.

// Available reports whether this build can code Opus: without cgo it
// cannot, and signalling must not offer or accept Opus.
const Available = false

// Encoder is unavailable without cgo; see the cgo build for the real one.
type Encoder struct{ cfg Config }

// NewEncoder returns ErrNoCgo.
func NewEncoder(cfg Config) (*Encoder, error) { return nil, ErrNoCgo }

// Config returns the zero Config.
func (e *Encoder) Config() Config { return e.cfg }

// SetBitrate returns ErrNoCgo.
func (e *Encoder) SetBitrate(bps int) error { return ErrNoCgo }

// SetExpectedLoss returns ErrNoCgo.
func (e *Encoder) SetExpectedLoss(percent int) error { return ErrNoCgo }

// Encode returns ErrNoCgo.
func (e *Encoder) Encode(dst []byte, pcm []int16) (int, error) { return 0, ErrNoCgo }

// Decoder is unavailable without cgo; see the cgo build for the real one.
type Decoder struct{}

// NewDecoder returns ErrNoCgo.
func NewDecoder() (*Decoder, error) { return nil, ErrNoCgo }

// Decode returns ErrNoCgo.
func (d *Decoder) Decode(dst []int16, payload []byte) (int, error) { return 0, ErrNoCgo }

// DecodeFEC returns ErrNoCgo.
func (d *Decoder) DecodeFEC(dst []int16, next []byte) (int, error) { return 0, ErrNoCgo }

// Conceal returns ErrNoCgo.
func (d *Decoder) Conceal(dst []int16, samples int) (int, error) { return 0, ErrNoCgo }
