package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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
