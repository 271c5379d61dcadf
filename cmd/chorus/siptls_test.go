package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
	"chorus/sip"
)

func TestSIPSecurityConfig(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil || cfg.srtpPolicy != sip.SRTPOptional || cfg.SIPTLSAddr != "" {
		t.Errorf("defaults: policy %v, tls %q, %v", cfg.srtpPolicy, cfg.SIPTLSAddr, err)
	}
	cfg, err = loadConfig(nil, func(k string) string { return map[string]string{"CHORUS_SRTP": "required"}[k] }, io.Discard)
	if err != nil || cfg.srtpPolicy != sip.SRTPRequired {
		t.Errorf("CHORUS_SRTP=required: %v, %v", cfg.srtpPolicy, err)
	}
	file := filepath.Join(t.TempDir(), "chorus.json")
	if err := os.WriteFile(file, []byte(`{"sipTlsAddr":"127.0.0.1:5061","srtp":"off","tlsCert":"c.pem","tlsKey":"k.pem"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig([]string{"--config", file}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "calls over TLS require SRTP") {
		t.Errorf("srtp off with TLS: %v", err)
	}
	cfg, err = loadConfig([]string{"--config", file, "--srtp", "optional"}, noEnv, io.Discard)
	if err != nil || cfg.SIPTLSAddr != "127.0.0.1:5061" || cfg.TLSCert != "c.pem" || cfg.srtpPolicy != sip.SRTPOptional {
		t.Errorf("from file: %+v, %v", cfg.SIPSecurity, err)
	}
	for name, args := range map[string][]string{
		"want off, optional or required": {"--srtp", "maybe"},
		"sip-tls-addr":                   {"--sip-tls-addr", "nope"},
		"go together":                    {"--tls-cert", "c.pem"},
	} {
		if _, err := loadConfig(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one mentioning %q", args, err, name)
		}
	}
}

// startChorusLogged runs the binary in-process with args, logging to
// stderr.
func startChorusLogged(t *testing.T, args []string, stderr io.Writer) ready {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...),
			noEnv, io.Discard, stderr, func(r ready) { readyCh <- r })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("chorus did not stop")
		}
	})
	select {
	case r := <-readyCh:
		return r
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return ready{}
}

// tlsOptions connects to the SIP over TLS listener, sends OPTIONS and
// returns the certificate the bridge presented and the status line.
func tlsOptions(t *testing.T, r ready) (tls.Certificate, string) {
	t.Helper()
	if !r.SIPTLS.IsValid() {
		t.Fatal("no SIP over TLS listener")
	}
	conn, err := tls.Dial("tcp", r.SIPTLS.String(), &tls.Config{InsecureSkipVerify: true}) // the fingerprint is checked instead
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	local := conn.LocalAddr().String()
	fmt.Fprintf(conn, "OPTIONS sip:%s;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-tls-1\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: tls-probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		r.SIPTLS, local, r.SIPTLS)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var cert tls.Certificate
	for _, c := range conn.ConnectionState().PeerCertificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, strings.TrimSpace(line)
}

// TestSIPTLSGeneratedCert: --sip-tls-addr without a certificate generates
// one, logs its fingerprint, and serves SIP over TLS with it; with
// --srtp required a plain offer gets 488 and an SRTP one is answered.
func TestSIPTLSGeneratedCert(t *testing.T) {
	var logs syncBuffer
	r := startChorusLogged(t, []string{"--sip-tls-addr", "127.0.0.1:0", "--srtp", "required", "--rtp-ports", "29000-29019"}, &logs)
	cert, status := tlsOptions(t, r)
	if status != "SIP/2.0 200 OK" {
		t.Errorf("OPTIONS over TLS: %q", status)
	}
	m := regexp.MustCompile(`fingerprint="(SHA-256 [0-9A-F:]+)"`).FindStringSubmatch(logs.String())
	if m == nil || m[1] != sip.CertFingerprint(cert) {
		t.Errorf("logged fingerprint %v, served %s\n%s", m, sip.CertFingerprint(cert), logs.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000"})
	var se *testphone.StatusError
	if !errors.As(err, &se) || se.Code != 488 {
		t.Errorf("plain offer with --srtp required: %v, want 488", err)
	}
	p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000", SRTP: "AES_CM_128_HMAC_SHA1_32"})
	if err != nil {
		t.Fatalf("SRTP offer with --srtp required: %v", err)
	}
	p.Close()
}

// TestSIPTLSGivenCert: --tls-cert and --tls-key are what the bridge serves.
func TestSIPTLSGivenCert(t *testing.T) {
	cert, err := sip.SelfSignedCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, sip.CertPEM(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	r := startChorusLogged(t, []string{"--sip-tls-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--rtp-ports", "29020-29039"}, &logs)
	served, status := tlsOptions(t, r)
	if status != "SIP/2.0 200 OK" || sip.CertFingerprint(served) != sip.CertFingerprint(cert) {
		t.Errorf("served %s (%q), want %s", sip.CertFingerprint(served), status, sip.CertFingerprint(cert))
	}
	if strings.Contains(logs.String(), "self-signed") {
		t.Error("a certificate was generated although one was given")
	}
}
