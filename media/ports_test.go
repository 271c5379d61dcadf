package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
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

func TestPortPoolRandom(t *testing.T) {
	// Ports come in no predictable order: a stranger who saw one call's
	// port cannot spray the next call's. Twenty ports taken from a range
	// of 200 are neither consecutive nor the same for two pools.
	low := freeRange(t, 200)
	ip := netip.MustParseAddr("127.0.0.1")
	take := func() []int {
		pool, err := NewPortPool(ip, low, low+2*199, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ports []int
		for range 20 {
			c, err := pool.Listen()
			if err != nil {
				t.Fatal(err)
			}
			port := c.LocalAddr().(*net.UDPAddr).Port
			if port%2 != 0 || port < low || port > low+2*199 {
				t.Fatalf("port %d outside %d-%d", port, low, low+2*199)
			}
			ports = append(ports, port)
			c.Close()
			pool.Release(port)
		}
		return ports
	}
	a, b := take(), take()
	ascending := 0
	for i := 1; i < len(a); i++ {
		if a[i] == a[i-1]+2 {
			ascending++
		}
	}
	if ascending > 3 {
		t.Errorf("ports %v look sequential", a)
	}
	if slices.Equal(a, b) {
		t.Errorf("two pools handed out the same sequence %v", a)
	}
}

// TestPortPoolTakeFull drives the allocator without sockets over a pool of
// 5,000 ports: every port once, then none (also when the pool is full), the
// resting ones back after the drain; each take O(1).
func TestPortPoolTakeFull(t *testing.T) {
	const n = 5000
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), 10000, 10000+2*(n-1), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	pool.now = func() time.Time { return now }
	seen := make([]bool, n)
	for range n {
		slot, ok := pool.take(now)
		if !ok || seen[slot] {
			t.Fatalf("take: slot %d ok %v (seen %v)", slot, ok, ok && seen[slot])
		}
		seen[slot] = true
	}
	if _, ok := pool.take(now); ok {
		t.Fatal("a full pool handed out a port")
	}
	if pool.InUse() != n {
		t.Fatalf("InUse %d", pool.InUse())
	}
	// Taking from a full pool is cheap: no scan of the 5,000.
	start := time.Now()
	for range 100000 {
		pool.take(now)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("100,000 takes from a full pool took %v", d)
	}
	for _, port := range []int{10000 + 2*17, 10000 + 2*4000} {
		pool.Release(port)
		pool.Release(port) // twice is harmless
	}
	pool.Release(10001)       // odd: not ours
	pool.Release(10000 + 2*n) // past the range
	if pool.InUse() != n-2 {
		t.Fatalf("InUse %d after two releases", pool.InUse())
	}
	if _, ok := pool.take(now.Add(time.Second - time.Nanosecond)); ok {
		t.Fatal("a resting port was handed out before the drain")
	}
	now = now.Add(time.Second)
	got := map[uint16]bool{}
	for range 2 {
		slot, ok := pool.take(now)
		if !ok {
			t.Fatal("rested ports not handed out again")
		}
		got[slot] = true
	}
	if !got[17] || !got[4000] {
		t.Errorf("got slots %v, want 17 and 4000", got)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		slot, _ := pool.take(now)
		pool.Release(10000 + 2*int(slot))
		now = now.Add(time.Second)
	}); allocs > 0.1 {
		t.Errorf("take+Release: %v allocs", allocs)
	}
}

// BenchmarkPortPoolTake is one allocation and release in a pool of 5,000
// ports with all but a few in use.
func BenchmarkPortPoolTake(b *testing.B) {
	const n = 5000
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), 10000, 10000+2*(n-1), 0)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1000, 0)
	pool.now = func() time.Time { return now }
	for range n - 4 {
		pool.take(now)
	}
	for b.Loop() {
		slot, ok := pool.take(now)
		if !ok {
			b.Fatal("no port")
		}
		pool.Release(10000 + 2*int(slot))
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
