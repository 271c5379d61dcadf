package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// sdkToneHz is the frequency of the WAV the SDK script plays.
const sdkToneHz = 1000

// TestNodeSDKLifecycle runs the Catapult v1 SDK, the npm package
// node-bandwidth 4.0.0, through a whole conference lifecycle against the
// running binary (testdata/sdk/lifecycle.js), with a SIP phone dialing in
// when the script says READY. The script removes the phone's member; the
// phone must get a BYE for it.
//
// It needs Node.js and `npm ci --prefix testdata/sdk` (.ci/run does that).
func TestNodeSDKLifecycle(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install Node.js (20 or later) to run the node-bandwidth SDK test")
	}
	const repo = "../.."
	if _, err := os.Stat(filepath.Join(repo, "testdata/sdk/node_modules/node-bandwidth/package.json")); err != nil {
		t.Fatalf("testdata/sdk/node_modules/node-bandwidth is missing: run npm ci --prefix testdata/sdk (%v)", err)
	}

	r := startChorus(t, "30000-30199")

	var fetches atomic.Int32 // requests for the WAV
	wav := toneWAV(sdkToneHz, -12, 2*time.Second)
	audio := newTargetServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = w.Write(wav)
	}))
	defer audio.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/sdk/lifecycle.js")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(),
		"BASE_URL=http://"+r.HTTP.String(),
		"USER_ID=u-alice", "TOKEN=alice-token", "SECRET=alice-secret",
		"AUDIO_URL="+audio.URL+"/tone.wav")
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
		return fmt.Sprintf("\n--- lifecycle.js stdout ---\n%s--- lifecycle.js stderr ---\n%s", output.String(), stderr.String())
	}

	// The script's protocol lines, as they come.
	events := make(chan []string, 16)
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			output.Write([]byte(line + "\n"))
			if f := strings.Fields(line); len(f) > 0 {
				switch f[0] {
				case "READY", "REMOVING", "REMOVED", "PASS":
					events <- f
				}
			}
		}
		close(events)
	}()

	var phone *testphone.Phone
	defer func() {
		if phone != nil {
			phone.Close()
		}
	}()
	var endedAtRemoving, removed, passed bool
	for ev := range events {
		switch ev[0] {
		case "READY":
			if len(ev) != 3 {
				t.Errorf("bad READY line %q", ev)
				continue
			}
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			phone, err = testphone.Dial(dctx, testphone.Options{Target: r.SIPUDP.String(), User: ev[2],
				Source: audiotest.ToneSource(400, -20, 8000)})
			dcancel()
			if err != nil {
				t.Errorf("dial %s: %v", ev[2], err)
			}
		case "REMOVING":
			if phone != nil {
				select {
				case <-phone.Ended():
					endedAtRemoving = true
				default:
				}
			}
		case "REMOVED":
			removed = true
		case "PASS":
			passed = true
		}
	}
	<-scanDone
	werr := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("lifecycle.js did not finish within 60 s%s", log())
	}
	if werr != nil || !passed {
		t.Fatalf("lifecycle.js: %v (PASS printed: %v)%s", werr, passed, log())
	}
	if phone == nil {
		t.Fatalf("the script never printed READY%s", log())
	}
	if endedAtRemoving {
		t.Errorf("the phone's call ended before the script removed its member%s", log())
	}
	if !removed {
		t.Fatalf("the script never printed REMOVED%s", log())
	}
	select {
	case <-phone.Ended():
	case <-time.After(5 * time.Second):
		t.Errorf("the phone got no BYE after removeMember%s", log())
	}
	if fetches.Load() == 0 {
		t.Errorf("Chorus never fetched AUDIO_URL%s", log())
	}
	// The conference-wide playAudioFile ran for 800 ms before it was stopped:
	// somewhere in the phone's recording is the tone.
	best := bestLevel(phone.Recording(), sdkToneHz)
	if best < -25 {
		t.Errorf("the phone never heard the %d Hz file (best 200 ms window %.1f dBFS)%s", sdkToneHz, best, log())
	}
	if testing.Verbose() {
		t.Logf("lifecycle.js output:\n%s", output.String())
		t.Logf("the phone heard the %d Hz file at %.1f dBFS (sent at -12)", sdkToneHz, best)
	}
}

// bestLevel is the highest level of freqHz over 200 ms windows of rec.
func bestLevel(rec []int16, freqHz float64) float64 {
	const win = 1600
	best := -200.0
	for i := 0; i+win <= len(rec); i += win / 2 {
		if l := audiotest.LevelDBFS(rec[i:i+win], freqHz, 8000); l > best {
			best = l
		}
	}
	return best
}

// toneWAV is a mono 8 kHz 16-bit PCM WAV file of a tone.
func toneWAV(freqHz, dBFS float64, d time.Duration) []byte {
	pcm := make([]int16, int(d.Seconds()*8000))
	var phase float64
	audiotest.Tone(pcm, freqHz, dBFS, 8000, &phase)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*len(pcm)))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1))    // PCM
	le(uint16(1))    // mono
	le(uint32(8000)) // sample rate
	le(uint32(16000))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * len(pcm)))
	le(pcm)
	return b.Bytes()
}
