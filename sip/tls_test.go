package sip

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

// TestTLSHandshakeTimeout: a connection to the TLS port that never
// completes a handshake is closed after the handshake timeout, and other
// clients meanwhile connect and verify the certificate.
func TestTLSHandshakeTimeout(t *testing.T) {
	tb := startBridge(t, bridge.Config{}, 28950, 28959)
	cert, err := SelfSignedCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := tb.srv.listenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	good, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("a client trusting the self-signed certificate: %v", err)
	}
	good.Close()

	start := time.Now()
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection got data")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the silent connection was held %v", d)
	}
	if _, err := tb.srv.ListenTLS("127.0.0.1:0", &tls.Config{}); err == nil {
		t.Error("ListenTLS without a certificate: no error")
	}
}

// TestTLSPlainOfferRefused: over TLS, a plain RTP offer gets 488 even with
// --srtp optional, and an RTP/SAVP one is answered with RTP/SAVP, our
// Contact carrying transport=tls.
func TestTLSPlainOfferRefused(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 28960, 28969)
	cert, err := SelfSignedCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := tb.srv.ListenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		sdp, status, contains string
	}{
		{offerSDP(4000, "0"), "SIP/2.0 488 ", ""},
		{savpOffer("RTP/SAVP", "3 AES_CM_128_HMAC_SHA1_80 inline:"+key80), "SIP/2.0 200 ", "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:"},
	} {
		conn, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "INVITE sip:1000@%s;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-tls-%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=%d\r\nTo: <sip:1000@%s>\r\nCall-ID: tls-invite-%d\r\n"+
			"CSeq: 1 INVITE\r\nContact: <sip:probe@%s;transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
			addr, conn.LocalAddr(), i, i, addr, i, conn.LocalAddr(), len(c.sdp), c.sdp)
		r := bufio.NewReader(conn)
		var msg strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("offer %d: %v after %q", i, err, msg.String())
			}
			if strings.HasPrefix(line, "SIP/2.0 1") {
				continue
			}
			if strings.HasPrefix(line, "SIP/2.0 ") {
				if !strings.HasPrefix(line, c.status) {
					t.Errorf("offer %d: %q, want %s", i, line, c.status)
				}
				msg.WriteString(line)
				continue
			}
			if msg.Len() > 0 {
				msg.WriteString(line)
			}
			if msg.Len() > 0 && line == "\r\n" {
				break
			}
		}
		if c.contains != "" {
			head := msg.String()
			var n int
			for _, l := range strings.Split(head, "\r\n") {
				if v, ok := strings.CutPrefix(strings.ToLower(l), "content-length:"); ok {
					n, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(body), c.contains) || !strings.Contains(string(body), "RTP/SAVP") {
				t.Errorf("answer over TLS:\n%s", body)
			}
			if !strings.Contains(head, fmt.Sprintf("%d;transport=tls>", addr.Port())) {
				t.Errorf("Contact over TLS:\n%s", head)
			}
		}
		conn.Close()
	}
}
