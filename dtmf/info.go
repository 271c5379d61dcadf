package dtmf

import (
	"bytes"
	"fmt"
	"strings"
)

// Content types of SIP INFO DTMF bodies understood by [ParseInfo].
const (
	ContentTypeDTMFRelay = "application/dtmf-relay"
	ContentTypeDTMF      = "application/dtmf"
)

// maxQuoted bounds how much of remote input is copied into an error message.
const maxQuoted = 32

// ParseInfo decodes the DTMF digit in the body of a SIP INFO request (RFC
// 2976 defines the method, not the body). contentType is the value of the
// Content-Type header; its parameters and case are ignored.
//
//   - "application/dtmf-relay": lines of key=value; the Signal line gives the
//     digit ("Signal=5\r\nDuration=160"). Keys are case-insensitive, spaces
//     around key and value and LF-only line ends are accepted, and so is ':'
//     in place of '='. The signal may also be an event code, e.g. 10 for '*'
//     and 11 for '#'. Other lines (Duration) are ignored.
//   - "application/dtmf": the body is the digit alone, maybe with whitespace.
//
// The digit is returned as '0'-'9', '*', '#' or 'A'-'D' (lower-case a-d are
// accepted). Errors wrap [ErrUnsupportedContentType], [ErrNoSignal] or
// [ErrInvalidDigit].
func ParseInfo(contentType string, body []byte) (rune, error) {
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.TrimSpace(mediaType)
	switch {
	case strings.EqualFold(mediaType, ContentTypeDTMFRelay):
		return parseDTMFRelay(body)
	case strings.EqualFold(mediaType, ContentTypeDTMF):
		v := bytes.TrimSpace(body)
		if len(v) == 0 {
			return 0, fmt.Errorf("SIP INFO %s body: %w", ContentTypeDTMF, ErrNoSignal)
		}
		d, err := parseSignal(v)
		if err != nil {
			return 0, fmt.Errorf("SIP INFO %s body: %w", ContentTypeDTMF, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("SIP INFO content type %q: %w", quote(contentType), ErrUnsupportedContentType)
}

// parseDTMFRelay finds the first Signal line of an application/dtmf-relay
// body and decodes it.
func parseDTMFRelay(body []byte) (rune, error) {
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		i := bytes.IndexAny(line, "=:")
		if i < 0 {
			continue
		}
		key := bytes.TrimSpace(line[:i])
		if !bytes.EqualFold(key, []byte("signal")) {
			continue
		}
		d, err := parseSignal(bytes.TrimSpace(line[i+1:]))
		if err != nil {
			return 0, fmt.Errorf("SIP INFO %s body: %w", ContentTypeDTMFRelay, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("SIP INFO %s body: %w", ContentTypeDTMFRelay, ErrNoSignal)
}

// parseSignal decodes a signal value: a key ('5', '#', 'a') or a decimal
// event code from 0 to 15.
func parseSignal(v []byte) (rune, error) {
	if len(v) == 1 {
		if c, ok := Code(rune(v[0])); ok {
			d, _ := Digit(c)
			return d, nil
		}
	} else if len(v) == 2 && isDecimal(v[0]) && isDecimal(v[1]) {
		if d, ok := Digit((v[0]-'0')*10 + v[1] - '0'); ok {
			return d, nil
		}
	}
	if len(v) == 0 {
		return 0, ErrNoSignal
	}
	return 0, fmt.Errorf("signal %q: %w", quote(string(v)), ErrInvalidDigit)
}

func isDecimal(b byte) bool { return b >= '0' && b <= '9' }

// quote shortens remote input for an error message.
func quote(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}
