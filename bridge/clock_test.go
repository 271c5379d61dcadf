package bridge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"chorus/media"
)

// TestClock: small rooms are mixed by the shared clock, a room that grows
// past dedicatedMembers moves to its own goroutine and goes on mixing, and
// every clock goroutine ends when the rooms complete.
func TestClock(t *testing.T) {
	b := New(Config{MaxMembers: 100}, nil, nil)
	mk := func() *room {
		// No number: two rooms live at once.
		conf, err := b.CreateConference(ConferenceOptions{UserID: "u-test"})
		if err != nil {
			t.Fatal(err)
		}
		return &room{t: t, b: b, conf: conf}
	}
	small, big := mk(), mk()
	a := small.join(media.PCMU, nil)
	bb := small.join(media.PCMU, nil)
	talker := big.join(media.PCMU, nil)
	listener := big.join(media.PCMU, nil)
	for range dedicatedMembers {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := media.NewSession(conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sess.Close() })
		sess.SetParams(media.Params{Remote: listener.remote, Codec: media.PCMU, Direction: media.RecvOnly})
		call := b.NewCall("u-test", "x", "x", DirectionIn, &fakeLeg{sess: sess}, Callback{})
		call.Answered()
		if _, err := big.conf.AddMember(call, MemberOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Real time: the peers send every 20 ms from a goroutine of the test.
	src := tone(500, -20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(TickInterval)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				talker.source = src
				talker.send()
				a.send()
				bb.send()
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		big.conf.mu.Lock()
		dedicated := big.conf.stop != nil
		big.conf.mu.Unlock()
		if dedicated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a room of 66 members never got its own mixer goroutine")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond)
	listener.rec = listener.rec[:0]
	for range 40 {
		listener.receive()
		time.Sleep(10 * time.Millisecond)
	}
	if got := level(listener.rec, 500); math.Abs(got+20) > 1.5 {
		t.Errorf("listener in the big room hears the talker at %.1f dBFS, want -20", got)
	}
	cancel()
	<-done
	a.receive() // what the shared clock sent it meanwhile
	if len(a.rec) == 0 {
		t.Error("the small room's members receive nothing from the shared clock")
	}
	small.conf.Complete()
	big.conf.Complete()
	waited := make(chan struct{})
	go func() { b.loops.wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		t.Fatal("clock goroutines still running after every room completed")
	}
}

// TestSleeper: in each of its ways of sleeping, the sleeper never wakes
// before its time, a cancelled context ends a long sleep promptly, and a
// sleep after the cancel reports no tick.
func TestSleeper(t *testing.T) {
	for _, mode := range []string{"realtime", "normal"} {
		t.Run(mode, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- sleeperRun(mode) }() // a goroutine of its own: it may lock its thread
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func sleeperRun(mode string) error {
	want := PriorityNormal
	if mode == "realtime" {
		want = PriorityRealtime
	}
	s, _ := newSleeper(want)
	defer s.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 5 {
		at := time.Now().Add(5 * time.Millisecond)
		if !s.until(ctx, at) {
			return fmt.Errorf("sleep ended early")
		}
		if early := time.Until(at); early > 0 {
			return fmt.Errorf("woke %v before its time", early)
		}
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	if s.until(ctx, time.Now().Add(time.Hour)) {
		return fmt.Errorf("an hour's sleep reported a tick")
	}
	if d := time.Since(start); d > 10*time.Second {
		return fmt.Errorf("cancel took %v", d)
	}
	if s.until(ctx, time.Now().Add(time.Millisecond)) {
		return fmt.Errorf("a sleep after cancel reported a tick")
	}
	return nil
}

// TestRaisePriority: a refused priority falls back to the next lower one
// and the first refusal is reported; normal is never asked for.
func TestRaisePriority(t *testing.T) {
	refuse := func(above Priority) func(Priority) error {
		return func(p Priority) error {
			if p > above {
				return errors.New("operation not permitted")
			}
			return nil
		}
	}
	for _, tc := range []struct {
		want, allowed, got Priority
		refused            bool
	}{
		{PriorityRealtime, PriorityRealtime, PriorityRealtime, false},
		{PriorityRealtime, PriorityHigh, PriorityHigh, true},
		{PriorityRealtime, PriorityNormal, PriorityNormal, true},
		{PriorityHigh, PriorityHigh, PriorityHigh, false},
		{PriorityNormal, PriorityNormal, PriorityNormal, false},
	} {
		got, err := raisePriority(tc.want, refuse(tc.allowed))
		if got != tc.got || (err != nil) != tc.refused {
			t.Errorf("want %v allowed %v: got %v, %v", tc.want, tc.allowed, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.want.String()) {
			t.Errorf("refusal %q does not name %v", err, tc.want)
		}
	}
	for _, s := range []string{"normal", "high", "realtime", "RealTime"} {
		if p, err := ParsePriority(s); err != nil || !strings.EqualFold(p.String(), s) {
			t.Errorf("ParsePriority(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePriority("fast"); err == nil {
		t.Error("ParsePriority(fast) accepted")
	}
}

// TestPacerAlign: an aligned pacer's ticks fall on its phase, and the
// clock's shards are spread over the tick.
func TestPacerAlign(t *testing.T) {
	b := New(Config{}, nil, nil)
	p := newPacer(context.Background(), b)
	defer p.stop()
	at := time.Now().Add(-3*TickInterval + 7*time.Millisecond)
	p.align(at)
	if off := p.next.Sub(at) % TickInterval; off != 0 {
		t.Errorf("next is %v off the phase", off)
	}
	if d := time.Until(p.next); d > 0 || d <= -TickInterval {
		t.Errorf("last aligned time is %v from now, want within the past tick", d)
	}
	k := b.clock
	if n := len(k.shards); n > 1 && k.shards[1].phase != TickInterval/time.Duration(n) {
		t.Errorf("shard 1 phase %v with %d shards", k.shards[1].phase, n)
	}
}
