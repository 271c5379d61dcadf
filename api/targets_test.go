package api

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"chorus/bridge"
	"chorus/internal/egress"
)

// allowLoopback is the outbound policy of tests whose applications and
// phones are on 127.0.0.1: that address is allowed, nothing else internal.
func allowLoopback() *egress.Policy {
	return egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
}

// withTargets sets the API's outbound request policy.
func withTargets(p *egress.Policy) envOption {
	return func(_ *bridge.Config, c *Config) { c.Targets = p }
}

// TestTargetsRefusedAtRequest: with the default policy (nil), every
// internal fileUrl, callbackUrl, fallbackUrl and dial-out target is a 400
// naming the reason, before anything is fetched, posted or dialled; with
// 127.0.0.1 allowed, the loopback targets are accepted.
func TestTargetsRefusedAtRequest(t *testing.T) {
	e := newEnv(t, withTargets(nil))
	conf := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"+1"}`), "/v1/users/u-alice/conferences")
	urls := map[string]string{
		"http://127.0.0.1:8080/metrics":           "loopback",
		"http://localhost:9/x.wav":                "loopback",
		"http://[::1]/x.wav":                      "loopback",
		"http://[::ffff:127.0.0.1]/x.wav":         "loopback",
		"http://169.254.169.254/latest/meta-data": "link-local",
		"http://10.0.0.1/x.wav":                   "private",
		"https://192.168.1.1/x.wav":               "private",
		"http://100.64.0.1/x.wav":                 "carrier-grade NAT",
		"http://0.0.0.0:8080/":                    "unspecified",
		"http://224.0.0.1/":                       "multicast",
		"http://[fd00::1]/":                       "private",
	}
	for u, why := range urls {
		ae := e.as(alice, "POST", "/conferences/"+conf+"/audio", fmt.Sprintf(`{"fileUrl":%q}`, u)).
			expectError(t, 400, "validation-error")
		if !strings.Contains(ae.Message, why) || !strings.Contains(ae.Message, "fileUrl") {
			t.Errorf("fileUrl %s: message %q does not say %q", u, ae.Message, why)
		}
		for _, prop := range []string{"callbackUrl", "fallbackUrl"} {
			body := fmt.Sprintf(`{"from":"+2",%q:%q}`, prop, u)
			if prop == "fallbackUrl" {
				body = fmt.Sprintf(`{"from":"+2","callbackUrl":"http://8.8.8.8/","fallbackUrl":%q}`, u)
			}
			ae := e.as(alice, "POST", "/conferences", body).expectError(t, 400, "callback-invalid-url")
			if !strings.Contains(ae.Message, why) {
				t.Errorf("%s %s: message %q does not say %q", prop, u, ae.Message, why)
			}
			if !hasDetail(ae, "property", prop) || !hasDetail(ae, "reason", "") {
				t.Errorf("%s %s: details %v", prop, u, ae.Details)
			}
			e.as(alice, "POST", "/conferences/"+conf, fmt.Sprintf(`{%q:%q}`, prop, u)).expectError(t, 400, "callback-invalid-url")
			e.as(alice, "POST", "/calls", fmt.Sprintf(`{"from":"+1","to":"sip:x@8.8.8.8",%q:%q}`, prop, u)).
				expectError(t, 400, "callback-invalid-url")
		}
	}
	for to, why := range map[string]string{
		"sip:x@127.0.0.1:5060;transport=tcp": "loopback",
		"sip:x@127.0.0.1":                    "loopback",
		"sip:x@localhost:5070":               "loopback",
		"sip:x@[::1]:5060":                   "loopback",
		"sips:x@169.254.169.254":             "link-local",
		"sip:x@10.0.0.1:22;transport=tcp":    "private",
		"sip:192.168.0.1":                    "private",
		"sip:x@0.0.0.0":                      "unspecified",
	} {
		ae := e.as(alice, "POST", "/calls", fmt.Sprintf(`{"from":"+1","to":%q}`, to)).expectError(t, 400, "validation-error")
		if !strings.Contains(ae.Message, why) || !strings.Contains(ae.Message, "'to'") {
			t.Errorf("to %s: message %q does not say %q", to, ae.Message, why)
		}
	}
	if calls := e.b.Calls(alice.ID); len(calls) != 0 {
		t.Errorf("%d refused calls were dialled", len(calls))
	}
	// A name that does not resolve now is not refused: it fails later.
	// (Nothing is sent to 8.8.8.8 above: each of those requests is refused.)
	e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"+3","callbackUrl":"http://app.invalid/cb"}`), "/v1/users/u-alice/conferences")

	// 127.0.0.1 allowed: the same loopback targets are accepted, the others
	// are still refused.
	a := newEnv(t, withTargets(allowLoopback()))
	a.mustCreate(a.as(alice, "POST", "/conferences", `{"from":"+4","callbackUrl":"http://127.0.0.1:9/cb"}`), "/v1/users/u-alice/conferences")
	a.mustCreate(a.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:x@127.0.0.1:5070;transport=tcp"}`), "/v1/users/u-alice/calls")
	a.as(alice, "POST", "/conferences", `{"from":"+5","callbackUrl":"http://127.0.0.2:9/cb"}`).expectError(t, 400, "callback-invalid-url")
	a.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:x@169.254.169.254"}`).expectError(t, 400, "validation-error")
}

func hasDetail(ae apiError, name, value string) bool {
	for _, d := range ae.Details {
		if d.Name == name && (value == "" || d.Value == value) {
			return true
		}
	}
	return false
}

func TestSIPHostPort(t *testing.T) {
	for _, tc := range []struct {
		uri, host string
		port      uint16
	}{
		{"sip:x@127.0.0.1", "127.0.0.1", 5060},
		{"sip:x@127.0.0.1:5070", "127.0.0.1", 5070},
		{"sip:x@host.example:5070;transport=tcp", "host.example", 5070},
		{"sips:x@host.example", "host.example", 5061},
		{"sip:x@host.example;transport=TLS", "host.example", 5061},
		{"sip:host.example", "host.example", 5060},
		{"sip:x@[::1]:5062", "::1", 5062},
		{"sip:x@[::1]", "::1", 5060},
		{"sip:a@b@10.0.0.1?subject=x", "10.0.0.1", 5060},
		{"sip:x:pw@10.0.0.1:0", "10.0.0.1", 5060},
	} {
		host, port := sipHostPort(tc.uri)
		if host != tc.host || port != tc.port {
			t.Errorf("sipHostPort(%s) = %s %d, want %s %d", tc.uri, host, port, tc.host, tc.port)
		}
	}
}
