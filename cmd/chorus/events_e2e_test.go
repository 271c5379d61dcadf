package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// evStream is a client of GET /v1/users/{userId}/events that keeps what it
// reads.
type evStream struct {
	t      *testing.T
	cancel context.CancelFunc
	ended  chan struct{}
	mu     sync.Mutex
	evs    []evItem
}

// evItem is one event: its id and the raw JSON body, decoded.
type evItem struct {
	id   string
	raw  string
	data map[string]any
}

func openEvStream(t *testing.T, c client, lastID string) *evStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/events", nil)
	req.SetBasicAuth(c.token, c.secret)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("open event stream: %v %v", resp, err)
	}
	s := &evStream{t: t, cancel: cancel, ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var it evItem
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && it.raw != "":
				_ = json.Unmarshal([]byte(it.raw), &it.data)
				s.mu.Lock()
				s.evs = append(s.evs, it)
				s.mu.Unlock()
				it = evItem{}
			case strings.HasPrefix(line, "id: "):
				it.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				it.raw = line[6:]
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *evStream) close() {
	s.cancel()
	<-s.ended
}

func (s *evStream) events() []evItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]evItem(nil), s.evs...)
}

// wait returns the first event that matches, waiting up to timeout.
func (s *evStream) wait(what string, timeout time.Duration, match func(map[string]any) bool) evItem {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range s.events() {
			if match(ev.data) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s event within %v; have:\n%s", what, timeout, evSummary(s.events()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func evSummary(evs []evItem) string {
	var sb strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&sb, "  %s %s\n", ev.id, ev.raw)
	}
	return sb.String()
}

// evIs matches an event by type and member (and, for members, a field).
func evIs(typ, member, key string, val any) func(map[string]any) bool {
	return func(d map[string]any) bool {
		return d["eventType"] == typ && (member == "" || d["memberId"] == member) && (key == "" || d[key] == val)
	}
}

// TestEventStreamCall: a stream opened before a call sees, in order, the
// phone join, start talking (a real tone through the mixer's noise
// gate), get muted and leave; a second client that disconnects midway and
// reconnects with Last-Event-ID ends up with exactly the same events; Bob's
// stream carries none of it.
func TestEventStreamCall(t *testing.T) {
	r := startChorus(t, "33000-33099")
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	bob := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-bob", r.HTTP), token: "bob-token", secret: "bob-secret"}
	whole := openEvStream(t, alice, "")
	part1 := openEvStream(t, alice, "")
	bobs := openEvStream(t, bob, "")

	resp, body := alice.do("POST", "/conferences", map[string]any{"from": "7301"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	talker, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7301"})
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	joined := whole.wait("join", 10*time.Second, evIs("conference-member", "", "state", "active"))
	member := joined.data["memberId"].(string)

	talker.SetSource(audiotest.ToneSource(440, -10, 8000))
	whole.wait("talking", 10*time.Second, evIs("talking", member, "talking", true))

	if resp, body := alice.do("POST", "/conferences/"+joined.data["conferenceId"].(string)+"/members/"+member,
		map[string]any{"mute": true}); resp.StatusCode != 200 {
		t.Fatalf("mute: %d %s", resp.StatusCode, body)
	}
	muted := part1.wait("mute", 10*time.Second, evIs("conference-member", member, "mute", true))
	part1.close()

	if err := talker.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	whole.wait("leave", 10*time.Second, evIs("conference-member", member, "state", "completed"))
	last := whole.wait("hangup", 10*time.Second, evIs("hangup", "", "", nil))

	// Order: join, talking, mute, leave.
	seq := []func(map[string]any) bool{evIs("conference-member", member, "state", "active"),
		evIs("talking", member, "talking", true), evIs("conference-member", member, "mute", true),
		evIs("conference-member", member, "state", "completed")}
	i := 0
	for _, ev := range whole.events() {
		if i < len(seq) && seq[i](ev.data) {
			i++
		}
	}
	if i != len(seq) {
		t.Errorf("join, talking, mute, leave not in order (matched %d):\n%s", i, evSummary(whole.events()))
	}

	// The client that left after the mute resumes and misses nothing.
	part2 := openEvStream(t, alice, part1.events()[len(part1.events())-1].id)
	part2.wait("hangup", 10*time.Second, func(d map[string]any) bool { return d["eventType"] == "hangup" })
	var got []evItem
	for _, ev := range append(part1.events(), part2.events()...) {
		got = append(got, ev)
		if ev.id == last.id {
			break
		}
	}
	want := whole.events()
	want = want[:len(got)]
	for k := range got {
		if got[k].id != want[k].id || got[k].raw != want[k].raw {
			t.Fatalf("resumed client differs at %d:\n got %s %s\nwant %s %s", k, got[k].id, got[k].raw, want[k].id, want[k].raw)
		}
	}
	if muted.id == "" || got[len(got)-1].id != last.id {
		t.Errorf("ids: mute %q, last %q", muted.id, got[len(got)-1].id)
	}

	// Bob's stream stayed silent.
	if evs := bobs.events(); len(evs) != 0 {
		t.Errorf("Bob's stream carries events:\n%s", evSummary(evs))
	}
}
