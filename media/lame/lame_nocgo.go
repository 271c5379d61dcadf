//go:build !cgo

package lame

// Encoder is unavailable without cgo.
type Encoder struct{}

// NewEncoder returns ErrNoCgo.
func NewEncoder(rate, kbps int) (*Encoder, error) { return nil, ErrNoCgo }

// Rate returns 0.
func (e *Encoder) Rate() int { return 0 }

// Encode returns ErrNoCgo.
func (e *Encoder) Encode(dst []byte, pcm []int16) (int, error) { return 0, ErrNoCgo }

// Flush returns ErrNoCgo.
func (e *Encoder) Flush(dst []byte) (int, error) { return 0, ErrNoCgo }

// Close does nothing.
func (e *Encoder) Close() error { return nil }
