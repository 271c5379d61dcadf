package api

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/egress"
)

// cbLoopback2 serves handler on 127.0.0.2, the loopback address the
// policies of these tests allow, while 127.0.0.1 stays refused.
func cbLoopback2(t *testing.T, handler http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestDispatcherRefusesInternalTargets: a callback to a refused address,
// directly or by a redirect from an allowed application, is never
// delivered and never retried; the event goes to fallbackUrl, and without
// one it is given up, logged with the reason and counted as failed.
func TestDispatcherRefusesInternalTargets(t *testing.T) {
	refused := cbNewApp(t, nil) // on 127.0.0.1
	refusedPort := refused.srv.Listener.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	var fallback []string
	allowed := cbLoopback2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusTemporaryRedirect) // 307: POST again, with the body
			return
		}
		mu.Lock()
		fallback = append(fallback, r.URL.Path)
		mu.Unlock()
	}))
	redirect := func(to string) string { return allowed.URL + "/redirect?to=" + url.QueryEscape(to) }

	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&cbLockedWriter{w: &logBuf, mu: &logMu}, nil))
	b, d := cbSetup(t, DispatcherConfig{MaxRetries: 3, Log: log,
		Targets: egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})})
	targets := []string{
		refused.url("/cb"),
		"http://" + net.JoinHostPort("localhost", strconv.Itoa(refusedPort)) + "/cb",
		redirect(refused.url("/cb")),
		redirect("http://" + net.JoinHostPort("localhost", strconv.Itoa(refusedPort)) + "/cb"),
		redirect("http://169.254.169.254/latest/meta-data/"),
		redirect("http://10.0.0.1/cb"),
		redirect("ftp://127.0.0.2/cb"),
	}
	for i, u := range targets {
		cbConf(t, b, bridge.Callback{URL: u, FallbackURL: allowed.URL + "/fallback/" + strconv.Itoa(i)})
	}
	cbConf(t, b, bridge.Callback{URL: redirect(refused.url("/cb"))}) // no fallback: given up
	st := cbIdle(t, d)
	if n := len(refused.all()); n != 0 {
		t.Fatalf("the refused application got %d requests", n)
	}
	mu.Lock()
	got := len(fallback)
	mu.Unlock()
	if got != len(targets) {
		t.Errorf("fallbackUrl got %d events, want %d", got, len(targets))
	}
	if st.Retried != 0 || st.Fallback != uint64(len(targets)) || st.Delivered != uint64(len(targets)) || st.Failed != 1 {
		t.Errorf("stats %+v: want no retries, %d fallbacks delivered, 1 failed", st, len(targets))
	}
	logMu.Lock()
	logged := logBuf.String()
	logMu.Unlock()
	if !strings.Contains(logged, "callback given up") || !strings.Contains(logged, "is a loopback address: refused by the outbound request policy") {
		t.Errorf("log does not say why the callback was given up:\n%s", logged)
	}

	// With 127.0.0.1 allowed, the same application gets its event.
	b2, d2 := cbSetup(t, DispatcherConfig{Targets: allowLoopback()})
	cbConf(t, b2, bridge.Callback{URL: refused.url("/cb")})
	refused.waitOK(1, 5*time.Second)
	if st := cbIdle(t, d2); st.Delivered != 1 {
		t.Errorf("allowed: stats %+v", st)
	}
}
