package bridge

import (
	"context"
	"math"
	"net"
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
		conf, err := b.CreateConference(ConferenceOptions{UserID: "u-test", From: "x"})
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
	go func() { b.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		t.Fatal("clock goroutines still running after every room completed")
	}
}
