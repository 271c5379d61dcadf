package sip

import (
	"crypto/tls"
	"crypto/x509"
	"net"
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
