// Package audiofile turns audio files (WAV and MP3) into mono signed
// 16-bit PCM at one of the rates the conference mixer works at (8, 16 or
// 48 kHz), keeping the band the file has.
//
// The format is detected from the content, never from a file name or a
// Content-Type header: a RIFF/WAVE header means WAV, an ID3v2 tag or an
// MPEG-1/2/2.5 Layer III frame header at the start means MP3. Everything is
// converted to mono by averaging the channels and resampled to its
// [SourceRate] (a 22.05 or 44.1 kHz file to 48 kHz, an 11.025 kHz one to
// 16 kHz) with a Kaiser-windowed sinc low-pass filter, so content above
// the lower rate's Nyquist frequency is removed rather than folded back.
// The mixer brings a playback from its rate to the room's (bridge.Playback).
//
// [Fetcher] downloads a file over HTTP(S) with a timeout and a size cap and
// decodes it.
package audiofile

import (
	"bytes"
	"errors"
	"time"
)

// DefaultMaxSeconds is the longest audio, in seconds, that [Decode] accepts.
const DefaultMaxSeconds = 30 * 60

// DefaultMaxDuration is [DefaultMaxSeconds] as a duration.
const DefaultMaxDuration = DefaultMaxSeconds * time.Second

// MaxRate is the highest rate Decode gives: that of the fastest mix
// (48 kHz, Opus's).
const MaxRate = 48000

// Audio is decoded audio: mono signed 16-bit samples at Rate, one of the
// rates the conference mixer works at (8000, 16000 or 48000 Hz).
type Audio struct {
	Samples []int16
	Rate    int
}

// Duration returns how long the audio plays.
func (a Audio) Duration() time.Duration {
	if a.Rate <= 0 {
		return 0
	}
	return time.Duration(len(a.Samples)) * time.Second / time.Duration(a.Rate)
}

// SourceRate is the rate Decode gives a file recorded at rate: rate
// rounded up to a mix rate (8000, 16000 or 48000 Hz), so that a file keeps
// the band it has (a 16 kHz WAV is heard in HD by wideband members, a
// 44.1 kHz MP3 in full by Opus members) and memory grows only for
// wideband files: a minute of audio is 0.96 MB at 8 kHz, 1.9 MB at 16 kHz
// and 5.8 MB at 48 kHz. Telephone-band files (up to 8 kHz) stay at 8 kHz:
// a narrowband room plays them with no resampling at all.
func SourceRate(rate int) int {
	switch {
	case rate <= 8000:
		return 8000
	case rate <= 16000:
		return 16000
	}
	return 48000
}

// Errors returned by Decode, DecodeLimit and Fetcher.Fetch. They are
// wrapped with detail; test for them with errors.Is.
var (
	// ErrUnsupportedFormat means the content is not WAV or MP3, or is a WAV
	// or MPEG encoding this package does not decode (ADPCM, MPEG Layer II...).
	ErrUnsupportedFormat = errors.New("audiofile: unsupported audio format")
	// ErrMalformed means the content looks like WAV or MP3 but its headers
	// or frames are broken.
	ErrMalformed = errors.New("audiofile: malformed audio file")
	// ErrEmpty means there is no data, or the file holds no samples.
	ErrEmpty = errors.New("audiofile: no audio")
	// ErrTooLong means the decoded audio is longer than the limit.
	ErrTooLong = errors.New("audiofile: audio too long")
	// ErrTooLarge means a download is bigger than Fetcher.MaxBytes.
	ErrTooLarge = errors.New("audiofile: file too large")
	// ErrUnsupportedScheme means a URL is not http or https.
	ErrUnsupportedScheme = errors.New("audiofile: unsupported URL scheme")
)

// Decode detects the format from the content (RIFF/WAVE header, or MP3
// frame sync / ID3 tag), decodes it and converts it to mono int16 at the
// file's [SourceRate]. Audio longer than [DefaultMaxSeconds] is rejected
// with [ErrTooLong]. The result does not alias data.
func Decode(data []byte) (Audio, error) {
	return DecodeLimit(data, DefaultMaxDuration, MaxRate)
}

// DecodeLimit is [Decode] with a cap on the decoded duration and on the
// rate: audio longer than maxDuration is rejected with [ErrTooLong]
// (maxDuration <= 0 means [DefaultMaxDuration]), and a file faster than
// maxRate is resampled down to [SourceRate](maxRate) (maxRate <= 0 means
// [MaxRate]; speech, for one, carries nothing above 8 kHz worth three
// times the memory). The cap is a duration, not a count of samples, so
// that it means the same whatever the file's rate.
//
// Supported WAV encodings: PCM of 1 to 32 bits (8-bit and below unsigned),
// IEEE float of 32 or 64 bits, A-law (format 6) and µ-law (format 7), also
// inside WAVE_FORMAT_EXTENSIBLE, at sample rates from 1000 to 384000 Hz with
// 1 to 32 channels. A data chunk whose size runs past the end of the file
// (as streaming writers produce) is read up to the end of the file.
//
// MP3: MPEG-1, 2 and 2.5 Layer III, with or without ID3v2 tags. Undecodable
// frames after at least one good one end the stream instead of failing it.
func DecodeLimit(data []byte, maxDuration time.Duration, maxRate int) (Audio, error) {
	if maxDuration <= 0 {
		maxDuration = DefaultMaxDuration
	}
	if maxRate <= 0 {
		maxRate = MaxRate
	}
	lim := limits{dur: maxDuration, rate: SourceRate(maxRate)}
	if len(data) == 0 {
		return Audio{}, ErrEmpty
	}
	switch {
	case len(data) >= 12 && bytes.Equal(data[0:4], []byte("RIFF")) && bytes.Equal(data[8:12], []byte("WAVE")):
		return decodeWAV(data, lim)
	case len(data) >= 3 && bytes.Equal(data[0:3], []byte("ID3")):
		return decodeMP3(data, lim)
	case len(data) >= 4 && data[0] == 0xFF && data[1]&0xE0 == 0xE0:
		if err := checkMPEGHeader(data[:4]); err != nil {
			return Audio{}, err
		}
		return decodeMP3(data, lim)
	}
	return Audio{}, ErrUnsupportedFormat
}

// limits are DecodeLimit's caps.
type limits struct {
	dur  time.Duration
	rate int // a mix rate
}

// outRate is the rate a file at rate decodes to.
func (l limits) outRate(rate int) int { return min(SourceRate(rate), l.rate) }

// maxSamples is dur as a count of samples at rate.
func (l limits) maxSamples(rate int) int64 {
	return int64(l.dur/time.Millisecond) * int64(rate) / 1000
}
