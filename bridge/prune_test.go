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
	if a.member.mx != nil || a.member.ep != nil {
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

// TestPruneMembersOfLiveRoom: a room that lives on forgets the members
// (and so the calls) that left it longer than the retention ago, and keeps
// the active ones and the recent ones.
func TestPruneMembersOfLiveRoom(t *testing.T) {
	now := time.Now()
	r := newRoom(t, Config{Retention: time.Hour, Now: func() time.Time { return now }})
	stays := r.join(media.PCMU, nil)
	old := r.join(media.PCMU, nil)
	r.step(1)
	old.call.Ended("bye")
	now = now.Add(30 * time.Minute)
	recent := r.join(media.PCMU, nil)
	r.step(1)
	recent.call.Ended("bye")
	now = now.Add(45 * time.Minute) // old left 75 min ago, recent 45 min ago
	r.b.Prune()
	var ids []string
	for _, m := range r.conf.Members() {
		ids = append(ids, m.ID())
	}
	if len(ids) != 2 || ids[0] != stays.member.ID() || ids[1] != recent.member.ID() {
		t.Errorf("members after Prune %v, want the active one and the recent one", ids)
	}
	if _, ok := r.b.Call(old.call.ID()); ok {
		t.Error("the old call's record is still there")
	}
	if r.conf.State() != StateActive {
		t.Errorf("the room is %s", r.conf.State())
	}
}
