package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// lockedBuffer collects a child process's output for reading while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// readWAV returns the samples of a 16-bit PCM WAV file.
func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("%s is not a WAV file", path)
	}
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		off += 8
		if id == "data" {
			end := min(off+size, len(b))
			pcm := make([]int16, (end-off)/2)
			_ = binary.Read(bytes.NewReader(b[off:end]), binary.LittleEndian, pcm)
			return pcm
		}
		off += size + size%2
	}
	t.Fatalf("%s has no data chunk", path)
	return nil
}

// TestBaresipTLSSRTP: baresip calls over SIP over TLS with SRTP mandatory
// (mediaenc=srtp-mand). baresip 1.0 (Debian 12) does not check the server
// certificate at all (sip_verify_server came later); sip_cafile names the
// bridge's self-signed certificate so that later versions trust it too. A testphone over SRTP in the same room and baresip
// hear each other at the sent level (baresip's side recorded by its
// sndfile module), the bridge's BYE reaches baresip over its own TLS
// connection, the call's media is SRTP on the bridge's side, and
// what the testphone's socket receives of baresip's tone is ciphertext.
func TestBaresipTLSSRTP(t *testing.T) {
	baresip, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatal("baresip not found: install the Debian package baresip-core (.ci/run does)")
	}
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 28700, 28799)
	cert, err := SelfSignedCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr, err := tb.srv.ListenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var capL capture
	listener := tb.dial(t, testphone.Options{User: "1000", Codecs: []string{"PCMU"}, SRTP: "AES_CM_128_HMAC_SHA1_80",
		Source: audiotest.ToneSource(distinctTones[0], -12, 8000), OnDatagram: capL.add})

	dir := t.TempDir()
	wav := filepath.Join(dir, "tone.wav")
	writeToneWAV(t, wav, distinctTones[1], -12, 20)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, CertPEM(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	dumps := filepath.Join(dir, "dumps")
	if err := os.Mkdir(dumps, 0o700); err != nil {
		t.Fatal(err)
	}
	sipPort, rtpPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	config := fmt.Sprintf(`poll_method epoll
net_interface 127.0.0.1
sip_listen 127.0.0.1:%d
sip_cafile %s
audio_source aufile,%s
audio_player aubridge,nil
audio_alert aubridge,nil
audio_srate 8000
audio_channels 1
rtp_ports %d-%d
snd_path %s
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module srtp.so
module sndfile.so
module_app account.so
module_app menu.so
`, sipPort, ca, wav, rtpPort, rtpPort+10, dumps)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	account := "<sip:tester@127.0.0.1;transport=tls>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU/8000/1\n"
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, baresip, "-f", dir, "-e",
		fmt.Sprintf("/dial sip:1000@%s", tlsAddr), "-t", "30") // the account adds transport=tls
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conf := waitConference(t, tb, "1000")
	deadline := time.Now().Add(8 * time.Second)
	for conf.Info().ActiveMembers != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not join over TLS\n%s", tail(out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.srv.mu.Lock()
	var tlsCalls, srtpCalls int
	var baresipCall *inCall
	for _, c := range tb.srv.calls {
		if isTLS(c.transport) {
			tlsCalls++
			baresipCall = c
		}
		if c.sess.SRTP() != nil {
			srtpCalls++
		}
	}
	tb.srv.mu.Unlock()
	if tlsCalls != 1 || srtpCalls != 2 {
		t.Errorf("%d calls over TLS (want 1), %d with SRTP (want 2)", tlsCalls, srtpCalls)
	}
	time.Sleep(time.Second)
	rec := listen(2*time.Second, listener)[0]
	if got := level(rec, distinctTones[1]); math.Abs(got+12) > 2 {
		t.Errorf("the testphone hears baresip's tone at %.1f dBFS, want -12 ± 2\n%s", got, tail(out.Bytes(), 3000))
	}
	// Baresip's tone as the bridge sends it on: ciphertext on the wire.
	checkCiphertext(t, capL.datagrams(), 10, distinctTones[1])
	if baresipCall == nil {
		t.Fatal("no call over TLS")
	}

	// The bridge hangs up: its BYE goes back on baresip's own TLS
	// connection (baresip has no certificate to accept one).
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	if err := baresipCall.Hangup(hctx, "test"); err != nil {
		t.Errorf("BYE over TLS: %v", err)
	}
	waitFor(t, "baresip left", func() bool { return conf.Info().ActiveMembers == 1 })
	deadline = time.Now().Add(5 * time.Second)
	for !bytes.Contains(out.Bytes(), []byte("terminated")) {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not see the BYE\n%s", tail(out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	_ = cmd.Wait()
	for _, s := range tb.sessions() {
		if st := s.Stats(); st.AuthFailures != 0 {
			t.Errorf("session %v: %d SRTP failures", s.LocalAddr(), st.AuthFailures)
		}
	}

	// What baresip heard: its sndfile module dumps the decoded stream.
	decoded, _ := filepath.Glob(filepath.Join(dumps, "*dec*.wav"))
	if len(decoded) != 1 {
		entries, _ := os.ReadDir(dumps)
		t.Fatalf("want one decoded dump from baresip, found %v (dir: %v)\n%s", decoded, entries, tail(out.Bytes(), 3000))
	}
	pcm := readWAV(t, decoded[0])
	if len(pcm) < 5*8000/2 {
		t.Fatalf("baresip recorded %d samples", len(pcm))
	}
	pcm = pcm[len(pcm)-2*8000 : len(pcm)-800] // the end of the call, after set-up and before the BYE
	if got := level(pcm, distinctTones[0]); math.Abs(got+12) > 2 {
		t.Errorf("baresip hears the testphone's tone at %.1f dBFS, want -12 ± 2\n%s", got, tail(out.Bytes(), 3000))
	}
	if got := level(pcm, distinctTones[1]); got > -60 {
		t.Errorf("baresip hears itself at %.1f dBFS", got)
	}
}
