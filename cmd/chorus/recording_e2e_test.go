package main

// End-to-end test of conference recording (issue 14): two test phones
// call in over loopback SIP/RTP and play tones at different levels; the
// room's recording, fetched through the media endpoint, holds both at the
// level the room mixes them, in each format, decoded by ffmpeg.

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

func TestConferenceRecordingE2E(t *testing.T) {
	events := &audioEvents{}
	evSrv := newTargetServer(events)
	t.Cleanup(evSrv.Close)
	dir := t.TempDir()
	r := startChorusArgs(t, "33800-33899", "--target-allow", "127.0.0.1/32", "--recordings-dir", dir)
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	const from = "+15557773000"
	resp, body := alice.do("POST", "/conferences", map[string]any{"from": from, "callbackUrl": evSrv.URL + "/conf"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	conf := loc[strings.LastIndex(loc, "/")+1:]

	// Two talkers: the room mixes each at its own level (talk volume 0).
	tones := []struct{ f, level float64 }{{500, -12}, {1300, -22}}
	for _, tn := range tones {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: from,
			Source: audiotest.ToneSource(tn.f, tn.level, 8000)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := alice.do("GET", "/conferences/"+conf+"/members", nil)
		if strings.Count(string(body), `"talking":true`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the phones are not both talking: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for i, format := range []string{"wav", "mp3", "ogg"} {
		t.Run(format, func(t *testing.T) {
			alice.t = t
			resp, body := alice.do("POST", "/conferences/"+conf, map[string]any{"recordingEnabled": true, "recordingFileFormat": format})
			if resp.StatusCode != 200 {
				t.Fatalf("start recording: %d %s", resp.StatusCode, body)
			}
			time.Sleep(2 * time.Second) // the span recorded
			resp, body = alice.do("POST", "/conferences/"+conf, map[string]any{"recordingEnabled": false})
			if resp.StatusCode != 200 {
				t.Fatalf("stop recording: %d %s", resp.StatusCode, body)
			}
			isRec := func(ev map[string]any) bool { return ev["eventType"] == "recording" }
			deadline := time.Now().Add(10 * time.Second)
			for events.count(isRec) <= i {
				if time.Now().After(deadline) {
					t.Fatal("no recording event")
				}
				time.Sleep(20 * time.Millisecond)
			}
			var ev map[string]any
			events.mu.Lock()
			for _, e := range events.evs {
				if isRec(e) {
					ev = e // the last one: this subtest's
				}
			}
			events.mu.Unlock()
			if ev["state"] != "complete" {
				t.Fatalf("recording event %v", ev)
			}
			media, _ := ev["media"].(string)
			if ev["conferenceId"] != conf || !strings.HasSuffix(media, "."+format) {
				t.Fatalf("recording event %v", ev)
			}
			// The file, through the API.
			req, _ := http.NewRequest("GET", media, nil)
			req.SetBasicAuth("alice-token", "alice-secret")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("GET %s: %d %v", media, res.StatusCode, err)
			}
			path := filepath.Join(t.TempDir(), "rec."+format)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			const rate = 48000
			pcm, err := audiotest.DecodeFile(path, rate)
			if err != nil {
				t.Fatal(err)
			}
			if secs := float64(len(pcm)) / rate; secs < 1.5 || secs > 3.5 {
				t.Fatalf("%.2f s recorded, want about 2", secs)
			}
			span := pcm[rate/5 : len(pcm)-rate/5]
			block := rate / 5
			for _, tn := range tones {
				var low, high int
				var levels []float64
				for j := 0; j+block <= len(span); j += block {
					l := audiotest.LevelDBFS(span[j:j+block], tn.f, rate)
					levels = append(levels, l)
					switch {
					case l > tn.level+1:
						high++
					case l < tn.level-1:
						low++
					}
				}
				// No block louder than the mix, the median at its level.
				// A loaded machine may deliver a phone's packets late and
				// leave a short gap in the room (a block that dips): up
				// to a third of the blocks may.
				slices.Sort(levels)
				if med := levels[len(levels)/2]; math.Abs(med-tn.level) > 1 || high > 0 || low > len(levels)/3 {
					t.Errorf("%v Hz: median %.2f dBFS (want %v ± 1), %d blocks above, %d below: %.1f", tn.f, med, tn.level, high, low, levels)
				}
			}
		})
	}
	alice.t = t
	_, body = alice.do("GET", "/recordings", nil)
	if n := strings.Count(string(body), `"state":"complete"`); n != 3 {
		t.Errorf("recordings list: %s", body)
	}
}
