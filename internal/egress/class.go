package egress

import "net/netip"

// Class is what kind of address a target is. Every class but Public is
// refused unless the policy allows it; the table follows the IANA IPv4 and
// IPv6 Special-Purpose Address Registries (RFC 6890 and its updates).
type Class uint8

// Address classes.
const (
	// Public is globally routable unicast: the only class allowed by default.
	Public Class = iota
	// Unspecified is 0.0.0.0/8 ("this network", RFC 791) and ::. A connect
	// to 0.0.0.0 reaches the local host on Linux.
	Unspecified
	// Loopback is 127.0.0.0/8 and ::1 (RFC 1122, RFC 4291).
	Loopback
	// LinkLocal is 169.254.0.0/16 (RFC 3927), home of the cloud metadata
	// service 169.254.169.254, and fe80::/10 (RFC 4291).
	LinkLocal
	// Private is 10/8, 172.16/12, 192.168/16 (RFC 1918), fc00::/7 (unique
	// local, RFC 4193) and the deprecated site-local fec0::/10 (RFC 3879).
	Private
	// Shared is the carrier-grade NAT space 100.64.0.0/10 (RFC 6598).
	Shared
	// Multicast is 224.0.0.0/4 and ff00::/8.
	Multicast
	// Reserved is 240.0.0.0/4 (RFC 1112), with the limited broadcast
	// address 255.255.255.255 (RFC 919), and IPv6 outside 2000::/3, the
	// only global unicast block allocated (RFC 4291 §2.4).
	Reserved
	// Documentation is 192.0.2/24, 198.51.100/24, 203.0.113/24 (RFC 5737),
	// 2001:db8::/32 (RFC 3849) and 3fff::/20 (RFC 9637).
	Documentation
	// Benchmarking is 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180).
	Benchmarking
	// Protocol is the IETF protocol assignments 192.0.0.0/24 (RFC 6890)
	// and 2001::/23 (RFC 2928; Teredo, ORCHID and others), the discard
	// prefix 100::/64 (RFC 6666) and SRv6 SIDs 5f00::/16 (RFC 9602).
	Protocol
	// Translation is an address that tunnels or translates to IPv4
	// somewhere else: 6to4 2002::/16 and its relay 192.88.99.0/24 (RFC
	// 7526), the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215), and the
	// deprecated IPv4-compatible ::/96 and IPv4-translated ::ffff:0:0:0/96.
	// Addresses of the well-known NAT64 prefix 64:ff9b::/96 (RFC 6052) take
	// the class of the IPv4 address they embed instead.
	Translation
	// OwnListener is one of the bridge's own ports on a local address: not
	// an address class, but a reason to refuse that no option lifts.
	OwnListener
	// Invalid is the zero netip.Addr.
	Invalid
)

// String says what the class is, for error messages: "a loopback address".
func (c Class) String() string {
	switch c {
	case Public:
		return "a public address"
	case Unspecified:
		return "an unspecified address"
	case Loopback:
		return "a loopback address"
	case LinkLocal:
		return "a link-local address"
	case Private:
		return "a private address"
	case Shared:
		return "a carrier-grade NAT address"
	case Multicast:
		return "a multicast address"
	case Reserved:
		return "a reserved address"
	case Documentation:
		return "a documentation address"
	case Benchmarking:
		return "a benchmarking address"
	case Protocol:
		return "a special-purpose protocol address"
	case Translation:
		return "a tunnelling or translation address"
	case OwnListener:
		return "a listener of this bridge"
	}
	return "not a valid address"
}

// internal reports whether AllowPrivate lifts the class: the unicast
// ranges of an operator's own networks. Link-local stays refused, because
// 169.254.169.254 is the cloud metadata service SSRF is most often after;
// name it with an Allow prefix if it is really meant.
func (c Class) internal() bool {
	return c == Loopback || c == Private || c == Shared
}

// classTable lists the special-purpose blocks, most specific first where
// they nest. IPv4-mapped IPv6 is unmapped before the table is read.
var classTable = []struct {
	p netip.Prefix
	c Class
}{
	// IPv4
	{netip.MustParsePrefix("0.0.0.0/8"), Unspecified},
	{netip.MustParsePrefix("10.0.0.0/8"), Private},
	{netip.MustParsePrefix("100.64.0.0/10"), Shared},
	{netip.MustParsePrefix("127.0.0.0/8"), Loopback},
	{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), Private},
	{netip.MustParsePrefix("192.0.0.0/24"), Protocol},
	{netip.MustParsePrefix("192.0.2.0/24"), Documentation},
	{netip.MustParsePrefix("192.88.99.0/24"), Translation},
	{netip.MustParsePrefix("192.168.0.0/16"), Private},
	{netip.MustParsePrefix("198.18.0.0/15"), Benchmarking},
	{netip.MustParsePrefix("198.51.100.0/24"), Documentation},
	{netip.MustParsePrefix("203.0.113.0/24"), Documentation},
	{netip.MustParsePrefix("224.0.0.0/4"), Multicast},
	{netip.MustParsePrefix("240.0.0.0/4"), Reserved},
	// IPv6
	{netip.MustParsePrefix("::/128"), Unspecified},
	{netip.MustParsePrefix("::1/128"), Loopback},
	{netip.MustParsePrefix("::/96"), Translation},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), Translation},
	{netip.MustParsePrefix("64:ff9b:1::/48"), Translation},
	{netip.MustParsePrefix("100::/64"), Protocol},
	{netip.MustParsePrefix("2001:2::/48"), Benchmarking},
	{netip.MustParsePrefix("2001:db8::/32"), Documentation},
	{netip.MustParsePrefix("2001::/23"), Protocol},
	{netip.MustParsePrefix("2002::/16"), Translation},
	{netip.MustParsePrefix("3fff::/20"), Documentation},
	{netip.MustParsePrefix("5f00::/16"), Protocol},
	{netip.MustParsePrefix("fc00::/7"), Private},
	{netip.MustParsePrefix("fe80::/10"), LinkLocal},
	{netip.MustParsePrefix("fec0::/10"), Private},
	{netip.MustParsePrefix("ff00::/8"), Multicast},
}

var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	global6 = netip.MustParsePrefix("2000::/3")
)

// Classify returns the class of a: Public for globally routable unicast,
// else the special-purpose block it is in. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are classified as the IPv4 address they carry, and so
// are addresses of the well-known NAT64 prefix 64:ff9b::/96; a zone is
// ignored.
func Classify(a netip.Addr) Class {
	if !a.IsValid() {
		return Invalid
	}
	a = a.Unmap().WithZone("")
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		return Classify(netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, e := range classTable {
		if e.p.Contains(a) {
			return e.c
		}
	}
	if a.Is6() && !global6.Contains(a) {
		return Reserved
	}
	return Public
}
