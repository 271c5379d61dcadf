package sip

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawSIP is a bare UDP SIP client for sending what no well-behaved phone
// would: malformed bodies, odd codecs, garbage.
type rawSIP struct {
	t    testing.TB
	conn *net.UDPConn
	to   netip.AddrPort
}

func newRawSIP(t testing.TB, to netip.AddrPort) *rawSIP {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawSIP{t: t, conn: conn, to: to}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// request builds a request with valid headers around body.
func (r *rawSIP) request(method, user, contentType, body string) string {
	local := r.conn.LocalAddr().String()
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:%s@%s SIP/2.0\r\n", method, user, r.to)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", local, randHex(8))
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:tester@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n", local, randHex(4), user, r.to)
	fmt.Fprintf(&b, "Call-ID: %s@test\r\nCSeq: 1 %s\r\nContact: <sip:tester@%s>\r\n", randHex(8), method, local)
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// send writes raw bytes.
func (r *rawSIP) send(msg string) {
	if _, err := r.conn.WriteToUDPAddrPort([]byte(msg), r.to); err != nil {
		r.t.Fatal(err)
	}
}

// final sends msg and returns the first final status code and the response
// text (0 if none came within the timeout).
func (r *rawSIP) final(msg string, timeout time.Duration) (int, string) {
	r.send(msg)
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for {
		_ = r.conn.SetReadDeadline(deadline)
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, ""
		}
		resp := string(buf[:n])
		line, _, _ := strings.Cut(resp, "\r\n")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "SIP/2.0" {
			continue // a request (retransmission of something); ignore
		}
		code, _ := strconv.Atoi(f[1])
		if code >= 200 {
			return code, resp
		}
	}
}

func offerSDP(port int, formats string, rtpmaps ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP %s\r\n", port, formats)
	for _, m := range rtpmaps {
		fmt.Fprintf(&b, "a=rtpmap:%s\r\n", m)
	}
	return b.String()
}

// toTag returns the To header's tag of a SIP message.
func toTag(msg string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || !(strings.EqualFold(name, "To") || name == "t") {
			continue
		}
		if _, tag, ok := strings.Cut(val, "tag="); ok {
			tag, _, _ = strings.Cut(tag, ";")
			return strings.TrimSpace(tag)
		}
	}
	return ""
}

// read returns the next message received (a response or a request), or ""
// after the timeout.
func (r *rawSIP) read(timeout time.Duration) string {
	buf := make([]byte, 65535)
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	n, _, err := r.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}
