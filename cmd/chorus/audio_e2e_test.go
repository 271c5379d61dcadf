package main

// End-to-end tests of audio into rooms (issue 5, spec §2.4 and §2.9): the
// whole binary runs in-process, test phones dial into a conference over
// loopback SIP/RTP, files come from a local HTTP server and events go to a
// local callback server. Audio is checked by content: tone levels by
// Goertzel, speech by RMS.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// Levels and tolerances of the checks.
const (
	audioFileLevel = -12.0 // level of the tones in the served files, dBFS
	audioTolerance = 1.5   // how far the heard level may be from it, dB
	audioSilent    = -60.0 // a tone below this is "nothing of it"
	audioOn        = -30.0 // a 100 ms window above this has the tone
	audioSpeechRMS = -35.0 // speech must be louder than this, RMS
	audioWindow    = 800   // 100 ms at 8 kHz
)

// audioWAV is a 16-bit PCM WAV file of a sine of freqHz at dBFS (peak),
// rate Hz, channels channels (the same signal in each), lasting d.
func audioWAV(rate, channels int, freqHz, dBFS float64, d time.Duration) []byte {
	mono := make([]int16, int(d.Seconds()*float64(rate)))
	audiotest.Tone(mono, freqHz, dBFS, rate, nil)
	pcm := make([]int16, 0, len(mono)*channels)
	for _, s := range mono {
		for range channels {
			pcm = append(pcm, s)
		}
	}
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*len(pcm)))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(channels))
	le(uint32(rate))
	le(uint32(rate * channels * 2)) // byte rate
	le(uint16(channels * 2))        // block align
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * len(pcm)))
	le(pcm)
	return b.Bytes()
}

// audioEvents is a callback server that keeps every event it receives.
type audioEvents struct {
	mu  sync.Mutex
	evs []map[string]any
}

func (e *audioEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev := map[string]any{}
	if r.Method == http.MethodGet {
		for k, v := range r.URL.Query() {
			ev[k] = v[0]
		}
	} else if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// audioEv matches events by type, status and tag ("" matches any status).
func audioEv(typ, status, tag string) func(map[string]any) bool {
	return func(ev map[string]any) bool {
		return ev["eventType"] == typ && ev["tag"] == tag && (status == "" || ev["status"] == status)
	}
}

// find returns the index and the first event that match, or -1.
func (e *audioEvents) find(match func(map[string]any) bool) (int, map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, ev := range e.evs {
		if match(ev) {
			return i, ev
		}
	}
	return -1, nil
}

func (e *audioEvents) count(match func(map[string]any) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if match(ev) {
			n++
		}
	}
	return n
}

// wait polls until an event matches and returns its index and itself.
func (e *audioEvents) wait(t *testing.T, what string, timeout time.Duration, match func(map[string]any) bool) (int, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if i, ev := e.find(match); i >= 0 {
			return i, ev
		}
		if time.Now().After(deadline) {
			e.mu.Lock()
			var summary []string
			for _, ev := range e.evs {
				summary = append(summary, fmt.Sprintf("%v/%v/%v", ev["eventType"], ev["status"], ev["tag"]))
			}
			e.mu.Unlock()
			t.Fatalf("no %s event within %v; events so far: %s", what, timeout, summary)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// audioRig is a running Chorus with one conference, its callback server,
// a file server, and phones dialed into the conference.
type audioRig struct {
	chorus     ready
	alice      client
	confID     string
	from       string
	events     *audioEvents // the conference's callback
	callEvents *audioEvents // a call's own callback, at callURL
	callURL    string
	files      *httptest.Server
	mux        *http.ServeMux
	phones     []*testphone.Phone
	members    []string // member id of each phone
	calls      []string // call id of each phone
}

func newAudioRig(t *testing.T, rtp, from string, nPhones int) *audioRig {
	t.Helper()
	rg := &audioRig{from: from, events: &audioEvents{}, callEvents: &audioEvents{}, mux: http.NewServeMux()}
	// The servers start first so that they close after Chorus stopped:
	// its last events (hangups) are delivered, not retried at shutdown.
	evSrv := newTargetServer(rg.events)
	t.Cleanup(evSrv.Close)
	callSrv := newTargetServer(rg.callEvents)
	t.Cleanup(callSrv.Close)
	rg.callURL = callSrv.URL + "/call"
	rg.files = newTargetServer(rg.mux)
	t.Cleanup(rg.files.Close)
	rg.chorus = startChorus(t, rtp)
	rg.alice = client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", rg.chorus.HTTP), token: "alice-token", secret: "alice-secret"}

	resp, body := rg.alice.do("POST", "/conferences", map[string]any{"from": from, "callbackUrl": evSrv.URL + "/conf", "tag": "room-tag"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	rg.confID = loc[strings.LastIndex(loc, "/")+1:]
	for range nPhones {
		rg.dial(t)
	}
	return rg
}

// dial adds a silent phone and finds its member and call ids.
func (rg *audioRig) dial(t *testing.T) { rg.dialCodecs(t, nil) }

// dialCodecs is dial of a phone offering codecs (nil: testphone's
// default, G.711).
func (rg *audioRig) dialCodecs(t *testing.T, codecs []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := testphone.Dial(ctx, testphone.Options{Target: rg.chorus.SIPUDP.String(), User: rg.from, Codecs: codecs})
	if err != nil {
		t.Fatalf("dial phone %d: %v", len(rg.phones), err)
	}
	t.Cleanup(p.Close)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := rg.alice.do("GET", "/conferences/"+rg.confID+"/members", nil)
		var ms []struct{ ID, State, Call string }
		_ = json.Unmarshal(body, &ms)
		for _, m := range ms {
			if m.State == "active" && !slices.Contains(rg.members, m.ID) {
				rg.phones = append(rg.phones, p)
				rg.members = append(rg.members, m.ID)
				rg.calls = append(rg.calls, m.Call[strings.LastIndex(m.Call, "/")+1:])
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone %d never became a member: %s", len(rg.phones), body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve makes path on the file server answer with h and returns its URL.
func (rg *audioRig) serve(path string, h http.HandlerFunc) string {
	rg.mux.HandleFunc(path, h)
	return rg.files.URL + path
}

// serveFile serves data as an audio file.
func (rg *audioRig) serveFile(path, contentType string, data []byte) string {
	return rg.serve(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(data)
	})
}

// roomAudio posts body to the conference's audio endpoint and wants 200.
func (rg *audioRig) roomAudio(t *testing.T, body map[string]any) {
	t.Helper()
	rg.audio(t, "/conferences/"+rg.confID+"/audio", body, 200)
}

// memberAudio posts body to phone i's member audio endpoint and wants 200.
func (rg *audioRig) memberAudio(t *testing.T, i int, body map[string]any) {
	t.Helper()
	rg.audio(t, "/conferences/"+rg.confID+"/members/"+rg.members[i]+"/audio", body, 200)
}

func (rg *audioRig) audio(t *testing.T, path string, body any, want int) []byte {
	t.Helper()
	c := rg.alice
	c.t = t
	resp, b := c.do("POST", path, body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s %v: %d %s, want %d", path, body, resp.StatusCode, b, want)
	}
	return b
}

// marks returns the current recording length of every phone.
func (rg *audioRig) marks() []int {
	m := make([]int, len(rg.phones))
	for i, p := range rg.phones {
		m[i] = p.Mark()
	}
	return m
}

// since waits until every phone has recorded at least d after its mark
// and returns each phone's recording since its mark.
func (rg *audioRig) since(t *testing.T, marks []int, d time.Duration) [][]int16 {
	t.Helper()
	n := int(d.Seconds() * 8000)
	deadline := time.Now().Add(d + 5*time.Second)
	for i, p := range rg.phones {
		for p.Mark()-marks[i] < n {
			if time.Now().After(deadline) {
				t.Fatalf("phone %d recorded %d samples, want %d (stats %+v)", i, p.Mark()-marks[i], n, p.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	recs := make([][]int16, len(rg.phones))
	for i, p := range rg.phones {
		recs[i] = p.RecordingSince(marks[i])
	}
	return recs
}

// listen records d of every phone from now.
func (rg *audioRig) listen(t *testing.T, d time.Duration) [][]int16 {
	t.Helper()
	return rg.since(t, rg.marks(), d)
}

// settle waits until every phone has received another 200 ms, so that
// audio mixed before now has arrived.
func (rg *audioRig) settle(t *testing.T) {
	t.Helper()
	rg.listen(t, 200*time.Millisecond)
}

// waitHearing polls until phone i hears freqHz in its latest 100 ms
// recorded after mark (audio from before mark may still be in flight).
func (rg *audioRig) waitHearing(t *testing.T, i int, freqHz float64, mark int) {
	t.Helper()
	p := rg.phones[i]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := p.Mark(); m-mark >= audioWindow {
			if audiotest.LevelDBFS(p.RecordingSince(m-audioWindow), freqHz, 8000) > audioOn {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone %d never heard %v Hz", i, freqHz)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// playHeard posts body to the room's audio (member < 0) or to a member's,
// waits for its started event, then until phone listener hears freqHz.
func (rg *audioRig) playHeard(t *testing.T, member int, body map[string]any, listener int, freqHz float64) {
	t.Helper()
	mark := rg.phones[listener].Mark()
	typ := "conference-playback"
	if member < 0 {
		rg.roomAudio(t, body)
	} else {
		typ = "playback"
		rg.memberAudio(t, member, body)
	}
	rg.events.wait(t, typ+" started", 5*time.Second, audioEv(typ, "started", body["tag"].(string)))
	rg.waitHearing(t, listener, freqHz, mark)
}

// toneIn reads freqHz in rec over 100 ms windows: the median level of the
// windows that have the tone (the first and last, which may be partly
// covered, left out) and how long the tone lasted.
func toneIn(rec []int16, freqHz float64) (level float64, dur time.Duration) {
	var on []float64
	for i := 0; i+audioWindow <= len(rec); i += audioWindow {
		if l := audiotest.LevelDBFS(rec[i:i+audioWindow], freqHz, 8000); l > audioOn {
			on = append(on, l)
		}
	}
	dur = time.Duration(len(on)) * 100 * time.Millisecond
	if len(on) > 2 {
		on = on[1 : len(on)-1]
	}
	if len(on) == 0 {
		return audiotest.Silence, 0
	}
	slices.Sort(on)
	return on[len(on)/2], dur
}

// maxLevel is the highest level of freqHz over 100 ms windows of rec.
func maxLevel(rec []int16, freqHz float64) float64 {
	best := audiotest.Silence
	for i := 0; i+audioWindow <= len(rec); i += audioWindow / 2 {
		best = max(best, audiotest.LevelDBFS(rec[i:i+audioWindow], freqHz, 8000))
	}
	return best
}

// speechIn finds the span of rec between the first and last 20 ms frame
// above -50 dBFS RMS and returns its RMS level and length.
func speechIn(rec []int16) (rms float64, dur time.Duration) {
	const frame = 160
	first, last := -1, -1
	for i := 0; i+frame <= len(rec); i += frame {
		if audiotest.RMSDBFS(rec[i:i+frame]) > -50 {
			if first < 0 {
				first = i
			}
			last = i + frame
		}
	}
	if first < 0 {
		return audiotest.Silence, 0
	}
	return audiotest.RMSDBFS(rec[first:last]), time.Duration(last-first) * time.Second / 8000
}

// checkHears fails unless rec has freqHz at the file level for about want.
func checkHears(t *testing.T, who string, rec []int16, freqHz float64, want time.Duration) {
	t.Helper()
	level, dur := toneIn(rec, freqHz)
	if math.Abs(level-audioFileLevel) > audioTolerance {
		t.Errorf("%s hears %v Hz at %.1f dBFS, want %.1f ± %.1f", who, freqHz, level, audioFileLevel, audioTolerance)
	}
	if want > 0 && (dur < want-300*time.Millisecond || dur > want+300*time.Millisecond) {
		t.Errorf("%s hears %v Hz for %v, want about %v", who, freqHz, dur, want)
	}
}

// checkSilent fails if rec has anything of freqHz.
func checkSilent(t *testing.T, who string, rec []int16, freqHz float64) {
	t.Helper()
	if l := maxLevel(rec, freqHz); l > audioSilent {
		t.Errorf("%s hears %v Hz at %.1f dBFS, want below %.0f", who, freqHz, l, audioSilent)
	}
}

// checkOrder fails unless the started event came before done.
func checkOrder(t *testing.T, what string, started, done int) {
	t.Helper()
	if started > done {
		t.Errorf("%s: done event (#%d) arrived before started (#%d)", what, done, started)
	}
}

// TestAudioRoom: files and speech to the room and to one member, heard by
// content on three silent phones, with their events; hold, stop, loop and
// replace.
func TestAudioRoom(t *testing.T) {
	rg := newAudioRig(t, "30200-30299", "+15557771000", 3)
	tone1k := rg.serveFile("/tone1k.wav", "audio/wav", audioWAV(16000, 2, 1000, audioFileLevel, 3*time.Second))
	short1k := rg.serveFile("/short1k.wav", "audio/x-wav", audioWAV(16000, 2, 1000, audioFileLevel, 1500*time.Millisecond))
	long1k := rg.serveFile("/long1k.wav", "audio/wav", audioWAV(8000, 1, 1000, audioFileLevel, 10*time.Second))
	long2k := rg.serveFile("/long2k.wav", "audio/wav", audioWAV(44100, 1, 2000, audioFileLevel, 10*time.Second))
	half1k := rg.serveFile("/half1k.wav", "audio/wav", audioWAV(16000, 2, 1000, audioFileLevel, 500*time.Millisecond))
	ev := rg.events
	names := []string{"phone A", "phone B", "phone C"}

	t.Run("FileToRoom", func(t *testing.T) {
		marks := rg.marks()
		rg.roomAudio(t, map[string]any{"fileUrl": tone1k, "tag": "room-file"})
		si, started := ev.wait(t, "conference-playback started", 5*time.Second, audioEv("conference-playback", "started", "room-file"))
		di, _ := ev.wait(t, "conference-playback done", 10*time.Second, audioEv("conference-playback", "done", "room-file"))
		checkOrder(t, "room file", si, di)
		if started["conferenceId"] != rg.confID {
			t.Errorf("started event %v: conferenceId, want %s", started, rg.confID)
		}
		rg.settle(t)
		recs := rg.since(t, marks, 3*time.Second)
		for i, rec := range recs {
			checkHears(t, names[i], rec, 1000, 3*time.Second)
		}
		if n := ev.count(audioEv("conference-playback", "", "room-file")); n != 2 {
			t.Errorf("%d conference-playback events for the file, want 2 (started, done)", n)
		}
	})

	t.Run("FileToOneMember", func(t *testing.T) {
		marks := rg.marks()
		rg.memberAudio(t, 0, map[string]any{"fileUrl": tone1k, "tag": "member-file"})
		si, started := ev.wait(t, "playback started", 5*time.Second, audioEv("playback", "started", "member-file"))
		di, _ := ev.wait(t, "playback done", 10*time.Second, audioEv("playback", "done", "member-file"))
		checkOrder(t, "member file", si, di)
		if started["callId"] != rg.calls[0] {
			t.Errorf("playback event %v: callId, want %s (phone A's call)", started, rg.calls[0])
		}
		rg.settle(t)
		recs := rg.since(t, marks, 3*time.Second)
		checkHears(t, "phone A (the member)", recs[0], 1000, 3*time.Second)
		checkSilent(t, "phone B (another member)", recs[1], 1000)
		checkSilent(t, "phone C (another member)", recs[2], 1000)
		if i, e := ev.find(audioEv("conference-playback", "", "member-file")); i >= 0 {
			t.Errorf("audio to one member raised a conference event: %v", e)
		}
	})

	t.Run("HeldMemberHearsNothing", func(t *testing.T) {
		memberPath := "/conferences/" + rg.confID + "/members/" + rg.members[2]
		rg.audio(t, memberPath, map[string]any{"hold": true}, 200)
		defer rg.audio(t, memberPath, map[string]any{"hold": false}, 200)
		marks := rg.marks()
		rg.roomAudio(t, map[string]any{"fileUrl": short1k, "tag": "hold-file"})
		ev.wait(t, "conference-playback done", 10*time.Second, audioEv("conference-playback", "done", "hold-file"))
		rg.settle(t)
		recs := rg.since(t, marks, 1500*time.Millisecond)
		checkHears(t, "phone A", recs[0], 1000, 1500*time.Millisecond)
		checkHears(t, "phone B", recs[1], 1000, 1500*time.Millisecond)
		checkSilent(t, "phone C (held)", recs[2], 1000)
	})

	t.Run("SentenceToRoom", func(t *testing.T) {
		marks := rg.marks()
		rg.roomAudio(t, map[string]any{"sentence": "Hello, this is a test of the conference bridge.", "tag": "room-speak"})
		si, _ := ev.wait(t, "conference-speak started", 20*time.Second, audioEv("conference-speak", "started", "room-speak"))
		di, _ := ev.wait(t, "conference-speak done", 20*time.Second, audioEv("conference-speak", "done", "room-speak"))
		checkOrder(t, "room speech", si, di)
		rg.settle(t)
		recs := rg.since(t, marks, time.Second)
		for i, rec := range recs {
			rms, dur := speechIn(rec)
			t.Logf("%s: speech %v at %.1f dBFS RMS", names[i], dur, rms)
			if rms <= audioSpeechRMS || dur < time.Second {
				t.Errorf("%s hears speech for %v at %.1f dBFS RMS, want > 1 s above %.0f dBFS", names[i], dur, rms, audioSpeechRMS)
			}
		}
	})

	t.Run("SentenceToOneMember", func(t *testing.T) {
		marks := rg.marks()
		rg.memberAudio(t, 1, map[string]any{"sentence": "Hello, this is a test of the conference bridge.", "tag": "member-speak"})
		si, started := ev.wait(t, "speak started", 20*time.Second, audioEv("speak", "started", "member-speak"))
		di, done := ev.wait(t, "speak done", 20*time.Second, audioEv("speak", "done", "member-speak"))
		checkOrder(t, "member speech", si, di)
		if started["callId"] != rg.calls[1] || started["state"] != "PLAYBACK_START" || done["state"] != "PLAYBACK_STOP" {
			t.Errorf("speak events %v, %v: want callId %s, state PLAYBACK_START then PLAYBACK_STOP", started, done, rg.calls[1])
		}
		rg.settle(t)
		recs := rg.since(t, marks, time.Second)
		if rms, dur := speechIn(recs[1]); rms <= audioSpeechRMS || dur < time.Second {
			t.Errorf("phone B (the member) hears speech for %v at %.1f dBFS RMS, want > 1 s above %.0f", dur, rms, audioSpeechRMS)
		}
		for _, i := range []int{0, 2} {
			if rms := audiotest.RMSDBFS(recs[i]); rms > audioSilent {
				t.Errorf("%s (another member) hears %.1f dBFS RMS, want nothing", names[i], rms)
			}
		}
	})

	t.Run("Stop", func(t *testing.T) {
		rg.playHeard(t, -1, map[string]any{"fileUrl": long1k, "tag": "stop-file"}, 0, 1000)
		rg.roomAudio(t, map[string]any{"fileUrl": ""})
		ev.wait(t, "conference-playback done after stop", 3*time.Second, audioEv("conference-playback", "done", "stop-file"))
		rg.settle(t) // what was mixed before the stop arrives
		for i, rec := range rg.listen(t, 500*time.Millisecond) {
			checkSilent(t, names[i]+" after the stop", rec, 1000)
		}
		// A stop of the other kind leaves a file alone.
		rg.playHeard(t, -1, map[string]any{"fileUrl": long1k, "tag": "stop-kind"}, 0, 1000)
		rg.roomAudio(t, map[string]any{"sentence": ""})
		level, _ := toneIn(rg.listen(t, 500*time.Millisecond)[1], 1000)
		if math.Abs(level-audioFileLevel) > audioTolerance {
			t.Errorf(`after {"sentence": ""} phone B hears the file at %.1f dBFS, want it still playing at %.1f`, level, audioFileLevel)
		}
		rg.roomAudio(t, map[string]any{"fileUrl": ""})
		ev.wait(t, "conference-playback done after stop", 3*time.Second, audioEv("conference-playback", "done", "stop-kind"))
		// Member audio stops too.
		rg.playHeard(t, 2, map[string]any{"fileUrl": long1k, "tag": "stop-member"}, 2, 1000)
		rg.memberAudio(t, 2, map[string]any{"fileUrl": ""})
		ev.wait(t, "playback done after stop", 3*time.Second, audioEv("playback", "done", "stop-member"))
		rg.settle(t)
		checkSilent(t, "phone C after its stop", rg.listen(t, 500*time.Millisecond)[2], 1000)
	})

	t.Run("Loop", func(t *testing.T) {
		rg.playHeard(t, -1, map[string]any{"fileUrl": half1k, "loopEnabled": true, "tag": "loop-file"}, 0, 1000)
		recs := rg.listen(t, 2500*time.Millisecond)
		for i, rec := range recs {
			for w := 0; w+audioWindow <= len(rec); w += audioWindow {
				if l := audiotest.LevelDBFS(rec[w:w+audioWindow], 1000, 8000); math.Abs(l-audioFileLevel) > 3 {
					t.Errorf("%s: looped 0.5 s file reads %.1f dBFS %v into 2.5 s, want %.0f throughout", names[i], l, time.Duration(w)*time.Second/8000, audioFileLevel)
					break
				}
			}
		}
		if i, e := ev.find(audioEv("conference-playback", "done", "loop-file")); i >= 0 {
			t.Errorf("looped file raised done while looping: %v", e)
		}
		rg.roomAudio(t, map[string]any{"fileUrl": ""})
		ev.wait(t, "conference-playback done after stop", 3*time.Second, audioEv("conference-playback", "done", "loop-file"))
	})

	t.Run("Replace", func(t *testing.T) {
		rg.playHeard(t, -1, map[string]any{"fileUrl": long1k, "tag": "first"}, 0, 1000)
		rg.roomAudio(t, map[string]any{"fileUrl": long2k, "tag": "second"})
		si, _ := ev.wait(t, "second started", 5*time.Second, audioEv("conference-playback", "started", "second"))
		di, _ := ev.wait(t, "first done (replaced)", 5*time.Second, audioEv("conference-playback", "done", "first"))
		if si > di {
			t.Errorf("the replaced file's done (#%d) came before the new file's started (#%d)", di, si)
		}
		rg.settle(t)
		for i, rec := range rg.listen(t, 500*time.Millisecond) {
			checkSilent(t, names[i]+" after the replace", rec, 1000)
			checkHears(t, names[i]+" after the replace", rec, 2000, 0)
		}
		rg.roomAudio(t, map[string]any{"fileUrl": ""})
		ev.wait(t, "second done after stop", 3*time.Second, audioEv("conference-playback", "done", "second"))
		if n := ev.count(audioEv("conference-playback", "done", "first")); n != 1 {
			t.Errorf("%d done events for the replaced file, want 1", n)
		}
	})

	// A member whose call has a callbackUrl of its own (a call dialled out
	// by POST /calls, answered by sipp): its playback and speak events go
	// there, not to the conference.
	t.Run("MemberEventsToCallCallback", func(t *testing.T) {
		sipp := testphone.Sipp(t)
		callEvents := rg.callEvents
		sipPort, mediaPort := testphone.FreeUDPPort(t), testphone.FreeUDPPort(t)
		uas := exec.Command(sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(sipPort), "-mi", "127.0.0.1",
			"-mp", fmt.Sprint(mediaPort), "-m", "1", "-nostdin")
		var uasOut bytes.Buffer
		uas.Stdout, uas.Stderr = &uasOut, &uasOut
		if err := uas.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = uas.Process.Kill(); _ = uas.Wait() }()
		c := rg.alice
		c.t = t
		// sipp binds its socket after it starts: retry the dial until it answers.
		var callID, memberID string
		deadline := time.Now().Add(10 * time.Second)
		for memberID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no member for the dialled call\n%s", uasOut.String())
			}
			if callID == "" {
				resp, body := c.do("POST", "/calls", map[string]any{"from": rg.from, "to": fmt.Sprintf("sip:uas@127.0.0.1:%d", sipPort),
					"conferenceId": rg.confID, "callbackUrl": rg.callURL, "tag": "call-tag"})
				if resp.StatusCode != 201 {
					t.Fatalf("dial out: %d %s", resp.StatusCode, body)
				}
				loc := resp.Header.Get("Location")
				callID = loc[strings.LastIndex(loc, "/")+1:]
			}
			_, body := c.do("GET", "/calls/"+callID, nil)
			var call struct{ State string }
			_ = json.Unmarshal(body, &call)
			switch call.State {
			case "completed":
				callID = "" // sipp was not listening yet
			case "active":
				_, body = c.do("GET", "/conferences/"+rg.confID+"/members", nil)
				var ms []struct{ ID, State, Call string }
				_ = json.Unmarshal(body, &ms)
				for _, m := range ms {
					if m.State == "active" && strings.HasSuffix(m.Call, "/"+callID) {
						memberID = m.ID
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		path := "/conferences/" + rg.confID + "/members/" + memberID
		defer rg.audio(t, path, map[string]any{"state": "completed"}, 200)
		rg.audio(t, path+"/audio", map[string]any{"fileUrl": half1k, "tag": "call-file"}, 200)
		si, started := callEvents.wait(t, "playback started", 5*time.Second, audioEv("playback", "started", "call-file"))
		di, _ := callEvents.wait(t, "playback done", 5*time.Second, audioEv("playback", "done", "call-file"))
		checkOrder(t, "call playback", si, di)
		if started["callId"] != callID {
			t.Errorf("playback event %v: callId, want %s", started, callID)
		}
		rg.audio(t, path+"/audio", map[string]any{"sentence": "Hello.", "tag": ""}, 200)
		_, done := callEvents.wait(t, "speak done", 20*time.Second, audioEv("speak", "done", "call-tag"))
		if done["state"] != "PLAYBACK_STOP" {
			t.Errorf("speak done event %v: want state PLAYBACK_STOP", done)
		}
		if i, e := ev.find(func(e map[string]any) bool {
			return e["callId"] == callID && (e["eventType"] == "playback" || e["eventType"] == "speak")
		}); i >= 0 {
			t.Errorf("a member audio event went to the conference's callback though the call has its own: %v", e)
		}
	})
}

// TestAudioBadInput: requests that are refused at once (400) and files
// that cannot be had (a done event, no started); the room keeps mixing.
func TestAudioBadInput(t *testing.T) {
	rg := newAudioRig(t, "30300-30399", "+15557772000", 2)
	ev := rg.events
	confAudio := "/conferences/" + rg.confID + "/audio"
	memberAudio := "/conferences/" + rg.confID + "/members/" + rg.members[1] + "/audio"

	t.Run("Refused", func(t *testing.T) {
		long := strings.Repeat("a", 1001)
		for _, tc := range []struct {
			name string
			path string
			body any
			code string
		}{
			{"both", confAudio, map[string]any{"fileUrl": rg.files.URL + "/x.wav", "sentence": "hi"}, "validation-error"},
			{"both to a member", memberAudio, map[string]any{"fileUrl": rg.files.URL + "/x.wav", "sentence": "hi"}, "validation-error"},
			{"neither", confAudio, map[string]any{"tag": "x"}, "missing-property"},
			{"neither, nulls", confAudio, map[string]any{"fileUrl": nil, "sentence": nil}, "missing-property"},
			{"empty body", confAudio, map[string]any{}, "missing-property"},
			{"1001 characters", confAudio, map[string]any{"sentence": long}, "validation-error"},
			{"1001 characters to a member", memberAudio, map[string]any{"sentence": long}, "validation-error"},
			{"blank sentence", confAudio, map[string]any{"sentence": "   "}, "blank-property"},
			{"not http", confAudio, map[string]any{"fileUrl": "ftp://127.0.0.1/x.wav"}, "validation-error"},
			{"not a URL", confAudio, map[string]any{"fileUrl": "tone.wav"}, "validation-error"},
			{"loopEnabled not a bool", confAudio, map[string]any{"fileUrl": rg.files.URL + "/x.wav", "loopEnabled": "yes"}, ""},
		} {
			body := rg.audio(t, tc.path, tc.body, 400)
			var e struct{ Category, Code, Message string }
			if err := json.Unmarshal(body, &e); err != nil || e.Category != "bad-request" || e.Message == "" || (tc.code != "" && e.Code != tc.code) {
				t.Errorf("%s: error body %s, want category bad-request, code %q and a message", tc.name, body, tc.code)
			}
		}
		// Exactly 1000 characters is allowed; stop it at once.
		rg.audio(t, confAudio, map[string]any{"sentence": strings.Repeat("a ", 500), "tag": "max-sentence"}, 200)
		rg.audio(t, confAudio, map[string]any{"sentence": ""}, 200)
		rg.audio(t, "/conferences/"+rg.confID+"/members/m-nosuchmember/audio", map[string]any{"fileUrl": rg.files.URL + "/x.wav"}, 404)
	})

	// An address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + l.Addr().String() + "/tone.wav"
	l.Close()
	const huge = 26 << 20
	wavHeader := audioWAV(8000, 1, 1000, audioFileLevel, 0)

	t.Run("Failed", func(t *testing.T) {
		for _, tc := range []struct {
			name, url string
		}{
			{"unreachable", unreachable},
			{"404", rg.serve("/missing.wav", http.NotFound)},
			{"500", rg.serve("/broken.wav", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })},
			{"huge body", rg.serve("/huge.wav", func(w http.ResponseWriter, r *http.Request) {
				// A valid WAV header claiming 26 MB of samples, then the samples.
				w.Header().Set("Content-Type", "audio/wav")
				h := bytes.Clone(wavHeader)
				binary.LittleEndian.PutUint32(h[4:], uint32(36+huge))
				binary.LittleEndian.PutUint32(h[40:], huge)
				if _, err := w.Write(h); err != nil {
					return
				}
				chunk := make([]byte, 1<<20)
				for range huge >> 20 {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})},
			{"huge Content-Length", rg.serve("/claims-huge.wav", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "audio/wav")
				w.Header().Set("Content-Length", fmt.Sprint(huge+len(wavHeader)))
				_, _ = w.Write(wavHeader)
			})},
			{"HTML", rg.serveFile("/page.wav", "text/html", []byte("<!DOCTYPE html><html><body><h1>Not audio</h1></body></html>"))},
			{"truncated WAV", rg.serveFile("/truncated.wav", "audio/wav", wavHeader[:20])},
			{"no samples", rg.serveFile("/empty.wav", "audio/wav", wavHeader)},
		} {
			tag := "bad-" + strings.ReplaceAll(tc.name, " ", "-")
			rg.audio(t, confAudio, map[string]any{"fileUrl": tc.url, "tag": tag}, 200)
			ev.wait(t, tc.name+" done", 20*time.Second, audioEv("conference-playback", "done", tag))
			if i, e := ev.find(audioEv("conference-playback", "started", tag)); i >= 0 {
				t.Errorf("%s: a file that could not be had was started: %v", tc.name, e)
			}
		}
		// The same for one member: a call playback event.
		rg.audio(t, memberAudio, map[string]any{"fileUrl": unreachable, "tag": "bad-member"}, 200)
		_, done := ev.wait(t, "member playback done", 20*time.Second, audioEv("playback", "done", "bad-member"))
		if done["callId"] != rg.calls[1] {
			t.Errorf("failed member playback event %v: callId, want %s", done, rg.calls[1])
		}
		if i, e := ev.find(audioEv("playback", "started", "bad-member")); i >= 0 {
			t.Errorf("member: a file that could not be had was started: %v", e)
		}
	})

	t.Run("SlowURLDoesNotStallTheRoom", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		slow := rg.serve("/slow.wav", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "audio/wav")
			w.WriteHeader(200)
			_, _ = w.Write(wavHeader[:12])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		rg.audio(t, confAudio, map[string]any{"fileUrl": slow, "tag": "slow"}, 200)
		mark := rg.phones[1].Mark()
		rg.phones[0].SetSource(audiotest.ToneSource(600, -15, 8000))
		rg.waitHearing(t, 1, 600, mark)
		rg.phones[0].SetSource(nil)
		rg.audio(t, confAudio, map[string]any{"fileUrl": ""}, 200)
		rg.settle(t)
		if i, e := ev.find(audioEv("conference-playback", "", "slow")); i >= 0 {
			t.Errorf("a fetch stopped before it played raised an event: %v", e)
		}
	})

	t.Run("RoomStillMixes", func(t *testing.T) {
		// A good file after all that, sent the way Python sends it (nulls
		// for unset keys), still plays.
		good := rg.serveFile("/good.wav", "audio/wav", audioWAV(16000, 2, 1000, audioFileLevel, time.Second))
		marks := rg.marks()
		rg.audio(t, confAudio, map[string]any{"fileUrl": good, "sentence": nil, "gender": nil, "locale": nil,
			"voice": nil, "loopEnabled": nil, "tag": "good"}, 200)
		ev.wait(t, "good done", 10*time.Second, audioEv("conference-playback", "done", "good"))
		rg.settle(t)
		recs := rg.since(t, marks, time.Second)
		checkHears(t, "phone A", recs[0], 1000, time.Second)
		checkHears(t, "phone B", recs[1], 1000, time.Second)

		// A talking phone is heard by the other.
		mark := rg.phones[1].Mark()
		rg.phones[0].SetSource(audiotest.ToneSource(600, -15, 8000))
		rg.waitHearing(t, 1, 600, mark)
		rec := rg.listen(t, 500*time.Millisecond)[1]
		if l := audiotest.LevelDBFS(rec, 600, 8000); math.Abs(l+15) > 2 {
			t.Errorf("phone B hears phone A's 600 Hz at %.1f dBFS, want about -15", l)
		}
	})
}
