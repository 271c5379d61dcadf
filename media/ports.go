package media

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// PortPool hands out UDP sockets for RTP from a port range.
//
// Ports are chosen at random among the free ones, so that a stranger who
// saw one call's port cannot guess the next call's and spray it before the
// caller's first packet (the set-up race of an RTP hijack; Asterisk and
// rtpengine pick at random too). The generator is ChaCha8 seeded from
// crypto/rand for each pool: the sequence cannot be predicted from the
// ports it gave out.
//
// A released port rests for a drain period before it is reused, so that
// late packets of the old call never reach a new one. Every operation is
// O(1): the free ports are a slice with swap-removal, and resting ports a
// queue in release order (every port rests equally long, so the queue's
// head is always the first to wake).
type PortPool struct {
	ip    netip.Addr
	low   int
	high  int
	drain time.Duration
	now   func() time.Time

	mu      sync.Mutex
	rng     *rand.Rand
	free    []uint16   // slots (port-low)/2 that may be bound now
	pos     []int32    // slot -> index in free; -1 in use, -2 resting
	resting []restSlot // released slots in release order, from restAt on
	restAt  int
	inUse   int
}

// restSlot is a released port and the time it may be used again.
type restSlot struct {
	slot  uint16
	until time.Time
}

// NewPortPool returns a pool of even ports in [low, high] bound on ip.
// drain is how long a released port rests.
func NewPortPool(ip netip.Addr, low, high int, drain time.Duration) (*PortPool, error) {
	if low <= 0 || high > 65535 || low > high {
		return nil, fmt.Errorf("media: bad RTP port range %d-%d", low, high)
	}
	if low%2 == 1 {
		low++
	}
	if low > high {
		return nil, fmt.Errorf("media: RTP port range %d-%d has no even port", low, high)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("media: seed the port generator: %w", err)
	}
	p := &PortPool{ip: ip, low: low, high: high, drain: drain, now: time.Now,
		rng: rand.New(rand.NewChaCha8(seed))}
	n := p.Size()
	p.free = make([]uint16, n)
	p.pos = make([]int32, n)
	for i := range n {
		p.free[i] = uint16(i)
		p.pos[i] = int32(i)
	}
	return p, nil
}

// Size returns how many ports the pool has.
func (p *PortPool) Size() int { return (p.high-p.low)/2 + 1 }

// InUse returns how many ports are allocated now.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Listen binds a UDP socket on a free even port of the range, chosen at
// random. A port someone else holds (EADDRINUSE) is set aside to rest like
// a released one, and another is tried.
func (p *PortPool) Listen() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	network := "udp6"
	if p.ip.Is4() {
		network = "udp4" // an AF_INET socket even on 0.0.0.0
	}
	for {
		slot, ok := p.take(p.now())
		if !ok {
			return nil, ErrNoPorts
		}
		port := p.low + 2*int(slot)
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			p.inUse--
			p.rest(slot, p.now())
			if errors.Is(err, syscall.EADDRINUSE) {
				continue // someone else holds it: try another
			}
			return nil, fmt.Errorf("media: bind RTP port %d: %w", port, err)
		}
		return conn, nil
	}
}

// take removes a random free slot and counts it in use. Ports whose rest
// is over rejoin the free ones first.
func (p *PortPool) take(now time.Time) (uint16, bool) {
	for p.restAt < len(p.resting) && !now.Before(p.resting[p.restAt].until) {
		p.addFree(p.resting[p.restAt].slot)
		p.restAt++
	}
	if p.restAt == len(p.resting) {
		p.resting, p.restAt = p.resting[:0], 0
	} else if p.restAt > len(p.resting)/2 && p.restAt > 64 {
		// Keep the queue's memory bounded by the ports resting now.
		n := copy(p.resting, p.resting[p.restAt:])
		p.resting, p.restAt = p.resting[:n], 0
	}
	if len(p.free) == 0 {
		return 0, false
	}
	i := p.rng.IntN(len(p.free))
	slot := p.free[i]
	last := p.free[len(p.free)-1]
	p.free[i] = last
	p.pos[last] = int32(i)
	p.free = p.free[:len(p.free)-1]
	p.pos[slot] = -1
	p.inUse++
	return slot, true
}

func (p *PortPool) addFree(slot uint16) {
	p.pos[slot] = int32(len(p.free))
	p.free = append(p.free, slot)
}

// rest queues slot to become free after the drain period.
func (p *PortPool) rest(slot uint16, now time.Time) {
	p.pos[slot] = -2 // resting
	p.resting = append(p.resting, restSlot{slot: slot, until: now.Add(p.drain)})
}

// Release returns a port to the pool after the drain period. A port that
// is not in use (never allocated, or released already) is ignored.
func (p *PortPool) Release(port int) {
	if port < p.low || port > p.high || (port-p.low)%2 != 0 {
		return
	}
	slot := uint16((port - p.low) / 2)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pos[slot] != -1 {
		return // free or resting already
	}
	p.inUse--
	p.rest(slot, p.now())
}
