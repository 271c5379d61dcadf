package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startChorusArgs runs the binary in-process like startChorus, with the
// given outbound policy flags instead of startChorus's --target-allow.
func startChorusArgs(t *testing.T, rtp string, extra ...string) ready {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	args := append([]string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", rtp,
		"--user", "u-alice:alice-token:alice-secret"}, extra...)
	go func() {
		done <- run(ctx, args, noEnv, io.Discard, io.Discard, func(r ready) { readyCh <- r })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("chorus did not stop")
		}
	})
	select {
	case r := <-readyCh:
		return r
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	return ready{}
}

// countingServer serves h on addr and counts its requests.
type countingServer struct {
	*httptest.Server
	hits atomic.Int32
}

func newCountingServer(t *testing.T, addr string, h http.Handler) *countingServer {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) port() int { return s.Listener.Addr().(*net.TCPAddr).Port }

// apiError is the part of an error body the tests read.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func expect400(t *testing.T, c client, what, path string, body map[string]any, code, why string) {
	t.Helper()
	resp, b := c.do("POST", path, body)
	var ae apiError
	_ = json.Unmarshal(b, &ae)
	if resp.StatusCode != 400 || ae.Code != code || !strings.Contains(ae.Message, why) {
		t.Errorf("%s: %d %s, want 400 %s saying %q", what, resp.StatusCode, b, code, why)
	}
}

// TestOutboundPolicy runs the binary as an operator would and tries every
// internal target on fileUrl, callbackUrl and dial-out. With the default
// policy they are 400s at request time, and the loopback servers named
// see no request. With --target-allow 127.0.0.1/32 the same loopback
// servers work, while the bridge's own ports, other loopback addresses,
// metadata and private addresses stay refused, at request time or, behind
// an allowed server's redirect, as a playback that ends with endReason
// refused and a callback that goes to fallbackUrl instead.
func TestOutboundPolicy(t *testing.T) {
	wav := audioWAV(8000, 1, 1000, -12, 200*time.Millisecond)
	files := newCountingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(wav)
	}))
	events := &audioEvents{}
	evSrv := newCountingServer(t, "127.0.0.1:0", events)
	// A server on 127.0.0.2: loopback, never allowed in this test.
	other := newCountingServer(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	far, err := net.Listen("tcp", "127.0.0.1:0") // a TCP port dial-out must not reach
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	var farAccepted atomic.Int32
	go func() {
		for {
			c, err := far.Accept()
			if err != nil {
				return
			}
			farAccepted.Add(1)
			c.Close()
		}
	}()
	farPort := far.Addr().(*net.TCPAddr).Port

	t.Run("Default", func(t *testing.T) {
		r := startChorusArgs(t, "30400-30449")
		alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
		ownHTTP := r.HTTP.(*net.TCPAddr).Port
		urls := map[string]string{
			evSrv.URL + "/cb": "loopback",
			fmt.Sprintf("http://localhost:%d/cb", evSrv.port()):   "loopback",
			"http://169.254.169.254/latest/meta-data/":            "link-local",
			"http://10.0.0.1/cb":                                  "private",
			fmt.Sprintf("http://127.0.0.1:%d/metrics", ownHTTP):   "listener of this bridge",
			fmt.Sprintf("http://localhost:%d/metrics", ownHTTP):   "listener of this bridge",
			fmt.Sprintf("http://[::1]:%d/metrics", ownHTTP):       "listener of this bridge",
			files.URL + "/?to=" + url.QueryEscape(other.URL+"/x"): "loopback",
		}
		for u, why := range urls {
			expect400(t, alice, "callbackUrl "+u, "/conferences", map[string]any{"from": "+1", "callbackUrl": u}, "callback-invalid-url", why)
		}
		resp, _ := alice.do("POST", "/conferences", map[string]any{"from": "+1"})
		if resp.StatusCode != 201 {
			t.Fatalf("create conference: %d", resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		conf := loc[strings.LastIndex(loc, "/")+1:]
		for u, why := range urls {
			expect400(t, alice, "fileUrl "+u, "/conferences/"+conf+"/audio", map[string]any{"fileUrl": u}, "validation-error", why)
		}
		for to, why := range map[string]string{
			fmt.Sprintf("sip:x@127.0.0.1:%d;transport=tcp", farPort): "loopback",
			fmt.Sprintf("sip:x@localhost:%d;transport=tcp", farPort): "loopback",
			"sip:x@169.254.169.254":                                  "link-local",
			"sip:x@10.0.0.1:22;transport=tcp":                        "private",
			fmt.Sprintf("sip:x@127.0.0.1:%d", r.SIPUDP.Port()):       "listener of this bridge",
		} {
			expect400(t, alice, "to "+to, "/calls", map[string]any{"from": "+1", "to": to}, "validation-error", why)
		}
	})
	if files.hits.Load()+evSrv.hits.Load()+other.hits.Load()+farAccepted.Load() != 0 {
		t.Fatalf("refused targets were reached: files %d, events %d, 127.0.0.2 %d, TCP %d",
			files.hits.Load(), evSrv.hits.Load(), other.hits.Load(), farAccepted.Load())
	}

	t.Run("Allowed", func(t *testing.T) {
		r := startChorusArgs(t, "30450-30499", "--target-allow", "127.0.0.1/32")
		alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
		ownHTTP := r.HTTP.(*net.TCPAddr).Port
		ownMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", ownHTTP)

		// The same loopback servers now work.
		resp, body := alice.do("POST", "/conferences", map[string]any{"from": "+2", "callbackUrl": evSrv.URL + "/conf", "tag": "room"})
		if resp.StatusCode != 201 {
			t.Fatalf("create conference with a loopback callback: %d %s", resp.StatusCode, body)
		}
		loc := resp.Header.Get("Location")
		conf := loc[strings.LastIndex(loc, "/")+1:]
		audio := "/conferences/" + conf + "/audio"
		if resp, body := alice.do("POST", audio, map[string]any{"fileUrl": files.URL + "/tone.wav", "tag": "good"}); resp.StatusCode != 200 {
			t.Fatalf("loopback fileUrl: %d %s", resp.StatusCode, body)
		}
		events.wait(t, "playback started", 20*time.Second, audioEv("conference-playback", "started", "good"))

		// Still refused when the request is made.
		for u, why := range map[string]string{
			ownMetrics: "listener of this bridge",
			fmt.Sprintf("http://localhost:%d/metrics", ownHTTP): "listener of this bridge",
			other.URL + "/x": "loopback",
			"http://169.254.169.254/latest/meta-data/": "link-local",
			"http://10.0.0.1/x.wav":                    "private",
		} {
			expect400(t, alice, "fileUrl "+u, audio, map[string]any{"fileUrl": u}, "validation-error", why)
			expect400(t, alice, "callbackUrl "+u, "/conferences", map[string]any{"from": "+3", "callbackUrl": u}, "callback-invalid-url", why)
		}
		expect400(t, alice, "dial own SIP port", "/calls", map[string]any{"from": "+1", "to": fmt.Sprintf("sip:x@127.0.0.1:%d", r.SIPUDP.Port())},
			"validation-error", "listener of this bridge")
		expect400(t, alice, "dial own HTTP port", "/calls", map[string]any{"from": "+1", "to": fmt.Sprintf("sip:x@127.0.0.1:%d;transport=tcp", ownHTTP)},
			"validation-error", "listener of this bridge")
		expect400(t, alice, "dial 127.0.0.2", "/calls", map[string]any{"from": "+1", "to": "sip:x@127.0.0.2"}, "validation-error", "loopback")

		// Refused later: an allowed server redirects to a refused target.
		for i, to := range []string{other.URL + "/x.wav", ownMetrics, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.wav",
			fmt.Sprintf("http://localhost:%d/metrics", ownHTTP)} {
			tag := fmt.Sprintf("redirect-%d", i)
			u := files.URL + "/?to=" + url.QueryEscape(to)
			if resp, body := alice.do("POST", audio, map[string]any{"fileUrl": u, "tag": tag}); resp.StatusCode != 200 {
				t.Fatalf("fileUrl redirecting to %s: %d %s", to, resp.StatusCode, body)
			}
			_, ev := events.wait(t, "playback done "+tag, 20*time.Second, audioEv("conference-playback", "done", tag))
			if ev["endReason"] != "refused" {
				t.Errorf("fileUrl redirecting to %s: done event %v, want endReason refused", to, ev)
			}
		}
		resp, body = alice.do("POST", "/conferences", map[string]any{"from": "+4", "tag": "fb",
			"callbackUrl": files.URL + "/?to=" + url.QueryEscape(other.URL+"/cb"), "fallbackUrl": evSrv.URL + "/fallback"})
		if resp.StatusCode != 201 {
			t.Fatalf("create conference with a redirecting callback: %d %s", resp.StatusCode, body)
		}
		loc = resp.Header.Get("Location")
		conf2 := loc[strings.LastIndex(loc, "/")+1:]
		if resp, _ := alice.do("POST", "/conferences/"+conf2, map[string]any{"state": "completed"}); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		events.wait(t, "event at fallbackUrl", 20*time.Second, func(ev map[string]any) bool {
			return ev["eventType"] == "conference" && ev["tag"] == "fb"
		})
	})
	if n := other.hits.Load(); n != 0 {
		t.Errorf("the refused server on 127.0.0.2 got %d requests", n)
	}
	if n := farAccepted.Load(); n != 0 {
		t.Errorf("the refused TCP port accepted %d connections", n)
	}
}
