package recfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	"chorus/media/ogg"
	"chorus/media/opus"
	"chorus/media/resample"
)

// Ogg Opus (RFC 7845): an identification header page, a comment header
// page, then one Opus packet per 20 ms, a page a second.
const (
	// oggPreSkip is the encoder's lookahead at 48 kHz (media/opus: 6.5 ms),
	// which a decoder drops from the start (RFC 7845 §4.2).
	oggPreSkip = 312
	// oggPagePackets is how many 20 ms packets a page holds: one second,
	// so that a reader of a growing file is at most a second behind.
	oggPagePackets = 50
	// oggBitrate: recordings are heard later and once, not sent over a
	// lossy link, so no FEC, and twice a call's 32 kbit/s: at 48 kbit/s a
	// steady tone's level wandered by up to 1.8 dB from second to second,
	// at 64 kbit/s (29 MB an hour, as the MP3) it stays within 0.5 dB.
	oggBitrate = 64000
	// oggVendor names the encoder in the comment header (RFC 7845 §5.2).
	oggVendor = "chorus (libopus)"
)

type oggWriter struct {
	w       io.Writer
	pw      *ogg.Writer
	enc     *opus.Encoder
	up      *resample.Resampler // nil at 48 kHz
	rate    int
	frame48 [opus.FrameSamples]int16
	packet  [opus.MaxPacketBytes]byte
	granule int64 // 48 kHz samples coded, the pre-skip included
	packets int
	closed  bool
}

func newOgg(w io.Writer, rate int) (*oggWriter, error) {
	cfg := opus.DefaultConfig()
	cfg.Bitrate, cfg.FEC, cfg.ExpectedLoss = oggBitrate, false, 0
	enc, err := opus.NewEncoder(cfg)
	if err != nil {
		return nil, fmt.Errorf("recfile: ogg opus: %w", err)
	}
	o := &oggWriter{w: w, pw: ogg.NewWriter(w, rand.Uint32()), enc: enc, rate: rate}
	if rate != opus.SampleRate {
		if o.up, err = resample.New(rate, opus.SampleRate); err != nil {
			return nil, fmt.Errorf("recfile: ogg opus from %d Hz: %w", rate, err)
		}
	}
	// Identification header, alone on the first page (RFC 7845 §5.1).
	head := make([]byte, 19)
	copy(head, "OpusHead")
	head[8] = 1 // version
	head[9] = 1 // channels
	binary.LittleEndian.PutUint16(head[10:], oggPreSkip)
	binary.LittleEndian.PutUint32(head[12:], uint32(rate)) // the input's rate, informational
	// head[16:18] output gain 0, head[18] mapping family 0 (mono/stereo).
	if err := o.pw.WritePacket(head, 0); err != nil {
		return nil, err
	}
	if err := o.pw.Flush(); err != nil {
		return nil, err
	}
	// Comment header, on the second page (RFC 7845 §5.2).
	tags := make([]byte, 0, 8+4+len(oggVendor)+4)
	tags = append(tags, "OpusTags"...)
	tags = binary.LittleEndian.AppendUint32(tags, uint32(len(oggVendor)))
	tags = append(tags, oggVendor...)
	tags = binary.LittleEndian.AppendUint32(tags, 0) // no user comments
	if err := o.pw.WritePacket(tags, 0); err != nil {
		return nil, err
	}
	if err := o.pw.Flush(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *oggWriter) Write(pcm []int16) error {
	if o.closed {
		return ErrClosed
	}
	n := o.rate / 50
	if !frameOK(len(pcm), o.rate) {
		return fmt.Errorf("%w: %d samples at %d Hz", ErrFrame, len(pcm), o.rate)
	}
	for ; len(pcm) > 0; pcm = pcm[n:] {
		f := pcm[:n]
		if o.up != nil {
			o.up.Process(o.frame48[:], f)
			f = o.frame48[:]
		}
		if err := o.encode(f, int64(opus.FrameSamples)); err != nil {
			return err
		}
	}
	return nil
}

// encode codes one 48 kHz frame whose packet ends at granule+advance.
func (o *oggWriter) encode(f []int16, advance int64) error {
	k, err := o.enc.Encode(o.packet[:], f)
	if err != nil {
		return fmt.Errorf("recfile: ogg opus: %w", err)
	}
	o.granule += advance
	if err := o.pw.WritePacket(o.packet[:k], o.granule); err != nil {
		return err
	}
	o.packets++
	if o.packets%oggPagePackets == 0 {
		return o.pw.Flush()
	}
	return nil
}

// Close codes one more frame of silence, so that the last pre-skip's
// worth of audio leaves the encoder, and ends the stream at the real
// length: its granule position stops pre-skip samples into that frame
// (end trimming, RFC 7845 §4.4).
func (o *oggWriter) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	clear(o.frame48[:])
	if err := o.encode(o.frame48[:], oggPreSkip); err != nil {
		return err
	}
	return o.pw.Close()
}
