package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// PortPool hands out UDP sockets for RTP from a port range. A released port
// rests for a drain period before it is reused, so that late packets of the
// old call never reach a new one.
type PortPool struct {
	ip    netip.Addr
	low   int
	high  int
	drain time.Duration

	mu      sync.Mutex
	next    int
	resting map[int]time.Time // port -> time it may be used again
	inUse   map[int]bool
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
	return &PortPool{ip: ip, low: low, high: high, drain: drain, next: low,
		resting: map[int]time.Time{}, inUse: map[int]bool{}}, nil
}

// Size returns how many ports the pool has.
func (p *PortPool) Size() int { return (p.high-p.low)/2 + 1 }

// InUse returns how many ports are allocated now.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse)
}

// Listen binds a UDP socket on a free even port of the range.
func (p *PortPool) Listen() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := p.Size()
	for range n {
		port := p.next
		p.next += 2
		if p.next > p.high {
			p.next = p.low
		}
		if p.inUse[port] {
			continue
		}
		if until, ok := p.resting[port]; ok {
			if now.Before(until) {
				continue
			}
			delete(p.resting, port)
		}
		network := "udp6"
		if p.ip.Is4() {
			network = "udp4" // an AF_INET socket even on 0.0.0.0
		}
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue // someone else holds it
			}
			return nil, fmt.Errorf("media: bind RTP port %d: %w", port, err)
		}
		p.inUse[port] = true
		return conn, nil
	}
	return nil, ErrNoPorts
}

// Release returns a port to the pool after the drain period.
func (p *PortPool) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	p.resting[port] = time.Now().Add(p.drain)
}
