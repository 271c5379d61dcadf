package sip

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/media"
)

func newIdleServer(t *testing.T) *Server {
	t.Helper()
	ports, err := media.NewPortPool(netip.MustParseAddr("127.0.0.1"), 40000, 40100, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{PublicIP: netip.MustParseAddr("127.0.0.1"), Ports: ports, Bridge: bridge.New(bridge.Config{}, logger(t), nil), Log: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// Port 0 gives one port serving both transports; a fixed port whose TCP
// side is held is a clear error, not a bridge that answers on UDP only.
func TestListenUDPAndTCP(t *testing.T) {
	udp, tcp, err := newIdleServer(t).ListenUDPAndTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if udp.Port() == 0 || udp.Port() != tcp.Port() {
		t.Fatalf("udp %v, tcp %v: want one port", udp, tcp)
	}
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatalf("TCP side not served: %v", err)
	}
	_ = c.Close()

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	_, _, err = newIdleServer(t).ListenUDPAndTCP(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil || !strings.Contains(err.Error(), "listen tcp") {
		t.Fatalf("TCP port held: err = %v, want a listen tcp error", err)
	}
}
