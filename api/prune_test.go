package api

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"chorus/bridge"
)

// TestPruneLeavesNothingInAPI: once the bridge prunes a completed
// conference and its calls, nothing the API or its event path kept holds
// them: the conference, its member, the dialled call and the audio state
// of both are collected, and the API answers 404 for them. (The API keeps
// what it knows per resource on the bridge's records, so there is no map of
// its own to prune.)
func TestPruneLeavesNothingInAPI(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := newEnv(t, func(b *bridge.Config, _ *Config) { b.Now, b.Retention = clock, time.Hour })

	confID := e.createConf(alice)
	r := e.as(alice, "POST", "/calls", `{"from":"+1","to":"sip:x@127.0.0.1","conferenceId":"`+confID+`","callTimeout":30}`)
	callID := e.mustCreate(r, "/v1/users/"+alice.ID+"/calls")
	call, _ := e.b.Call(callID)
	eventually(t, "the dialled call joins", func() bool { return call.Member() != nil })
	if cj := e.getCall(alice, callID); cj.CallTimeout != 30 || cj.ConferenceID != confID {
		t.Errorf("call JSON %+v", cj)
	}
	var listed []callJSON
	e.getJSON(alice, "/calls?conferenceId="+confID, &listed)
	if len(listed) != 1 || listed[0].ID != callID {
		t.Errorf("the conference's calls: %+v", listed)
	}
	m := call.Member()
	e.as(alice, "POST", "/conferences/"+confID+"/audio", `{"sentence":"hello"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+confID+"/members/"+m.ID()+"/audio", `{"fileUrl":"http://a.example/x.wav"}`).mustOK(t)
	eventually(t, "both playbacks start", func() bool {
		n := 0
		for _, ev := range e.audioEvents() {
			if ev.State == "started" {
				n++
			}
		}
		return n == 2
	})
	e.as(alice, "POST", "/conferences/"+confID, `{"state":"completed"}`).mustOK(t)
	eventually(t, "the call ends", func() bool { return call.State() == bridge.CallCompleted })
	eventually(t, "both playbacks end", func() bool {
		n := 0
		for _, ev := range e.audioEvents() {
			if ev.State == "done" {
				n++
			}
		}
		return n == 2
	})

	conf, _ := e.b.Conference(confID)
	wConf, wMember, wCall := weak.Make(conf), weak.Make(m), weak.Make(call)
	wConfAudio, wMemberAudio := weak.Make(attachedTarget(conf)), weak.Make(attachedTarget(m))
	conf, m, call = nil, nil, nil

	if c, k := e.b.Prune(); c+k != 0 {
		t.Fatalf("pruned %d conferences and %d calls within the retention", c, k)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if c, k := e.b.Prune(); c != 1 || k != 1 {
		t.Fatalf("pruned %d conferences and %d calls, want 1 and 1", c, k)
	}
	e.as(alice, "GET", "/conferences/"+confID, "").expectError(t, 404, "conference-not-found")
	e.as(alice, "GET", "/calls/"+callID, "").expectError(t, 404, "call-not-found")
	for range 20 {
		runtime.GC()
		if wConf.Value() == nil && wMember.Value() == nil && wCall.Value() == nil &&
			wConfAudio.Value() == nil && wMemberAudio.Value() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	var held []string
	for name, alive := range map[string]bool{"conference": wConf.Value() != nil, "member": wMember.Value() != nil,
		"call": wCall.Value() != nil, "conference audio": wConfAudio.Value() != nil, "member audio": wMemberAudio.Value() != nil} {
		if alive {
			held = append(held, name)
		}
	}
	t.Errorf("still reachable after Prune: %s", strings.Join(held, ", "))
}
