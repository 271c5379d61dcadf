package api

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"chorus/store"
)

// countStore counts the transactions written.
type countStore struct {
	store.Store
	applies atomic.Int64
}

func (s *countStore) Apply(ctx context.Context, b *store.Batch) error {
	s.applies.Add(1)
	return s.Store.Apply(ctx, b)
}

// TestMemberLevelsSavedCoalesced: levels keyed on the phone raise no event,
// yet the member's record has them within the coalescing delay; a flood of
// keys (a change a millisecond for a second) costs a few writes a second,
// not one each.
func TestMemberLevelsSavedCoalesced(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	st := &countStore{Store: sq}
	e := newStoreEnv(t, st)
	conf := e.createConf(alice)
	member, call, _ := e.addMember(alice, conf, "")
	stored := func() memberRecord {
		r, err := st.Get(context.Background(), store.Key{Kind: store.KindMember, User: alice.ID, ID: member})
		if err != nil {
			return memberRecord{}
		}
		mr, _ := decodeRecord[memberRecord](r)
		return mr
	}
	eventually(t, "the member's record", func() bool { return stored().ID == member })

	call.Digit('3') // talk up
	call.Digit('6') // receive up
	call.Digit('7') // sensitivity up
	eventually(t, "the levels saved", func() bool {
		mr := stored()
		return mr.Talk == 1 && mr.Receive == 1 && mr.Sensitivity == 1
	})

	before := st.applies.Load()
	start := time.Now()
	n := 0
	for time.Since(start) < time.Second {
		call.Digit(rune("13"[n%2])) // talk down, then up again
		n++
		time.Sleep(time.Millisecond)
	}
	call.Digit('1')
	took := time.Since(start)
	c, _ := e.b.Conference(conf)
	m, _ := c.Member(member)
	talk, _, _ := m.Levels()
	eventually(t, "the last level saved", func() bool { return stored().Talk == talk })
	writes := st.applies.Load() - before
	// 4 a second at most, plus the one in progress and the last one.
	if limit := int64(took/DefaultOutboxCoalesce) + 3; writes > limit {
		t.Errorf("%d level changes in %v: %d writes, want at most %d", n, took.Round(time.Millisecond), writes, limit)
	}
	t.Logf("%d level changes in %v: %d writes", n, took.Round(time.Millisecond), writes)
}

// TestMemberChangedNeverWaits: the mixer's tick hands a change off without
// waiting and without allocating, even with the writer stalled (here:
// never started) and its queue full; a change beyond is counted.
func TestMemberChangedNeverWaits(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	o := NewOutbox(OutboxConfig{Store: sq, Bridge: nil, Dispatcher: NewDispatcher(DispatcherConfig{})})
	start := time.Now()
	allocs := testing.AllocsPerRun(2*obChanges, func() { o.MemberChanged("u", "conf-x", "member-y") })
	if allocs != 0 {
		t.Errorf("MemberChanged allocates %v a call", allocs)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("%d handoffs to a stalled writer took %v", 2*obChanges, el)
	}
	if s := o.Stats(); s.WriteErrors == 0 || s.Queued != obChanges {
		t.Errorf("after overflowing the queue: %+v", s)
	}
}
