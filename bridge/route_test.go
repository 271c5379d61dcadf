package bridge

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestRouteConcurrentOneRoom: callers dialling a new number at the same
// moment all land in one room, round after round.
func TestRouteConcurrentOneRoom(t *testing.T) {
	b := New(Config{AutoCreate: true, DefaultUser: "u-default"}, nil, nil)
	b.manualClock = true
	const callers, rounds = 20, 50
	for round := range rounds {
		number := fmt.Sprintf("+1555%04d", round)
		start := make(chan struct{})
		got := make([]*Conference, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				<-start
				got[i], errs[i] = b.Route(number, "")
			})
		}
		close(start)
		wg.Wait()
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("round %d caller %d: %v", round, i, errs[i])
			}
			if got[i] != got[0] {
				t.Fatalf("round %d: callers landed in %s and %s", round, got[0].ID(), got[i].ID())
			}
		}
		if n := liveHolding(b, number); n != 1 {
			t.Fatalf("round %d: %d live conferences hold %s", round, n, number)
		}
	}
}

// TestRouteHammer: routing, creating and completing on the same few
// numbers from many goroutines (run with -race) never leaves two live
// conferences holding one number, and a completed conference leaves the
// index.
func TestRouteHammer(t *testing.T) {
	b := New(Config{AutoCreate: true, DefaultUser: "u-default"}, nil, nil)
	b.manualClock = true
	numbers := []string{"100", "200", "300"}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			<-start
			for i := range 300 {
				n := numbers[(g+i)%len(numbers)]
				switch i % 5 {
				case 0:
					if c, err := b.Route(n, ""); err == nil {
						c.Complete()
					}
				case 1:
					_, err := b.CreateConference(ConferenceOptions{UserID: "u-api", From: n})
					if err != nil && !errors.Is(err, ErrNumberInUse) {
						t.Errorf("create: %v", err)
					}
				default:
					if _, err := b.Route(n, ""); err != nil {
						t.Errorf("route: %v", err)
					}
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for _, n := range numbers {
		if k := liveHolding(b, n); k > 1 {
			t.Errorf("%d live conferences hold %s", k, n)
		}
		if c, err := b.Route(n, ""); err != nil || c.State() == StateCompleted {
			t.Errorf("route %s after the hammer: %v, %v", n, c, err)
		}
	}
	for _, c := range b.Conferences("u-default") {
		c.Complete()
	}
	for _, c := range b.Conferences("u-api") {
		c.Complete()
	}
	b.mu.Lock()
	left := len(b.numbers)
	b.mu.Unlock()
	if left != 0 {
		t.Errorf("%d numbers left in the index after every conference completed", left)
	}
}

// TestNumberHeldAcrossUsers: a live conference's number is its owner's
// alone; once the conference completes the number is free again.
func TestNumberHeldAcrossUsers(t *testing.T) {
	b := New(Config{AutoCreate: true, DefaultUser: "u-default"}, nil, nil)
	b.manualClock = true
	alice, err := b.CreateConference(ConferenceOptions{UserID: "alice", From: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateConference(ConferenceOptions{UserID: "bob", From: "1000"}); !errors.Is(err, ErrNumberInUse) {
		t.Fatalf("bob took alice's live number: %v", err)
	}
	if _, err := b.CreateConference(ConferenceOptions{UserID: "alice", From: "1000"}); !errors.Is(err, ErrNumberInUse) {
		t.Fatalf("a second live room on one number: %v", err)
	}
	if c, err := b.Route("1000", ""); err != nil || c != alice {
		t.Fatalf("a caller to 1000 landed in %v (%v), want alice's room", c, err)
	}
	alice.Complete()
	bob, err := b.CreateConference(ConferenceOptions{UserID: "bob", From: "1000"})
	if err != nil {
		t.Fatalf("the number stayed held after its conference completed: %v", err)
	}
	if c, err := b.Route("1000", ""); err != nil || c != bob {
		t.Fatalf("a caller to 1000 landed in %v (%v), want bob's room", c, err)
	}
	// Conferences without a number hold none.
	for range 2 {
		if _, err := b.CreateConference(ConferenceOptions{UserID: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
}

// liveHolding counts the live conferences whose from is number.
func liveHolding(b *Bridge, number string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.confs {
		if c.from == number && c.State() != StateCompleted {
			n++
		}
	}
	return n
}

// TestRoutedCompletesAbandonedRoom: a room Route created is completed when
// every call routed to it has given up without joining, and not before;
// its number then makes a new room. A room created through the API, or one
// a call joined, is never completed by Routed.
func TestRoutedCompletesAbandonedRoom(t *testing.T) {
	b := New(Config{AutoCreate: true, DefaultUser: "u-default"}, nil, nil)
	b.manualClock = true
	first, err := b.Route("7000", "")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.Route("7000", ""); err != nil || again != first {
		t.Fatalf("second route: %v, %v", again, err)
	}
	b.Routed(first)
	if first.State() != StateCreated {
		t.Fatalf("completed while a call was still on its way in: %s", first.State())
	}
	b.Routed(first)
	if first.State() != StateCompleted {
		t.Fatalf("abandoned room is %s", first.State())
	}
	if next, err := b.Route("7000", ""); err != nil || next == first {
		t.Fatalf("the number did not make a new room: %v", err)
	} else {
		b.Routed(next)
	}
	b.Routed(first) // once too often: no harm

	api, err := b.CreateConference(ConferenceOptions{UserID: "u-default", From: "7100"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Route("7100", ""); err != nil || got != api {
		t.Fatalf("route to the API's room: %v", err)
	}
	b.Routed(api)
	if api.State() != StateCreated {
		t.Errorf("the API's room is %s after a failed call", api.State())
	}
	if len(b.unjoined) != 0 {
		t.Errorf("%d rooms still counted", len(b.unjoined))
	}
}
