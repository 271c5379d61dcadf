package audiofile

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"chorus/internal/egress"
)

// TestFetchRefusesInternalTargets: the zero Fetcher refuses loopback (by
// address and by name), link-local metadata, private addresses and a
// redirect from an allowed server to a refused one; the refused server
// sees no request. Allowing 127.0.0.1 makes the same server work.
func TestFetchRefusesInternalTargets(t *testing.T) {
	wav := makeWAV(t, wavSpecs[1], 8000, sine(1000, 0.5, 8000, 0.2))
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(wav)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	// A redirector on 127.0.0.2, the one loopback address allowed below.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	redir := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	}))
	redir.Listener = l
	redir.Start()
	defer redir.Close()
	via := func(to string) string { return redir.URL + "/?to=" + url.QueryEscape(to) }
	local := "http://" + net.JoinHostPort("localhost", strconv.Itoa(port)) + "/a.wav"

	var zero Fetcher
	only2 := &Fetcher{Targets: egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})}
	for _, tc := range []struct {
		name string
		f    *Fetcher
		url  string
	}{
		{"loopback", &zero, srv.URL + "/a.wav"},
		{"localhost", &zero, local},
		{"metadata", &zero, "http://169.254.169.254/latest/meta-data/"},
		{"private", &zero, "http://10.0.0.1/a.wav"},
		{"redirect to loopback", only2, via(srv.URL + "/a.wav")},
		{"redirect to localhost", only2, via(local)},
		{"redirect to metadata", only2, via("http://169.254.169.254/latest/meta-data/")},
		{"redirect to private", only2, via("http://10.0.0.1/a.wav")},
	} {
		start := time.Now()
		_, err := tc.f.Fetch(context.Background(), tc.url)
		if !errors.Is(err, egress.ErrRefused) {
			t.Errorf("%s: err = %v, want egress.ErrRefused", tc.name, err)
		}
		// Refused before any packet: no connect timeout to wait out.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused server answered %d requests", n)
	}

	allowed := &Fetcher{Targets: egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})}
	if pcm, err := allowed.Fetch(context.Background(), srv.URL+"/a.wav"); err != nil || len(pcm.Samples) == 0 {
		t.Fatalf("allowed fetch: %d samples, %v", len(pcm.Samples), err)
	}
}
