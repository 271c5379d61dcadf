// Package recfile writes a recording's audio, mono 16-bit PCM in 20 ms
// frames, to a file in one of the formats a conference or call recording
// may ask for: WAV (16-bit PCM), MP3 (LAME) or Ogg Opus (RFC 7845, through
// libopus). It is a leaf of media: the bridge's recording writer feeds it
// off the mixer's tick, so it may allocate and block on the disk.
package recfile

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Format is a recording's file format, as the API names it
// (recordingFileFormat).
type Format string

// The formats.
const (
	WAV Format = "wav" // RIFF WAVE, 16-bit PCM, mono
	MP3 Format = "mp3" // MPEG Layer III, constant bitrate, mono
	OGG Format = "ogg" // Ogg Opus, mono, 48 kHz
)

// Formats lists every format, WAV first (the default).
var Formats = []Format{WAV, MP3, OGG}

// ParseFormat reads a format name, any case; "" is WAV.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return WAV, nil
	case WAV, MP3, OGG:
		return f, nil
	}
	return "", fmt.Errorf("%w: %q", ErrFormat, s)
}

// Ext is the file name extension of the format, without the dot.
func (f Format) Ext() string { return string(f) }

// ContentType is the media type a file of the format is served as.
func (f Format) ContentType() string {
	switch f {
	case MP3:
		return "audio/mpeg"
	case OGG:
		return "audio/ogg; codecs=opus" // RFC 7845 §9
	}
	return "audio/wav"
}

// Errors of the package.
var (
	ErrFormat = errors.New("recfile: unknown format (wav, mp3 or ogg)")
	ErrRate   = errors.New("recfile: sample rate must be 8000, 16000 or 48000 Hz")
	ErrFrame  = errors.New("recfile: a write must be whole 20 ms frames")
	ErrClosed = errors.New("recfile: writer closed")
)

// Writer takes a recording's PCM and writes it as a file. It is not safe
// for concurrent use.
type Writer interface {
	// Write encodes pcm: mono samples at the writer's rate, a whole number
	// of 20 ms frames.
	Write(pcm []int16) error
	// Close writes what the format keeps to the end (the WAV sizes, the
	// last MP3 frames, the end-of-stream Ogg page) and frees the encoder.
	// It does not close the file.
	Close() error
}

// New returns a Writer of format to w, of mono PCM at rate Hz (8000,
// 16000 or 48000). A WAV writer patches its sizes at Close when w is an
// io.WriteSeeker (an *os.File); until then the sizes say "as long as the
// file", which players and ffmpeg accept. Ogg Opus needs libopus (cgo).
func New(format Format, w io.Writer, rate int) (Writer, error) {
	switch rate {
	case 8000, 16000, 48000:
	default:
		return nil, fmt.Errorf("%w: %d", ErrRate, rate)
	}
	switch format {
	case WAV:
		return newWAV(w, rate)
	case MP3:
		return newMP3(w, rate)
	case OGG:
		return newOgg(w, rate)
	}
	return nil, fmt.Errorf("%w: %q", ErrFormat, format)
}

// frameOK reports whether n samples are whole 20 ms frames at rate.
func frameOK(n, rate int) bool { return n%(rate/50) == 0 }
