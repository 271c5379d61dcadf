//go:build cgo

package opus

import (
	"fmt"

	libopus "gopkg.in/hraban/opus.v2"
)

// Available reports whether this build can code Opus: it links libopus.
const Available = true

// Encoder codes 48 kHz mono PCM into Opus packets for one call, with the
// VoIP application of libopus (tuned for speech intelligibility). It is not
// safe for concurrent use.
type Encoder struct {
	enc *libopus.Encoder
	cfg Config
}

// NewEncoder returns an encoder set up by cfg (see DefaultConfig).
func NewEncoder(cfg Config) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	enc, err := libopus.NewEncoder(SampleRate, 1, libopus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("opus: new encoder: %w", err)
	}
	e := &Encoder{enc: enc}
	if err := e.apply(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// apply hands every setting of cfg to libopus.
func (e *Encoder) apply(cfg Config) error {
	steps := []struct {
		what string
		set  func() error
	}{
		{"bitrate", func() error { return e.enc.SetBitrate(cfg.Bitrate) }},
		{"complexity", func() error { return e.enc.SetComplexity(cfg.Complexity) }},
		{"in-band FEC", func() error { return e.enc.SetInBandFEC(cfg.FEC) }},
		{"expected loss", func() error { return e.enc.SetPacketLossPerc(cfg.ExpectedLoss) }},
		{"DTX", func() error { return e.enc.SetDTX(cfg.DTX) }},
		{"max bandwidth", func() error { return e.enc.SetMaxBandwidth(bandwidthFor(cfg.MaxPlaybackRate)) }},
	}
	for _, s := range steps {
		if err := s.set(); err != nil {
			return fmt.Errorf("opus: set %s: %w", s.what, err)
		}
	}
	e.cfg = cfg
	return nil
}

// bandwidthFor is the widest Opus audio band a receiver playing at rate Hz
// can hear (RFC 7587 §6.1, maxplaybackrate; RFC 6716 §2 Table 1).
func bandwidthFor(rate int) libopus.Bandwidth {
	switch {
	case rate <= 8000:
		return libopus.Narrowband
	case rate <= 12000:
		return libopus.Mediumband
	case rate <= 16000:
		return libopus.Wideband
	case rate <= 24000:
		return libopus.SuperWideband
	}
	return libopus.Fullband
}

// Config returns the settings in force.
func (e *Encoder) Config() Config { return e.cfg }

// SetBitrate changes the target bitrate (bit/s, 6000 to 510000) from the
// next frame on, e.g. after a peer's maxaveragebitrate or loss reports.
func (e *Encoder) SetBitrate(bps int) error {
	c := e.cfg
	c.Bitrate = bps
	if err := c.Validate(); err != nil {
		return err
	}
	if err := e.enc.SetBitrate(bps); err != nil {
		return fmt.Errorf("opus: set bitrate: %w", err)
	}
	e.cfg = c
	return nil
}

// SetExpectedLoss changes the packet loss (percent) that FEC is sized for.
func (e *Encoder) SetExpectedLoss(percent int) error {
	c := e.cfg
	c.ExpectedLoss = percent
	if err := c.Validate(); err != nil {
		return err
	}
	if err := e.enc.SetPacketLossPerc(percent); err != nil {
		return fmt.Errorf("opus: set expected loss: %w", err)
	}
	e.cfg = c
	return nil
}

// Encode codes one frame of pcm (960 samples for the 20 ms Chorus sends;
// 120, 240, 480, 1920 and 2880 work too) into dst and returns the packet's
// length. dst of MaxPacketBytes always suffices; a shorter one caps the
// packet. With DTX on, a result of 1 or 2 bytes is a silence frame that
// need not be sent (RFC 7587 §3.1.3). It allocates nothing.
func (e *Encoder) Encode(dst []byte, pcm []int16) (int, error) {
	if !validEncodeSize(len(pcm)) {
		return 0, fmt.Errorf("%w: encode %d samples", ErrFrameSize, len(pcm))
	}
	if len(dst) < 3 {
		return 0, fmt.Errorf("%w: %d bytes for a packet", ErrShortBuffer, len(dst))
	}
	// hraban/opus writes up to cap(dst): the full slice expression keeps it
	// inside what the caller handed over.
	n, err := e.enc.Encode(pcm, dst[:len(dst):len(dst)])
	if err != nil {
		return 0, fmt.Errorf("opus: encode %d samples: %w", len(pcm), err)
	}
	return n, nil
}

// Decoder turns Opus packets from one call into 48 kHz mono PCM, folding
// stereo packets down. It is not safe for concurrent use.
type Decoder struct {
	dec *libopus.Decoder
}

// NewDecoder returns a decoder at 48 kHz mono.
func NewDecoder() (*Decoder, error) {
	dec, err := libopus.NewDecoder(SampleRate, 1)
	if err != nil {
		return nil, fmt.Errorf("opus: new decoder: %w", err)
	}
	return &Decoder{dec: dec}, nil
}

// Decode decodes one packet of any duration (2.5 to 120 ms) into dst and
// returns the number of samples written. dst must hold the whole packet
// (PacketSamples tells; MaxFrameSamples always suffices), else the error
// wraps ErrShortBuffer. A DTX packet (IsDTX) decodes to comfort noise or
// silence. A malformed payload is an error, never a panic. It allocates
// nothing when it succeeds.
func (d *Decoder) Decode(dst []int16, payload []byte) (int, error) {
	if len(payload) == 0 {
		return 0, ErrEmptyPayload
	}
	// The TOC says how long the packet is: a short dst gets a clear error
	// rather than libopus' BUFFER_TOO_SMALL.
	want, err := PacketSamples(payload)
	if err != nil {
		return 0, err
	}
	if want > len(dst) {
		return 0, fmt.Errorf("%w: %d-sample packet into %d", ErrShortBuffer, want, len(dst))
	}
	// The full slice expression: hraban/opus decodes up to cap(dst).
	n, err := d.dec.Decode(payload, dst[:len(dst):len(dst)])
	if err != nil {
		return 0, fmt.Errorf("opus: decode %d-byte payload: %w", len(payload), err)
	}
	return n, nil
}

// DecodeFEC recovers a lost packet from the in-band FEC data of next, the
// packet that followed it (RFC 7587 §3.3; opus_decode with decode_fec=1).
// len(dst) must be the lost duration, a multiple of 2.5 ms (120 samples)
// up to MaxFrameSamples; it returns len(dst). When next carries no FEC
// data, libopus conceals instead, as Conceal would. next itself is not
// consumed: decode it with Decode afterwards. It allocates nothing when it
// succeeds.
func (d *Decoder) DecodeFEC(dst []int16, next []byte) (int, error) {
	if len(next) == 0 {
		return 0, ErrEmptyPayload
	}
	if !validLossSize(len(dst)) {
		return 0, fmt.Errorf("%w: recover %d samples", ErrFrameSize, len(dst))
	}
	if err := d.dec.DecodeFEC(next, dst[:len(dst):len(dst)]); err != nil {
		return 0, fmt.Errorf("opus: FEC from %d-byte payload: %w", len(next), err)
	}
	return len(dst), nil
}

// Conceal fills dst[:samples] with packet loss concealment for a lost
// packet of that duration (opus_decode with no data): a continuation of
// the last speech that fades out over a long loss. samples must be a
// multiple of 2.5 ms (120) up to MaxFrameSamples and fit dst; it returns
// samples. It allocates nothing when it succeeds.
func (d *Decoder) Conceal(dst []int16, samples int) (int, error) {
	if !validLossSize(samples) {
		return 0, fmt.Errorf("%w: conceal %d samples", ErrFrameSize, samples)
	}
	if samples > len(dst) {
		return 0, fmt.Errorf("%w: conceal %d samples into %d", ErrShortBuffer, samples, len(dst))
	}
	if err := d.dec.DecodePLC(dst[:samples:samples]); err != nil {
		return 0, fmt.Errorf("opus: conceal %d samples: %w", samples, err)
	}
	return samples, nil
}
