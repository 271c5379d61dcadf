package opus

import (
	"fmt"
	"strconv"
	"strings"
)

// Fmtp holds the Opus parameters of an SDP `a=fmtp` line (RFC 7587 §6.1,
// mapped to SDP by §7). A zero field means the parameter was absent, which
// for every flag is also the RFC's default (0); absent rates and bitrates
// mean "no limit" (use PlaybackRate for the effective playback rate).
type Fmtp struct {
	// MaxPlaybackRate is the highest sample rate the receiver can play, Hz.
	MaxPlaybackRate int
	// SpropMaxCaptureRate is the highest rate the sender captures at, Hz.
	SpropMaxCaptureRate int
	// MaxAverageBitrate caps the average bitrate the receiver wants, bit/s.
	MaxAverageBitrate int
	// Stereo: the receiver prefers stereo (Chorus still sends mono).
	Stereo bool
	// SpropStereo: the sender is likely to send stereo.
	SpropStereo bool
	// CBR: the receiver prefers constant bitrate.
	CBR bool
	// UseInbandFEC: the receiver can use in-band FEC, so sending it pays.
	UseInbandFEC bool
	// UseDTX: the receiver prefers discontinuous transmission.
	UseDTX bool
	// Ptime, MinPtime and MaxPtime are packet durations in ms, when a peer
	// puts them in fmtp rather than in a=ptime / a=maxptime.
	Ptime, MinPtime, MaxPtime int
}

// ParseFmtp reads the value of an Opus fmtp attribute, such as
// "minptime=10;useinbandfec=1" (the text after the payload type):
// semicolon-separated key=value pairs, keys case-insensitive, spaces
// around either ignored, unknown keys ignored (RFC 4566 §6). A known key
// with a malformed or out-of-range value is left at zero and reported in
// the error (wrapping ErrFmtp) while the other parameters are still
// returned, so a caller may use them and log the error once per call.
func ParseFmtp(s string) (Fmtp, error) {
	var f Fmtp
	var first error
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, ";")
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, val, ok := strings.Cut(pair, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if err := f.set(key, val, ok); err != nil && first == nil {
			first = err
		}
	}
	return f, first
}

// set stores one parameter; has says whether the pair had an '='.
func (f *Fmtp) set(key, val string, has bool) error {
	var (
		num    *int
		lo, hi int
		flag   *bool
	)
	switch strings.ToLower(key) {
	case "maxplaybackrate":
		num, lo, hi = &f.MaxPlaybackRate, 8000, SampleRate
	case "sprop-maxcapturerate":
		num, lo, hi = &f.SpropMaxCaptureRate, 8000, SampleRate
	case "maxaveragebitrate":
		num, lo, hi = &f.MaxAverageBitrate, 6000, 510000
	case "ptime":
		num, lo, hi = &f.Ptime, 1, 120
	case "minptime":
		num, lo, hi = &f.MinPtime, 1, 120
	case "maxptime":
		num, lo, hi = &f.MaxPtime, 1, 120
	case "stereo":
		flag = &f.Stereo
	case "sprop-stereo":
		flag = &f.SpropStereo
	case "cbr":
		flag = &f.CBR
	case "useinbandfec":
		flag = &f.UseInbandFEC
	case "usedtx":
		flag = &f.UseDTX
	default:
		return nil
	}
	if !has {
		return fmt.Errorf("%w: %q has no value", ErrFmtp, key)
	}
	if flag != nil {
		switch val {
		case "0":
			*flag = false
		case "1":
			*flag = true
		default:
			return fmt.Errorf("%w: %s=%q, want 0 or 1", ErrFmtp, key, val)
		}
		return nil
	}
	v, err := strconv.Atoi(val)
	if err != nil || v < lo || v > hi {
		return fmt.Errorf("%w: %s=%q, want an integer in %d..%d", ErrFmtp, key, val, lo, hi)
	}
	*num = v
	return nil
}

// PlaybackRate is the receiver's playback rate in Hz: MaxPlaybackRate, or
// 48000 when absent (RFC 7587 §6.1).
func (f Fmtp) PlaybackRate() int {
	if f.MaxPlaybackRate == 0 {
		return SampleRate
	}
	return f.MaxPlaybackRate
}

// EncoderConfig adapts base to what a receiver that sent f asks of its
// sender (RFC 7587 §6.1): no band above its playback rate, no more than
// its average bitrate, FEC only if it will use it, DTX only if it prefers
// it and base allows it. Stereo and CBR are not honoured: Chorus sends mono
// VBR, which every Opus decoder plays.
func (f Fmtp) EncoderConfig(base Config) Config {
	c := base
	c.MaxPlaybackRate = min(c.MaxPlaybackRate, f.PlaybackRate())
	if f.MaxAverageBitrate > 0 {
		c.Bitrate = min(c.Bitrate, f.MaxAverageBitrate)
	}
	c.FEC = c.FEC && f.UseInbandFEC
	c.DTX = c.DTX && f.UseDTX
	return c
}

// String formats f as an fmtp value in the order of RFC 7587 §6.1, listing
// only the parameters that differ from their absent value; ParseFmtp reads
// it back to f.
func (f Fmtp) String() string {
	var b strings.Builder
	num := func(k string, v int) {
		if v != 0 {
			if b.Len() > 0 {
				b.WriteByte(';')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(v))
		}
	}
	flag := func(k string, v bool) {
		if v {
			num(k, 1)
		}
	}
	num("maxplaybackrate", f.MaxPlaybackRate)
	num("sprop-maxcapturerate", f.SpropMaxCaptureRate)
	num("maxaveragebitrate", f.MaxAverageBitrate)
	flag("stereo", f.Stereo)
	flag("sprop-stereo", f.SpropStereo)
	flag("cbr", f.CBR)
	flag("useinbandfec", f.UseInbandFEC)
	flag("usedtx", f.UseDTX)
	num("ptime", f.Ptime)
	num("minptime", f.MinPtime)
	num("maxptime", f.MaxPtime)
	return b.String()
}
