package sip

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/egress"
)

// farEnd is a TCP listener and a UDP socket on 127.0.0.1 that count what
// reaches them: a refused dial-out must reach neither.
type farEnd struct {
	tcp      net.Listener
	udp      net.PacketConn
	accepted atomic.Int32
	got      chan []byte
}

func newFarEnd(t *testing.T) *farEnd {
	t.Helper()
	f := &farEnd{got: make(chan []byte, 16)}
	var err error
	if f.tcp, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.tcp.Close(); f.udp.Close() })
	go func() {
		for {
			c, err := f.tcp.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := f.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case f.got <- bytes.Clone(buf[:n]):
			default:
			}
		}
	}()
	return f
}

func (f *farEnd) tcpPort() string { return strconv.Itoa(f.tcp.Addr().(*net.TCPAddr).Port) }
func (f *farEnd) udpPort() string { return strconv.Itoa(f.udp.LocalAddr().(*net.UDPAddr).Port) }

// dialEnd dials to through the bridge, as POST /calls does after its own
// checks, and waits for the call to end; it returns the hangup cause.
func dialEnd(t *testing.T, b *bridge.Bridge, to string) string {
	t.Helper()
	call, err := b.DialOut(bridge.DialOptions{UserID: "u-test", From: "+1", To: to, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("DialOut %s: %v", to, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for call.State() != bridge.CallCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("dial %s did not end", to)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return call.Info().Cause
}

// TestDialOutRefusesInternalTargets: with the default policy, dial-out to
// loopback (by address and by name), link-local, private and unspecified
// targets over UDP, TCP and TLS ends with cause OUTGOING_CALL_BARRED, and
// nothing reaches the far end; allowing 127.0.0.1 lets the same far end
// get the INVITE, whose Request-URI keeps the name; the bridge's own SIP
// port stays refused.
func TestDialOutRefusesInternalTargets(t *testing.T) {
	far := newFarEnd(t)
	tb := startBridge(t, bridge.Config{}, 31500, 31519)
	tb.b.SetDialer(tb.srv)
	for _, to := range []string{
		"sip:x@127.0.0.1:" + far.udpPort(),
		"sip:x@127.0.0.1:" + far.tcpPort() + ";transport=tcp",
		"sip:x@127.0.0.1:" + far.tcpPort() + ";transport=tls",
		"sip:x@localhost:" + far.udpPort(),
		"sip:x@localhost:" + far.tcpPort() + ";transport=tcp",
		"sip:x@[::ffff:127.0.0.1]:" + far.udpPort(),
		"sip:x@169.254.169.254",
		"sip:x@10.0.0.1:22;transport=tcp",
		"sip:x@0.0.0.0:" + far.udpPort(),
	} {
		if cause := dialEnd(t, tb.b, to); cause != "OUTGOING_CALL_BARRED" {
			t.Errorf("%s: cause %q, want OUTGOING_CALL_BARRED", to, cause)
		}
	}
	// The refusal is the policy's, before any packet.
	if err := tb.srv.Dial(t.Context(), tb.b.NewCall("u-test", "+1", "x", bridge.DirectionOut, nil, bridge.Callback{}),
		"+1", "sip:x@127.0.0.1:"+far.udpPort()); !errors.Is(err, egress.ErrRefused) {
		t.Errorf("Dial: %v, want egress.ErrRefused", err)
	}
	select {
	case pkt := <-far.got:
		t.Fatalf("a refused dial sent a datagram:\n%s", pkt)
	case <-time.After(200 * time.Millisecond):
	}
	if n := far.accepted.Load(); n != 0 {
		t.Fatalf("a refused dial opened %d TCP connections", n)
	}

	// 127.0.0.1 allowed: the INVITE goes to the checked address, and the
	// Request-URI still names the host as it was given.
	allowed := egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tb2 := startBridge(t, bridge.Config{}, 31520, 31539, func(c *Config) { c.Targets = allowed })
	tb2.b.SetDialer(tb2.srv)
	allowed.AddOwnPorts(tb2.udp.Port(), tb2.udp.Port())
	allowed.AddOwnPorts(tb2.tcp.Port(), tb2.tcp.Port())
	call, err := tb2.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "+1", To: "sip:x@localhost:" + far.udpPort(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case pkt := <-far.got:
		if !bytes.HasPrefix(pkt, []byte("INVITE sip:x@localhost:"+far.udpPort()+" SIP/2.0\r\n")) {
			t.Errorf("INVITE line: %q", pkt[:min(len(pkt), 80)])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no INVITE reached the allowed far end")
	}
	_ = call.Hangup(t.Context(), "test-over")
	for _, to := range []string{
		"sip:x@127.0.0.1:" + strconv.Itoa(int(tb2.udp.Port())),
		"sip:x@localhost:" + strconv.Itoa(int(tb2.tcp.Port())) + ";transport=tcp",
		"sip:x@127.0.0.2:" + far.udpPort(),
	} {
		if cause := dialEnd(t, tb2.b, to); cause != "OUTGOING_CALL_BARRED" {
			t.Errorf("allowed policy, %s: cause %q, want OUTGOING_CALL_BARRED", to, cause)
		}
	}
}
