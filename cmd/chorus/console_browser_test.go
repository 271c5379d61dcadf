package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

	br := openConsole(t, base)
	step, wait := br.step, br.wait
	memberSel := func(id string) string { return `#members [data-member="` + id + `"]` }
	memberJS := func(id string) string { return `document.querySelector('` + memberSel(id) + `')` }
	bctx := br.ctx

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

	br.checkErrors()
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

// consoleBrowser is headless Chromium on the console, signed in as Alice.
type consoleBrowser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string // script exceptions and console.error calls
}

// openConsole starts Chromium (60 s for the whole test), opens the
// console at base and signs in as Alice.
func openConsole(t *testing.T, base string) *consoleBrowser {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's chromium (apt-get install chromium); .ci/run does")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1100, 820), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	br := &consoleBrowser{t: t, ctx: bctx}
	// Script errors (a CSP refusal among them) fail the test.
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
			br.mu.Lock()
			br.errors = append(br.errors, msg)
			br.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	br.step("sign in", chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
		chromedp.SendKeys(chromedp.CSS("#user"), "u-alice"),
		chromedp.SendKeys(chromedp.CSS("#token"), "alice-token"),
		chromedp.SendKeys(chromedp.CSS("#secret"), "alice-secret"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#app")))
	return br
}

// step runs actions.
func (br *consoleBrowser) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	if err := chromedp.Do(br.ctx, actions...); err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript condition in the page for up to 20 s.
func (br *consoleBrowser) wait(what, js string) {
	br.t.Helper()
	if _, err := chromedp.Run(br.ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		status, _ := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.getElementById('status').textContent`))
		br.t.Fatalf("waiting for %s: %v (page status %q)", what, err, status)
	}
}

// fill replaces an input's value.
func (br *consoleBrowser) fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value)
}

func (br *consoleBrowser) checkErrors() {
	br.t.Helper()
	br.mu.Lock()
	defer br.mu.Unlock()
	if len(br.errors) > 0 {
		br.t.Errorf("script errors in the console page: %q", br.errors)
	}
}

// TestConsoleActionsInBrowser: the console's other actions, each checked
// through the API: create a room, dial a SIP URI (sipp answering) into
// it, step a volume and the sensitivity, hold, speak text, play a file,
// end the room.
func TestConsoleActionsInBrowser(t *testing.T) {
	sipp := testphone.Sipp(t)
	r := startChorus(t, "33200-33299")
	base := fmt.Sprintf("http://%s", r.HTTP)
	alice := client{t: t, base: base + "/v1/users/u-alice", token: "alice-token", secret: "alice-secret"}
	files := http.NewServeMux()
	files.HandleFunc("/tone.wav", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(audioWAV(8000, 1, 800, -12, 2*time.Second))
	})
	fileSrv := newTargetServer(files)
	defer fileSrv.Close()

	// sipp answers the dialled call (and echoes RTP) once its port is bound.
	sipPort, mediaPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	uas := exec.Command(sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(sipPort), "-mi", "127.0.0.1",
		"-mp", strconv.Itoa(mediaPort), "-rtp_echo", "-m", "1", "-nostdin")
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = uas.Process.Kill(); _ = uas.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", sipPort))
		if err != nil {
			break // sipp holds it
		}
		pc.Close()
		if time.Now().After(deadline) {
			t.Fatal("sipp did not bind its port")
		}
		time.Sleep(20 * time.Millisecond)
	}

	br := openConsole(t, base)
	br.step("create a room", br.fill("#create-from", "7303"),
		chromedp.Click(chromedp.CSS(`#create-form button`)))
	br.wait("the new room selected", `document.getElementById('room-title').textContent.startsWith('7303')`)
	var confs []struct{ ID, From, State string }
	_, body := alice.do("GET", "/conferences", nil)
	_ = json.Unmarshal(body, &confs)
	if len(confs) != 1 || confs[0].From != "7303" {
		t.Fatalf("conferences after create: %s", body)
	}
	confID := confs[0].ID

	br.step("dial", br.fill("#dial-to", fmt.Sprintf("sip:echo@127.0.0.1:%d", sipPort)),
		chromedp.Click(chromedp.CSS(`#dial-form button`)))
	br.wait("the dialled member on the page", `document.querySelectorAll('#members .member').length === 1`)
	member, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('#members .member').dataset.member`))
	if err != nil {
		t.Fatal(err)
	}
	sel := `#members [data-member="` + member + `"] `
	memberJSON := func() map[string]any {
		_, body := alice.do("GET", "/conferences/"+confID+"/members/"+member, nil)
		m := map[string]any{}
		_ = json.Unmarshal(body, &m)
		return m
	}
	br.step("talk volume up", chromedp.Click(chromedp.CSS(sel+`[data-act="talkVolume"][data-d="1"]`)))
	br.wait("talk volume 1", `document.querySelector('`+sel+`[data-v="talkVolume"]').textContent === '1'`)
	br.step("sensitivity down", chromedp.Click(chromedp.CSS(sel+`[data-act="sensitivity"][data-d="-1"]`)))
	br.wait("sensitivity -1", `document.querySelector('`+sel+`[data-v="sensitivity"]').textContent === '-1'`)
	br.step("hold", chromedp.Click(chromedp.CSS(sel+`[data-act="hold"]`)))
	br.wait("held", `document.querySelector('`+sel+`').dataset.hold === 'true'`)
	if m := memberJSON(); m["talkVolume"] != 1.0 || m["sensitivity"] != -1.0 || m["hold"] != true {
		t.Errorf("member after the steps and hold: %v", m)
	}

	br.step("speak", br.fill("#speak-text", "hello room"), chromedp.Click(chromedp.CSS(`#speak-form button`)))
	br.wait("speak accepted", `document.getElementById('status').textContent === 'speak: done'`)
	br.step("play", br.fill("#play-url", fileSrv.URL+"/tone.wav"), chromedp.Click(chromedp.CSS(`#play-form button`)))
	br.wait("play accepted", `document.getElementById('status').textContent === 'play: done'`)

	br.step("end the room", chromedp.Click(chromedp.CSS("#end-room")))
	br.wait("armed", `document.getElementById('end-room').textContent === 'Really end?'`)
	br.step("really end", chromedp.Click(chromedp.CSS("#end-room")))
	br.wait("the room ended on the page", `document.getElementById('room-state').textContent === 'completed' && `+
		`document.querySelectorAll('#members .member').length === 0`)
	var c struct{ State string }
	_, body = alice.do("GET", "/conferences/"+confID, nil)
	_ = json.Unmarshal(body, &c)
	if c.State != "completed" {
		t.Errorf("conference after End room: %s", body)
	}
	br.checkErrors()
}
