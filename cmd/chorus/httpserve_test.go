package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startAPI runs the binary in-process with two users and extra flags, and
// returns its ready addresses; it is stopped when the test ends.
func startAPI(t *testing.T, extra ...string) ready {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	args := append([]string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", "31000-31099",
		"--user", "u-alice:alice-token:alice-secret", "--user", "u-bob:bob-token:bob-secret"}, extra...)
	go func() { done <- run(ctx, args, noEnv, io.Discard, io.Discard, func(r ready) { readyCh <- r }) }()
	select {
	case r := <-readyCh:
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("chorus did not stop")
			}
		})
		return r
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("not ready")
	}
	return ready{}
}

// raiseNoFile lifts the soft descriptor limit to the hard one and returns
// it: the flood holds both ends of thousands of connections.
func raiseNoFile(t *testing.T) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return lim.Cur
}

// resetDialer dials from local (any loopback address; nil: the default)
// with SO_LINGER 0, so a close resets instead of leaving the client's
// port in TIME_WAIT: thousands of such ports would collide with the
// ports the bridge binds when the next test starts it.
func resetDialer(local net.IP) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
		})
		return errors.Join(err, serr)
	}}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	return d
}

// timedGet is a normal request on a new connection: Alice lists her
// conferences. It returns how long the answer took.
func timedGet(base string) (time.Duration, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: resetDialer(nil).DialContext},
		Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", base+"/v1/users/u-alice/conferences", nil)
	req.SetBasicAuth("alice-token", "alice-secret")
	start := time.Now()
	res, err := c.Do(req)
	if err != nil {
		return time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return time.Since(start), fmt.Errorf("status %d", res.StatusCode)
	}
	return time.Since(start), nil
}

// TestAPIAnswersUnderIdleFlood: 5,000 idle connections (half never send
// a byte, half made one request and stay kept alive) and 100 bodies
// trickled a byte at a time do not keep a normal request from being
// answered within 1 s: with the default cap (the oldest idle connections
// are closed to admit new ones) and with a cap above the flood (all are
// held, none queues the request). Connections that never send a request
// are closed by the server after the read-header timeout.
func TestAPIAnswersUnderIdleFlood(t *testing.T) {
	if n := raiseNoFile(t); n < 12000 {
		t.Fatalf("RLIMIT_NOFILE hard limit %d: the flood needs 12,000 descriptors", n)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default cap evicts idle", nil},
		{"cap above the flood", []string{"--http-max-conns", "6000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startAPI(t, tc.args...)
			base := "http://" + r.HTTP.String()
			flood(t, r.HTTP.String(), base, tc.args != nil)
		})
	}
}

func flood(t *testing.T, addr, base string, allHeld bool) {
	const idle, slow = 5000, 100
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var conns, silent []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	// The flood comes from other loopback addresses than the bridge's
	// 127.0.0.1, so its thousands of ports never collide with a port
	// the bridge (or a test running next to this one) binds.
	floodDialer := func(i int) *net.Dialer { return resetDialer(net.IPv4(127, 0, 1, byte(1+i%200))) }
	// While the flood is being opened the accept queue itself is the
	// contended resource (a SYN flood, not idle connections), so requests
	// made then are only reported; the 1 s bound holds once it is open.
	var worst, worstOpening time.Duration
	var failures []error
	opening := true
	measure := func() {
		d, err := timedGet(base)
		mu.Lock()
		defer mu.Unlock()
		if opening {
			worstOpening = max(worstOpening, d)
			if err != nil {
				t.Logf("normal request while the flood opened: %v after %v", err, d)
			}
			return
		}
		if err != nil || d > time.Second {
			failures = append(failures, fmt.Errorf("normal request: %v after %v", err, d))
		}
		worst = max(worst, d)
	}

	// 100 slow bodies: authenticated creates whose 200-byte body comes a
	// byte every 200 ms (busy requests: never evicted, bounded by the
	// read timeout).
	slowDone := make(chan struct{})
	var slowWG sync.WaitGroup
	for i := range slow {
		c, err := floodDialer(i).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		keep(c)
		slowWG.Go(func() {
			_, _ = fmt.Fprintf(c, "POST /v1/users/u-alice/conferences HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Length: 200\r\n\r\n{",
				"YWxpY2UtdG9rZW46YWxpY2Utc2VjcmV0") // alice-token:alice-secret
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-slowDone:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		})
	}
	defer func() { close(slowDone); slowWG.Wait() }()

	// The idle flood, 16 dialers at once, while a normal request is
	// measured every 100 ms.
	opened := time.Now()
	var next atomic.Int32
	var dialErrs atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > idle {
					return
				}
				c, err := floodDialer(int(i)).Dial("tcp", addr)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				keep(c)
				if i%2 == 1 {
					mu.Lock()
					silent = append(silent, c)
					mu.Unlock()
					continue
				}
				{
					// One unauthenticated request, then idle keep-alive.
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil {
						if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
							_, _ = io.Copy(io.Discard, res.Body)
							res.Body.Close()
						}
					}
					_ = c.SetDeadline(time.Time{})
				}
			}
		})
	}
	measuring := make(chan struct{})
	var measureWG sync.WaitGroup
	measureWG.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-measuring:
				return
			case <-tick.C:
				measure()
			}
		}
	})
	wg.Wait()
	close(measuring)
	measureWG.Wait()
	floodTook := time.Since(opened)
	if n := dialErrs.Load(); n > idle/100 {
		t.Errorf("%d of %d idle connections could not be opened", n, idle)
	}
	// With everything open: ten normal requests one after the other.
	mu.Lock()
	opening = false
	mu.Unlock()
	for range 10 {
		measure()
	}
	for _, err := range failures {
		t.Error(err)
	}
	t.Logf("%d idle + %d slow connections opened in %v; slowest normal request %v while opening, %v once open",
		idle, slow, floodTook.Round(time.Millisecond), worstOpening.Round(time.Millisecond), worst.Round(time.Millisecond))

	if !allHeld {
		return
	}
	// Held, not forever: a connection that never sent a request is closed
	// by the server after the read-header timeout.
	mu.Lock()
	first := silent[0]
	mu.Unlock()
	_ = first.SetReadDeadline(time.Now().Add(httpReadHeaderTimeout + 5*time.Second))
	start := time.Now()
	_, err := first.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection is still open after %v", time.Since(start))
	}
	t.Logf("a silent connection was closed by the server %v after the flood ended", time.Since(start).Round(time.Millisecond))
}

// TestAPIWrongPasswordFlood: 1,000 wrong passwords from 127.0.0.1 get 429
// from the limit on (the password no longer checked: the right one gets
// 429 too), while a client on 127.0.0.2 still authenticates.
func TestAPIWrongPasswordFlood(t *testing.T) {
	r := startAPI(t)
	base := "http://" + r.HTTP.String()
	client := func(local string) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: resetDialer(net.ParseIP(local)).DialContext}, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, secret string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/users/u-alice/conferences", nil)
		req.SetBasicAuth("alice-token", secret)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	here, there := client("127.0.0.1"), client("127.0.0.2")
	onset := 0
	start := time.Now()
	for i := 1; i <= 1000; i++ {
		res := get(here, fmt.Sprintf("guess-%d", i))
		switch {
		case res.StatusCode == 429 && onset == 0:
			onset = i
			if res.Header.Get("Retry-After") == "" || res.Header.Get("X-RateLimit-Reset") == "" {
				t.Fatalf("429 without Retry-After or X-RateLimit-Reset: %v", res.Header)
			}
		case res.StatusCode == 401 && onset == 0:
		case res.StatusCode != 429:
			t.Fatalf("guess %d: %d after 429 began at %d", i, res.StatusCode, onset)
		}
	}
	took := time.Since(start)
	if want := defaultConfig().HTTPAuthFailures + 1; onset != want {
		t.Fatalf("429 began at guess %d, want %d", onset, want)
	}
	if res := get(here, "alice-secret"); res.StatusCode != 429 {
		t.Errorf("the right password from the blocked address: %d, want 429", res.StatusCode)
	}
	if res := get(there, "alice-secret"); res.StatusCode != 200 {
		t.Errorf("the right password from 127.0.0.2: %d, want 200", res.StatusCode)
	}
	t.Logf("1,000 wrong passwords in %v (%.0f/s): 401 for the first %d, 429 from guess %d on", took.Round(time.Millisecond),
		1000/took.Seconds(), onset-1, onset)
}

// selfSigned writes a fresh certificate for 127.0.0.1 and its key as PEM
// files and returns their paths and the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chorus test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestAPIOverHTTPS: with a certificate the API speaks HTTPS only; the
// resources' Locations say https.
func TestAPIOverHTTPS(t *testing.T) {
	certFile, keyFile, cert := selfSigned(t)
	r := startAPI(t, "--http-tls-cert", certFile, "--http-tls-key", keyFile)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	base := "https://" + r.HTTP.String()
	req, _ := http.NewRequest("POST", base+"/v1/users/u-alice/conferences", strings.NewReader(`{"from":"+1555"}`))
	req.SetBasicAuth("alice-token", "alice-secret")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 || !strings.HasPrefix(res.Header.Get("Location"), base+"/v1/users/u-alice/conferences/conf-") {
		t.Fatalf("create over https: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %+v", res.TLS)
	}
	// Plain HTTP to the same port is not served.
	res, err = (&http.Client{Timeout: 5 * time.Second}).Get("http://" + r.HTTP.String() + "/v1/users/u-alice/conferences")
	if err == nil {
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("plain HTTP to the HTTPS port: %d", res.StatusCode)
		}
	}
	// An unknown certificate is refused by a verifying client.
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/openapi.json"); err == nil {
		t.Fatal("a client without the certificate connected")
	}
}

// TestHTTPConfigErrors: the new flags are checked at start.
func TestHTTPConfigErrors(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	cases := map[string][]string{
		"go together":              {"--http-tls-cert", certFile},
		"http tls":                 {"--http-tls-cert", keyFile, "--http-tls-key", keyFile},
		"http-max-conns":           {"--http-max-conns", "0"},
		"http-auth-failures":       {"--http-auth-failures", "0"},
		"max-conferences-per-user": {"--max-conferences-per-user", "-1"},
	}
	for want, args := range cases {
		_, err := loadConfig(args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want a message with %q", args, err, want)
		}
	}
	cfg, err := loadConfig([]string{"--http-tls-cert", certFile, "--http-tls-key", keyFile}, noEnv, io.Discard)
	if err != nil || cfg.httpScheme() != "https" {
		t.Fatalf("%v %s", err, cfg.httpScheme())
	}
	cfg, err = loadConfig(nil, func(k string) string {
		return map[string]string{"CHORUS_HTTP_MAX_CONNS": "99", "CHORUS_HTTP_AUTH_FAILURES": "3", "CHORUS_MAX_CONFERENCES_PER_USER": "7"}[k]
	}, io.Discard)
	if err != nil || cfg.HTTPMaxConns != 99 || cfg.HTTPAuthFailures != 3 || cfg.MaxConferencesPerUser != 7 {
		t.Fatalf("env: %v %+v", err, cfg)
	}
}

// TestConnLimiter: at the cap a new connection is admitted at once and
// the longest-idle one is closed; a connection with a request in progress
// is never closed for room; when all are busy the new one is closed.
// Headers over the cap get 431.
func TestConnLimiter(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) { <-release })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnLimiter(4, discardLogger())
	srv := newHTTPServer(mux, lim, nil, discardLogger())
	go func() { _ = srv.Serve(lim.wrap(l)) }()
	defer srv.Close()
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })

	dial := func() net.Conn {
		t.Helper()
		c, err := resetDialer(nil).Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c net.Conn, path string) {
		t.Helper()
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
	}
	// closed reports whether the server has closed c (within wait).
	closed := func(c net.Conn, wait time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	open := func() int {
		lim.mu.Lock()
		defer lim.mu.Unlock()
		return lim.open
	}
	waitOpen := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for open() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections open, want %d", open(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	get := func(c net.Conn) {
		t.Helper()
		send(c, "/ok")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET /ok: %v %v", res, err)
		}
		res.Body.Close()
	}

	busy1, busy2 := dial(), dial()
	send(busy1, "/block")
	send(busy2, "/block")
	silent1 := dial()
	waitOpen(3)
	silent2 := dial()
	waitOpen(4)
	// At the cap: a new connection is served, the oldest silent one goes.
	fresh := dial()
	get(fresh)
	if !closed(silent1, 2*time.Second) {
		t.Fatal("the longest-idle connection was not closed")
	}
	if closed(silent2, 200*time.Millisecond) || closed(busy1, 200*time.Millisecond) || closed(busy2, 200*time.Millisecond) {
		t.Fatal("a newer idle or a busy connection was closed")
	}
	// Two more busy requests take the places of silent2 and fresh (now a
	// kept-alive idle connection), oldest first.
	busy3 := dial()
	send(busy3, "/block")
	if !closed(silent2, 2*time.Second) {
		t.Fatal("silent2 not closed")
	}
	busy4 := dial()
	send(busy4, "/block")
	if !closed(fresh, 2*time.Second) {
		t.Fatal("the idle keep-alive connection not closed")
	}
	waitOpen(4)
	// All four busy: a new connection is closed at once, not queued.
	refused := dial()
	send(refused, "/ok")
	if !closed(refused, 2*time.Second) {
		t.Fatal("a connection beyond a cap of busy ones was kept")
	}
	for _, c := range []net.Conn{busy1, busy2, busy3, busy4} {
		if closed(c, 50*time.Millisecond) {
			t.Fatal("a busy connection was closed")
		}
	}
	releaseOnce.Do(func() { close(release) })
	// The four turn idle once their handlers return and the server marks
	// them so (ConnState); until then a new connection finds all busy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lim.mu.Lock()
		idle := lim.idle.Len()
		lim.mu.Unlock()
		if idle == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections after the release, want 4", idle)
		}
		time.Sleep(5 * time.Millisecond)
	}
	get(dial())

	// A header over the cap: 431.
	c := dial()
	fmt.Fprintf(c, "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2*httpMaxHeaderBytes))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header: %v %v", res, err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
