package audiofile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hajimehoshi/go-mp3"
)

// checkMPEGHeader tells whether h (4 bytes starting with the 11-bit frame
// sync) is a frame header go-mp3 can decode: MPEG-1, 2 or 2.5 Layer III
// with a valid bit rate and sample rate.
func checkMPEGHeader(h []byte) error {
	version := h[1] >> 3 & 3 // 0 = MPEG-2.5, 1 = reserved, 2 = MPEG-2, 3 = MPEG-1
	layer := h[1] >> 1 & 3   // 1 = Layer III, 2 = Layer II, 3 = Layer I
	bitrate := h[2] >> 4
	rate := h[2] >> 2 & 3
	if version == 1 || layer == 0 || bitrate == 15 || rate == 3 {
		return ErrUnsupportedFormat
	}
	if layer != 1 {
		return fmt.Errorf("%w: MPEG audio layer %d (only Layer III, MP3, is supported)", ErrUnsupportedFormat, 4-layer)
	}
	if bitrate == 0 {
		return fmt.Errorf("%w: free-format MP3", ErrUnsupportedFormat)
	}
	return nil
}

// skipID3 returns data after any leading ID3v2 tags.
func skipID3(data []byte) ([]byte, error) {
	for len(data) >= 3 && bytes.Equal(data[:3], []byte("ID3")) {
		if len(data) < 10 {
			return nil, fmt.Errorf("%w: truncated ID3 tag", ErrMalformed)
		}
		sz := data[6:10]
		if (sz[0]|sz[1]|sz[2]|sz[3])&0x80 != 0 {
			return nil, fmt.Errorf("%w: bad ID3 tag size", ErrMalformed)
		}
		size := int(sz[0])<<21 | int(sz[1])<<14 | int(sz[2])<<7 | int(sz[3])
		size += 10
		if data[5]&0x10 != 0 { // footer present
			size += 10
		}
		if size > len(data) {
			return nil, fmt.Errorf("%w: ID3 tag of %d bytes in %d", ErrMalformed, size, len(data))
		}
		data = data[size:]
	}
	return data, nil
}

// readerOnly hides bytes.Reader's Seek so go-mp3 does not pre-scan the
// whole stream for frame offsets.
type readerOnly struct{ io.Reader }

func decodeMP3(data []byte, lim limits) (pcm Audio, err error) {
	body, err := skipID3(data)
	if err != nil {
		return Audio{}, err
	}
	if len(body) < 4 {
		return Audio{}, fmt.Errorf("%w: ID3 tag without MPEG audio", ErrEmpty)
	}
	// go-mp3 is not hardened against hostile input; a panic in it is a
	// malformed file, not a crash of the caller.
	defer func() {
		if r := recover(); r != nil {
			pcm, err = Audio{}, fmt.Errorf("%w: MP3 decoder: %v", ErrMalformed, r)
		}
	}()
	dec, err := mp3.NewDecoder(readerOnly{bytes.NewReader(body)})
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Audio{}, fmt.Errorf("%w: no MPEG audio frame", ErrMalformed)
		}
		return Audio{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	rate := dec.SampleRate()
	if rate < minRate || rate > maxRate {
		return Audio{}, fmt.Errorf("%w: MP3 sample rate %d Hz", ErrMalformed, rate)
	}
	// An MP3 at 32 to 128 kbit/s gives 0.5 to 2 samples per byte at
	// 8 kHz, 3 to 12 at 48 kHz: room for 128 kbit/s, the usual, to start
	// with, so as not to hold 4 times a file's PCM while it decodes.
	s := newSink(rate, lim, int64(len(body))*int64(lim.outRate(rate))/16000)
	buf := make([]byte, 16384) // 16-bit stereo frames of 4 bytes
	mono := make([]float32, 0, len(buf)/4)
	var carry []byte
	decoded := false
	for {
		n, rerr := dec.Read(buf[len(carry):])
		copy(buf, carry)
		n += len(carry)
		whole := n - n%4
		mono = mono[:0]
		for i := 0; i < whole; i += 4 {
			l := int16(binary.LittleEndian.Uint16(buf[i:]))
			r := int16(binary.LittleEndian.Uint16(buf[i+2:]))
			mono = append(mono, (float32(l)+float32(r))/65536)
		}
		carry = append(carry[:0], buf[whole:n]...)
		if len(mono) > 0 {
			decoded = true
			if err := s.write(mono); err != nil {
				return Audio{}, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if decoded {
				break // keep the good frames before a broken one
			}
			return Audio{}, fmt.Errorf("%w: %v", ErrMalformed, rerr)
		}
	}
	return s.finish()
}
