package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"chorus/bridge"
)

// withQuota gives the env's bridge a recordings directory and a
// per-user recording quota of quota bytes.
func withQuota(t *testing.T, quota int64) envOption {
	dir := t.TempDir()
	return func(b *bridge.Config, _ *Config) { b.RecordingsDir, b.RecordingQuota = dir, quota }
}

// TestRecordingMaxDurationAPI: recordingMaxDuration is whole seconds
// from 1 to 14400 on conferences and calls (400 otherwise, naming the
// property), shown with its default of 3600; a room recording with 1
// completes after a second of audio, with its end time, and the room
// goes on, not recording.
func TestRecordingMaxDurationAPI(t *testing.T) {
	e := newEnv(t, withRecordings(t))
	for _, v := range []string{`0`, `-5`, `14401`, `1.5`, `"abc"`, `true`} {
		ae := e.as(alice, "POST", "/conferences", `{"from":"+1555","recordingMaxDuration":`+v+`}`).expectError(t, 400, "validation-error")
		if !strings.Contains(ae.Message, "recordingMaxDuration") {
			t.Errorf("%s: message %q does not name the property", v, ae.Message)
		}
		e.as(alice, "POST", "/calls", `{"from":"+1555","to":"sip:bob@127.0.0.1","recordingMaxDuration":`+v+`}`).expectError(t, 400, "validation-error")
	}
	conf := e.createConf(alice)
	var cj conferenceJSON
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.RecordingMaxDuration != 3600 {
		t.Errorf("default recordingMaxDuration %d, want 3600", cj.RecordingMaxDuration)
	}
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingMaxDuration":14400}`).mustOK(t)
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.RecordingMaxDuration != 14400 || cj.RecordingEnabled {
		t.Errorf("conference %+v", cj)
	}
	call := e.mustCreate(e.as(alice, "POST", "/calls", `{"from":"+1555","to":"sip:bob@127.0.0.1","recordingMaxDuration":"120"}`),
		"/v1/users/"+alice.ID+"/calls")
	var callj callJSON
	e.getJSON(alice, "/calls/"+call, &callj)
	if callj.RecordingMaxDuration != 120 {
		t.Errorf("call recordingMaxDuration %d, want 120", callj.RecordingMaxDuration)
	}

	conf = e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"+15550001","recordingEnabled":true,"recordingMaxDuration":1}`),
		"/v1/users/"+alice.ID+"/conferences")
	e.addMember(alice, conf, "")
	ev := e.events.waitFor(t, "recording", func(ev bridge.Event) bool { return ev.Type == bridge.EventRecording })
	if ev.State != "complete" || ev.Cause != "" || ev.ConferenceID != conf {
		t.Fatalf("event %+v", ev)
	}
	var rj recordingJSON
	e.getJSON(alice, "/recordings/"+ev.RecordingID, &rj)
	if rj.State != "complete" || rj.EndTime == "" {
		t.Errorf("recording %+v", rj)
	}
	st, err := os.Stat(filepath.Join(e.b.Config().RecordingsDir, ev.RecordingID+".wav"))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(44 + 2*e.b.Config().MaxMixRate); st.Size() != want {
		t.Errorf("file of %d bytes, want %d (one second)", st.Size(), want)
	}
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.State == "completed" || cj.RecordingEnabled || cj.RecordingMaxDuration != 1 {
		t.Errorf("conference after its recording's max %+v", cj)
	}
}

// TestRecordingQuotaAPI: alice's running recording that crosses the
// quota ends in state error with the quota as its reason, her room goes
// on; she then cannot start one (403 recording-quota-exceeded), on an
// existing conference (nothing else of the update applied) or in a
// create, which creates nothing; bob's
// recordings do not count against hers; deleting her media gives the
// bytes back.
func TestRecordingQuotaAPI(t *testing.T) {
	const quota = 60_000 // about 0.6 s of 48 kHz WAV
	e := newEnv(t, withQuota(t, quota))
	conf := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"+15550001","recordingEnabled":true}`),
		"/v1/users/"+alice.ID+"/conferences")
	e.addMember(alice, conf, "")
	ev := e.events.waitFor(t, "recording", func(ev bridge.Event) bool { return ev.Type == bridge.EventRecording })
	if ev.State != "error" || !strings.Contains(ev.Cause, "quota") {
		t.Fatalf("event %+v, want error for the quota", ev)
	}
	var rj recordingJSON
	e.getJSON(alice, "/recordings/"+ev.RecordingID, &rj)
	if rj.State != "error" || !strings.Contains(rj.Error, "quota") || rj.Media == "" || rj.EndTime == "" {
		t.Errorf("recording %+v", rj)
	}
	var cj conferenceJSON
	e.getJSON(alice, "/conferences/"+conf, &cj)
	if cj.State == "completed" || cj.RecordingEnabled {
		t.Errorf("conference %+v", cj)
	}
	if used := e.b.RecordingBytes(alice.ID); used <= quota {
		t.Errorf("%d bytes counted, want over %d", used, quota)
	}

	ae := e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":true}`).expectError(t, 403, "recording-quota-exceeded")
	if ae.Category != "limit" || !strings.Contains(ae.Message, fmt.Sprint(quota)) {
		t.Errorf("error %+v", ae)
	}
	e.as(alice, "POST", "/conferences/"+conf, `{"mute":true,"recordingEnabled":true}`).expectError(t, 403, "recording-quota-exceeded")
	if e.getJSON(alice, "/conferences/"+conf, &cj); cj.Mute {
		t.Error("a refused update applied its other changes")
	}
	var before []conferenceJSON
	e.getJSON(alice, "/conferences", &before)
	e.as(alice, "POST", "/conferences", `{"from":"+15550002","recordingEnabled":true}`).expectError(t, 403, "recording-quota-exceeded")
	e.as(alice, "POST", "/calls", `{"from":"+1555","to":"sip:bob@127.0.0.1","recordingEnabled":true}`).expectError(t, 403, "recording-quota-exceeded")
	var after []conferenceJSON
	e.getJSON(alice, "/conferences", &after)
	if len(after) != len(before) {
		t.Errorf("a refused create left a conference: %d before, %d after", len(before), len(after))
	}

	// Bob records while alice is over hers.
	bconf := e.mustCreate(e.as(bob, "POST", "/conferences", `{"from":"+15550003","recordingEnabled":true}`),
		"/v1/users/"+bob.ID+"/conferences")
	e.as(bob, "POST", "/conferences/"+bconf, `{"recordingEnabled":false}`).mustOK(t)

	name := strings.TrimPrefix(rj.Media, e.srv.URL+"/v1/users/"+alice.ID+"/media/")
	e.as(alice, "DELETE", "/media/"+name, "").mustOK(t)
	if used := e.b.RecordingBytes(alice.ID); used != 0 {
		t.Errorf("%d bytes counted once the media was deleted", used)
	}
	e.as(alice, "POST", "/conferences/"+conf, `{"recordingEnabled":true}`).mustOK(t)
}
