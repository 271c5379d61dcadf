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
	"strconv"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

// writeToneWAVAt writes seconds of a tone as 16-bit mono WAV at rate.
func writeToneWAVAt(t *testing.T, path string, freq, dBFS float64, rate, seconds int) {
	t.Helper()
	pcm := make([]int16, rate*seconds)
	audiotest.Tone(pcm, freq, dBFS, rate, nil)
	var b bytes.Buffer
	data := len(pcm) * 2
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+data))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(data))
	_ = binary.Write(&b, binary.LittleEndian, pcm)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readWAVFirstChannel returns the first channel of a 16-bit PCM WAV file
// and its sample rate.
func readWAVFirstChannel(t *testing.T, path string) ([]int16, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("%s is not a WAV file", path)
	}
	channels, rate := 1, 8000
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		off += 8
		switch id {
		case "fmt ":
			if off+8 <= len(b) {
				channels = int(binary.LittleEndian.Uint16(b[off+2:]))
				rate = int(binary.LittleEndian.Uint32(b[off+4:]))
			}
		case "data":
			end := min(off+size, len(b))
			all := make([]int16, (end-off)/2)
			_ = binary.Read(bytes.NewReader(b[off:end]), binary.LittleEndian, all)
			pcm := make([]int16, 0, len(all)/max(channels, 1))
			for i := 0; i+channels <= len(all); i += channels {
				pcm = append(pcm, all[i])
			}
			return pcm, rate
		}
		off += size + size%2
	}
	t.Fatalf("%s has no data chunk", path)
	return nil, 0
}

// baresipRun is one baresip process dialling into the bridge.
type baresipRun struct {
	cmd   *exec.Cmd
	out   *lockedBuffer
	dumps string
}

// startBaresip runs baresip with the opus, G.722 and G.711 modules, a
// tone WAV of rate Hz as its microphone and its sndfile module recording
// what it hears, and dials sip:user@bridge offering codecs (baresip's
// audio_codecs syntax) in that order.
func startBaresip(t *testing.T, tb *testBridge, user, codecs string, tone float64, rate int) *baresipRun {
	t.Helper()
	baresip, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatal("baresip not found: install the Debian package baresip-core (.ci/run does)")
	}
	for _, m := range []string{"opus.so", "g722.so"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/baresip/modules", m)); err != nil {
			t.Fatalf("baresip module %s missing (Debian baresip-core ships it): %v", m, err)
		}
	}
	dir := t.TempDir()
	wav := filepath.Join(dir, "tone.wav")
	writeToneWAVAt(t, wav, tone, -12, rate, 20)
	// baresip also binds TCP (and TLS on the next port) where it listens
	// for SIP over UDP; FreeUDPPort knows only UDP, so a port taken for TCP
	// by another process is met by trying new ones.
	for attempt := 1; ; attempt++ {
		b, busy := runBaresip(t, baresip, tb, filepath.Join(dir, strconv.Itoa(attempt)), wav, user, codecs, rate)
		if !busy {
			return b
		}
		if attempt == 3 {
			t.Fatalf("baresip found its ports taken three times\n%s", tail(b.out.Bytes(), 3000))
		}
	}
}

// runBaresip starts one baresip in dir and reports whether it stopped at
// once because its ports were taken.
func runBaresip(t *testing.T, baresip string, tb *testBridge, dir, wav, user, codecs string, rate int) (*baresipRun, bool) {
	t.Helper()
	dumps := filepath.Join(dir, "dumps")
	if err := os.MkdirAll(dumps, 0o700); err != nil {
		t.Fatal(err)
	}
	sipPort, rtpPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
	config := fmt.Sprintf(`poll_method epoll
net_interface 127.0.0.1
sip_listen 127.0.0.1:%d
audio_source aufile,%s
audio_player aubridge,nil
audio_alert aubridge,nil
ausrc_srate %d
auplay_srate %d
ausrc_channels 1
auplay_channels 1
rtp_ports %d-%d
snd_path %s
module_path /usr/lib/baresip/modules
module opus.so
module g722.so
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module_app account.so
module_app menu.so
`, sipPort, wav, rate, rate, rtpPort, rtpPort+10, dumps)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	account := "<sip:tester@127.0.0.1>;regint=0;audio_codecs=" + codecs + "\n"
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	cmd := exec.CommandContext(ctx, baresip, "-f", dir, "-e", fmt.Sprintf("/dial sip:%s@%s", user, tb.udp), "-t", "30")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { cancel(); <-exited }
	b := &baresipRun{cmd: cmd, out: out, dumps: dumps}
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Contains(out.Bytes(), []byte("baresip is ready")) {
		select {
		case <-exited:
			cancel()
			return b, bytes.Contains(out.Bytes(), []byte("Address already in use"))
		default:
		}
		if bytes.Contains(out.Bytes(), []byte("Address already in use")) {
			stop()
			return b, true
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("baresip did not start\n%s", tail(out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(stop)
	return b, false
}

// baresipLeg waits for the second member of conf and returns the
// bridge's leg of the call that is not the testphone's.
func baresipLeg(t *testing.T, tb *testBridge, conf *bridge.Conference, phone *testphone.Phone, b *baresipRun) *inCall {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for conf.Info().ActiveMembers != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not join\n%s", tail(b.out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.srv.mu.Lock()
	defer tb.srv.mu.Unlock()
	for _, c := range tb.srv.calls {
		if c.dlg.InviteRequest.CallID().Value() != phone.CallID() {
			return c
		}
	}
	t.Fatal("no baresip call")
	return nil
}

// TestBaresipOpus: baresip offering opus first (then G722, PCMU, PCMA)
// gets Opus; it hears a testphone in the room and the testphone hears it,
// each at the sent level.
func TestBaresipOpus(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24600, 24699)
	phone := tb.dial(t, testphone.Options{User: "4000", Codecs: []string{"G722"}, Source: audiotest.ToneSource(distinctTones[0], -12, 16000)})
	conf := waitConference(t, tb, "4000")
	b := startBaresip(t, tb, "4000", "opus/48000/2,G722/16000/1,PCMU/8000/1,PCMA/8000/1", distinctTones[1], 48000)
	leg := baresipLeg(t, tb, conf, phone, b)
	if p := leg.sess.Params(); p.Codec != media.Opus {
		t.Fatalf("baresip offering opus first got %v\n%s", p.Codec, tail(b.out.Bytes(), 3000))
	}
	time.Sleep(time.Second)
	rec := listen(2*time.Second, phone)[0]
	if got := rateLevel(phone, rec, distinctTones[1]); math.Abs(got+12) > 2 {
		t.Errorf("the testphone hears baresip's Opus tone at %.1f dBFS, want -12 ± 2\n%s", got, tail(b.out.Bytes(), 3000))
	}
	checkBaresipHeard(t, leg, b, distinctTones[0], distinctTones[1])
}

// TestBaresipG722Only: baresip offering only G722 gets G.722 and the two
// hear each other.
func TestBaresipG722Only(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 24700, 24799)
	phone := tb.dial(t, testphone.Options{User: "4100", Codecs: []string{"OPUS"}, Source: audiotest.ToneSource(distinctTones[0], -12, 48000)})
	conf := waitConference(t, tb, "4100")
	b := startBaresip(t, tb, "4100", "G722/16000/1", distinctTones[1], 16000)
	leg := baresipLeg(t, tb, conf, phone, b)
	if p := leg.sess.Params(); p.Codec != media.G722 || p.PayloadType != 9 {
		t.Fatalf("baresip offering only G722 got %v pt %d\n%s", p.Codec, p.PayloadType, tail(b.out.Bytes(), 3000))
	}
	time.Sleep(time.Second)
	rec := listen(2*time.Second, phone)[0]
	if got := rateLevel(phone, rec, distinctTones[1]); math.Abs(got+12) > 2 {
		t.Errorf("the testphone hears baresip's G.722 tone at %.1f dBFS, want -12 ± 2\n%s", got, tail(b.out.Bytes(), 3000))
	}
	checkBaresipHeard(t, leg, b, distinctTones[0], distinctTones[1])
}

// checkBaresipHeard hangs baresip's call up and reads what it heard (its
// sndfile dump of the decoded stream): the testphone's tone at -12 ± 2,
// its own below -60.
func checkBaresipHeard(t *testing.T, leg *inCall, b *baresipRun, heard, own float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leg.Hangup(ctx, "test"); err != nil {
		t.Errorf("BYE: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains(b.out.Bytes(), []byte("terminated")) {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not see the BYE\n%s", tail(b.out.Bytes(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	decoded, _ := filepath.Glob(filepath.Join(b.dumps, "*dec*.wav"))
	if len(decoded) != 1 {
		entries, _ := os.ReadDir(b.dumps)
		t.Fatalf("want one decoded dump from baresip, found %v (dir: %v)\n%s", decoded, entries, tail(b.out.Bytes(), 3000))
	}
	pcm, rate := readWAVFirstChannel(t, decoded[0])
	if len(pcm) < 5*rate/2 {
		t.Fatalf("baresip recorded %d samples at %d Hz", len(pcm), rate)
	}
	pcm = pcm[len(pcm)-2*rate : len(pcm)-rate/10] // the end of the call, before the BYE
	if got := audiotest.MedianLevelDBFS(pcm, heard, rate, rate/10); math.Abs(got+12) > 2 {
		t.Errorf("baresip hears the testphone's tone at %.1f dBFS (%d Hz dump), want -12 ± 2\n%s", got, rate, tail(b.out.Bytes(), 3000))
	}
	if got := audiotest.MedianLevelDBFS(pcm, own, rate, rate/10); got > -60 {
		t.Errorf("baresip hears itself at %.1f dBFS", got)
	}
}
