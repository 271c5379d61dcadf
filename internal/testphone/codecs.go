package testphone

import (
	"fmt"

	"github.com/zaf/g711"

	"chorus/media/g722"
	"chorus/media/opus"
)

// encoders are the sending side's codec states, made at first use. They
// belong to the send loop.
type encoders struct {
	g722 *g722.Encoder
	opus *opus.Encoder
}

// encode codes one packet of pcm (at the codec's audio rate) into dst.
func (e *encoders) encode(codec string, dst []byte, pcm []int16) (int, error) {
	switch codec {
	case "G722":
		if e.g722 == nil {
			e.g722 = g722.NewEncoder()
		}
		return e.g722.Encode(dst, pcm), nil
	case "OPUS":
		if e.opus == nil {
			enc, err := opus.NewEncoder(opus.DefaultConfig())
			if err != nil {
				return 0, fmt.Errorf("testphone: opus encoder: %w", err)
			}
			e.opus = enc
		}
		return e.opus.Encode(dst, pcm)
	case "PCMA":
		for i, s := range pcm {
			dst[i] = g711.EncodeAlawFrame(s)
		}
		return len(pcm), nil
	}
	for i, s := range pcm {
		dst[i] = g711.EncodeUlawFrame(s)
	}
	return len(pcm), nil
}

// decoders are the receiving side's codec states, made at first use. They
// belong to the receive loop.
type decoders struct {
	g722 *g722.Decoder
	opus *opus.Decoder
	buf  []int16
}

// decode appends the PCM of one payload of codec to dst.
func (d *decoders) decode(codec string, dst []int16, payload []byte) ([]int16, error) {
	switch codec {
	case "G722":
		if d.g722 == nil {
			d.g722 = g722.NewDecoder()
		}
		n := len(payload) * 2
		dst = append(dst, make([]int16, n)...)
		d.g722.Decode(dst[len(dst)-n:], payload)
		return dst, nil
	case "OPUS":
		if d.opus == nil {
			dec, err := opus.NewDecoder()
			if err != nil {
				return dst, fmt.Errorf("testphone: opus decoder: %w", err)
			}
			d.opus, d.buf = dec, make([]int16, opus.MaxFrameSamples)
		}
		n, err := d.opus.Decode(d.buf, payload)
		if err != nil {
			return dst, fmt.Errorf("testphone: opus decode: %w", err)
		}
		return append(dst, d.buf[:n]...), nil
	case "PCMA":
		for _, b := range payload {
			dst = append(dst, g711.DecodeAlawFrame(b))
		}
		return dst, nil
	}
	for _, b := range payload {
		dst = append(dst, g711.DecodeUlawFrame(b))
	}
	return dst, nil
}
