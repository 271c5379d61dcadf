package sip

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// TestSippPcapCaller: sipp, a peer nobody here wrote, plays its A-law
// sample (30 ms packets) into a room; a second caller hears it.
func TestSippPcapCaller(t *testing.T) {
	sipp := testphone.Sipp(t)
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 28000, 28499)
	listener := tb.dial(t, testphone.Options{User: "1000"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, tb.udp.String(), "-sf", "testdata/sipp/uac_pcap.xml", "-s", "1000",
		"-i", "127.0.0.1", "-p", strconv.Itoa(testphone.FreeUDPPort(t)), "-mi", "127.0.0.1", "-mp", strconv.Itoa(testphone.FreeUDPPort(t)),
		"-m", "1", "-nostdin", "-timeout", "25s", "-timeout_error")
	cmd.Dir = ".." // the scenario names its pcap relative to the repository root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conf := waitConference(t, tb, "1000")
	waitFor(t, "sipp joined", func() bool { return conf.Info().ActiveMembers == 2 })
	time.Sleep(time.Second)
	rec := listen(3*time.Second, listener)[0]
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sipp failed: %v\n%s", err, tail(out.Bytes(), 2000))
	}
	if got := audiotest.RMSDBFS(rec); got < -45 {
		t.Errorf("listener heard sipp's sample at %.1f dBFS RMS, want speech-level audio", got)
	}
	waitFor(t, "sipp's member left", func() bool { return conf.Info().ActiveMembers == 1 })
}

func waitConference(t *testing.T, tb *testBridge, from string) *bridge.Conference {
	t.Helper()
	var conf *bridge.Conference
	waitFor(t, "conference "+from, func() bool {
		for _, c := range tb.b.Conferences("u-test") {
			if c.From() == from {
				conf = c
				return true
			}
		}
		return false
	})
	return conf
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
