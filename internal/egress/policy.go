// Package egress is Chorus's outbound request policy: which addresses the
// bridge may connect to when it fetches an audio file (fileUrl), delivers
// an event (callbackUrl, fallbackUrl) or dials a SIP call out (POST
// /calls). It follows OWASP's Server-Side Request Forgery Prevention Cheat
// Sheet: the addresses are checked, not the names, and they are checked
// where the connection is made.
//
// By default only globally routable unicast addresses are allowed:
// loopback, link-local (with the cloud metadata service 169.254.169.254),
// private (RFC 1918, fc00::/7), carrier-grade NAT, multicast, unspecified
// and the other special-purpose blocks are refused (see [Class]), and so
// are the bridge's own listening ports on any local address. Options lift
// parts of that: AllowPrivate allows loopback, private and carrier-grade
// NAT ranges; Allow allows given prefixes, whatever their class. No option
// lifts the bridge's own listeners.
//
// The check runs three times. When a request names a target, [Policy.CheckURL]
// and [Policy.Resolve] refuse a literal address or a name that resolves only
// to refused addresses, so the caller can answer at once. When the
// connection is made, [Policy.Control] (a net.Dialer Control function) sees
// the address actually connected to, after resolution: a name that resolved
// to a public address at request time and to 127.0.0.1 now (DNS rebinding)
// is still refused, before any packet is sent. And [Policy.CheckRedirect]
// refuses HTTP redirects to other schemes or to refused literal addresses;
// the redirect's own connection passes through Control too.
//
// A nil *Policy is the default policy, so that code which was not given one
// is safe.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal of the policy: a *RefusedError
// for an address, or a redirect to a scheme other than http and https.
var ErrRefused = errors.New("refused by the outbound request policy")

// RefusedError is an address the policy refuses, and why.
type RefusedError struct {
	// Host is the name that resolved to Addr, or "" when the target was
	// the address itself.
	Host string
	// Addr is the refused address; its port is 0 when none was known.
	Addr netip.AddrPort
	// Class says why: the address's class, or OwnListener.
	Class Class
}

// Error says what was refused and why: "localhost (127.0.0.1) is a
// loopback address".
func (e *RefusedError) Error() string {
	var sb strings.Builder
	addr := e.Addr.Addr().String()
	if e.Addr.Port() != 0 {
		addr = e.Addr.String()
	}
	if e.Host != "" && e.Host != e.Addr.Addr().String() {
		sb.WriteString(e.Host)
		sb.WriteString(" (")
		sb.WriteString(addr)
		sb.WriteString(")")
	} else {
		sb.WriteString(addr)
	}
	sb.WriteString(" is ")
	sb.WriteString(e.Class.String())
	sb.WriteString(": refused by the outbound request policy")
	return sb.String()
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Options configure a Policy. The zero value is the safe default.
type Options struct {
	// AllowPrivate allows loopback, private (RFC 1918, fc00::/7) and
	// carrier-grade NAT addresses. Link-local addresses, with the cloud
	// metadata service, stay refused unless an Allow prefix names them.
	AllowPrivate bool
	// Allow lists prefixes whose addresses are allowed whatever their
	// class (IPv4-mapped IPv6 prefixes count as IPv4).
	Allow []netip.Prefix
	// LocalAddrs are addresses that reach this host besides its own
	// interface addresses, such as a public address in front of a NAT: the
	// bridge's own listeners are refused on them too.
	LocalAddrs []netip.Addr
	// Resolver looks names up; nil is net.DefaultResolver.
	Resolver *net.Resolver
	// InterfaceAddrs lists the host's addresses, to recognise the bridge's
	// own listeners; nil is net.InterfaceAddrs. Tests inject it.
	InterfaceAddrs func() ([]net.Addr, error)
}

// Policy decides which addresses outbound requests may reach. It is safe
// for concurrent use; a nil *Policy is the default policy.
type Policy struct {
	allowPrivate bool
	allow        []netip.Prefix
	local        []netip.Addr
	resolver     *net.Resolver
	ifaddrs      func() ([]net.Addr, error)

	mu  sync.Mutex                  // serialises AddOwnPorts
	own atomic.Pointer[[]portRange] // read without a lock on every check
}

// portRange is a range of the bridge's own ports, both ends included.
type portRange struct{ lo, hi uint16 }

// New returns a policy.
func New(o Options) *Policy {
	p := &Policy{allowPrivate: o.AllowPrivate, local: slices.Clone(o.LocalAddrs),
		resolver: o.Resolver, ifaddrs: o.InterfaceAddrs}
	for _, pf := range o.Allow {
		if pf.Addr().Is4In6() && pf.Bits() >= 96 {
			pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
		}
		p.allow = append(p.allow, pf.Masked())
	}
	return p
}

// AddOwnPorts records that the bridge listens on the ports lo to hi
// (both included; give lo == hi for one): a connection to one of them on
// a local address (loopback, unspecified, an interface's address or one
// of Options.LocalAddrs) is refused whatever the options say. Call it as
// each listener binds; it is safe to call while the policy is in use.
func (p *Policy) AddOwnPorts(lo, hi uint16) {
	if lo == 0 || hi < lo {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var next []portRange
	if cur := p.own.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, portRange{lo, hi})
	p.own.Store(&next)
}

// AllowsPrivate reports whether the policy allows loopback and private
// addresses (Options.AllowPrivate).
func (p *Policy) AllowsPrivate() bool { return p != nil && p.allowPrivate }

// Check returns nil if the policy allows a connection to ap, else a
// *RefusedError. A port of 0 skips the check for the bridge's own
// listeners.
func (p *Policy) Check(ap netip.AddrPort) error {
	if c := p.classify(ap); c != Public {
		return &RefusedError{Addr: ap, Class: c}
	}
	return nil
}

// classify returns Public for an allowed address, else why it is refused.
func (p *Policy) classify(ap netip.AddrPort) Class {
	a := ap.Addr().Unmap().WithZone("")
	if !a.IsValid() {
		return Invalid
	}
	if ap.Port() != 0 && p.ownPort(ap.Port()) && p.isLocal(a) {
		return OwnListener
	}
	c := Classify(a)
	if c == Public {
		return Public
	}
	if p == nil {
		return c
	}
	if p.allowPrivate && c.internal() {
		return Public
	}
	for _, pf := range p.allow {
		if pf.Contains(a) {
			return Public
		}
	}
	return c
}

func (p *Policy) ownPort(port uint16) bool {
	if p == nil {
		return false
	}
	own := p.own.Load()
	if own == nil {
		return false
	}
	for _, r := range *own {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// isLocal reports whether a reaches this host. The interface addresses are
// read at each call (only for a connection to one of the bridge's ports):
// connections are rare and addresses change.
func (p *Policy) isLocal(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() || slices.Contains(p.local, a) {
		return true
	}
	list := net.InterfaceAddrs
	if p.ifaddrs != nil {
		list = p.ifaddrs
	}
	addrs, err := list()
	if err != nil {
		return true // cannot tell: err on the safe side for our own ports
	}
	for _, ia := range addrs {
		var ip net.IP
		switch v := ia.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if x, ok := netip.AddrFromSlice(ip); ok && x.Unmap() == a {
			return true
		}
	}
	return false
}

// Control is a net.Dialer Control function: it refuses, before the
// connection is attempted, an address the policy refuses. The address is
// the resolved one, so DNS rebinding cannot get past it.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check %s address %q: %w", ErrRefused, network, address, err)
	}
	return p.Check(ap)
}

// Dialer returns a copy of d whose connections pass through Control first
// (then through d's own Control or ControlContext, if it has one).
func (p *Policy) Dialer(d net.Dialer) *net.Dialer {
	prev, prevCtx := d.Control, d.ControlContext
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := p.Control(network, address, c); err != nil {
			return err
		}
		switch {
		case prevCtx != nil:
			return prevCtx(ctx, network, address, c)
		case prev != nil:
			return prev(network, address, c)
		}
		return nil
	}
	return &d
}

// maxRedirects is how many redirects an HTTP client follows (as Go's
// default client).
const maxRedirects = 10

// CheckRedirect is an http.Client CheckRedirect function: it follows at
// most 10 redirects, only to http and https URLs, and never to a literal
// address the policy refuses. A redirect to a name is checked when it
// connects, by Control.
func (p *Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if err := p.checkLiteralURL(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
	}
	return nil
}

// checkLiteralURL checks the scheme of u, and its host when that is an
// address. It returns the port too.
func (p *Policy) checkLiteralURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return fmt.Errorf("%w: scheme %q (only http and https)", ErrRefused, u.Scheme)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return p.Check(netip.AddrPortFrom(a, urlPort(u)))
	}
	return nil
}

// urlPort is the port of an http(s) URL, explicit or by its scheme.
func urlPort(u *url.URL) uint16 {
	if n, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
		return uint16(n)
	}
	if strings.EqualFold(u.Scheme, "https") {
		return 443
	}
	return 80
}

// Transport returns an HTTP transport whose connections pass through the
// policy: http.DefaultTransport's settings with Control on the dialer and
// no proxy (a proxy would make the connection, and the check, to itself
// rather than to the target).
func (p *Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = p.Dialer(net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// lookupTimeout bounds the lookups of CheckURL and Resolve.
const lookupTimeout = 5 * time.Second

// Resolve returns the addresses of host (a name or a literal address) that
// the policy allows with port, in the resolver's order. When there are
// addresses but all are refused, the error is the *RefusedError of the
// first; a failed lookup returns the lookup's error.
func (p *Policy) Resolve(ctx context.Context, host string, port uint16) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if err := p.Check(netip.AddrPortFrom(a, port)); err != nil {
			return nil, err
		}
		return []netip.Addr{a}, nil
	}
	r := net.DefaultResolver
	if p != nil && p.resolver != nil {
		r = p.resolver
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", host, err)
	}
	var ok []netip.Addr
	var first error
	for _, a := range addrs {
		a = a.Unmap()
		if c := p.classify(netip.AddrPortFrom(a, port)); c != Public {
			if first == nil {
				first = &RefusedError{Host: host, Addr: netip.AddrPortFrom(a, port), Class: c}
			}
			continue
		}
		ok = append(ok, a)
	}
	if len(ok) == 0 {
		if first == nil {
			first = fmt.Errorf("lookup %s: no addresses", host)
		}
		return nil, first
	}
	return ok, nil
}

// CheckURL checks an http(s) URL when a request names it, so that the
// request can be refused at once: the scheme must be http or https, and
// the host must not be a refused address nor a name that resolves only to
// refused addresses. A name that does not resolve now passes (the fetch
// will fail on its own); one that resolves to some allowed addresses
// passes too, and Control refuses the others at connect time.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if err := p.checkLiteralURL(u); err != nil {
		return err
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil || host == "" {
		return nil
	}
	_, err = p.Resolve(ctx, host, urlPort(u))
	if errors.Is(err, ErrRefused) {
		return err
	}
	return nil
}
