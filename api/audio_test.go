package api

import (
	"strings"
	"testing"
	"time"

	"chorus/bridge"
)

// audioEvents returns the playback and speak events so far.
func (e *env) audioEvents() []bridge.Event {
	var out []bridge.Event
	for _, ev := range e.events.all() {
		switch ev.Type {
		case bridge.EventConferencePlayback, bridge.EventConferenceSpeak, bridge.EventPlayback, bridge.EventSpeak:
			out = append(out, ev)
		}
	}
	return out
}

func isAudio(typ, state, status, tag string) func(bridge.Event) bool {
	return func(ev bridge.Event) bool {
		return ev.Type == typ && ev.State == state && ev.Status == status && ev.Tag == tag
	}
}

func TestAudioValidation(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	mid, _, _ := e.addMember(alice, conf, "")
	for _, p := range []string{"/conferences/" + conf + "/audio", "/conferences/" + conf + "/members/" + mid + "/audio"} {
		for _, tc := range []struct{ body, code string }{
			{`{}`, "missing-property"},
			{``, "missing-property"},
			{`{"fileUrl":null,"sentence":null}`, "missing-property"},
			{`{"tag":"x"}`, "missing-property"},
			{`{"fileUrl":"http://a.example/x.wav","sentence":"hi"}`, "validation-error"},
			{`{"fileUrl":"","sentence":""}`, "validation-error"},
			{`{"sentence":"` + strings.Repeat("a", 1001) + `"}`, "validation-error"},
			{`{"sentence":"` + strings.Repeat("é", 1001) + `"}`, "validation-error"},
			{`{"sentence":"   "}`, "blank-property"},
			{`{"fileUrl":"ftp://a.example/x.wav"}`, "validation-error"},
			{`{"fileUrl":"x.wav"}`, "validation-error"},
			{`{"fileUrl":"file:///etc/passwd"}`, "validation-error"},
			{`{"sentence":"hi","gender":"robot"}`, "validation-error"},
			{`{"sentence":"hi","loopEnabled":"maybe"}`, "validation-error"},
			{`{"sentence":5}`, ""}, // a number is its text: valid
		} {
			r := e.as(alice, "POST", p, tc.body)
			if tc.code == "" {
				r.mustOK(t)
				continue
			}
			r.expectError(t, 400, tc.code)
		}
		// 1000 characters are fine.
		e.as(alice, "POST", p, `{"sentence":"`+strings.Repeat("é", 1000)+`"}`).mustOK(t)
	}
}

func TestAudioWithoutSources(t *testing.T) {
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.Audio = nil })
	conf := e.createConf(alice)
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/x.wav"}`).expectError(t, 503, "media-unavailable")
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"sentence":"hello"}`).expectError(t, 503, "media-unavailable")
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":""}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"sentence":""}`).mustOK(t)
}

func TestConferencePlayFile(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	start := time.Now()
	// Python sends every key, null when unset.
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/x.wav","sentence":null,"gender":null,"locale":null,"voice":null,"loopEnabled":null,"tag":"p1"}`).mustOK(t)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("audio POST took %v", d)
	}
	started := e.events.waitFor(t, "playback started", isAudio(bridge.EventConferencePlayback, "started", "started", "p1"))
	if started.ConferenceID != conf || started.UserID != alice.ID {
		t.Fatalf("%+v", started)
	}
	e.events.waitFor(t, "playback done", isAudio(bridge.EventConferencePlayback, "done", "done", "p1"))
	if n := e.audio.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches", n)
	}
	evs := e.audioEvents()
	if len(evs) != 2 || evs[0].State != "started" || evs[1].State != "done" {
		t.Fatalf("events %+v", evs)
	}
}

func TestConferenceSpeak(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	// The conference tag is used when the request has none.
	e.as(alice, "POST", "/conferences/"+conf, `{"tag":"room"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"sentence":"Hello there"}`).mustOK(t)
	e.events.waitFor(t, "speak started", isAudio(bridge.EventConferenceSpeak, "started", "started", "room"))
	e.events.waitFor(t, "speak done", isAudio(bridge.EventConferenceSpeak, "done", "done", "room"))
	e.audio.mu.Lock()
	last := strings.Join(e.audio.last, "|")
	e.audio.mu.Unlock()
	if last != "female|en_US|" {
		t.Fatalf("defaults: %q", last)
	}
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"sentence":"Hola","gender":"Male","locale":"es_MX","voice":"Jorge"}`).mustOK(t)
	eventually(t, "second speak", func() bool { return e.audio.speaks.Load() == 2 })
	e.audio.mu.Lock()
	last = strings.Join(e.audio.last, "|")
	e.audio.mu.Unlock()
	if last != "male|es_MX|Jorge" {
		t.Fatalf("params: %q", last)
	}
}

func TestAudioFailureIsDoneWithError(t *testing.T) {
	e := newEnv(t, func(_ *bridge.Config, c *Config) { c.AudioTimeout = 100 * time.Millisecond })
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/missing.wav","tag":"m"}`).mustOK(t)
	e.events.waitFor(t, "error", isAudio(bridge.EventConferencePlayback, "done", "error", "m"))
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/empty.wav","tag":"e"}`).mustOK(t)
	e.events.waitFor(t, "error", isAudio(bridge.EventConferencePlayback, "done", "error", "e"))
	// A fetch that outlives AudioTimeout.
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/slow.wav","tag":"s"}`).mustOK(t)
	e.events.waitFor(t, "timeout", isAudio(bridge.EventConferencePlayback, "done", "error", "s"))
	for _, ev := range e.audioEvents() {
		if ev.State == "started" {
			t.Errorf("started for a failed fetch: %+v", ev)
		}
	}
	// The room still works.
	e.as(alice, "POST", "/conferences/"+conf+"/audio", `{"fileUrl":"http://a.example/ok.wav","tag":"ok"}`).mustOK(t)
	e.events.waitFor(t, "ok", isAudio(bridge.EventConferencePlayback, "done", "done", "ok"))
}

func TestAudioStopSemantics(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	p := "/conferences/" + conf + "/audio"
	e.as(alice, "POST", p, `{"fileUrl":"http://a.example/x.wav","loopEnabled":"true","tag":"loop"}`).mustOK(t)
	e.events.waitFor(t, "started", isAudio(bridge.EventConferencePlayback, "started", "started", "loop"))
	// Looping: still playing after several lengths of the file.
	time.Sleep(3 * 200 * time.Millisecond)
	// Stopping speech does not stop a file.
	e.as(alice, "POST", p, `{"sentence":""}`).mustOK(t)
	time.Sleep(50 * time.Millisecond)
	for _, ev := range e.audioEvents() {
		if ev.State == "done" {
			t.Fatalf("file ended: %+v", ev)
		}
	}
	// {"fileUrl":""} stops it: done with status stopped.
	e.as(alice, "POST", p, `{"fileUrl":""}`).mustOK(t)
	e.events.waitFor(t, "stopped", isAudio(bridge.EventConferencePlayback, "done", "stopped", "loop"))

	// Stopping a fetch still in flight: it never plays, no events.
	before := len(e.audioEvents())
	e.as(alice, "POST", p, `{"fileUrl":"http://a.example/slow.wav","tag":"slow"}`).mustOK(t)
	eventually(t, "fetch started", func() bool { return e.audio.fetches.Load() == 2 })
	e.as(alice, "POST", p, `{"fileUrl":""}`).mustOK(t)
	time.Sleep(100 * time.Millisecond)
	if after := e.audioEvents(); len(after) != before {
		t.Fatalf("events for a stopped fetch: %+v", after[before:])
	}
}

func TestAudioReplace(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	p := "/conferences/" + conf + "/audio"
	e.as(alice, "POST", p, `{"fileUrl":"http://a.example/a.wav","loopEnabled":true,"tag":"a"}`).mustOK(t)
	e.events.waitFor(t, "a started", isAudio(bridge.EventConferencePlayback, "started", "started", "a"))
	e.as(alice, "POST", p, `{"sentence":"replace it","tag":"b"}`).mustOK(t)
	e.events.waitFor(t, "a replaced", isAudio(bridge.EventConferencePlayback, "done", "replaced", "a"))
	e.events.waitFor(t, "b started", isAudio(bridge.EventConferenceSpeak, "started", "started", "b"))
	e.events.waitFor(t, "b done", isAudio(bridge.EventConferenceSpeak, "done", "done", "b"))
}

func TestMemberAudio(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	mid, call, _ := e.addMember(alice, conf, "")
	e.addMember(alice, conf, "")
	p := "/conferences/" + conf + "/members/" + mid + "/audio"
	e.as(alice, "POST", p, `{"fileUrl":"https://a.example/x.mp3","tag":"mp"}`).mustOK(t)
	ev := e.events.waitFor(t, "playback started", isAudio(bridge.EventPlayback, "started", "started", "mp"))
	if ev.CallID != call.ID() || ev.MemberID != mid || ev.ConferenceID != conf {
		t.Fatalf("%+v", ev)
	}
	e.events.waitFor(t, "playback done", isAudio(bridge.EventPlayback, "done", "done", "mp"))
	e.as(alice, "POST", p, `{"sentence":"just for you","loopEnabled":true,"tag":"ms"}`).mustOK(t)
	e.events.waitFor(t, "speak started", isAudio(bridge.EventSpeak, "started", "started", "ms"))
	e.as(alice, "POST", p, `{"sentence":""}`).mustOK(t)
	e.events.waitFor(t, "speak stopped", isAudio(bridge.EventSpeak, "done", "stopped", "ms"))
	for _, ev := range e.audioEvents() {
		if ev.Type == bridge.EventConferencePlayback || ev.Type == bridge.EventConferenceSpeak {
			t.Errorf("member audio raised a conference event: %+v", ev)
		}
	}
	// Removed member: no more audio (403), stop still 200.
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+mid, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", p, `{"sentence":"too late"}`).expectError(t, 403, "member-invalid-state")
	e.as(alice, "POST", p, `{"sentence":""}`).mustOK(t)
}

func TestMemberAudioRemovedWhilePlaying(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	mid, _, _ := e.addMember(alice, conf, "")
	e.addMember(alice, conf, "")
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+mid+"/audio", `{"fileUrl":"http://a.example/x.wav","loopEnabled":true,"tag":"r"}`).mustOK(t)
	e.events.waitFor(t, "started", isAudio(bridge.EventPlayback, "started", "started", "r"))
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+mid, `{"state":"completed"}`).mustOK(t)
	e.events.waitFor(t, "done", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventPlayback && ev.State == "done" && ev.Tag == "r"
	})
}

// TestAudioStopActsOnItsKind: what plays and what is being fetched may be
// of different kinds; a stop acts on each only if it is of its kind.
func TestAudioStopActsOnItsKind(t *testing.T) {
	e := newEnv(t)
	conf := e.createConf(alice)
	e.addMember(alice, conf, "")
	p := "/conferences/" + conf + "/audio"
	// Speech plays (looping), then a slow file is requested: a speech stop
	// still stops the speech.
	e.as(alice, "POST", p, `{"sentence":"hello","loopEnabled":true,"tag":"speech"}`).mustOK(t)
	e.events.waitFor(t, "speech started", isAudio(bridge.EventConferenceSpeak, "started", "started", "speech"))
	e.as(alice, "POST", p, `{"fileUrl":"http://a.example/slow.wav","tag":"slow"}`).mustOK(t)
	eventually(t, "fetch started", func() bool { return e.audio.fetches.Load() == 1 })
	e.as(alice, "POST", p, `{"sentence":""}`).mustOK(t)
	e.events.waitFor(t, "speech stopped", isAudio(bridge.EventConferenceSpeak, "done", "stopped", "speech"))

	// A file plays, a sentence is being rendered: a speech stop drops the
	// sentence and does not stop the file.
	e.as(alice, "POST", p, `{"fileUrl":"http://a.example/x.wav","loopEnabled":true,"tag":"file"}`).mustOK(t)
	e.events.waitFor(t, "file started", isAudio(bridge.EventConferencePlayback, "started", "started", "file"))
	e.as(alice, "POST", p, `{"sentence":"slow sentence","tag":"late"}`).mustOK(t)
	e.as(alice, "POST", p, `{"sentence":""}`).mustOK(t)
	time.Sleep(300 * time.Millisecond)
	for _, ev := range e.audioEvents() {
		if ev.Tag == "file" && ev.State == "done" {
			t.Fatalf("a speech stop ended the file: %+v", ev)
		}
		if ev.Tag == "late" {
			t.Fatalf("a stopped sentence still raised %+v", ev)
		}
	}
}
