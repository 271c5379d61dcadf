package bridge

import (
	"sync"
	"testing"

	"chorus/media"
)

// changeSink records events and members' changes without events.
type changeSink struct {
	mu      sync.Mutex
	evs     []Event
	changed []string
}

func (s *changeSink) Publish(ev Event) {
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.mu.Unlock()
}

func (s *changeSink) MemberChanged(user, conf, member string) {
	s.mu.Lock()
	s.changed = append(s.changed, user+"/"+conf+"/"+member)
	s.mu.Unlock()
}

// TestLevelKeysTellTheChangeSink: each level key (1-9) tells a record
// keeping sink that the member changed, since no event does; mute (0) and
// hold (*) raise their event instead, and # is not a level.
func TestLevelKeysTellTheChangeSink(t *testing.T) {
	r := newRoom(t, Config{})
	s := &changeSink{}
	r.b.SetEventSink(s)
	a := r.join(media.PCMU, nil)
	want := "u-test/" + r.conf.ID() + "/" + a.member.ID()
	for _, d := range "123456789" {
		a.call.Digit(d)
	}
	s.mu.Lock()
	n := len(s.changed)
	ok := n == 9 && s.changed[0] == want
	s.evs = nil
	s.mu.Unlock()
	if !ok {
		t.Fatalf("%d changes for 9 level keys (%v), want 9 of %s", n, s.changed, want)
	}
	if talk, recv, sens := a.member.Levels(); talk != 1 || recv != 1 || sens != -1 {
		t.Errorf("levels %d %d %d after 1-9", talk, recv, sens)
	}
	a.call.Digit('0')
	a.call.Digit('*')
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.changed) != 9 || len(s.evs) != 2 || !s.evs[0].Mute || !s.evs[1].Hold {
		t.Errorf("mute and hold: changes %d, events %+v", len(s.changed), s.evs)
	}
}
