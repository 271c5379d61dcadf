// Package audiofile turns audio files (WAV and MP3) into 8 kHz mono signed
// 16-bit PCM, the sample format the conference mixer works in.
//
// The format is detected from the content, never from a file name or a
// Content-Type header: a RIFF/WAVE header means WAV, an ID3v2 tag or an
// MPEG-1/2/2.5 Layer III frame header at the start means MP3. Everything is
// converted to mono by averaging the channels and resampled to [SampleRate]
// with a Kaiser-windowed sinc low-pass filter, so content above 4 kHz is
// removed rather than folded back into the telephone band.
//
// [Fetcher] downloads a file over HTTP(S) with a timeout and a size cap and
// decodes it.
package audiofile

import (
	"bytes"
	"errors"
)

// SampleRate is the rate, in Hz, of the PCM that Decode returns.
const SampleRate = 8000

// DefaultMaxSeconds is the longest audio, in seconds, that [Decode] accepts.
const DefaultMaxSeconds = 30 * 60

// DefaultMaxSamples is [DefaultMaxSeconds] as a count of 8 kHz samples.
const DefaultMaxSamples = DefaultMaxSeconds * SampleRate

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
// frame sync / ID3 tag), decodes it and converts it to [SampleRate] Hz mono
// int16. Audio longer than [DefaultMaxSeconds] is rejected with
// [ErrTooLong]. The result does not alias data.
func Decode(data []byte) ([]int16, error) {
	return DecodeLimit(data, DefaultMaxSamples)
}

// DecodeLimit is [Decode] with a cap on the decoded length: audio that
// would give more than maxSamples samples at [SampleRate] is rejected with
// [ErrTooLong]. maxSamples <= 0 means [DefaultMaxSamples].
//
// Supported WAV encodings: PCM of 1 to 32 bits (8-bit and below unsigned),
// IEEE float of 32 or 64 bits, A-law (format 6) and µ-law (format 7), also
// inside WAVE_FORMAT_EXTENSIBLE, at sample rates from 1000 to 384000 Hz with
// 1 to 32 channels. A data chunk whose size runs past the end of the file
// (as streaming writers produce) is read up to the end of the file.
//
// MP3: MPEG-1, 2 and 2.5 Layer III, with or without ID3v2 tags. Undecodable
// frames after at least one good one end the stream instead of failing it.
func DecodeLimit(data []byte, maxSamples int) ([]int16, error) {
	if maxSamples <= 0 {
		maxSamples = DefaultMaxSamples
	}
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	switch {
	case len(data) >= 12 && bytes.Equal(data[0:4], []byte("RIFF")) && bytes.Equal(data[8:12], []byte("WAVE")):
		return decodeWAV(data, maxSamples)
	case len(data) >= 3 && bytes.Equal(data[0:3], []byte("ID3")):
		return decodeMP3(data, maxSamples)
	case len(data) >= 4 && data[0] == 0xFF && data[1]&0xE0 == 0xE0:
		if err := checkMPEGHeader(data[:4]); err != nil {
			return nil, err
		}
		return decodeMP3(data, maxSamples)
	}
	return nil, ErrUnsupportedFormat
}
