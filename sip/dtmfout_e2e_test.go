package sip

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/testphone"
)

// TestSippDTMFOutByInfo: sipp (testdata/sipp/uac_info_dtmf.xml) dials in
// offering no telephone-event; digits sent to its call come as three SIP
// INFO requests (application/dtmf-relay, Signal=1, 2, #) in order, which
// the scenario checks before it hangs up.
func TestSippDTMFOutByInfo(t *testing.T) {
	sipp := testphone.Sipp(t)
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 32600, 32699)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, tb.udp.String(), "-sf", "testdata/sipp/uac_info_dtmf.xml", "-s", "4100",
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

	conf := waitConference(t, tb, "4100")
	waitFor(t, "sipp joined", func() bool { return conf.Info().ActiveMembers == 1 })
	call := conf.Members()[0].Call()
	if err := call.SendDTMF("12#"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("sipp failed: %v\n%s", err, tail(out.Bytes(), 3000))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sipp did not finish\n%s", tail(out.Bytes(), 3000))
	}
}
