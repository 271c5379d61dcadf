package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// TestNodeSDKCallMedia runs node-bandwidth 4.0.0 through call audio,
// DTMF out and gather (testdata/sdk/callmedia.js) on a call the SDK dials
// to a testphone.Callee: the callee detects the SDK's "12#" and keys
// "123#" when the script's gather runs, which the script reads back.
func TestNodeSDKCallMedia(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install Node.js (20 or later) to run the node-bandwidth SDK test")
	}
	const repo = "../.."
	if _, err := os.Stat(filepath.Join(repo, "testdata/sdk/node_modules/node-bandwidth/package.json")); err != nil {
		t.Fatalf("testdata/sdk/node_modules/node-bandwidth is missing: run npm ci --prefix testdata/sdk (%v)", err)
	}
	r := startChorus(t, "32400-32499")
	wav := toneWAV(sdkToneHz, -12, time.Second)
	audio := newTargetServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(wav)
	}))
	defer audio.Close()
	callee, err := testphone.NewCallee(testphone.CalleeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/sdk/callmedia.js")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+r.HTTP.String(), "USER_ID=u-alice", "TOKEN=alice-token",
		"SECRET=alice-secret", "AUDIO_URL="+audio.URL+"/tone.wav", "CALLEE="+callee.URI("sdk"))
	var stderr, output syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	log := func() string {
		return fmt.Sprintf("\n--- callmedia.js stdout ---\n%s--- callmedia.js stderr ---\n%s", output.String(), stderr.String())
	}
	passed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		output.Write([]byte(line + "\n"))
		switch {
		case strings.HasPrefix(line, "GATHER "):
			callee.SendDTMF("123#")
		case line == "PASS":
			passed = true
		}
	}
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("callmedia.js: %v (PASS printed: %v)%s", err, passed, log())
	}
	var got string
	for _, e := range callee.Events() {
		got += string(e.Digit)
	}
	if got != "12#" {
		t.Errorf("the callee detected %q from sendDtmf, want 12#%s", got, log())
	}
}
