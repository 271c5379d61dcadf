package sip

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestValidateRequest covers the checks the RFC 4475 messages do not:
// each row is a well-formed INVITE with one line changed, added or
// removed.
func TestValidateRequest(t *testing.T) {
	const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	base := []string{
		"INVITE sip:1000@127.0.0.1 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1",
		"Max-Forwards: 70",
		"From: <sip:a@127.0.0.1>;tag=1",
		"To: <sip:1000@127.0.0.1>",
		"Call-ID: c1",
		"CSeq: 1 INVITE",
		"Contact: <sip:a@127.0.0.1:5062>",
		"Content-Type: application/sdp",
	}
	cases := []struct {
		name        string
		edit        func([]string) []string
		body        string
		want        int
		reason, hdr string
	}{
		{"well formed", nil, sdp, 0, "", ""},
		{"no offer", drop("Content-Type"), "", 0, "", ""},
		{"no Contact", drop("Contact"), sdp, 400, "Missing Contact", ""},
		{"two Contacts", add("Contact: <sip:b@127.0.0.1>"), sdp, 400, "Multiple Contact", ""},
		{"two Content-Types", add("Content-Type: application/sdp"), sdp, 400, "Multiple Content-Type", ""},
		{"body without Content-Type", drop("Content-Type"), sdp, 400, "Content-Type", ""},
		{"bad escape", set(0, "INVITE sip:10%2@127.0.0.1 SIP/2.0"), sdp, 400, "escape", ""},
		{"good escape", set(0, "INVITE sip:%31000@127.0.0.1 SIP/2.0"), sdp, 0, "", ""},
		{"tel URI", set(0, "INVITE tel:+15551234567 SIP/2.0"), sdp, 416, "", ""},
		{"CSeq method case", set(6, "CSeq: 1 invite"), sdp, 0, "", ""},
		{"Require", add("Require: 100rel, timer"), sdp, 420, "", "Unsupported: 100rel, timer"},
		{"Require not a token", add("Require: a b"), sdp, 400, "Require", ""},
		{"Proxy-Require is for proxies", add("Proxy-Require: foo"), sdp, 0, "", ""},
		{"Accept SDP", add("Accept: application/sdp;level=1, text/plain"), sdp, 0, "", ""},
		{"Accept anything", add("Accept: */*"), sdp, 0, "", ""},
		{"Accept no SDP", add("Accept: text/plain"), sdp, 406, "", "Warning: 399"},
		{"Date in GMT", add("Date: Sat, 13 Nov 2010 23:29:00 GMT"), sdp, 0, "", ""},
		{"Date in UTC", add("Date: Sat, 13 Nov 2010 23:29:00 UTC"), sdp, 400, "Date", ""},
		{"Max-Forwards 0", set(2, "Max-Forwards: 0"), sdp, 0, "", ""},
		{"no Max-Forwards", drop("Max-Forwards"), sdp, 0, "", ""},
		{"SIP/3.0", set(0, "INVITE sip:1000@127.0.0.1 SIP/3.0"), sdp, 505, "", ""},
		{"Via SIP/3.0", set(1, "Via: SIP/3.0/UDP 127.0.0.1:5062;branch=z9hG4bK1"), sdp, 400, "Via", ""},
		{"unknown method", func(l []string) []string {
			return set(6, "CSeq: 1 FOO")(set(0, "FOO sip:1000@127.0.0.1 SIP/2.0")(l))
		}, "", 501, "", "Allow: INVITE"},
		{"re-INVITE without Contact", func(l []string) []string {
			return drop("Contact")(set(4, "To: <sip:1000@127.0.0.1>;tag=2")(l))
		}, sdp, 0, "", ""},
		{"UPDATE refresh with Accept", func(l []string) []string {
			return add("Accept: text/plain")(drop("Content-Type")(set(6, "CSeq: 2 UPDATE")(set(0, "UPDATE sip:1000@127.0.0.1 SIP/2.0")(l))))
		}, "", 0, "", ""},
	}
	parser := newParser()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := append([]string{}, base...)
			if c.edit != nil {
				lines = c.edit(lines)
			}
			msg := strings.Join(lines, "\r\n") + "\r\nContent-Length: " + strconv.Itoa(len(c.body)) + "\r\n\r\n" + c.body
			m, err := parser.ParseSIP([]byte(msg))
			if err != nil {
				t.Fatalf("does not parse: %v\n%s", err, msg)
			}
			e := validateRequest(m.(*sip.Request))
			switch {
			case e == nil && c.want == 0:
				return
			case e == nil:
				t.Fatalf("accepted, want %d", c.want)
			case e.status != c.want:
				t.Fatalf("got %d %q, want %d", e.status, e.reason, c.want)
			}
			if !strings.Contains(e.reason, c.reason) {
				t.Errorf("reason %q does not name %q", e.reason, c.reason)
			}
			var hdrs []string
			for _, h := range e.hdrs {
				hdrs = append(hdrs, h.Name()+": "+h.Value())
			}
			if got := strings.Join(hdrs, "\n"); !strings.Contains(got, c.hdr) {
				t.Errorf("headers %q, want %q", got, c.hdr)
			}
		})
	}
}

func drop(name string) func([]string) []string {
	return func(l []string) []string {
		out := l[:0:0]
		for _, s := range l {
			if !strings.HasPrefix(s, name+":") {
				out = append(out, s)
			}
		}
		return out
	}
}

func add(line string) func([]string) []string {
	return func(l []string) []string { return append(l, line) }
}

func set(i int, line string) func([]string) []string {
	return func(l []string) []string { l[i] = line; return l }
}
