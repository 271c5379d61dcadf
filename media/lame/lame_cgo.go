//go:build cgo

package lame

/*
#cgo LDFLAGS: -lmp3lame
#include <lame/lame.h>
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Encoder turns mono PCM into an MP3 stream. It is not safe for concurrent
// use; Close frees the C state and must be called.
type Encoder struct {
	gf   C.lame_t
	rate int
}

// NewEncoder returns an encoder of mono PCM at rate Hz to a constant
// bitrate MP3 at the same rate (no resampling in LAME), at kbps kbit/s
// (BitrateFor gives a default).
func NewEncoder(rate, kbps int) (*Encoder, error) {
	if !validRate(rate) {
		return nil, fmt.Errorf("%w: %d Hz", ErrRate, rate)
	}
	gf := C.lame_init()
	if gf == nil {
		return nil, fmt.Errorf("lame: lame_init failed")
	}
	e := &Encoder{gf: gf, rate: rate}
	C.lame_set_in_samplerate(gf, C.int(rate))
	C.lame_set_out_samplerate(gf, C.int(rate))
	C.lame_set_num_channels(gf, 1)
	C.lame_set_mode(gf, C.MONO)
	C.lame_set_brate(gf, C.int(kbps))
	C.lame_set_quality(gf, 5) // LAME's default: good quality at a moderate CPU cost
	// No Xing/LAME info frame: it is written at the start of the file once
	// the stream ends, which a streamed file cannot take back.
	C.lame_set_bWriteVbrTag(gf, 0)
	if rc := C.lame_init_params(gf); rc < 0 {
		C.lame_close(gf)
		return nil, fmt.Errorf("lame: init params (rate %d Hz, %d kbit/s): code %d", rate, kbps, int(rc))
	}
	return e, nil
}

// Rate returns the sample rate in Hz.
func (e *Encoder) Rate() int { return e.rate }

// Encode codes pcm into dst and returns the bytes written, which may be 0
// (LAME buffers up to a frame and a half). dst needs MaxOutput(len(pcm))
// bytes.
func (e *Encoder) Encode(dst []byte, pcm []int16) (int, error) {
	if e.gf == nil {
		return 0, ErrClosed
	}
	if len(pcm) == 0 {
		return 0, nil
	}
	if len(dst) < MaxOutput(len(pcm)) {
		return 0, fmt.Errorf("lame: output buffer of %d bytes, %d needed", len(dst), MaxOutput(len(pcm)))
	}
	p := (*C.short)(unsafe.Pointer(&pcm[0]))
	n := C.lame_encode_buffer(e.gf, p, p, C.int(len(pcm)), (*C.uchar)(unsafe.Pointer(&dst[0])), C.int(len(dst)))
	if n < 0 {
		return 0, fmt.Errorf("lame: encode: code %d", int(n))
	}
	return int(n), nil
}

// Flush writes what LAME still holds (the last frames, padded) into dst,
// which needs 7200 bytes, and returns the bytes written.
func (e *Encoder) Flush(dst []byte) (int, error) {
	if e.gf == nil {
		return 0, ErrClosed
	}
	if len(dst) < MaxOutput(0) {
		return 0, fmt.Errorf("lame: flush buffer of %d bytes, %d needed", len(dst), MaxOutput(0))
	}
	n := C.lame_encode_flush(e.gf, (*C.uchar)(unsafe.Pointer(&dst[0])), C.int(len(dst)))
	if n < 0 {
		return 0, fmt.Errorf("lame: flush: code %d", int(n))
	}
	return int(n), nil
}

// Close frees the encoder. It is safe to call twice.
func (e *Encoder) Close() error {
	if e.gf != nil {
		C.lame_close(e.gf)
		e.gf = nil
	}
	return nil
}
