package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// startChorus runs the binary in-process on ports chosen at run time.
func startChorus(t *testing.T, rtp string) ready {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", rtp,
			"--user", "u-alice:alice-token:alice-secret", "--user", "u-bob:bob-token:bob-secret",
			// The tests' own applications, files and phones are on 127.0.0.1.
			"--target-allow", "127.0.0.1/32"}, noEnv, io.Discard, io.Discard,
			func(r ready) { readyCh <- r })
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

type client struct {
	t                   *testing.T
	base, token, secret string
}

func (c client) do(method, path string, body any) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(c.token, c.secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestDialOutIntoConference: the API creates a conference, a phone dials
// in, POST /calls dials sipp (answering with RTP echo) into the room, and
// the phone hears its own tone come back through sipp; removing the
// member hangs sipp up.
func TestDialOutIntoConference(t *testing.T) {
	sipp := testphone.Sipp(t)
	r := startChorus(t, "29600-29799")
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}

	resp, _ := alice.do("POST", "/conferences", map[string]any{"from": "+15557770000"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	confID := loc[strings.LastIndex(loc, "/")+1:]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	phone, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "+15557770000",
		Source: audiotest.ToneSource(600, -15, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()

	// sipp as the far end: answers and echoes RTP.
	sipPort, mediaPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	uas := exec.Command(sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(sipPort), "-mi", "127.0.0.1",
		"-mp", strconv.Itoa(mediaPort), "-rtp_echo", "-m", "1", "-nostdin")
	var uasOut bytes.Buffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = uas.Process.Kill(); _ = uas.Wait() }()
	time.Sleep(300 * time.Millisecond) // sipp binds its socket

	resp, body := alice.do("POST", "/calls", map[string]any{"from": "+15557770000",
		"to": fmt.Sprintf("sip:echo@127.0.0.1:%d", sipPort), "conferenceId": confID})
	if resp.StatusCode != 201 {
		t.Fatalf("dial out: %d %s", resp.StatusCode, body)
	}
	callLoc := resp.Header.Get("Location")
	callPath := callLoc[strings.Index(callLoc, "/calls/"):]
	var call map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, body = alice.do("GET", callPath, nil)
		_ = json.Unmarshal(body, &call)
		if call["state"] == "active" && call["conferenceId"] == confID {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if call["state"] != "active" {
		t.Fatalf("dialled call: %s\n%s", body, uasOut.String())
	}
	time.Sleep(500 * time.Millisecond)
	mark := phone.Mark()
	time.Sleep(time.Second)
	if got := audiotest.MedianLevelDBFS(phone.RecordingSince(mark), 600, 8000, 800); math.Abs(got+15) > 2 {
		t.Errorf("phone hears its tone echoed by the dialled member at %.1f dBFS, want about -15", got)
	}

	resp, body = alice.do("GET", "/conferences/"+confID+"/members", nil)
	var members []map[string]any
	if err := json.Unmarshal(body, &members); err != nil || len(members) != 2 {
		t.Fatalf("members: %d %s", resp.StatusCode, body)
	}
	for _, m := range members {
		if !strings.HasSuffix(fmt.Sprint(m["call"]), callPath) {
			continue
		}
		resp, body = alice.do("POST", "/conferences/"+confID+"/members/"+fmt.Sprint(m["id"]), map[string]any{"state": "completed"})
		if resp.StatusCode != 200 {
			t.Fatalf("remove member: %d %s", resp.StatusCode, body)
		}
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- uas.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("sipp uas: %v\n%s", err, uasOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Errorf("sipp got no BYE after the member was removed\n%s", uasOut.String())
	}
}

// TestDialOutCalleeHolds: the far end of a dialled call puts the bridge on
// hold with a re-INVITE; the bridge answers recvonly (checked by the sipp
// scenario) and stops sending to it; removing the member sends its BYE.
func TestDialOutCalleeHolds(t *testing.T) {
	sipp := testphone.Sipp(t)
	r := startChorus(t, "29800-29999")
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	resp, _ := alice.do("POST", "/conferences", map[string]any{"from": "+15557770001"})
	loc := resp.Header.Get("Location")
	confID := loc[strings.LastIndex(loc, "/")+1:]

	sipPort, mediaPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	uas := exec.Command(sipp, "-sf", "testdata/sipp/uas_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(sipPort),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(mediaPort), "-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error")
	uas.Dir = "../.."
	var uasOut bytes.Buffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = uas.Process.Kill() }()
	time.Sleep(300 * time.Millisecond)

	resp, body := alice.do("POST", "/calls", map[string]any{"from": "+15557770001",
		"to": fmt.Sprintf("sip:callee@127.0.0.1:%d", sipPort), "conferenceId": confID})
	if resp.StatusCode != 201 {
		t.Fatalf("dial out: %d %s", resp.StatusCode, body)
	}
	// Wait until the member is in and the hold has been answered.
	var members []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(members) == 0 && time.Now().Before(deadline) {
		_, body = alice.do("GET", "/conferences/"+confID+"/members", nil)
		_ = json.Unmarshal(body, &members)
		time.Sleep(50 * time.Millisecond)
	}
	if len(members) != 1 {
		t.Fatalf("members: %s\n%s", body, uasOut.String())
	}
	time.Sleep(time.Second) // the re-INVITE comes 300 ms after the ACK
	resp, body = alice.do("POST", "/conferences/"+confID+"/members/"+fmt.Sprint(members[0]["id"]), map[string]any{"state": "completed"})
	if resp.StatusCode != 200 {
		t.Fatalf("remove member: %d %s", resp.StatusCode, body)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- uas.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("sipp callee failed (re-INVITE not answered recvonly, or no BYE): %v\n%s", err, uasOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("sipp callee did not finish\n%s", uasOut.String())
	}
}
