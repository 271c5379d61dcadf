package sip

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// natTarget returns where our in-dialog requests (BYE) to the caller of
// invite must be sent when the caller is behind a NAT, or "" when they go
// the ordinary way: to the route set's first hop (RFC 3261 §12.2.1.1), or
// else to the remote target, the Contact.
//
// A phone behind a NAT puts its private address in Contact and Via; the
// Contact is then unreachable and only the address its requests came from
// leads back to it (the NAT's binding). As RFC 3581 does for responses and
// as kamailio's fix_nated_contact does for requests, we then send to that
// source address and port, over UDP, or over the same connection for TCP
// (sipgo's transport layer keeps accepted connections by their remote
// address, so the source names the connection).
//
// A NAT is assumed when the INVITE came straight from the phone (one Via,
// no Record-Route) and either its source IP differs from the Via's sent-by
// host, or the phone asked for symmetric responses (rport) and its source
// port differs from the sent-by port. A phone that sends from one port and
// listens on another, without rport and not behind a NAT, keeps getting
// requests at its Contact. With a Record-Route the proxy that recorded it
// is in charge of reaching the phone; with more than one Via a proxy that
// chose not to stay in the path forwarded the call, and the Contact it
// passed on is what RFC 3261 says to use.
func natTarget(invite *sip.Request) string {
	if invite.GetHeader("Record-Route") != nil || len(invite.GetHeaders("Via")) != 1 {
		return ""
	}
	src, err := netip.ParseAddrPort(invite.Source())
	if err != nil {
		return ""
	}
	via := invite.Via()
	if via == nil {
		return ""
	}
	host, err := netip.ParseAddr(via.Host)
	natted := err != nil || host.Unmap() != src.Addr().Unmap()
	if !natted && via.Params != nil && via.Params.Has("rport") {
		port := via.Port
		if port == 0 {
			port = sip.DefaultPort(invite.Transport())
		}
		natted = port != int(src.Port())
	}
	if !natted {
		return ""
	}
	return src.String()
}

// natTargetOfAnswer is natTarget for a call we dialled: the callee's 2xx
// names a private Contact (RFC 1918, RFC 6598, ULA or link-local) that is
// not the address the answer came from, and no proxy recorded a route.
// kamailio's nat_uac_test("1") on replies tests the same. Then the BYE goes
// to the answer's source. A public Contact is trusted, since a proxy that
// did not record a route may well have answered for it.
func natTargetOfAnswer(res *sip.Response) string {
	if res == nil || res.GetHeader("Record-Route") != nil {
		return ""
	}
	ct := res.Contact()
	if ct == nil {
		return ""
	}
	host, err := netip.ParseAddr(ct.Address.Host)
	if err != nil || !privateAddr(host) {
		return ""
	}
	src, err := netip.ParseAddrPort(res.Source())
	if err != nil || src.Addr().Unmap() == host.Unmap() {
		return ""
	}
	return src.String()
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// privateAddr reports whether a is an address no one outside the site can
// reach.
func privateAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLinkLocalUnicast() || sharedAddressSpace.Contains(a)
}
