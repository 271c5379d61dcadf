package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"chorus/bridge"
)

// withRecordings gives the env's bridge a recordings directory.
func withRecordings(t *testing.T) envOption {
	dir := t.TempDir()
	return func(b *bridge.Config, _ *Config) { b.RecordingsDir = dir }
}

// getRaw GETs a path of u with extra request headers, reading the body
// whole.
func (e *env) getRaw(u User, rel string, hdr map[string]string) resp {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+"/v1/users/"+u.ID+rel, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(u.Token, u.Secret)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b.Bytes()}
}

// TestConferenceRecordingAPI: a conference created with recordingEnabled
// records until an update stops it; the recording is listed and shown in
// Catapult's shape, a recording event says it is complete, its media is
// served whole and by Range (206, the file's exact bytes), deleting it
// while it records is 409 and afterwards removes it, and none of it is
// another user's to see.
func TestConferenceRecordingAPI(t *testing.T) {
	e := newEnv(t, withRecordings(t))
	r := e.as(alice, "POST", "/conferences", `{"from":"+15550009999","recordingEnabled":true,"recordingFileFormat":"WAV"}`)
	conf := e.mustCreate(r, "/v1/users/"+alice.ID+"/conferences")
	var cj conferenceJSON
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if !cj.RecordingEnabled || cj.RecordingFileFormat != "wav" {
		t.Fatalf("conference %+v", cj)
	}
	e.addMember(alice, conf, "")
	c, _ := e.b.Conference(conf)
	rec := c.ActiveRecording()
	if rec == nil {
		t.Fatal("no recording running")
	}
	eventually(t, "a second of mix recorded", func() bool { return rec.Info().Bytes > 44+48000*2 })

	name := rec.Info().Media
	e.as(alice, "DELETE", "/media/"+name, "").expectError(t, http.StatusConflict, "recording-in-progress")
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":false}`).mustOK(t)
	ev := e.events.waitFor(t, "recording", func(ev bridge.Event) bool { return ev.Type == bridge.EventRecording })
	if ev.State != "complete" || ev.RecordingID != rec.ID() || ev.ConferenceID != conf || ev.UserID != alice.ID {
		t.Errorf("recording event %+v", ev)
	}
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.RecordingEnabled {
		t.Error("the conference still says it records")
	}

	var list []recordingJSON
	e.getJSON(alice, "/recordings", &list)
	if len(list) != 1 {
		t.Fatalf("recordings %+v", list)
	}
	rj := list[0]
	base := e.srv.URL + "/v1/users/" + alice.ID
	if rj.ID != rec.ID() || rj.State != "complete" || rj.Conference != base+"/conferences/"+conf || rj.Call != "" ||
		rj.Media != base+"/media/"+name || rj.StartTime == "" || rj.EndTime == "" || rj.FileFormat != "wav" {
		t.Errorf("recording %+v", rj)
	}
	var one recordingJSON
	e.getJSON(alice, "/recordings/"+rec.ID(), &one)
	if one != rj {
		t.Errorf("GET one %+v, list %+v", one, rj)
	}

	file, err := os.ReadFile(filepath.Join(e.b.Config().RecordingsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	whole := e.getRaw(alice, "/media/"+name, nil)
	if whole.status != 200 || !bytes.Equal(whole.body, file) || whole.header.Get("Content-Type") != "audio/wav" ||
		whole.header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("media: %d, %d bytes of %d, %v", whole.status, len(whole.body), len(file), whole.header)
	}
	for _, rg := range []struct {
		hdr    string
		lo, hi int
	}{{"bytes=0-43", 0, 43}, {"bytes=1000-1999", 1000, 1999}, {fmt.Sprintf("bytes=-%d", 100), len(file) - 100, len(file) - 1}} {
		part := e.getRaw(alice, "/media/"+name, map[string]string{"Range": rg.hdr})
		want := fmt.Sprintf("bytes %d-%d/%d", rg.lo, rg.hi, len(file))
		if part.status != http.StatusPartialContent || part.header.Get("Content-Range") != want || !bytes.Equal(part.body, file[rg.lo:rg.hi+1]) {
			t.Errorf("Range %s: %d, Content-Range %q (want %q), %d bytes", rg.hdr, part.status, part.header.Get("Content-Range"), want, len(part.body))
		}
	}
	if got := e.getRaw(alice, "/media/"+name, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(file)+10)}); got.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("a range past the end: %d", got.status)
	}

	// Bob: Alice's recording and media are not found on his own paths,
	// exactly like ids that never existed.
	for _, p := range []string{"/recordings/" + rec.ID(), "/media/" + name} {
		mine := e.as(bob, "GET", p, "")
		ghost := e.as(bob, "GET", strings.ReplaceAll(p, rec.ID(), "rec-doesnotexist00000000000"), "")
		if mine.status != 404 || ghost.status != 404 ||
			strings.ReplaceAll(string(mine.body), rec.ID(), "X") != strings.ReplaceAll(string(ghost.body), "rec-doesnotexist00000000000", "X") {
			t.Errorf("Bob GET %s: %d %s (ghost %d %s)", p, mine.status, mine.body, ghost.status, ghost.body)
		}
	}
	e.as(bob, "DELETE", "/media/"+name, "").expectError(t, 404, "media-not-found")
	var bobs []recordingJSON
	e.getJSON(bob, "/recordings", &bobs)
	if len(bobs) != 0 {
		t.Errorf("Bob lists %+v", bobs)
	}

	e.as(alice, "DELETE", "/media/"+name, "").mustOK(t)
	e.as(alice, "GET", "/media/"+name, "").expectError(t, 404, "media-not-found")
	e.as(alice, "DELETE", "/media/"+name, "").expectError(t, 404, "media-not-found")
	var after recordingJSON
	e.getJSON(alice, "/recordings/"+rec.ID(), &after)
	if after.Media != "" || after.State != "complete" {
		t.Errorf("after the delete: %+v", after)
	}
	if _, err := os.Stat(filepath.Join(e.b.Config().RecordingsDir, name)); !os.IsNotExist(err) {
		t.Errorf("the file: %v", err)
	}
}

// TestRecordingValidation: an unknown format is 400; recordingEnabled on a
// server without a recordings directory is 503 and creates nothing; the
// format alone changes only the next recording's format; a completed
// conference cannot start one.
func TestRecordingValidation(t *testing.T) {
	e := newEnv(t)
	e.as(alice, "POST", "/conferences", `{"from":"+1555","recordingFileFormat":"flac"}`).expectError(t, 400, "validation-error")
	e.as(alice, "POST", "/conferences", `{"from":"+1555","recordingEnabled":true}`).expectError(t, 503, "recording-unavailable")
	var confs []conferenceJSON
	e.getJSON(alice, "/conferences", &confs)
	if len(confs) != 0 {
		t.Errorf("a refused create left %+v", confs)
	}
	conf := e.createConf(alice)
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingFileFormat":"ogg"}`).mustOK(t)
	var cj conferenceJSON
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.RecordingFileFormat != "ogg" || cj.RecordingEnabled {
		t.Errorf("conference %+v", cj)
	}
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":true}`).expectError(t, 503, "recording-unavailable")
	e.as(alice, "POST", "/conferences/"+conf, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":false}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":true}`).expectError(t, 403, "conference-error")
}

// TestRecordingEventPayload: the recording callback carries Catapult's
// fields (recordingId, recordingUri, state and status, startTime, endTime)
// and the conference's, and the media URL.
func TestRecordingEventPayload(t *testing.T) {
	e := newEnv(t, withRecordings(t))
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	c, _ := e.b.Conference(conf)
	rec, err := c.StartRecording("mp3")
	if err != nil {
		t.Fatal(err)
	}
	c.StopRecording()
	<-rec.Done()
	ev := e.events.waitFor(t, "recording", func(ev bridge.Event) bool { return ev.Type == bridge.EventRecording })
	d := NewDispatcher(DispatcherConfig{Bridge: e.b, BaseURL: "http://api.example"})
	var got map[string]any
	if err := json.Unmarshal(d.eventPayload(ev, bridge.Callback{}).json(), &got); err != nil {
		t.Fatal(err)
	}
	base := "http://api.example/v1/users/" + alice.ID
	want := map[string]any{"eventType": "recording", "conferenceId": conf, "conferenceUri": base + "/conferences/" + conf,
		"recordingId": rec.ID(), "recordingUri": base + "/recordings/" + rec.ID(), "state": "complete", "status": "complete",
		"media": base + "/media/" + rec.ID() + ".mp3"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"startTime", "endTime", "time"} {
		if s, _ := got[k].(string); s == "" {
			t.Errorf("no %s in %v", k, got)
		}
	}
}

// TestCallRecordingAPI: a call created with recordingEnabled records its
// leg once it is in a room; the call shows recordingEnabled; the
// recording names the call (its URL) and no conference; it completes
// when the call ends, with a recording event carrying the callId.
func TestCallRecordingAPI(t *testing.T) {
	e := newEnv(t, withRecordings(t))
	conf := e.createConf(alice)
	r := e.as(alice, "POST", "/calls", `{"from":"+15551230001","to":"sip:bob@127.0.0.1","recordingEnabled":true,"recordingFileFormat":"mp3"}`)
	callID := e.mustCreate(r, "/v1/users/"+alice.ID+"/calls")
	var cj callJSON
	e.getJSON(alice, "/calls/"+callID, &cj)
	if !cj.RecordingEnabled || cj.RecordingFileFormat != "mp3" || cj.Recordings != e.srv.URL+"/v1/users/"+alice.ID+"/calls/"+callID+"/recordings" {
		t.Fatalf("call %+v", cj)
	}
	eventually(t, "the call answered", func() bool {
		c, _ := e.b.Call(callID)
		return c.State() == bridge.CallActive
	})
	e.mustCreate(e.as(alice, "POST", "/conferences/"+conf+"/members", `{"callId":"`+callID+`"}`), "/v1/users/"+alice.ID+"/conferences/"+conf+"/members")
	call, _ := e.b.Call(callID)
	rec := call.ActiveRecording()
	eventually(t, "some of the call recorded", func() bool { return rec.Info().Bytes > 4000 })
	e.as(alice, "POST", "/calls/"+callID, `{"state":"completed"}`).mustOK(t)
	ev := e.events.waitFor(t, "recording", func(ev bridge.Event) bool { return ev.Type == bridge.EventRecording })
	if ev.CallID != callID || ev.State != "complete" || ev.ConferenceID != "" {
		t.Errorf("event %+v", ev)
	}
	var rj recordingJSON
	e.getJSON(alice, "/recordings/"+rec.ID(), &rj)
	base := e.srv.URL + "/v1/users/" + alice.ID
	if rj.Call != base+"/calls/"+callID || rj.CallID != callID || rj.Conference != "" || rj.State != "complete" ||
		rj.Media != base+"/media/"+rec.ID()+".mp3" {
		t.Errorf("recording %+v", rj)
	}
	var byCall []recordingJSON
	e.getJSON(alice, "/calls/"+callID+"/recordings", &byCall)
	if len(byCall) != 1 || byCall[0] != rj {
		t.Errorf("the call's recordings: %+v", byCall)
	}
	e.as(alice, "POST", "/calls/"+callID, `{"recordingEnabled":true}`).expectError(t, 403, "call-invalid-state")
	e.getJSON(alice, "/calls/"+callID, &cj)
	if cj.RecordingEnabled {
		t.Error("an ended call says it records")
	}
}
