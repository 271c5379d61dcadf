package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// freeRange finds n even ports in a row (low, low+2, ...) that can be bound
// on 127.0.0.1 right now, so that the pool tests do not depend on what else
// runs on the machine.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		low := 20000 + 2*rand.IntN(15000)
		ok := true
		for p := low; p < low+2*n; p += 2 {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return low
		}
	}
	t.Skip("no free port range")
	return 0
}

func TestPortPool(t *testing.T) {
	low := freeRange(t, 3)
	const drain = 200 * time.Millisecond
	// high is odd: the range holds low, low+2, low+4.
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), low, low+5, drain)
	if err != nil {
		t.Fatal(err)
	}
	if pool.Size() != 3 {
		t.Fatalf("Size %d", pool.Size())
	}
	seen := map[int]*net.UDPConn{}
	for range 3 {
		c, err := pool.Listen()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		port := c.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 || port < low || port > low+5 || seen[port] != nil {
			t.Fatalf("port %d (range %d-%d, seen %v)", port, low, low+5, seen)
		}
		seen[port] = c
	}
	if pool.InUse() != 3 {
		t.Errorf("InUse %d", pool.InUse())
	}
	if _, err := pool.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("exhausted pool: %v", err)
	}

	// Release one: it rests for the drain period before it is handed out
	// again.
	released := low + 2
	seen[released].Close()
	pool.Release(released)
	pool.Release(released) // twice is harmless
	if pool.InUse() != 2 {
		t.Errorf("InUse %d after Release", pool.InUse())
	}
	if c, err := pool.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("released port reused before the drain: %v %v", c.LocalAddr(), err)
	}
	time.Sleep(drain + 20*time.Millisecond)
	c, err := pool.Listen()
	if err != nil {
		t.Fatalf("after the drain: %v", err)
	}
	defer c.Close()
	if port := c.LocalAddr().(*net.UDPAddr).Port; port != released {
		t.Errorf("got port %d, want %d", port, released)
	}
	pool.Release(12345) // never allocated: ignored
	if pool.InUse() != 3 {
		t.Errorf("InUse %d", pool.InUse())
	}
}

func TestPortPoolSkipsBusyPorts(t *testing.T) {
	low := freeRange(t, 2)
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: low})
	if err != nil {
		t.Skip(err)
	}
	defer busy.Close()
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), low, low+2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pool.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if port := c.LocalAddr().(*net.UDPAddr).Port; port != low+2 {
		t.Errorf("port %d, want %d", port, low+2)
	}
	if _, err := pool.Listen(); !errors.Is(err, ErrNoPorts) {
		t.Errorf("%v", err)
	}
}

func TestPortPoolRoundRobin(t *testing.T) {
	// A port released with no drain is not handed out again at once while
	// other ports are free: the pool walks the range.
	low := freeRange(t, 3)
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), low, low+4, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for range 4 {
		c, err := pool.Listen()
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		ports = append(ports, port)
		c.Close()
		pool.Release(port)
	}
	want := []int{low, low + 2, low + 4, low}
	for i := range want {
		if ports[i] != want[i] {
			t.Fatalf("ports %v, want %v", ports, want)
		}
	}
}

func TestNewPortPoolRanges(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		low, high int
		size      int // 0: error
	}{
		{10000, 20000, 5001}, {10001, 10004, 2}, {10000, 10001, 1}, {10001, 10002, 1}, {10000, 10000, 1},
		{10001, 10001, 0}, {0, 100, 0}, {-2, 100, 0}, {100, 70000, 0}, {200, 100, 0},
	} {
		p, err := NewPortPool(ip, tc.low, tc.high, 0)
		switch {
		case tc.size == 0 && err == nil:
			t.Errorf("%d-%d: no error", tc.low, tc.high)
		case tc.size != 0 && err != nil:
			t.Errorf("%d-%d: %v", tc.low, tc.high, err)
		case tc.size != 0 && p.Size() != tc.size:
			t.Errorf("%d-%d: size %d, want %d", tc.low, tc.high, p.Size(), tc.size)
		}
	}
}
