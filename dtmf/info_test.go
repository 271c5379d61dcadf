package dtmf

import (
	"errors"
	"strings"
	"testing"
)

func TestParseInfo(t *testing.T) {
	const relay, plain = "application/dtmf-relay", "application/dtmf"
	tests := []struct {
		ct, body string
		want     rune
		err      error
	}{
		{relay, "Signal=5\r\nDuration=160\r\n", '5', nil},
		{relay, "Signal=5\r\nDuration=160", '5', nil},
		{relay, "Signal= 5\r\nDuration= 160\r\n", '5', nil},
		{relay, "signal=#\nduration=250\n", '#', nil},
		{relay, "SIGNAL = *\n", '*', nil},
		{relay, "Duration=160\r\nSignal=0\r\n", '0', nil},
		{relay, "Signal=10\r\nDuration=160\r\n", '*', nil},
		{relay, "Signal=11\r\nDuration=160\r\n", '#', nil},
		{relay, "Signal=12\r\n", 'A', nil},
		{relay, "Signal=15", 'D', nil},
		{relay, "Signal=07", '7', nil},
		{relay, "Signal=a\r\n", 'A', nil},
		{relay, "Signal=D\r\n", 'D', nil},
		{relay, "Signal: 9\r\nDuration: 100\r\n", '9', nil},
		{relay, "\r\n\r\nSignal=3\r\n\r\n", '3', nil},
		{relay, "  Signal=4  \r\n", '4', nil},
		{relay, "Signal=\t8\t\r\n", '8', nil},
		{relay, "Signal=1\r\nSignal=2\r\n", '1', nil},
		{"Application/DTMF-Relay", "Signal=6", '6', nil},
		{"application/dtmf-relay; charset=utf-8", "Signal=2", '2', nil},
		{" application/dtmf-relay ;x=y", "Signal=2", '2', nil},
		{plain, "5", '5', nil},
		{plain, "#", '#', nil},
		{plain, "*\r\n", '*', nil},
		{plain, " 7 \n", '7', nil},
		{plain, "b", 'B', nil},
		{plain, "11", '#', nil},
		{"APPLICATION/DTMF", "0", '0', nil},

		{relay, "", 0, ErrNoSignal},
		{relay, "Duration=160\r\n", 0, ErrNoSignal},
		{relay, "Signal=\r\nDuration=160\r\n", 0, ErrNoSignal},
		{relay, "Signalling=5", 0, ErrNoSignal},
		{relay, "Signal 5", 0, ErrNoSignal},
		{relay, "Signal=E", 0, ErrInvalidDigit},
		{relay, "Signal=16", 0, ErrInvalidDigit},
		{relay, "Signal=55", 0, ErrInvalidDigit},
		{relay, "Signal=-1", 0, ErrInvalidDigit},
		{relay, "Signal=5 6", 0, ErrInvalidDigit},
		{relay, "Signal=flash", 0, ErrInvalidDigit},
		{relay, "Signal=\xff", 0, ErrInvalidDigit},
		{relay, "Signal=" + strings.Repeat("9", 1000), 0, ErrInvalidDigit},
		{plain, "", 0, ErrNoSignal},
		{plain, " \r\n", 0, ErrNoSignal},
		{plain, "55", 0, ErrInvalidDigit},
		{plain, "Signal=5", 0, ErrInvalidDigit},
		{plain, "x", 0, ErrInvalidDigit},
		{"", "Signal=5", 0, ErrUnsupportedContentType},
		{"text/plain", "5", 0, ErrUnsupportedContentType},
		{"application/sdp", "v=0", 0, ErrUnsupportedContentType},
		{"application/dtmf-relayx", "Signal=5", 0, ErrUnsupportedContentType},
		{"application/dtmfx", "5", 0, ErrUnsupportedContentType},
		{"application/vnd.nortelnetworks.digits", "d=5", 0, ErrUnsupportedContentType},
	}
	for _, tc := range tests {
		got, err := ParseInfo(tc.ct, []byte(tc.body))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ParseInfo(%q, %q) = %q, %v; want error %v", tc.ct, tc.body, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseInfo(%q, %q) = %q, %v; want %q", tc.ct, tc.body, got, err, tc.want)
		}
	}
}

func TestParseInfoErrorText(t *testing.T) {
	_, err := ParseInfo("application/dtmf-relay", []byte("Signal="+strings.Repeat("x", 5000)))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "application/dtmf-relay") || !strings.Contains(msg, "not a DTMF digit") {
		t.Errorf("error %q lacks context", msg)
	}
	if len(msg) > 200 {
		t.Errorf("error message of %d bytes copies too much remote input: %q", len(msg), msg)
	}
	_, err = ParseInfo("text/plain; "+strings.Repeat("y", 5000), nil)
	if err == nil || !strings.Contains(err.Error(), "text/plain") || len(err.Error()) > 200 {
		t.Errorf("content type error %v", err)
	}
}
