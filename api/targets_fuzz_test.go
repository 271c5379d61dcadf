package api

import (
	"strings"
	"testing"
)

// FuzzSIPHostPort: any URI validSIPURI accepts gives a host without
// brackets, '@' or parameters, and a port that is never 0.
func FuzzSIPHostPort(f *testing.F) {
	for _, s := range []string{"sip:x@127.0.0.1", "sips:x@[::1]:5061", "sip:a@b@10.0.0.1;transport=tcp?x=y",
		"sip:host:0", "sip:x@[fe80::1%25eth0]:5060", "sip:x@host:99999", "SIP:X@H;TRANSPORT=TLS"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if !validSIPURI(uri) {
			return
		}
		host, port := sipHostPort(uri)
		if port == 0 {
			t.Fatalf("%q: port 0", uri)
		}
		if strings.ContainsAny(host, "@;?") {
			t.Fatalf("%q: host %q", uri, host)
		}
	})
}
