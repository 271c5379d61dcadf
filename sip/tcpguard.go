package sip

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of TCPLimits. The connection caps stay far below the usual
// descriptor limit, so that a flood of connections cannot take the
// descriptors that RTP sockets and the API need.
const (
	DefaultTCPMaxConns          = 2048
	DefaultTCPMaxConnsPerSource = 64
	DefaultTCPIdleTimeout       = 30 * time.Second
)

// Bounds of the back-off after a failed accept (as net/http's).
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// TCPLimits bounds what SIP over TCP may hold. Zero fields take the
// defaults above.
type TCPLimits struct {
	// MaxConns caps the accepted connections open at once; a connection
	// beyond it is closed as it is accepted.
	MaxConns int
	// MaxConnsPerSource caps the connections open at once from one IP.
	MaxConnsPerSource int
	// IdleTimeout closes a connection that has carried no bytes for this
	// long and carries no live call (a call's connection may be silent
	// for hours between its INVITE and its BYE).
	IdleTimeout time.Duration
}

func (l TCPLimits) withDefaults() TCPLimits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultTCPMaxConns
	}
	if l.MaxConnsPerSource <= 0 {
		l.MaxConnsPerSource = DefaultTCPMaxConnsPerSource
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultTCPIdleTimeout
	}
	return l
}

// tcpGuard is the listener sipgo's TCP transport accepts from. sipgo's
// accept loop (sip.TransportTCP.Serve, v1.7.3) returns on the first error,
// EMFILE included, and SIP over TCP would then stay dead; so Accept here
// never returns an error but the listener's closing: it backs off and
// tries again. It also enforces the connection caps and closes idle
// connections. sipgo's connection read loop sets no deadline of its own
// (its TCP ReadTimeout is off by default, and would cut silent calls), and
// it ends cleanly, dropping the connection from its pool, when a read
// returns net.ErrClosed; so closing a connection under it is how an idle
// one goes.
type tcpGuard struct {
	net.Listener
	lim     TCPLimits
	traffic *trafficSummary
	now     func() time.Time
	// live returns the remote addresses ("ip:port", as sipgo names a
	// message's source) of the connections that carry a live call.
	live func() map[string]bool

	mu        sync.Mutex
	conns     map[*guardedConn]struct{}
	perSource map[netip.Addr]int

	done      chan struct{}
	closeOnce sync.Once
}

func newTCPGuard(l net.Listener, lim TCPLimits, traffic *trafficSummary, now func() time.Time, live func() map[string]bool) *tcpGuard {
	return &tcpGuard{Listener: l, lim: lim.withDefaults(), traffic: traffic, now: now, live: live,
		conns: map[*guardedConn]struct{}{}, perSource: map[netip.Addr]int{}, done: make(chan struct{})}
}

// Accept returns the next connection within the caps. Failures to accept
// (EMFILE, ENFILE, ENOBUFS, ...) are counted and summarised in the log,
// and retried after a back-off from 5 ms doubling up to 1 s; only the
// listener's closing ends it.
func (g *tcpGuard) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			g.traffic.note(TrafficTCPAcceptError, func() string { return err.Error() })
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-g.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		if gc := g.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit wraps c if the caps allow it, and otherwise resets it at once.
func (g *tcpGuard) admit(c net.Conn) *guardedConn {
	src := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort().Addr().Unmap()
	}
	g.mu.Lock()
	kind := TrafficKind(0)
	switch {
	case len(g.conns) >= g.lim.MaxConns:
		kind = TrafficTCPOverCap
	case g.perSource[src] >= g.lim.MaxConnsPerSource:
		kind = TrafficTCPOverSourceCap
	default:
		gc := &guardedConn{Conn: c, g: g, src: src, key: c.RemoteAddr().String()}
		gc.last.Store(g.now().UnixNano())
		g.conns[gc] = struct{}{}
		g.perSource[src]++
		g.mu.Unlock()
		return gc
	}
	g.mu.Unlock()
	g.traffic.note(kind, func() string { return "from " + src.String() })
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset: no TIME_WAIT kept for a flood
	}
	_ = c.Close()
	return nil
}

func (g *tcpGuard) forget(c *guardedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.conns[c]; !ok {
		return
	}
	delete(g.conns, c)
	if g.perSource[c.src]--; g.perSource[c.src] <= 0 {
		delete(g.perSource, c.src)
	}
}

// open returns how many accepted connections are open.
func (g *tcpGuard) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// run sweeps idle connections until the guard is closed; a connection goes
// between one and one and a quarter idle timeouts after its last bytes.
func (g *tcpGuard) run() {
	t := time.NewTicker(g.lim.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
			g.sweep(g.now())
		}
	}
}

// sweep closes the connections idle since before now minus the timeout: at
// once if they never sent a byte, else unless they carry a live call.
func (g *tcpGuard) sweep(now time.Time) {
	cutoff := now.Add(-g.lim.IdleTimeout).UnixNano()
	var idle []*guardedConn
	g.mu.Lock()
	for c := range g.conns {
		if c.last.Load() <= cutoff {
			idle = append(idle, c)
		}
	}
	g.mu.Unlock()
	var live map[string]bool
	for _, c := range idle {
		if c.spoke.Load() {
			if live == nil {
				live = g.live()
			}
			if live[c.key] {
				continue
			}
		}
		g.traffic.note(TrafficTCPIdle, func() string { return "from " + c.key })
		_ = c.Close()
	}
}

// Close closes the listener and stops the sweeper; the connections are
// sipgo's to close.
func (g *tcpGuard) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Listener.Close()
}

// guardedConn is an accepted connection: it notes when it last carried
// bytes, and leaves the guard's count when closed.
type guardedConn struct {
	net.Conn
	g     *tcpGuard
	src   netip.Addr
	key   string       // RemoteAddr().String()
	last  atomic.Int64 // unix nanoseconds of the last read with data, or of the accept
	spoke atomic.Bool  // any byte read

	closeOnce sync.Once
}

func (c *guardedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.last.Store(c.g.now().UnixNano())
		if !c.spoke.Load() {
			c.spoke.Store(true)
		}
	}
	return n, err
}

// Close closes the connection once; sipgo closes a connection from its
// read loop and again from its pool, and the guard closes idle ones.
func (c *guardedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.g.forget(c)
	})
	return err
}

// liveTCPSources returns the source addresses of the calls that came in
// over TCP and are live: the connections the idle sweep must keep.
func (s *Server) liveTCPSources() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := make(map[string]bool, len(s.calls))
	for _, c := range s.calls {
		if !isUDP(c.transport) { // TCP or TLS
			live[c.dlg.InviteRequest.Source()] = true
		}
	}
	return live
}
