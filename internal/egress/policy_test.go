package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestClassify is the table of special-purpose blocks: each range's first
// and last address, its neighbours, IPv6, IPv4-mapped IPv6 and NAT64.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want Class
	}{
		// IPv4
		{"0.0.0.0", Unspecified},
		{"0.255.255.255", Unspecified},
		{"1.0.0.0", Public},
		{"9.255.255.255", Public},
		{"10.0.0.0", Private},
		{"10.0.0.1", Private},
		{"10.255.255.255", Private},
		{"11.0.0.0", Public},
		{"100.63.255.255", Public},
		{"100.64.0.0", Shared},
		{"100.127.255.255", Shared},
		{"100.128.0.0", Public},
		{"126.255.255.255", Public},
		{"127.0.0.1", Loopback},
		{"127.0.0.2", Loopback},
		{"127.255.255.255", Loopback},
		{"128.0.0.0", Public},
		{"169.253.255.255", Public},
		{"169.254.0.0", LinkLocal},
		{"169.254.169.254", LinkLocal},
		{"169.254.255.255", LinkLocal},
		{"169.255.0.0", Public},
		{"172.15.255.255", Public},
		{"172.16.0.0", Private},
		{"172.31.255.255", Private},
		{"172.32.0.0", Public},
		{"192.0.0.0", Protocol},
		{"192.0.0.255", Protocol},
		{"192.0.1.0", Public},
		{"192.0.2.1", Documentation},
		{"192.88.99.1", Translation},
		{"192.167.255.255", Public},
		{"192.168.0.0", Private},
		{"192.168.255.255", Private},
		{"192.169.0.0", Public},
		{"198.17.255.255", Public},
		{"198.18.0.0", Benchmarking},
		{"198.19.255.255", Benchmarking},
		{"198.20.0.0", Public},
		{"198.51.100.7", Documentation},
		{"203.0.113.9", Documentation},
		{"8.8.8.8", Public},
		{"223.255.255.255", Public},
		{"224.0.0.1", Multicast},
		{"239.255.255.255", Multicast},
		{"240.0.0.1", Reserved},
		{"255.255.255.255", Reserved},
		// IPv6
		{"::", Unspecified},
		{"::1", Loopback},
		{"::2", Translation},
		{"::127.0.0.1", Translation},
		{"::ffff:0:7f00:1", Translation},
		{"100::1", Protocol},
		{"1fff:ffff::1", Reserved},
		{"2000::1", Public},
		{"2001::1", Protocol},
		{"2001:1ff:ffff::1", Protocol},
		{"2001:200::1", Public},
		{"2001:2::1", Benchmarking},
		{"2001:db8::1", Documentation},
		{"2002:7f00:1::1", Translation},
		{"2606:4700:4700::1111", Public},
		{"3fff::1", Documentation},
		{"3ffe::1", Public},
		{"4000::1", Reserved},
		{"5f00::1", Protocol},
		{"fc00::1", Private},
		{"fd12:3456::1", Private},
		{"fe80::1", LinkLocal},
		{"fe80::1%eth0", LinkLocal},
		{"febf::1", LinkLocal},
		{"fec0::1", Private},
		{"ff02::1", Multicast},
		{"ff0e::1", Multicast},
		// IPv4-mapped IPv6: the IPv4 address's class.
		{"::ffff:127.0.0.1", Loopback},
		{"::ffff:169.254.169.254", LinkLocal},
		{"::ffff:10.0.0.1", Private},
		{"::ffff:100.64.0.1", Shared},
		{"::ffff:0.0.0.0", Unspecified},
		{"::ffff:224.0.0.1", Multicast},
		{"::ffff:8.8.8.8", Public},
		// NAT64 (RFC 6052): the embedded IPv4 address's class.
		{"64:ff9b::7f00:1", Loopback},
		{"64:ff9b::a9fe:a9fe", LinkLocal},
		{"64:ff9b::a00:1", Private},
		{"64:ff9b::808:808", Public},
		{"64:ff9b:1::1", Translation},
	} {
		if got := Classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Classify(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if got := Classify(netip.Addr{}); got != Invalid {
		t.Errorf("Classify(zero) = %v", got)
	}
}

// TestPolicyOptions: the default refuses every class but Public;
// AllowPrivate lifts loopback, private and CGNAT only; Allow lifts its
// prefixes whatever their class; nothing lifts the bridge's own ports.
func TestPolicyOptions(t *testing.T) {
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	noIfaces := func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.50"), Mask: net.CIDRMask(24, 32)}}, nil
	}
	def := New(Options{InterfaceAddrs: noIfaces})
	private := New(Options{AllowPrivate: true, InterfaceAddrs: noIfaces})
	allow := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"),
		netip.MustParsePrefix("::ffff:10.1.0.0/112"), netip.MustParsePrefix("fd00::/8")}, InterfaceAddrs: noIfaces})
	var nilPolicy *Policy
	for _, p := range []*Policy{def, private, allow} {
		p.AddOwnPorts(8080, 8080)
		p.AddOwnPorts(10000, 10010)
	}
	for _, tc := range []struct {
		addr                          string
		def, private, allow, nilAllow bool
	}{
		{"8.8.8.8:80", true, true, true, true},
		{"[2606:4700::1]:443", true, true, true, true},
		{"127.0.0.1:80", false, true, false, false},
		{"127.0.0.2:80", false, true, true, false},
		{"[::ffff:127.0.0.2]:80", false, true, true, false},
		{"[::1]:80", false, true, false, false},
		{"10.0.0.1:80", false, true, false, false},
		{"10.1.2.3:80", false, true, true, false},
		{"192.168.1.1:80", false, true, false, false},
		{"100.64.0.1:80", false, true, false, false},
		{"[fd00::1]:80", false, true, true, false},
		{"169.254.169.254:80", false, false, false, false},
		{"[fe80::1]:80", false, false, false, false},
		{"224.0.0.1:80", false, false, false, false},
		{"0.0.0.0:80", false, false, false, false},
		{"255.255.255.255:80", false, false, false, false},
		{"192.0.2.1:80", false, false, false, false},
		// The bridge's own ports on local addresses: refused by all.
		{"127.0.0.1:8080", false, false, false, false},
		{"127.0.0.2:8080", false, false, false, false},
		{"0.0.0.0:10005", false, false, false, false},
		{"[::1]:10010", false, false, false, false},
		{"127.0.0.2:10011", false, true, true, false},
		// ... and on an interface's address, even a public one.
		{"8.8.8.8:8080", true, true, true, true},
		{"192.0.2.50:8080", false, false, false, false},
	} {
		for i, p := range []*Policy{def, private, allow, nilPolicy} {
			want := []bool{tc.def, tc.private, tc.allow, tc.nilAllow}[i]
			err := p.Check(ap(tc.addr))
			if (err == nil) != want {
				t.Errorf("policy %d: Check(%s) = %v, want allowed %v", i, tc.addr, err, want)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Errorf("policy %d: Check(%s) = %v, not ErrRefused", i, tc.addr, err)
			}
		}
	}
	var re *RefusedError
	if err := def.Check(ap("127.0.0.1:8080")); !errors.As(err, &re) || re.Class != OwnListener ||
		!strings.Contains(err.Error(), "listener of this bridge") {
		t.Errorf("own port: %v", err)
	}
	if err := def.Check(ap("169.254.169.254:80")); err == nil ||
		err.Error() != "169.254.169.254:80 is a link-local address: refused by the outbound request policy" {
		t.Errorf("message: %v", err)
	}
}

// TestControlRefusesBeforeConnect dials through the policy's dialer and
// checks that a refused address is never connected to: a listener on it
// accepts nothing, and the error is ErrRefused.
func TestControlRefusesBeforeConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)

	var prevCalled atomic.Int32
	d := New(Options{}).Dialer(net.Dialer{Timeout: 5 * time.Second,
		Control: func(string, string, syscall.RawConn) error { prevCalled.Add(1); return nil }})
	for _, addr := range []string{l.Addr().String(), net.JoinHostPort("localhost", strconv.Itoa(int(port)))} {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s through the default policy connected", addr)
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("dial %s: %v, want ErrRefused", addr, err)
		}
	}
	if prevCalled.Load() != 0 {
		t.Error("the dialer's own Control ran for a refused address")
	}

	// Allowed: the connection is made, and the dialer's own Control runs.
	allowed := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c, err := allowed.Dialer(net.Dialer{Control: func(string, string, syscall.RawConn) error { prevCalled.Add(1); return nil }}).
		Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	c.Close()
	if prevCalled.Load() != 1 {
		t.Error("the dialer's own Control did not run")
	}
	// Allowed range, but the bridge's own port.
	allowed.AddOwnPorts(port, port)
	if c, err := allowed.Dialer(net.Dialer{}).Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Error("dial to the bridge's own port connected")
	}
	deadline := time.Now().Add(2 * time.Second)
	for accepted.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("listener accepted %d connections, want only the allowed one", n)
	}
}

// TestClientRedirects: an allowed server (127.0.0.2) redirecting to a
// refused one (127.0.0.1), to another scheme, or to a literal refused
// address is not followed, and the refused server sees no request.
func TestClientRedirects(t *testing.T) {
	var hit atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Add(1) }))
	defer target.Close()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	redirector := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := r.URL.Query().Get("to")
		if to == "" {
			return
		}
		http.Redirect(w, r, to, http.StatusFound)
	}))
	redirector.Listener = l
	redirector.Start()
	defer redirector.Close()

	p := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	client := &http.Client{Transport: p.Transport(), CheckRedirect: p.CheckRedirect}
	tu, _ := url.Parse(target.URL)
	for _, to := range []string{
		target.URL + "/x",                               // literal loopback
		"http://localhost:" + tu.Port() + "/x",          // a name resolving to loopback
		"http://169.254.169.254/latest/meta-data/",      // metadata: refused before connect
		"http://10.0.0.1/",                              // private
		"file:///etc/passwd",                            // scheme
		"ftp://127.0.0.2/x",                             // scheme
		"http://[::ffff:127.0.0.1]:" + tu.Port() + "/x", // mapped loopback
	} {
		resp, err := client.Get(redirector.URL + "/?to=" + url.QueryEscape(to))
		if err == nil {
			resp.Body.Close()
			t.Errorf("redirect to %s followed: %s", to, resp.Status)
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("redirect to %s: %v, want ErrRefused", to, err)
		}
	}
	if n := hit.Load(); n != 0 {
		t.Errorf("the refused server got %d requests", n)
	}
	// The redirector itself works, and so does a redirect to itself.
	resp, err := client.Get(redirector.URL + "/?to=" + url.QueryEscape("/ok"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestCheckURLAndResolve: the request-time checks, literal and by name.
func TestCheckURLAndResolve(t *testing.T) {
	ctx := context.Background()
	p := New(Options{})
	for _, raw := range []string{
		"http://127.0.0.1/x", "http://localhost:8080/x", "https://[::1]/", "http://169.254.169.254/",
		"http://10.0.0.1/", "http://0.0.0.0:80/", "ftp://example.com/", "file:///etc/passwd",
		"http://[::ffff:10.0.0.1]/",
	} {
		if err := p.CheckURL(ctx, raw); !errors.Is(err, ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want ErrRefused", raw, err)
		}
	}
	// A name that does not resolve passes: the fetch will fail on its own.
	if err := p.CheckURL(ctx, "http://no-such-host.invalid/x"); err != nil {
		t.Errorf("unresolvable name: %v", err)
	}
	if err := p.CheckURL(ctx, "http://8.8.8.8/x"); err != nil {
		t.Errorf("public address: %v", err)
	}
	err := p.CheckURL(ctx, "http://localhost/x")
	var re *RefusedError
	if !errors.As(err, &re) || re.Host != "localhost" || re.Class != Loopback {
		t.Errorf("localhost: %v", err)
	} else if !strings.HasPrefix(err.Error(), "localhost (") {
		t.Errorf("localhost message: %q", err)
	}

	if _, err := p.Resolve(ctx, "localhost", 5060); !errors.Is(err, ErrRefused) {
		t.Errorf("Resolve(localhost) = %v", err)
	}
	allowed := New(Options{AllowPrivate: true})
	addrs, err := allowed.Resolve(ctx, "localhost", 5060)
	if err != nil || len(addrs) == 0 || !addrs[0].IsLoopback() {
		t.Errorf("Resolve(localhost) allowed: %v %v", addrs, err)
	}
	if _, err := allowed.Resolve(ctx, "169.254.169.254", 80); !errors.Is(err, ErrRefused) {
		t.Errorf("AllowPrivate allowed the metadata address: %v", err)
	}
	if _, err := p.Resolve(ctx, "no-such-host.invalid", 5060); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("unresolvable: %v", err)
	}
}
