package audiofile

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/zaf/g711"
)

// WAVE format tags (RFC 2361 and mmreg.h).
const (
	wavPCM        = 0x0001
	wavFloat      = 0x0003
	wavALaw       = 0x0006
	wavMuLaw      = 0x0007
	wavExtensible = 0xFFFE
)

// wavFormat is the part of a "fmt " chunk this package needs.
type wavFormat struct {
	tag      uint16
	channels int
	rate     int
	width    int // bytes per sample in the data chunk
}

func parseWAVFormat(b []byte) (wavFormat, error) {
	if len(b) < 16 {
		return wavFormat{}, fmt.Errorf("%w: WAV fmt chunk of %d bytes", ErrMalformed, len(b))
	}
	f := wavFormat{
		tag:      binary.LittleEndian.Uint16(b[0:]),
		channels: int(binary.LittleEndian.Uint16(b[2:])),
		rate:     int(binary.LittleEndian.Uint32(b[4:])),
	}
	blockAlign := int(binary.LittleEndian.Uint16(b[12:]))
	bits := int(binary.LittleEndian.Uint16(b[14:]))
	if f.tag == wavExtensible {
		if len(b) < 26 {
			return wavFormat{}, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes", ErrMalformed, len(b))
		}
		// The sub-format GUID starts with the plain format tag.
		f.tag = binary.LittleEndian.Uint16(b[24:])
	}
	if f.channels < 1 || f.channels > 32 {
		return wavFormat{}, fmt.Errorf("%w: WAV with %d channels", ErrMalformed, f.channels)
	}
	if f.rate < minRate || f.rate > maxRate {
		return wavFormat{}, fmt.Errorf("%w: WAV sample rate %d Hz", ErrUnsupportedFormat, f.rate)
	}
	switch f.tag {
	case wavPCM:
		if bits < 1 || bits > 32 {
			return wavFormat{}, fmt.Errorf("%w: %d-bit PCM WAV", ErrUnsupportedFormat, bits)
		}
		// Samples are left-justified in whole bytes; a block alignment that
		// says the container is wider (24 bits in 4 bytes) wins.
		f.width = (bits + 7) / 8
		if blockAlign%f.channels == 0 {
			if c := blockAlign / f.channels; c > f.width && c <= 4 {
				f.width = c
			}
		}
	case wavFloat:
		if bits != 32 && bits != 64 {
			return wavFormat{}, fmt.Errorf("%w: %d-bit float WAV", ErrUnsupportedFormat, bits)
		}
		f.width = bits / 8
	case wavALaw, wavMuLaw:
		if bits != 8 {
			return wavFormat{}, fmt.Errorf("%w: %d-bit G.711 WAV", ErrUnsupportedFormat, bits)
		}
		f.width = 1
	default:
		return wavFormat{}, fmt.Errorf("%w: WAV format tag 0x%04x", ErrUnsupportedFormat, f.tag)
	}
	return f, nil
}

// riffChunks finds the "fmt " and "data" chunks of a RIFF/WAVE file. A
// chunk whose size runs past the end of the file ends at the end of the
// file: streaming writers (espeak-ng --stdout) cannot fill in sizes.
func riffChunks(data []byte) (fmtChunk, pcm []byte, err error) {
	gotData := false
	pos := int64(12)
	end := int64(len(data))
	for pos+8 <= end {
		id := string(data[pos : pos+4])
		size := int64(binary.LittleEndian.Uint32(data[pos+4:]))
		body := pos + 8
		stop := min(body+size, end)
		switch id {
		case "fmt ":
			if fmtChunk == nil {
				fmtChunk = data[body:stop]
			}
		case "data":
			if !gotData {
				pcm, gotData = data[body:stop], true
			}
		}
		if fmtChunk != nil && gotData {
			break
		}
		pos = body + size + size&1 // chunks are padded to even sizes
	}
	if fmtChunk == nil {
		return nil, nil, fmt.Errorf("%w: WAV without fmt chunk", ErrMalformed)
	}
	if !gotData {
		return nil, nil, fmt.Errorf("%w: WAV without data chunk", ErrMalformed)
	}
	return fmtChunk, pcm, nil
}

func decodeWAV(data []byte, lim limits) (Audio, error) {
	fmtChunk, pcm, err := riffChunks(data)
	if err != nil {
		return Audio{}, err
	}
	f, err := parseWAVFormat(fmtChunk)
	if err != nil {
		return Audio{}, err
	}
	frameSize := f.width * f.channels
	frames := len(pcm) / frameSize
	if frames == 0 {
		return Audio{}, ErrEmpty
	}
	rate := lim.outRate(f.rate)
	want := outputLen(int64(frames), f.rate, rate)
	if want > lim.maxSamples(rate) {
		d := time.Duration(frames) * time.Second / time.Duration(f.rate)
		return Audio{}, fmt.Errorf("%w: %s, limit %s", ErrTooLong, d.Round(time.Millisecond), lim.dur)
	}
	sample := sampleReader(f)
	s := newSink(f.rate, lim, want)
	const chunk = 4096
	mono := make([]float32, 0, chunk)
	scale := 1 / float32(f.channels)
	for start := 0; start < frames; start += chunk {
		mono = mono[:0]
		for fr := start; fr < min(start+chunk, frames); fr++ {
			b := pcm[fr*frameSize : (fr+1)*frameSize]
			var sum float32
			for c := range f.channels {
				sum += sample(b[c*f.width : (c+1)*f.width])
			}
			mono = append(mono, sum*scale)
		}
		if err := s.write(mono); err != nil {
			return Audio{}, err
		}
	}
	return s.finish()
}

// sampleReader returns a function that converts one sample of f (width
// bytes) to a float in [-1, 1]. Non-finite floats read as 0.
func sampleReader(f wavFormat) func([]byte) float32 {
	switch f.tag {
	case wavALaw:
		return func(b []byte) float32 { return float32(g711.DecodeAlawFrame(b[0])) / 32768 }
	case wavMuLaw:
		return func(b []byte) float32 { return float32(g711.DecodeUlawFrame(b[0])) / 32768 }
	case wavFloat:
		finite := func(v float64) float32 {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0
			}
			return float32(max(-4, min(4, v)))
		}
		if f.width == 8 {
			return func(b []byte) float32 { return finite(math.Float64frombits(binary.LittleEndian.Uint64(b))) }
		}
		return func(b []byte) float32 {
			return finite(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
		}
	}
	switch f.width {
	case 1:
		return func(b []byte) float32 { return (float32(b[0]) - 128) / 128 }
	case 2:
		return func(b []byte) float32 { return float32(int16(binary.LittleEndian.Uint16(b))) / (1 << 15) }
	case 3:
		return func(b []byte) float32 {
			v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
			return float32(v) / (1 << 23)
		}
	default:
		return func(b []byte) float32 { return float32(int32(binary.LittleEndian.Uint32(b))) / (1 << 31) }
	}
}
