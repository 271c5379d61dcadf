package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// consoleToneHz is the talker's tone in the browser test.
const consoleToneHz = 1000

// TestConsoleInBrowser drives the operator console in headless Chromium
// against the whole binary: sign in, see the room with two phones, watch
// the talking meter follow the phone that sends a tone, mute it from the
// page and hear (Goertzel) that the other phone no longer gets it, remove
// it and see it leave. A screenshot is written to the test's directory, and
// also to $CHORUS_CONSOLE_SCREENSHOT when set (how docs/console.png is made).
func TestConsoleInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's chromium (apt-get install chromium); .ci/run does")
	}
	r := startChorus(t, "33100-33199")
	base := fmt.Sprintf("http://%s", r.HTTP)
	alice := client{t: t, base: base + "/v1/users/u-alice", token: "alice-token", secret: "alice-secret"}

	// The static files need no credentials and carry the security headers.
	checkConsoleHeaders(t, base)

	resp, body := alice.do("POST", "/conferences", map[string]any{"from": "7302"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	confID := loc[strings.LastIndex(loc, "/")+1:]
	talker, talkerID := consoleDial(t, alice, r, confID, "")
	listener, listenerID := consoleDial(t, alice, r, confID, talkerID)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1100, 820), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// Script errors (a CSP refusal among them) fail the test.
	var jsMu sync.Mutex
	var jsErrors []string
	if err := chromedp.Listen(bctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error()
		case *runtime.EventConsoleAPICalled:
			if e.Type == "error" {
				msg = fmt.Sprint("console.error ", len(e.Args))
			}
		}
		if msg != "" {
			jsMu.Lock()
			jsErrors = append(jsErrors, msg)
			jsMu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond),
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	memberSel := func(id string) string { return `#members [data-member="` + id + `"]` }
	memberJS := func(id string) string { return `document.querySelector('` + memberSel(id) + `')` }

	step("sign in", chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
		chromedp.SendKeys(chromedp.CSS("#user"), "u-alice"),
		chromedp.SendKeys(chromedp.CSS("#token"), "alice-token"),
		chromedp.SendKeys(chromedp.CSS("#secret"), "alice-secret"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#app")))
	wait("the room with both phones", `document.querySelectorAll('#members .member').length === 2 && !!`+
		memberJS(talkerID)+` && !!`+memberJS(listenerID))
	wait("the event stream", `document.getElementById('live').textContent === 'live'`)

	// The talking meter follows the phone that sends a tone.
	talker.SetSource(audiotest.ToneSource(consoleToneHz, -10, 8000))
	wait("the talker's meter", memberJS(talkerID)+`.dataset.talking === 'true' && `+memberJS(listenerID)+`.dataset.talking === 'false'`)
	consoleHears(t, listener, true)

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "console.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if dst := os.Getenv("CHORUS_CONSOLE_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Mute from the page: the listener no longer hears the tone.
	step("mute", chromedp.Click(chromedp.CSS(memberSel(talkerID)+` [data-act="mute"]`)))
	wait("muted on the page", memberJS(talkerID)+`.dataset.mute === 'true'`)
	consoleHears(t, listener, false)

	// Remove from the page: the member leaves the page and its call ends.
	step("remove", chromedp.Click(chromedp.CSS(memberSel(talkerID)+` [data-act="remove"]`)))
	wait("the talker gone from the page", `!`+memberJS(talkerID)+` && document.querySelectorAll('#members .member').length === 1`)
	select {
	case <-talker.Ended():
	case <-time.After(10 * time.Second):
		t.Fatal("removing the member did not hang its call up")
	}

	// Readable on a phone: at 390 px nothing runs off the side.
	step("phone screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	wait("a layout that fits a phone", `document.documentElement.scrollWidth <= window.innerWidth && `+
		`document.querySelector('#members .member').getBoundingClientRect().right <= window.innerWidth`)
	if dst := os.Getenv("CHORUS_CONSOLE_SCREENSHOT"); dst != "" {
		if shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(strings.TrimSuffix(dst, ".png")+"-phone.png", shot, 0o644)
		}
	}

	jsMu.Lock()
	defer jsMu.Unlock()
	if len(jsErrors) > 0 {
		t.Errorf("script errors in the console page: %q", jsErrors)
	}
}

// checkConsoleHeaders: /console redirects to /console/, whose files need
// no credentials and are served with a strict CSP and nosniff.
func checkConsoleHeaders(t *testing.T, base string) {
	t.Helper()
	for _, p := range []string{"/console", "/console/", "/console/console.js", "/console/console.css"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || len(b) == 0 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(b))
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", p)
		}
	}
}

// consoleDial dials a phone into the conference and returns it with its
// member id (the active member that is not skip).
func consoleDial(t *testing.T, alice client, r ready, confID, skip string) (*testphone.Phone, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7302"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := alice.do("GET", "/conferences/"+confID+"/members", nil)
		var ms []struct{ ID, State string }
		_ = json.Unmarshal(body, &ms)
		for _, m := range ms {
			if m.State == "active" && m.ID != skip {
				return p, m.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone never became a member: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consoleHears waits until the listener's latest 300 ms have (want) or
// lack the talker's tone, in a window recorded after this call.
func consoleHears(t *testing.T, p *testphone.Phone, want bool) {
	t.Helper()
	const window = 2400 // 300 ms at 8 kHz
	mark := p.Mark()
	deadline := time.Now().Add(10 * time.Second)
	level := audiotest.Silence
	for time.Now().Before(deadline) {
		if m := p.Mark(); m-mark >= window {
			level = audiotest.LevelDBFS(p.RecordingSince(m-window), consoleToneHz, 8000)
			if want && level > audioOn || !want && level < audioSilent {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listener hears the tone at %.1f dBFS, want heard=%v", level, want)
}
