package api

import (
	"testing"

	"chorus/bridge"
)

// TestEventStreamIDsAreEventIDs: over a real HTTP stream, each event's SSE
// id is its eventId (the one its callback carries), and a client that
// comes back with the eventId of any event it read gets exactly the events
// after it: none again, none missing. An eventId of another user's event
// (a point in the numbering the stream has seen) resumes as exactly.
func TestEventStreamIDsAreEventIDs(t *testing.T) {
	e, _ := newStreamEnv(t, EventStreamConfig{})
	whole := openSSE(t, e.srv.URL, alice, "")
	conf := e.createConf(alice)
	m1, _, _ := e.addMember(alice, conf, "")
	m2, _, _ := e.addMember(alice, conf, "")
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+m1, `{"mute":true}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+m2, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf, `{"state":"completed"}`).mustOK(t)
	whole.waitFor("conference completed", func(ev sseEvent) bool {
		return ev.data["eventType"] == bridge.EventConference && ev.data["state"] == bridge.StateCompleted
	})
	all := whole.events()
	if len(all) < 6 {
		t.Fatalf("%d events:%s", len(all), summary(all))
	}
	for i, ev := range all {
		if ev.data["eventId"] == nil || ev.id != ev.data["eventId"] {
			t.Errorf("SSE id %q, eventId %v: %v", ev.id, ev.data["eventId"], ev.data)
		}
		if i > 0 && idNum(t, ev.id) <= idNum(t, all[i-1].id) {
			t.Errorf("id %s after %s", ev.id, all[i-1].id)
		}
	}
	for from := range all {
		c := openSSE(t, e.srv.URL, alice, all[from].id)
		want := all[from+1:]
		if len(want) > 0 {
			c.waitFor("the last event", func(ev sseEvent) bool { return ev.id == all[len(all)-1].id })
		}
		// A mark after which nothing more may come.
		e.createConf(bob)
		e.events.waitFor(t, "Bob's conference", func(ev bridge.Event) bool { return ev.UserID == bob.ID && ev.ID != "" })
		c.close()
		got := c.events()
		if len(got) != len(want) {
			t.Fatalf("resume after %s: got%s\nwant%s", all[from].id, summary(got), summary(want))
		}
		for i := range got {
			if got[i].id != want[i].id {
				t.Errorf("resume after %s: event %d is %s, want %s", all[from].id, i, got[i].id, want[i].id)
			}
		}
	}
	// Bob's newest eventId is later than all of Alice's: nothing missed.
	var bobs string
	for _, ev := range e.events.all() {
		if ev.UserID == bob.ID && ev.ID != "" {
			bobs = ev.ID
		}
	}
	c := openSSE(t, e.srv.URL, alice, bobs)
	e.createConf(alice)
	ev := c.waitFor("Alice's next", func(sseEvent) bool { return true })
	if ev.data["eventType"] != bridge.EventConference || ev.data["state"] != bridge.StateCreated {
		t.Errorf("after Bob's eventId, first %s %v, want Alice's new conference", ev.id, ev.data)
	}
}
