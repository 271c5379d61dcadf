package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// floodChildEnv makes the test binary, re-executed, run chorus under a
// lowered descriptor limit instead of the test (see TestTCPFloodKeepsBridgeUp).
const floodChildEnv = "CHORUS_TEST_TCP_FLOOD_CHILD"

// childFDLimit is the child's RLIMIT_NOFILE, soft and hard.
const childFDLimit = 256

// childReady is what the child prints once it serves.
type childReady struct{ UDP, TCP, HTTP string }

// runFloodChild runs chorus with RLIMIT_NOFILE lowered to childFDLimit
// (hard limit too, so that chorus's own raise keeps it), prints its
// addresses and stops when stdin closes.
func runFloodChild() {
	lim := syscall.Rlimit{Cur: childFDLimit, Max: childFDLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	args := []string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", "31600-31699",
		"--user", "u1:t1:s1", "--sip-tcp-idle-timeout", "2s", "--mixer-priority", "normal"}
	err := run(ctx, args, noEnv, io.Discard, os.Stderr, func(r ready) {
		b, _ := json.Marshal(childReady{UDP: r.SIPUDP.String(), TCP: r.SIPTCP.String(), HTTP: r.HTTP.String()})
		fmt.Printf("READY %s\n", b)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// metric reads one sample from /metrics ("name" or `name{kind="x"}`).
func metric(t *testing.T, hc *http.Client, base, name string) float64 {
	t.Helper()
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestTCPFloodKeepsBridgeUp: chorus runs in a child process with 256
// descriptors. Three times as many idle TCP connections are opened at its
// SIP port: it sheds what is beyond its caps, closes the rest when idle,
// and all the while its API answers (each request on a new connection) and
// a UDP call gets its RTP socket. Once the flood stops, a TCP call and a
// UDP call both succeed.
func TestTCPFloodKeepsBridgeUp(t *testing.T) {
	if os.Getenv(floodChildEnv) != "" {
		runFloodChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTCPFloodKeepsBridgeUp$")
	cmd.Env = append(os.Environ(), floodChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("child: %v\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("child did not stop\n%s", stderr.String())
		}
	}()
	var addrs childReady
	readyCh := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				readyCh <- json.Unmarshal([]byte(v), &addrs)
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		readyCh <- errors.New("child ended before it was ready")
	}()
	select {
	case err := <-readyCh:
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("child not ready\n%s", stderr.String())
	}
	base := "http://" + addrs.HTTP
	// A new connection per request: the API must still accept.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	fdsBefore := metric(t, hc, base, "process_open_fds")
	if got := metric(t, hc, base, "process_max_fds"); got != childFDLimit {
		t.Fatalf("child's descriptor limit %v, want %d", got, childFDLimit)
	}

	// The API is asked every 50 ms from here to the end.
	var apiOK, apiFailed atomic.Int32
	var apiErr atomic.Value
	stopPoll := make(chan struct{})
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(50 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", base+"/v1/users/u1/conferences", nil)
			req.SetBasicAuth("t1", "s1")
			resp, err := hc.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				apiFailed.Add(1)
				apiErr.Store(err.Error())
				continue
			}
			apiOK.Add(1)
		}
	}()

	// The flood: 3 x the descriptor limit, from 12 loopback sources, held open.
	const flood = 3 * childFDLimit
	var conns []net.Conn
	refused := 0
	start := time.Now()
	for i := range flood {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%12))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addrs.TCP)
		if err != nil {
			refused++ // reset at once by the cap
			continue
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	t.Logf("flood: %d connections opened in %v (%d reset while connecting)", flood, time.Since(start).Round(time.Millisecond), refused)

	// While flooded, a UDP call still gets its RTP socket.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := testphone.Dial(ctx, testphone.Options{Target: addrs.UDP, User: "1000"})
	if err != nil {
		t.Fatalf("UDP call during the flood: %v\n%s", err, stderr.String())
	}
	fdsFlood := metric(t, hc, base, "process_open_fds")
	held := metric(t, hc, base, "chorus_sip_tcp_connections")
	shed := metric(t, hc, base, `chorus_sip_unwanted_total{kind="tcp_over_total_cap"}`) +
		metric(t, hc, base, `chorus_sip_unwanted_total{kind="tcp_over_source_cap"}`)
	t.Logf("descriptors: %v before, %v during the flood (limit %d); %v connections held, %v shed", fdsBefore, fdsFlood, childFDLimit, held, shed)
	if held > childFDLimit/4 || held+shed < flood-5 {
		t.Errorf("held %v and shed %v of %d connections, want at most %d held and the rest shed", held, shed, flood, childFDLimit/4)
	}
	if fdsFlood > childFDLimit*3/4 {
		t.Errorf("%v descriptors in use during the flood of a limit of %d", fdsFlood, childFDLimit)
	}
	if err := p.Hangup(ctx); err != nil {
		t.Errorf("hang up during the flood: %v", err)
	}

	// The held connections never speak: the idle timeout (2 s) closes them.
	deadline := time.Now().Add(15 * time.Second)
	for metric(t, hc, base, "chorus_sip_tcp_connections") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle flood connections not closed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := metric(t, hc, base, `chorus_sip_unwanted_total{kind="tcp_idle_closed"}`); got != held {
		t.Errorf("idle closes %v, want the %v held", got, held)
	}

	// The flood stops; TCP and UDP calls both get through.
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	for _, tr := range []string{"tcp", "udp"} {
		target := addrs.UDP
		if tr == "tcp" {
			target = addrs.TCP
		}
		p, err := testphone.Dial(ctx, testphone.Options{Target: target, Transport: tr, User: "1000"})
		if err != nil {
			t.Fatalf("%s call after the flood: %v\n%s", tr, err, stderr.String())
		}
		if err := p.Hangup(ctx); err != nil {
			t.Errorf("%s hang up after the flood: %v", tr, err)
		}
		p.Close()
	}
	fdsAfter := metric(t, hc, base, "process_open_fds")
	close(stopPoll)
	pollWG.Wait()
	t.Logf("descriptors after: %v; API answered %d times, failed %d", fdsAfter, apiOK.Load(), apiFailed.Load())
	if apiFailed.Load() > 0 || apiOK.Load() < 10 {
		t.Errorf("API failed %d times (last: %v), answered %d", apiFailed.Load(), apiErr.Load(), apiOK.Load())
	}
	// One summary line per kind per 10 s, not a line per connection.
	if n := strings.Count(stderr.String(), "unwanted SIP traffic"); n > 8 {
		t.Errorf("%d lines about unwanted traffic:\n%s", n, stderr.String())
	}
}

// TestQuietUnderAbuse: 20,000 stray responses and REGISTERs in about 2 s at
// the UDP port cost a few summary lines of log (bytes per second asserted)
// and show in /metrics by kind; a REGISTER is answered 405.
func TestQuietUnderAbuse(t *testing.T) {
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", "31700-31799",
			"--user", "u1:t1:s1", "--mixer-priority", "normal"}, noEnv, io.Discard, &stderr, func(r ready) { readyCh <- r })
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("chorus did not stop")
		}
	}()
	var r ready
	select {
	case r = <-readyCh:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.SIPUDP))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	register := func(i int) []byte {
		return fmt.Appendf(nil, "REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%08d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:100@%s>;tag=%d\r\nTo: <sip:100@%s>\r\nCall-ID: reg%d@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:100@%s>\r\n"+
			"Expires: 3600\r\nContent-Length: 0\r\n\r\n", r.SIPUDP, local, i, local, i, local, i, local)
	}
	stray := func(i int) []byte {
		return fmt.Appendf(nil, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%08d\r\nFrom: <sip:a@test>;tag=1\r\n"+
			"To: <sip:b@test>;tag=2\r\nCall-ID: stray%d@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", r.SIPUDP, i, i)
	}
	// One REGISTER first: a 405 with Allow comes back.
	if _, err := conn.Write(register(0)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 405") || !strings.Contains(string(buf[:n]), "Allow:") {
		t.Fatalf("REGISTER: %v\n%s", err, buf[:n])
	}
	go func() { // the 405s to the flood
		for {
			if _, err := conn.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
		}
	}()

	logBefore := len(stderr.String())
	const total = 20000
	start := time.Now()
	for i := 1; i <= total; i++ {
		msg := stray(i)
		if i%2 == 0 {
			msg = register(i)
		}
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 { // about 10k a second
			time.Sleep(time.Until(start.Add(time.Duration(i) * 100 * time.Microsecond)))
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	base := fmt.Sprintf("http://%s", r.HTTP)
	// Wait until the counts stop rising: the bridge has read what it will.
	var regs, strays float64
	for prev := -1.0; regs+strays != prev; time.Sleep(300 * time.Millisecond) {
		prev = regs + strays
		regs = metric(t, hc, base, `chorus_sip_unwanted_total{kind="unwanted_method"}`)
		strays = metric(t, hc, base, `chorus_sip_unwanted_total{kind="stray_response"}`)
	}
	elapsed := time.Since(start)
	logged := len(stderr.String()) - logBefore
	rate := float64(logged) / elapsed.Seconds()
	t.Logf("%d datagrams in %v: %.0f REGISTERs and %.0f stray responses counted; %d bytes of log, %.0f B/s",
		total, elapsed.Round(time.Millisecond), regs, strays, logged, rate)
	// A loaded machine (or the race detector) drops some from the socket
	// buffer; the test wants the counts to show, not the machine's speed.
	if regs < total/20 || strays < total/20 {
		t.Errorf("counted %v REGISTERs and %v stray responses of %d each", regs, strays, total/2)
	}
	if rate > 2000 {
		t.Errorf("log grew %.0f B/s under the flood, want < 2 kB/s:\n%s", rate, stderr.String()[logBefore:])
	}
	for _, kind := range []string{"unwanted_method", "stray_response"} {
		if !regexp.MustCompile(`unwanted SIP traffic" kind=` + kind + ` count=\d+`).MatchString(stderr.String()) {
			t.Errorf("no summary line for %s:\n%s", kind, stderr.String())
		}
	}
}

// TestTCPLimitsConfig: the SIP/TCP flags parse and validate, and the total
// cap stays within a quarter of the descriptor limit.
func TestTCPLimitsConfig(t *testing.T) {
	cfg, err := loadConfig([]string{"--sip-tcp-max-conns", "5000", "--sip-tcp-max-conns-per-source", "9000", "--sip-tcp-idle-timeout", "5s"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lim := tcpLimitsFor(cfg, 1024, slog.New(slog.DiscardHandler))
	if lim.MaxConns != 256 || lim.MaxConnsPerSource != 256 || lim.IdleTimeout != 5*time.Second {
		t.Errorf("limits under 1024 descriptors: %+v", lim)
	}
	if lim := tcpLimitsFor(cfg, 1<<20, slog.New(slog.DiscardHandler)); lim.MaxConns != 5000 || lim.MaxConnsPerSource != 5000 {
		t.Errorf("limits under 1M descriptors: %+v", lim)
	}
	for _, args := range [][]string{{"--sip-tcp-max-conns", "0"}, {"--sip-tcp-max-conns-per-source", "-1"}, {"--sip-tcp-idle-timeout", "1ms"}} {
		if _, err := loadConfig(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "sip-tcp") {
			t.Errorf("%v: %v", args, err)
		}
	}
	cfg, err = loadConfig(nil, noEnv, io.Discard)
	if err != nil || cfg.SIPTCPMaxConns != 2048 || cfg.SIPTCPMaxConnsPerSource != 64 || cfg.SIPTCPIdleTimeout != 30*time.Second {
		t.Errorf("defaults: %d %d %v %v", cfg.SIPTCPMaxConns, cfg.SIPTCPMaxConnsPerSource, cfg.SIPTCPIdleTimeout, err)
	}
}
