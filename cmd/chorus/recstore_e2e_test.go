package main

// Recordings across a restart (issue 14), with the real binary (see
// startProc): their records come back from the store and their files are
// still served, per user, with Range requests; a recording a kill -9 cut
// short is closed at the next start with a file any player reads.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// recTone is what the test phone says: the room records it at its level.
const (
	recToneHz    = 800
	recToneLevel = -12.0
	recRate      = 48000 // the recordings' rate: the default --max-mix-rate
)

// dialTone calls into a conference playing recTone.
func dialTone(t *testing.T, p *chorusProc, confID string) *testphone.Phone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ph, err := testphone.Dial(ctx, testphone.Options{Target: p.sip, User: confID,
		Source: audiotest.ToneSource(recToneHz, recToneLevel, 8000)})
	if err != nil {
		t.Fatalf("dial %s: %v\n%s", confID, err, p.stderr.String())
	}
	t.Cleanup(ph.Close)
	return ph
}

// media GETs a media URL path (relative to the user) with an optional
// Range, and returns the answer and its body.
func (c client) media(path, rng string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(c.token, c.secret)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// mediaName is the last segment of a recording's media URL.
func mediaName(t *testing.T, c client, recID string) string {
	t.Helper()
	_, b := c.do("GET", "/recordings/"+recID, nil)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	u, _ := m["media"].(string)
	if u == "" {
		t.Fatalf("recording %s has no media: %s", recID, b)
	}
	return u[strings.LastIndex(u, "/")+1:]
}

// checkTone decodes a recording with ffmpeg (which must read it without a
// complaint) and checks that it lasts at least minSecs and holds the
// phone's tone at about its level.
func checkTone(t *testing.T, data []byte, minSecs float64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.wav")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pcm, err := audiotest.DecodeFile(path, recRate)
	if err != nil {
		t.Fatal(err)
	}
	if secs := float64(len(pcm)) / recRate; secs < minSecs {
		t.Fatalf("%.2f s decoded, want at least %.2f", secs, minSecs)
	}
	// The middle fifth of a second: after the start, before the end.
	mid := pcm[len(pcm)/2-recRate/10 : len(pcm)/2+recRate/10]
	if l := audiotest.LevelDBFS(mid, recToneHz, recRate); l < recToneLevel-3 || l > recToneLevel+1 {
		t.Errorf("the tone at %.1f dBFS in the recording, want about %v", l, recToneLevel)
	}
}

// TestStoreRestartRecordings: a conference's and a call's recordings
// (WAV), then a restart: the recordings' JSON is the same, the files are
// the same bytes, Range requests work, another user gets 404, and DELETE
// of the media works on a recording only the store holds (and stays
// deleted over a further restart).
func TestStoreRestartRecordings(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	flags := []string{"--rtp-ports", "34500-34599"}
	p := startProc(t, dir, flags...)
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550401", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialTone(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	var members []map[string]any
	_, b := u1.do("GET", "/conferences/"+conf+"/members", nil)
	if err := json.Unmarshal(b, &members); err != nil || len(members) != 1 {
		t.Fatalf("members %s", b)
	}
	callURL := fmt.Sprint(members[0]["call"])
	call := callURL[strings.LastIndex(callURL, "/")+1:]

	for _, path := range []string{"/conferences/" + conf, "/calls/" + call} {
		if resp, b := u1.do("POST", path, map[string]any{"recordingEnabled": true, "recordingFileFormat": "wav"}); resp.StatusCode != 200 {
			t.Fatalf("start recording %s: %d %s", path, resp.StatusCode, b)
		}
	}
	time.Sleep(time.Second) // the span recorded
	for _, path := range []string{"/conferences/" + conf, "/calls/" + call} {
		if resp, b := u1.do("POST", path, map[string]any{"recordingEnabled": false}); resp.StatusCode != 200 {
			t.Fatalf("stop recording %s: %d %s", path, resp.StatusCode, b)
		}
	}
	evs := cb.waitFor(t, "both recordings complete", 15*time.Second, func(evs []cbEvent) bool {
		n := 0
		for _, e := range evs {
			if e.typ == "recording" && e.body["state"] == "complete" {
				n++
			}
		}
		return n == 2
	})
	var confRec, callRec string
	for _, e := range evs {
		if e.typ == "recording" {
			if e.body["callId"] == call {
				callRec, _ = e.body["recordingId"].(string)
			} else {
				confRec, _ = e.body["recordingId"].(string)
			}
		}
	}
	if confRec == "" || callRec == "" {
		t.Fatalf("recording events: %v", evs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ph.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitJSON(t, u1, "/calls/"+call, func(v any) bool { return field(v, "state") == "completed" })
	confMedia, callMedia := mediaName(t, u1, confRec), mediaName(t, u1, callRec)

	paths := []string{"/recordings", "/recordings?size=1", "/recordings?page=1&size=1", "/recordings/" + confRec,
		"/recordings/" + callRec, "/calls/" + call + "/recordings"}
	const rng = "bytes=1000-1999"
	type snapshot struct {
		json               map[string]string
		confData, callData []byte
		part               []byte
	}
	get := func(p *chorusProc) snapshot {
		c := p.client("u1", "t1", "s1")
		s := snapshot{json: map[string]string{}}
		for _, path := range paths {
			resp, b := c.do("GET", path, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
			}
			s.json[path] = strings.ReplaceAll(string(b), p.http, "API")
		}
		var resp *http.Response
		if resp, s.confData = c.media("/media/"+confMedia, ""); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/wav" {
			t.Fatalf("GET media %s: %d %s", confMedia, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp, s.callData = c.media("/media/"+callMedia, ""); resp.StatusCode != 200 {
			t.Fatalf("GET media %s: %d", callMedia, resp.StatusCode)
		}
		if resp, s.part = c.media("/media/"+confMedia, rng); resp.StatusCode != http.StatusPartialContent ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(s.confData)) {
			t.Fatalf("GET media %s Range %s: %d %q", confMedia, rng, resp.StatusCode, resp.Header.Get("Content-Range"))
		}
		if !bytes.Equal(s.part, s.confData[1000:2000]) {
			t.Errorf("the Range answer is not the file's bytes 1000-1999")
		}
		return s
	}
	before := get(p)
	if !strings.Contains(before.json["/recordings"], confRec) || !strings.Contains(before.json["/recordings"], callRec) ||
		!strings.Contains(before.json["/calls/"+call+"/recordings"], callRec) || strings.Contains(before.json["/calls/"+call+"/recordings"], confRec) {
		t.Fatalf("recordings before the restart: %v", before.json)
	}
	checkTone(t, before.confData, 0.7)
	p.stop()

	p2 := startProc(t, dir, flags...)
	after := get(p2)
	for _, path := range paths {
		if before.json[path] != after.json[path] {
			t.Errorf("GET %s changed over the restart:\nbefore %s\nafter  %s", path, before.json[path], after.json[path])
		}
	}
	if !bytes.Equal(before.confData, after.confData) || !bytes.Equal(before.callData, after.callData) {
		t.Errorf("media changed over the restart: %d/%d bytes before, %d/%d after",
			len(before.confData), len(before.callData), len(after.confData), len(after.callData))
	}
	// Another user's recordings are not there for u2, like ids never made.
	u2 := p2.client("u2", "t2", "s2")
	for _, path := range []string{"/recordings/" + confRec, "/recordings/" + callRec, "/calls/" + call + "/recordings"} {
		if resp, b := u2.do("GET", path, nil); resp.StatusCode != 404 {
			t.Errorf("u2 GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	if resp, _ := u2.media("/media/"+confMedia, ""); resp.StatusCode != 404 {
		t.Errorf("u2 GET media: %d", resp.StatusCode)
	}
	if resp, _ := u2.do("DELETE", "/media/"+confMedia, nil); resp.StatusCode != 404 {
		t.Errorf("u2 DELETE media: %d", resp.StatusCode)
	}
	if _, b := u2.do("GET", "/recordings", nil); strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("u2 GET /recordings: %s", b)
	}
	// DELETE of a stored recording's media: the file goes, the record
	// stays without media.
	u1 = p2.client("u1", "t1", "s1")
	if resp, b := u1.do("DELETE", "/media/"+callMedia, nil); resp.StatusCode != 200 {
		t.Fatalf("DELETE media: %d %s", resp.StatusCode, b)
	}
	if resp, _ := u1.media("/media/"+callMedia, ""); resp.StatusCode != 404 {
		t.Errorf("GET deleted media: %d", resp.StatusCode)
	}
	if resp, _ := u1.do("DELETE", "/media/"+callMedia, nil); resp.StatusCode != 404 {
		t.Errorf("DELETE deleted media again: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "recordings", callMedia)); !os.IsNotExist(err) {
		t.Errorf("the deleted media's file: %v", err)
	}
	p2.stop()

	p3 := startProc(t, dir, flags...)
	u1 = p3.client("u1", "t1", "s1")
	_, b = u1.do("GET", "/recordings/"+callRec, nil)
	if strings.Contains(string(b), `"media"`) || !strings.Contains(string(b), `"state":"complete"`) {
		t.Errorf("a recording whose media was deleted, after a restart: %s", b)
	}
	p3.stop()
}

// TestStoreKillWhileRecording: kill -9 while a conference records to a
// WAV file; at the next start the recording is closed (state error, cause
// SERVER_RESTART, its end the file's last write), its recording event is
// delivered, and its file, whose header the crash left unpatched, is
// repaired so that ffmpeg reads it without a complaint.
func TestStoreKillWhileRecording(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	flags := []string{"--rtp-ports", "34600-34699"}
	p := startProc(t, dir, flags...)
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550501", "callbackUrl": cb.srv.URL,
		"recordingEnabled": true, "recordingFileFormat": "wav"})
	conf := createdID(t, resp, "conference")
	ph := dialTone(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	var members []map[string]any
	_, b := u1.do("GET", "/conferences/"+conf+"/members", nil)
	if err := json.Unmarshal(b, &members); err != nil || len(members) != 1 {
		t.Fatalf("members %s", b)
	}
	callURL := fmt.Sprint(members[0]["call"])
	call := callURL[strings.LastIndex(callURL, "/")+1:]
	// The caller's own leg too: its recording event goes to the
	// conference's callback (the call has none of its own).
	if resp, b := u1.do("POST", "/calls/"+call, map[string]any{"recordingEnabled": true}); resp.StatusCode != 200 {
		t.Fatalf("record the call: %d %s", resp.StatusCode, b)
	}
	rec, callRec := recordingIDs(t, u1, call)
	media := mediaName(t, u1, rec)
	// A second of the tone reaches the file.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, b := u1.media("/media/"+media, "")
		if resp.StatusCode == 200 && len(b) > 44+recRate*2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recording does not grow: %d, %d bytes", resp.StatusCode, len(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill()
	ph.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "recordings", media))
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(raw[40:]) == uint32(len(raw)-44) {
		t.Fatalf("the header already holds the sizes after kill -9: the test proves nothing")
	}
	before := len(cb.events())

	p2 := startProc(t, dir, flags...)
	u1 = p2.client("u1", "t1", "s1")
	for _, id := range []string{rec, callRec} {
		_, b = u1.do("GET", "/recordings/"+id, nil)
		var rj map[string]any
		_ = json.Unmarshal(b, &rj)
		if rj["state"] != "error" || rj["error"] != "SERVER_RESTART" || rj["endTime"] == nil || rj["media"] == nil {
			t.Errorf("recording after kill -9 and restart: %s", b)
		}
	}
	if _, b := u1.do("GET", "/calls/"+call+"/recordings", nil); !strings.Contains(string(b), callRec) || strings.Contains(string(b), `"recording"`) {
		t.Errorf("the call's recordings after the restart: %s", b)
	}
	evs := cb.waitFor(t, "the recordings' events after the restart", 15*time.Second, func(evs []cbEvent) bool {
		n := 0
		for _, e := range evs[before:] {
			if e.typ == "recording" {
				n++
			}
		}
		return n == 2
	})
	for _, e := range evs[before:] {
		if e.typ != "recording" {
			continue
		}
		if e.body["state"] != "error" || e.body["error"] != "SERVER_RESTART" || e.body["endTime"] == nil || e.body["media"] == nil ||
			(e.body["recordingId"] != rec && e.body["recordingId"] != callRec) {
			t.Errorf("recording event after the restart: %s", e.raw)
		}
		if e.body["recordingId"] == rec && !strings.HasSuffix(fmt.Sprint(e.body["media"]), "/media/"+media) {
			t.Errorf("recording event after the restart: %s", e.raw)
		}
		if e.body["recordingId"] == callRec && e.body["callId"] != call {
			t.Errorf("the call's recording event after the restart: %s", e.raw)
		}
	}
	resp, data := u1.media("/media/"+media, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET media after the restart: %d", resp.StatusCode)
	}
	if got := binary.LittleEndian.Uint32(data[40:]); int(got) != len(data)-44 || binary.LittleEndian.Uint32(data[4:]) != uint32(len(data)-8) {
		t.Errorf("WAV header after the repair: data %d, RIFF %d, file %d bytes", got, binary.LittleEndian.Uint32(data[4:]), len(data))
	}
	checkTone(t, data, 0.9)
	// The conference the crash left live was closed too.
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "state") == "completed" })
	p2.stop()
}

// recordingIDs waits until u1 lists two recordings, the room's and the
// call's own, and returns their ids.
func recordingIDs(t *testing.T, u1 client, call string) (confRec, callRec string) {
	t.Helper()
	waitJSON(t, u1, "/recordings", func(v any) bool {
		l, _ := v.([]any)
		for _, r := range l {
			if field(r, "callId") == call {
				callRec = field(r, "id")
			} else {
				confRec = field(r, "id")
			}
		}
		return len(l) == 2
	})
	return confRec, callRec
}
