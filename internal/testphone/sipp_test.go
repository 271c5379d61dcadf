package testphone

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestAgainstSippUAS dials sipp's built-in UAS with RTP echo, a peer this
// package did not write.
func TestAgainstSippUAS(t *testing.T) {
	sipp := Sipp(t)
	sipPort, mediaPort := FreeUDPPort(t), FreeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(sipPort),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(mediaPort), "-rtp_echo", "-m", "1", "-nostdin")
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	// sipp may still be starting: the INVITE's UDP retransmissions cover that.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	p, err := Dial(dctx, Options{Target: "127.0.0.1:" + strconv.Itoa(sipPort), User: "service"})
	if err != nil {
		t.Fatalf("Dial sipp: %v", err)
	}
	defer p.Close()
	if p.Codec() != "PCMU" {
		t.Errorf("Codec = %q", p.Codec())
	}
	if got := p.RemoteRTPAddr().Port(); int(got) != mediaPort {
		t.Errorf("remote RTP port %d, want %d", got, mediaPort)
	}
	if err := p.SendDTMF('1'); err != ErrNoTelephoneEvent {
		t.Errorf("SendDTMF without telephone-event: %v", err)
	}
	checkTone(t, p, 1000, -12)
	if err := p.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
}
