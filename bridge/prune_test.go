package bridge

import (
	"testing"
	"time"

	"chorus/media"
)

// TestPrune: completed records go after the retention, live ones stay,
// and a removed member's audio memory is released by the mixer.
func TestPrune(t *testing.T) {
	now := time.Now()
	r := newRoom(t, Config{Retention: time.Hour, Now: func() time.Time { return now }})
	a := r.join(media.PCMU, nil)
	live, err := r.b.CreateConference(ConferenceOptions{UserID: "u-test", From: "2"})
	if err != nil {
		t.Fatal(err)
	}
	r.step(2)
	a.call.Ended("bye")
	r.step(1)
	if a.member.mx != nil || a.member.sess != nil {
		t.Error("a removed member's memory was not released at the next tick")
	}
	if a.call.Leg() != nil {
		t.Error("an ended call still holds its signalling")
	}
	if c, k := r.b.Prune(); c+k != 0 {
		t.Fatalf("pruned %d conferences and %d calls before the retention", c, k)
	}
	now = now.Add(2 * time.Hour)
	if c, k := r.b.Prune(); c != 1 || k != 1 {
		t.Fatalf("pruned %d conferences and %d calls, want 1 and 1", c, k)
	}
	if _, ok := r.b.Conference(r.conf.ID()); ok {
		t.Error("completed conference still there")
	}
	if _, ok := r.b.Conference(live.ID()); !ok {
		t.Error("live conference pruned")
	}
}
