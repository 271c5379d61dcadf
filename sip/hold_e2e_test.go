package sip

import (
	"bytes"
	"context"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// TestSippPhoneHoldMusic: sipp (testdata/sipp/uac_hold.xml) joins a room
// sending a tone, holds with a=sendonly while still sending it (hold music,
// as linphone's Pause plays), then resumes. A testphone in the room hears
// the tone before the hold, nothing of it during (< -60 dBFS) and the tone
// again after; the member shows phoneHold exactly while the phone holds.
func TestSippPhoneHoldMusic(t *testing.T) {
	const toneHz, toneDB = 8000.0 / 17, -20 // testdata/load/tone0_pcmu.raw
	sipp := testphone.Sipp(t)
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 32200, 32599)
	listener := tb.dial(t, testphone.Options{User: "4000"})

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, tb.udp.String(), "-sf", "testdata/sipp/uac_hold.xml", "-s", "4000",
		"-i", "127.0.0.1", "-p", strconv.Itoa(testphone.FreeUDPPort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(testphone.FreeUDPPort(t)),
		"-m", "1", "-nostdin", "-timeout", "35s", "-timeout_error")
	cmd.Dir = ".." // the scenario names its audio relative to the repository root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	conf := waitConference(t, tb, "4000")
	waitFor(t, "sipp joined", func() bool { return conf.Info().ActiveMembers == 2 })
	phone := conf.Members()[1]
	joined := listener.Mark()

	// Follow the member's phoneHold as the API shows it, and note where in
	// the listener's recording each change falls.
	holdAt, resumeAt, leftAt := -1, -1, -1
	deadline := time.Now().Add(30 * time.Second)
	for leftAt < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("hold %d, resume %d: the scenario did not finish\n%s", holdAt, resumeAt, tail(out.Bytes(), 2000))
		}
		info := phone.Info()
		switch {
		case holdAt < 0 && info.PhoneHold:
			holdAt = listener.Mark()
		case holdAt >= 0 && resumeAt < 0 && !info.PhoneHold:
			resumeAt = listener.Mark()
		case info.State == bridge.StateCompleted:
			leftAt = listener.Mark()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-exited; err != nil {
		t.Fatalf("sipp failed: %v\n%s", err, tail(out.Bytes(), 3000))
	}
	if holdAt < 0 || resumeAt < 0 {
		t.Fatalf("the member never showed phoneHold (hold at %d, resume at %d)", holdAt, resumeAt)
	}

	// Margins (8 samples a millisecond) leave out the frames in flight at
	// each change and the jitter buffer's priming after the resume.
	rec := listener.Recording()
	segment := func(what string, from, to int) []int16 {
		if to-from < 8000 {
			t.Fatalf("%s: only %d ms of recording (%d..%d)", what, (to-from)/8, from, to)
		}
		return rec[from:to]
	}
	before := segment("before the hold", joined+4000, holdAt-1600)
	during := segment("during the hold", holdAt+2400, resumeAt-800)
	after := segment("after the resume", resumeAt+4000, leftAt-800)
	if got := level(before, toneHz); math.Abs(got-toneDB) > 2 {
		t.Errorf("before the hold the room hears the phone at %.1f dBFS, want %d", got, toneDB)
	}
	if got := audiotest.LevelDBFS(during, toneHz, 8000); got > -60 {
		t.Errorf("during the hold the room hears the hold music at %.1f dBFS, want < -60", got)
	}
	if got := level(after, toneHz); math.Abs(got-toneDB) > 2 {
		t.Errorf("after the resume the room hears the phone at %.1f dBFS, want %d", got, toneDB)
	}
}

// TestPhoneHoldSignalling: every way a phone may hold sets the member's
// phoneHold, and every sendrecv offer clears it: a sendonly first INVITE,
// an UPDATE with c=0.0.0.0, a re-INVITE with a=inactive (RFC 3264 §8.4,
// RFC 3311).
func TestPhoneHoldSignalling(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 32600, 32799)
	d := newDialIn(t, tb.udp)
	d.prepare("4100")
	port := d.r.conn.LocalAddr().(*net.UDPAddr).Port
	sdp := func(dir, addr string) string {
		return strings.Replace(offerSDP(port, "0", "0 PCMU/8000"), "c=IN IP4 127.0.0.1", "c=IN IP4 "+addr, 1) + "a=" + dir + "\r\n"
	}
	offer := func(method string, cseq int, body, wantDir string) {
		t.Helper()
		d.r.send(d.msg(method, cseq, "application/sdp", body))
		code, res := d.finalFor(method, 5*time.Second)
		if code != 200 || !strings.Contains(res, "a="+wantDir) {
			t.Fatalf("%s %d: %d, want 200 with a=%s:\n%s", method, cseq, code, wantDir, res)
		}
		if d.toTag == "" {
			d.toTag = toTag(res)
		}
		if method == "INVITE" {
			d.r.send(d.msg("ACK", cseq, "", ""))
		}
	}
	offer("INVITE", 1, sdp("sendonly", "127.0.0.1"), "recvonly")
	conf := waitConference(t, tb, "4100")
	waitFor(t, "the held caller joined", func() bool { return conf.Info().ActiveMembers == 1 })
	m := conf.Members()[0]
	steps := []struct {
		method      string
		dir, addr   string
		answer      string
		held        bool
		description string
	}{
		{"UPDATE", "sendrecv", "127.0.0.1", "sendrecv", false, "UPDATE sendrecv resumes"},
		{"UPDATE", "sendrecv", "0.0.0.0", "inactive", true, "UPDATE with c=0.0.0.0 holds"},
		{"INVITE", "sendrecv", "127.0.0.1", "sendrecv", false, "re-INVITE sendrecv resumes"},
		{"INVITE", "inactive", "127.0.0.1", "inactive", true, "re-INVITE inactive holds"},
		{"INVITE", "sendrecv", "127.0.0.1", "sendrecv", false, "re-INVITE sendrecv resumes"},
	}
	if !m.Info().PhoneHold {
		t.Error("a sendonly first INVITE: the member does not show phoneHold")
	}
	for i, s := range steps {
		offer(s.method, i+2, sdp(s.dir, s.addr), s.answer)
		if got := m.Info().PhoneHold; got != s.held {
			t.Errorf("%s: phoneHold %v, want %v", s.description, got, s.held)
		}
	}
	d.r.send(d.msg("BYE", len(steps)+2, "", ""))
	if code, _ := d.finalFor("BYE", 5*time.Second); code != 200 {
		t.Errorf("BYE: %d", code)
	}
	waitFor(t, "the room completes", func() bool { return conf.State() == bridge.StateCompleted })
}
