package sip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/testphone"
)

// failingListener fails its first accepts with an error, as a process out
// of descriptors does, then accepts for real.
type failingListener struct {
	net.Listener
	fails atomic.Int32
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

func newGuardForTest(t *testing.T, l net.Listener, lim TCPLimits) (*tcpGuard, *trafficSummary, *logLines) {
	t.Helper()
	out := &logLines{}
	sum := newTrafficSummary(slog.New(slog.NewTextHandler(out, nil)), newFakeClock(), 10*time.Second)
	g := newTCPGuard(l, lim, sum, time.Now, func() map[string]bool { return nil })
	t.Cleanup(func() { _ = g.Close() })
	return g, sum, out
}

// TestTCPGuardAcceptOutlivesEMFILE: accept errors (EMFILE) never reach
// sipgo, whose accept loop would end on the first; the guard backs off,
// counts them, logs one line, and accepts once descriptors are back.
func TestTCPGuardAcceptOutlivesEMFILE(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: inner, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	fl.fails.Store(6)
	g, sum, out := newGuardForTest(t, fl, TCPLimits{})
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := g.Accept()
	if err != nil {
		t.Fatalf("accept after EMFILE: %v", err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("accepted %s, want %s", c.RemoteAddr(), client.LocalAddr())
	}
	if got := sum.count(TrafficTCPAcceptError); got != 6 {
		t.Errorf("accept errors counted %d, want 6", got)
	}
	if l := out.lines(); len(l) != 1 || !strings.Contains(l[0], "kind=tcp_accept_error") || !strings.Contains(l[0], "too many open files") {
		t.Errorf("log: %q", l)
	}

	// Closing the listener while it backs off ends Accept promptly.
	fl.fails.Store(1 << 20)
	done := make(chan error, 1)
	go func() { _, err := g.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond) // let it reach the back-off
	_ = g.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accept did not return after close")
	}
}

// closedByPeer tells whether the bridge has closed c: a read fails at once
// with EOF or a reset, where a held connection just times out.
func closedByPeer(c net.Conn, wait time.Duration) bool {
	if c == nil {
		return true // reset while connecting
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestTCPConnectionCaps: beyond the per-source cap and the total cap,
// connections are closed as they are accepted and counted; once held
// connections go, a caller over TCP gets through again.
func TestTCPConnectionCaps(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25100, 25199, func(c *Config) {
		c.TCP = TCPLimits{MaxConns: 6, MaxConnsPerSource: 3, IdleTimeout: time.Minute}
	})
	addr := tb.tcp.String()
	seen := func() int {
		return tb.srv.TCPConns() + int(tb.srv.TrafficCount(TrafficTCPOverSourceCap)+tb.srv.TrafficCount(TrafficTCPOverCap))
	}
	var held, shed []net.Conn
	for i := range 5 {
		c := dialFrom(t, "127.0.0.2", addr)
		if i < 3 && c == nil {
			t.Fatalf("connection %d within the caps reset", i)
		}
		if i < 3 {
			held = append(held, c)
		} else {
			shed = append(shed, c)
		}
		// One at a time, so that which ones are over the cap is known.
		waitFor(t, "accept", func() bool { return seen() == i+1 })
	}
	for i := range 3 {
		c := dialFrom(t, "127.0.0.3", addr)
		if c == nil {
			t.Fatalf("connection %d within the caps reset", i)
		}
		held = append(held, c)
		waitFor(t, "accept", func() bool { return seen() == 6+i })
	}
	// Full: the next from either source is over the total cap.
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.4"} {
		shed = append(shed, dialFrom(t, src, addr))
	}
	waitFor(t, "total cap", func() bool { return tb.srv.TrafficCount(TrafficTCPOverCap) == 3 })
	if got := tb.srv.TCPConns(); got != 6 {
		t.Errorf("open connections %d, want 6", got)
	}
	if got := tb.srv.TrafficCount(TrafficTCPOverSourceCap); got != 2 {
		t.Errorf("over source cap %d, want 2", got)
	}
	for i, c := range shed {
		if !closedByPeer(c, 2*time.Second) {
			t.Errorf("connection %d over a cap is still open", i)
		}
	}
	for i, c := range held {
		if closedByPeer(c, 100*time.Millisecond) {
			t.Errorf("connection %d within the caps was closed", i)
		}
	}

	// The caps are full: the held connections go, and a TCP caller gets in.
	for _, c := range held {
		_ = c.Close()
	}
	waitFor(t, "connections released", func() bool { return tb.srv.TCPConns() == 0 })
	p := tb.dial(t, testphone.Options{User: "1000", Transport: "tcp"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Hangup(ctx); err != nil {
		t.Errorf("hang up over TCP: %v", err)
	}
}

// TestTCPIdleConnectionsClose: a connection that never speaks, or that
// spoke and then fell silent without a call, is closed after the idle
// timeout; a call's connection stays however long the call is silent.
func TestTCPIdleConnectionsClose(t *testing.T) {
	const idle = 400 * time.Millisecond
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25200, 25299, func(c *Config) {
		c.TCP = TCPLimits{IdleTimeout: idle}
	})
	addr := tb.tcp.String()
	p := tb.dial(t, testphone.Options{User: "1000", Transport: "tcp"})

	start := time.Now()
	silent := dialFrom(t, "127.0.0.2", addr)
	talker := dialFrom(t, "127.0.0.3", addr)
	local := talker.LocalAddr().String()
	opts := fmt.Sprintf("OPTIONS sip:chorus@%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:t@%s>;tag=1\r\nTo: <sip:chorus@%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		addr, local, randHex(6), local, addr, randHex(8))
	if _, err := talker.Write([]byte(opts)); err != nil {
		t.Fatal(err)
	}
	_ = talker.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	if n, err := talker.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("OPTIONS over TCP: %q %v", buf[:n], err)
	}
	for name, c := range map[string]net.Conn{"silent": silent, "talker": talker} {
		if !closedByPeer(c, 10*idle) {
			t.Errorf("%s connection still open after %v", name, time.Since(start))
		}
	}
	if el := time.Since(start); el < idle {
		t.Errorf("closed after %v, before the idle timeout %v", el, idle)
	}
	// The call's connection has been silent since the call began.
	time.Sleep(3 * idle)
	if got := tb.srv.TCPConns(); got != 1 {
		t.Errorf("open connections %d, want the call's 1", got)
	}
	if got := tb.srv.TrafficCount(TrafficTCPIdle); got != 2 {
		t.Errorf("idle closes %d, want 2", got)
	}
	select {
	case <-p.Ended():
		t.Fatal("the silent call ended")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Hangup(ctx); err != nil {
		t.Errorf("hang up over the call's connection: %v", err)
	}
}

// emfileChildEnv makes the re-executed test binary run the bridge side of
// TestTCPAcceptRecoversFromEMFILE.
const emfileChildEnv = "CHORUS_TEST_EMFILE_CHILD"

// emfileChild runs a bridge under RLIMIT_NOFILE 64, takes every descriptor
// left when told FILL, gives them back when told FREE, and reports its
// failed accepts when stdin closes.
func emfileChild(t *testing.T) {
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 25500, 25509)
	fmt.Printf("READY %s\n", tb.tcp)
	in := bufio.NewScanner(os.Stdin)
	var files []*os.File
	for in.Scan() {
		switch in.Text() {
		case "FILL":
			for {
				f, err := os.Open(os.DevNull)
				if err != nil {
					fmt.Printf("FULL %d %v\n", len(files), err)
					break
				}
				files = append(files, f)
			}
		case "FREE":
			for _, f := range files {
				_ = f.Close()
			}
			files = nil
			fmt.Println("FREED")
		}
	}
	fmt.Printf("ACCEPT_ERRORS %d\n", tb.srv.TrafficCount(TrafficTCPAcceptError))
}

// TestTCPAcceptRecoversFromEMFILE: a bridge out of descriptors fails to
// accept; once descriptors come back, the connection that waited in the
// backlog is accepted and answered, with no restart: sipgo's own accept
// loop would have ended on the first EMFILE.
func TestTCPAcceptRecoversFromEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) != "" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTCPAcceptRecoversFromEMFILE$")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr logLines
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended waiting for %s\n%s", prefix, strings.Join(stderr.lines(), "\n"))
				}
				if v, ok := strings.CutPrefix(l, prefix); ok {
					return strings.TrimSpace(v)
				}
			case <-timeout:
				t.Fatalf("no %s from the child", prefix)
			}
		}
	}
	addr := expect("READY")
	fmt.Fprintln(stdin, "FILL")
	if full := expect("FULL"); !strings.Contains(full, "too many open files") {
		t.Fatalf("child filled its descriptors with: %s", full)
	}

	// The kernel completes the handshake; the bridge cannot accept.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	opts := fmt.Sprintf("OPTIONS sip:chorus@%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:t@%s>;tag=1\r\nTo: <sip:chorus@%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		addr, local, randHex(6), local, addr, randHex(8))
	if _, err := c.Write([]byte(opts)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("answered while out of descriptors: %q", buf[:n])
	}

	fmt.Fprintln(stdin, "FREE")
	expect("FREED")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("OPTIONS after descriptors came back: %q %v", buf[:n], err)
	}
	_ = stdin.Close()
	if got, _ := strconv.Atoi(expect("ACCEPT_ERRORS")); got < 1 {
		t.Errorf("accept errors counted %d, want some", got)
	}
}
