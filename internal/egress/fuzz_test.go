package egress

import (
	"net/netip"
	"testing"
)

// FuzzControl feeds Control the addresses a dialer could pass it: it never
// panics, refuses what it cannot parse, and allows only public addresses
// (the default policy) that are not the bridge's own ports on local ones.
func FuzzControl(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:443", "[::ffff:10.0.0.1]:80", "[fe80::1%eth0]:80",
		"169.254.169.254:80", "8.8.8.8:53", "[64:ff9b::7f00:1]:80", "[2002:7f00:1::1]:80", "0.0.0.0:0", "", "x:1", "1.2.3.4"} {
		f.Add("tcp4", s)
	}
	p := New(Options{})
	p.AddOwnPorts(8080, 8080)
	f.Fuzz(func(t *testing.T, network, address string) {
		err := p.Control(network, address, nil)
		ap, perr := netip.ParseAddrPort(address)
		if perr != nil {
			if err == nil {
				t.Fatalf("unparsable %q allowed", address)
			}
			return
		}
		if err == nil && Classify(ap.Addr()) != Public {
			t.Fatalf("%s (%v) allowed", address, Classify(ap.Addr()))
		}
		if err == nil && ap.Port() == 8080 && ap.Addr().Unmap().IsLoopback() {
			t.Fatalf("own port %s allowed", address)
		}
	})
}
