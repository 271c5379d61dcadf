package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// exampleLines reads the protocol lines of a running example, keeping all
// of its output for the failure message.
type exampleLines struct {
	t      *testing.T
	lines  chan []string
	output syncBuffer
	stderr syncBuffer
	chorus *syncBuffer // Chorus's log
}

// next waits for the next line whose first field is kind and whose other
// fields start with want, skipping lines of other kinds.
func (e *exampleLines) next(kind string, timeout time.Duration, want ...string) []string {
	e.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-e.lines:
			if !ok {
				e.t.Fatalf("the example exited while the test waited for %q %v%s", kind, want, e.log())
			}
			if f[0] != kind || len(f) < 1+len(want) {
				continue
			}
			match := true
			for i, w := range want {
				match = match && f[1+i] == w
			}
			if match {
				return f
			}
		case <-deadline:
			e.t.Fatalf("the example printed no %q %v within %v%s", kind, want, timeout, e.log())
		}
	}
}

func (e *exampleLines) log() string {
	return fmt.Sprintf("\n--- server.js stdout ---\n%s--- server.js stderr ---\n%s--- chorus ---\n%s",
		e.output.String(), e.stderr.String(), e.chorus.String())
}

// TestPINConferenceExample runs examples/pin-conference/server.js, a
// Catapult conferencing app written on node-bandwidth 4.0.0, against the
// real binary, as its README tells a user to: it makes its application,
// number and room itself. A phone already in the PIN's room sends a
// 1000 Hz tone; a caller dials the number, is asked for the PIN, keys
// 1234# by RFC 4733 and then hears the room and is heard by it (600 Hz).
// A second caller keys a wrong PIN three times and gets a BYE without
// ever being a member. On SIGTERM the example cleans up after itself.
//
// It needs Node.js and `npm ci --prefix examples/pin-conference` (.ci/run
// does that).
func TestPINConferenceExample(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install Node.js (20 or later) to run the pin-conference example")
	}
	const repo = "../.."
	if _, err := os.Stat(filepath.Join(repo, "examples/pin-conference/node_modules/node-bandwidth/package.json")); err != nil {
		t.Fatalf("examples/pin-conference/node_modules/node-bandwidth is missing: run npm ci --prefix examples/pin-conference (%v)", err)
	}
	var chorusLog syncBuffer
	r := startChorusLogged(t, []string{"--rtp-ports", "33400-33499", "--user", "u-alice:alice-token:alice-secret",
		"--target-allow", "127.0.0.1/32"}, &chorusLog) // the example's callback server is on 127.0.0.1
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	const number = "+15557770001"

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "examples/pin-conference/server.js")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CHORUS_URL=http://"+r.HTTP.String(),
		"CHORUS_USER_ID=u-alice", "CHORUS_TOKEN=alice-token", "CHORUS_SECRET=alice-secret",
		"NUMBER="+number, "PINS=1234,5678", "LISTEN=127.0.0.1:0")
	ex := &exampleLines{t: t, lines: make(chan []string, 1024), chorus: &chorusLog}
	cmd.Stderr = &ex.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			ex.output.Write([]byte(line + "\n"))
			if f := strings.Fields(line); len(f) > 0 {
				ex.lines <- f
			}
		}
		close(ex.lines)
		exited <- cmd.Wait()
	}()

	room := ex.next("room", 20*time.Second, "1234")[2]
	ex.next("ready", 20*time.Second, number)

	// The member already in the room dials its conference id, as a
	// moderator given the id would.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	member, err := testphone.Dial(dctx, testphone.Options{Target: r.SIPUDP.String(), User: room,
		Source: audiotest.ToneSource(1000, -15, 8000)})
	dcancel()
	if err != nil {
		t.Fatalf("the member's dial into %s: %v", room, err)
	}
	defer member.Close()

	dial := func(tone float64) *testphone.Phone {
		t.Helper()
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		defer dcancel()
		p, err := testphone.Dial(dctx, testphone.Options{Target: r.SIPUDP.String(), User: number,
			Source: audiotest.ToneSource(tone, -15, 8000)})
		if err != nil {
			t.Fatalf("dial %s: %v%s", number, err, ex.log())
		}
		t.Cleanup(p.Close)
		return p
	}
	keys := func(p *testphone.Phone, digits string) {
		t.Helper()
		for _, d := range digits {
			if err := p.SendDTMF(d); err != nil {
				t.Fatalf("send %q: %v%s", d, err, ex.log())
			}
		}
	}

	// The right PIN: asked, keyed, joined; then both directions carry audio.
	caller := dial(600)
	callID := ex.next("gather", 20*time.Second)[1]
	keys(caller, "1234#")
	ex.next("joined", 20*time.Second, callID, room)
	hears(t, caller, 1000)
	hears(t, member, 600)

	// A wrong PIN three times: asked three times, then goodbye and a BYE.
	wrong := dial(800)
	wrongID := ex.next("gather", 20*time.Second)[1]
	if wrongID == callID {
		t.Fatalf("the second caller's gather is on the first call %s", callID)
	}
	for try := 1; try <= 3; try++ {
		if try > 1 {
			ex.next("gather", 20*time.Second, wrongID, strconv.Itoa(try))
		}
		keys(wrong, "9999#")
	}
	ex.next("goodbye", 20*time.Second, wrongID)
	select {
	case <-wrong.Ended():
	case <-time.After(30 * time.Second):
		t.Fatalf("the wrong-PIN caller got no BYE%s", ex.log())
	}
	resp, body := alice.do("GET", "/conferences/"+room+"/members", nil)
	var members []struct {
		Call  string `json:"call"` // the call's URL
		State string `json:"state"`
	}
	if err := json.Unmarshal(body, &members); resp.StatusCode != 200 || err != nil {
		t.Fatalf("members: %d %s (%v)", resp.StatusCode, body, err)
	}
	found := false
	for _, m := range members {
		if strings.HasSuffix(m.Call, "/calls/"+wrongID) {
			t.Errorf("the wrong-PIN caller became a member: %s", body)
		}
		found = found || (strings.HasSuffix(m.Call, "/calls/"+callID) && m.State == "active")
	}
	if !found {
		t.Errorf("the right-PIN caller is no active member: %s", body)
	}
	select {
	case <-caller.Ended():
		t.Errorf("the right-PIN caller's call ended%s", ex.log())
	default:
	}

	// SIGTERM: the example completes its rooms, releases the number and
	// deletes its application.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the example exited with %v%s", err, ex.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the example did not stop on SIGTERM%s", ex.log())
	}
	if resp, body := alice.do("GET", "/phoneNumbers/"+number, nil); resp.StatusCode != 404 {
		t.Errorf("the number after the example stopped: %d %s", resp.StatusCode, body)
	}
	if resp, body := alice.do("GET", "/applications", nil); resp.StatusCode != 200 || strings.Contains(string(body), "pin-conference") {
		t.Errorf("the applications after the example stopped: %d %s", resp.StatusCode, body)
	}
	if testing.Verbose() {
		t.Logf("server.js output:\n%s", ex.output.String())
	}
}
