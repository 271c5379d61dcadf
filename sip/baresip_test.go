package sip

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// writeToneWAV writes seconds of a tone as 8 kHz 16-bit mono WAV.
func writeToneWAV(t *testing.T, path string, freq, dBFS float64, seconds int) {
	t.Helper()
	pcm := make([]int16, 8000*seconds)
	audiotest.Tone(pcm, freq, dBFS, 8000, nil)
	var b bytes.Buffer
	data := len(pcm) * 2
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+data))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(data))
	_ = binary.Write(&b, binary.LittleEndian, pcm)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBaresipCaller: baresip, a softphone nobody here wrote, dials in with
// a tone from a WAV file; a caller already in the room hears it.
func TestBaresipCaller(t *testing.T) {
	baresip, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatal("baresip not found: install the Debian package baresip-core (.ci/run does)")
	}
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 20500, 20999)
	listener := tb.dial(t, testphone.Options{User: "1000"})

	dir := t.TempDir()
	wav := filepath.Join(dir, "tone.wav")
	writeToneWAV(t, wav, 8000.0/11, -12, 12)
	sipPort, rtpPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	config := fmt.Sprintf(`poll_method epoll
net_interface 127.0.0.1
sip_listen 127.0.0.1:%d
audio_source aufile,%s
audio_player aubridge,nil
audio_alert aubridge,nil
audio_srate 8000
audio_channels 1
rtp_ports %d-%d
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module_app account.so
module_app menu.so
`, sipPort, wav, rtpPort, rtpPort+10)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	account := "<sip:tester@127.0.0.1>;regint=0;audio_codecs=PCMU/8000/1\n"
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, baresip, "-f", dir, "-e", fmt.Sprintf("/dial sip:1000@%s", tb.udp), "-t", "6")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conf := waitConference(t, tb, "1000")
	deadline := time.Now().Add(8 * time.Second)
	for conf.Info().ActiveMembers != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not join\n%s", tail(out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	rec := listen(2*time.Second, listener)[0]
	if got := level(rec, 8000.0/11); math.Abs(got+12) > 2 {
		t.Errorf("listener hears baresip's tone at %.1f dBFS, want about -12\n%s", got, tail(out.Bytes(), 3000))
	}
	_ = cmd.Wait()
	waitFor(t, "baresip left", func() bool { return conf.Info().ActiveMembers == 1 })
}
