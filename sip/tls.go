package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ListenTLS binds addr and serves SIP over TLS on it (RFC 3261 §26.2;
// RFC 5630 for sip: URIs with transport=tls). Calls that arrive over TLS
// require SRTP (see SRTPPolicy). Our Contact on this transport is
// sip:chorus@PublicIP:port;transport=tls. conf must carry a certificate.
func (s *Server) ListenTLS(addr string, conf *tls.Config) (netip.AddrPort, error) {
	return s.listenTLS(addr, conf, tlsHandshakeTimeout)
}

func (s *Server) listenTLS(addr string, conf *tls.Config, handshakeTimeout time.Duration) (netip.AddrPort, error) {
	if conf == nil || (len(conf.Certificates) == 0 && conf.GetCertificate == nil) {
		return netip.AddrPort{}, fmt.Errorf("sip: listen tls %s: no certificate", addr)
	}
	conf = conf.Clone()
	if conf.MinVersion < tls.VersionTLS12 {
		conf.MinVersion = tls.VersionTLS12
	}
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sip: listen tls %s: %w", addr, err)
	}
	ap := raw.Addr().(*net.TCPAddr).AddrPort()
	s.setContact("tls", int(ap.Port()))
	// The same guard as SIP over TCP, under the handshake.
	s.serveGuarded(raw, "tls", func(g net.Listener) error {
		return s.srv.ServeTLS(&tlsListener{Listener: g, conf: conf, timeout: handshakeTimeout})
	})
	return ap, nil
}

// tlsHandshakeTimeout bounds the TLS handshake of an accepted connection,
// so that connections which never complete one are not held open.
const tlsHandshakeTimeout = 10 * time.Second

// tlsListener accepts TLS connections whose handshake must end within
// timeout (it runs on the connection's first read or write, in sipgo's
// goroutine for the connection, not in the accept loop).
type tlsListener struct {
	net.Listener
	conf    *tls.Config
	timeout time.Duration
}

// Accept implements net.Listener.
func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.conf), timeout: l.timeout}, nil
}

// tlsConn is a server-side TLS connection with a bounded handshake.
type tlsConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *tlsConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

// Read implements net.Conn, after the handshake.
func (c *tlsConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Write implements net.Conn, after the handshake.
func (c *tlsConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// SelfSignedCert makes an ECDSA P-256 certificate for hosts (addresses or
// names), valid from now for a year, for a bridge started with TLS but no
// certificate. Peers must be told to accept it (or pinned to its
// fingerprint, see CertFingerprint).
func SelfSignedCert(hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "chorus", Organization: []string{"Chorus (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		// Its own issuer, as `openssl req -x509` makes them: a peer given
		// the file as its CA list (baresip's sip_cafile) then trusts it.
		IsCA: true,
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CertPEM returns the certificate chain of cert as PEM, for a peer's CA
// file.
func CertPEM(cert tls.Certificate) []byte {
	var b []byte
	for _, der := range cert.Certificate {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

// CertFingerprint returns the SHA-256 fingerprint of a certificate's leaf
// as colon-separated hex (the form of RFC 8122 §5 and of browsers).
func CertFingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return "SHA-256 " + b.String()
}
