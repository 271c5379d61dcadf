// Package lame encodes mono 16-bit PCM to MP3 through libmp3lame (LAME,
// the reference MPEG-1/2/2.5 Layer III encoder; Debian's libmp3lame-dev)
// with cgo. It is the smallest binding that recording needs: one mono
// constant-bitrate stream, fed in frames and flushed at the end.
//
// There is no maintained Go wrapper of LAME on the module proxy (the ones
// that exist were last touched years ago and bind far more), so this
// package binds the five calls it uses itself.
//
// A build without cgo gets constructors that return [ErrNoCgo].
package lame

import "errors"

// Errors of the package.
var (
	// ErrNoCgo: the binary was built without cgo, so LAME is not linked.
	ErrNoCgo = errors.New("lame: built without cgo: mp3 encoding unavailable")
	// ErrRate: LAME writes MP3 at 8, 11.025, 12, 16, 22.05, 24, 32, 44.1
	// and 48 kHz; Chorus asks for 8, 16 or 48.
	ErrRate = errors.New("lame: unsupported sample rate")
	// ErrClosed: the encoder was closed.
	ErrClosed = errors.New("lame: encoder closed")
)

// BitrateFor is the constant bitrate (kbit/s) used for mono speech at
// rate Hz: enough that a tone's level survives within a fraction of a dB,
// small enough for hours of conference (64 kbit/s is 29 MB an hour).
func BitrateFor(rate int) int {
	switch {
	case rate <= 8000:
		return 24
	case rate <= 16000:
		return 48
	}
	return 64
}

// MaxOutput is the worst-case MP3 output of encoding n samples, as LAME's
// lame.h documents for its mp3buf: 1.25·n + 7200 bytes.
func MaxOutput(n int) int { return n + n/4 + 7200 }

// validRate reports whether LAME can write MP3 at rate without
// resampling.
func validRate(rate int) bool {
	switch rate {
	case 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000:
		return true
	}
	return false
}
