package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/bridge"
)

// sseEvent is one event read off a stream.
type sseEvent struct {
	id   string
	data map[string]any
}

// sseClient reads a stream in the background and keeps what it read.
type sseClient struct {
	t        *testing.T
	resp     *http.Response
	cancel   context.CancelFunc
	mu       sync.Mutex
	evs      []sseEvent
	comments []string
	ended    chan struct{}
}

// openSSE opens u's event stream at base (the server's URL), resuming
// after lastID when it is not empty.
func openSSE(t *testing.T, base string, u User, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/users/"+u.ID+"/events", nil)
	req.SetBasicAuth(u.Token, u.Secret)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("events: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	c := &sseClient{t: t, resp: resp, cancel: cancel, ended: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.ended
}

func (c *sseClient) read() {
	defer close(c.ended)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.data != nil {
				c.mu.Lock()
				c.evs = append(c.evs, ev)
				c.mu.Unlock()
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			c.mu.Lock()
			c.comments = append(c.comments, strings.TrimSpace(line[1:]))
			c.mu.Unlock()
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			ev.data = map[string]any{}
			if err := json.Unmarshal([]byte(line[6:]), &ev.data); err != nil {
				c.t.Errorf("data is not JSON: %q", line)
			}
		}
	}
}

func (c *sseClient) events() []sseEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sseEvent(nil), c.evs...)
}

func (c *sseClient) commentsSoFar() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.comments...)
}

// waitFor waits until an event matches and returns it.
func (c *sseClient) waitFor(what string, match func(sseEvent) bool) sseEvent {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range c.events() {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no %s event; have %s", what, summary(c.events()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func summary(evs []sseEvent) string {
	var sb strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&sb, "\n  %s %v/%v mute=%v talking=%v", ev.id, ev.data["eventType"], ev.data["state"], ev.data["mute"], ev.data["talking"])
	}
	return sb.String()
}

// memberEv matches a conference-member event of member in state with
// mute (any mute for a completed member: leaving resets it).
func memberEv(member, state string, mute bool) func(sseEvent) bool {
	return func(ev sseEvent) bool {
		return ev.data["eventType"] == bridge.EventConferenceMember && ev.data["memberId"] == member &&
			ev.data["state"] == state && (ev.data["mute"] == mute || state == bridge.StateCompleted)
	}
}

// newStreamEnv is newEnv with an event stream behind GET /events.
func newStreamEnv(t *testing.T, scfg EventStreamConfig) (*env, *EventStream) {
	t.Helper()
	var es *EventStream
	e := newEnv(t, func(bc *bridge.Config, c *Config) {
		// The stream needs the bridge, made after the options: it is
		// attached below, before any traffic.
		es = NewEventStream(scfg)
		c.Events = es
	})
	es.cfg.Bridge = e.b
	es.cfg.Dispatcher = NewDispatcher(DispatcherConfig{Bridge: e.b, BaseURL: e.srv.URL})
	// As the binary wires it: the outbox (memory only here) numbers the
	// events, then hands them to the stream.
	o := NewOutbox(OutboxConfig{Bridge: e.b, Dispatcher: es.cfg.Dispatcher, Next: []bridge.EventSink{es, e.events}})
	if _, err := o.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	o.Start()
	e.b.SetEventSink(o)
	t.Cleanup(es.Close) // runs before the server's Close, which waits for streams
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = o.Close(ctx)
	})
	return e, es
}

// TestEventStreamOrderResumeAndUsers: a stream opened before a conference
// sees its events in order, with the bodies callbacks carry; a client
// that disconnects and comes back with Last-Event-ID gets exactly what it
// missed; Bob's stream sees none of Alice's events.
func TestEventStreamOrderResumeAndUsers(t *testing.T) {
	e, _ := newStreamEnv(t, EventStreamConfig{})
	a1 := openSSE(t, e.srv.URL, alice, "")
	b := openSSE(t, e.srv.URL, bob, "")

	conf := e.createConf(alice)
	member, call, _ := e.addMember(alice, conf, "")
	created := a1.waitFor("conference created", func(ev sseEvent) bool {
		return ev.data["eventType"] == bridge.EventConference && ev.data["state"] == bridge.StateCreated
	})
	if created.data["conferenceId"] != conf || created.data["conferenceUri"] != e.srv.URL+"/v1/users/"+alice.ID+"/conferences/"+conf {
		t.Errorf("created event %v", created.data)
	}
	joined := a1.waitFor("member active", memberEv(member, bridge.StateActive, false))
	if joined.data["callId"] != call.ID() || joined.data["activeMembers"] != 1.0 {
		t.Errorf("join event %v", joined.data)
	}
	a1.close()

	// While a1 is away: mute, then remove.
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+member, `{"mute":true}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+member, `{"state":"completed"}`).mustOK(t)
	e.events.waitFor(t, "member completed", func(ev bridge.Event) bool {
		return ev.Type == bridge.EventConferenceMember && ev.State == bridge.StateCompleted
	})

	a2 := openSSE(t, e.srv.URL, alice, joined.id)
	a2.waitFor("member completed", memberEv(member, bridge.StateCompleted, true))
	got := a2.events()
	// What a2 got continues after a1's last without a repeat: each id is
	// the event's eventId, in order.
	prev := joined.id
	for _, ev := range got {
		if ev.data["eventType"] == EventReset {
			t.Fatalf("reset on a resume within the history: %v", ev.data)
		}
		if ev.data["eventId"] != nil && ev.id != ev.data["eventId"] {
			t.Errorf("event id %s, eventId %v", ev.id, ev.data["eventId"])
		}
		if idNum(t, ev.id) <= idNum(t, prev) {
			t.Errorf("event id %s after %s", ev.id, prev)
		}
		prev = ev.id
	}
	// In order: joined (before), muted, completed.
	order := []func(sseEvent) bool{memberEv(member, bridge.StateActive, true), memberEv(member, bridge.StateCompleted, true)}
	i := 0
	for _, ev := range got {
		if i < len(order) && order[i](ev) {
			i++
		}
	}
	if i != len(order) {
		t.Errorf("resumed stream lacks mute then leave in order:%s", summary(got))
	}
	// Everything a1 had before it left is not sent again.
	for _, ev := range got {
		if ev.data["eventType"] == bridge.EventConference && ev.data["state"] == bridge.StateCreated {
			t.Errorf("resume repeated an event from before Last-Event-ID: %v", ev.data)
		}
	}

	// Bob heard nothing of it (his stream is alive: an event of his own arrives).
	e.createConf(bob)
	b.waitFor("Bob's own conference", func(ev sseEvent) bool { return ev.data["eventType"] == bridge.EventConference })
	for _, ev := range b.events() {
		if strings.Contains(fmt.Sprint(ev.data), conf) || ev.data["conferenceId"] == conf || ev.data["callId"] == call.ID() {
			t.Errorf("Bob's stream carries Alice's event %v", ev.data)
		}
	}
	if n := len(b.events()); n != 1 {
		t.Errorf("Bob's stream has %d events, want his one:%s", n, summary(b.events()))
	}
	// And Alice's credentials do not open Bob's stream.
	e.do(&alice, "GET", "/v1/users/"+bob.ID+"/events", "").expectError(t, 401, "user-access-denied")
	e.do(nil, "GET", "/v1/users/"+alice.ID+"/events", "").expectError(t, 401, "unauthorized")
}

// nextID is the stream-only id after id ("<prefix><n>.<boot>.<k>").
func nextID(t *testing.T, id string) string {
	t.Helper()
	i := strings.LastIndexByte(id, '.')
	var n int
	if _, err := fmt.Sscan(id[i+1:], &n); i < 0 || err != nil {
		t.Fatalf("event id %q", id)
	}
	return fmt.Sprintf("%s%d", id[:i+1], n+1)
}

// idNum is the number of an eventId ("e-<boot>-<n>" or "e-<n>").
func idNum(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(id[strings.LastIndexByte(id, '-')+1:], &n); err != nil {
		t.Fatalf("event id %q", id)
	}
	return n
}

// TestEventStreamReset: a Last-Event-ID older than the history, or not of
// this server, gets a reset event first and then only new events.
func TestEventStreamReset(t *testing.T) {
	e, es := newStreamEnv(t, EventStreamConfig{History: 4})
	// History is kept from a user's first stream on.
	openSSE(t, e.srv.URL, alice, "").close()
	id := func(n int64) string { return es.formatID(evKey{n: n}) }
	for i := range 10 {
		es.append(alice.ID, id(int64(i+1)), []byte(fmt.Sprintf(`{"eventType":"x","n":%d}`, i)))
	}
	// Too old; another server's; not an id; not given yet; a stream-only
	// id of another process (a restart's).
	other := strings.Replace(es.formatID(evKey{n: 7, k: 1}), "."+es.boot+".", ".zz.", 1)
	for _, last := range []string{id(2), "zz-3", "garbage", id(99), other} {
		c := openSSE(t, e.srv.URL, alice, last)
		ev := c.waitFor("reset", func(sseEvent) bool { return true })
		if ev.data["eventType"] != EventReset || ev.id != id(10) {
			t.Errorf("Last-Event-ID %s: first event %s %v, want a reset with id %s", last, ev.id, ev.data, id(10))
		}
		c.close()
		if n := len(c.events()); n != 1 {
			t.Errorf("Last-Event-ID %s: %d events after the reset, want none:%s", last, n-1, summary(c.events()))
		}
	}
	// The oldest kept boundary: the id just before the 4 kept resumes.
	c := openSSE(t, e.srv.URL, alice, id(6))
	c.waitFor("event 10", func(ev sseEvent) bool { return ev.id == id(10) })
	if evs := c.events(); len(evs) != 4 || evs[0].id != id(7) {
		t.Errorf("resume from 6 with 7..10 kept:%s", summary(evs))
	}
}

// TestEventStreamSlowClient: a client that falls Buffer events behind is
// disconnected with a comment line and counted, and it holds up neither
// the user's other clients nor the publisher.
func TestEventStreamSlowClient(t *testing.T) {
	t.Run("goodbye", func(t *testing.T) {
		// A buffer of one: a burst of events outruns the handler's writes.
		e, es := newStreamEnv(t, EventStreamConfig{Buffer: 1})
		c := openSSE(t, e.srv.URL, alice, "")
		eventually(t, "the client subscribed", func() bool { return es.Stats().Clients == 1 })
		for n := 0; es.Stats().Slow == 0; n++ {
			if n == 100000 {
				t.Fatal("a buffer of one kept up with 100,000 events in a burst")
			}
			es.append(alice.ID, "", []byte(`{"eventType":"filler"}`))
		}
		select {
		case <-c.ended:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow client's stream did not end")
		}
		if cs := c.commentsSoFar(); len(cs) == 0 || !strings.HasPrefix(cs[len(cs)-1], "too slow: disconnected") {
			t.Errorf("comments %q, want a goodbye last", cs)
		}
		// It resumes where it stopped. On a loaded machine the burst may
		// outrun even the first write, and the goodbye comes before any
		// event: there is then no id to resume from.
		evs := c.events()
		if len(evs) == 0 {
			t.Log("disconnected before its first event; resumption not checked")
			return
		}
		last := evs[len(evs)-1].id
		es.append(alice.ID, "", []byte(`{"eventType":"after"}`))
		c2 := openSSE(t, e.srv.URL, alice, last)
		c2.waitFor("after", func(ev sseEvent) bool { return ev.data["eventType"] == "after" })
		if got := c2.events()[0]; got.id != nextID(t, last) {
			t.Errorf("resumed at %s after %s", got.id, last)
		}
	})
	t.Run("others", func(t *testing.T) {
		e, es := newStreamEnv(t, EventStreamConfig{Buffer: 64})
		fast := openSSE(t, e.srv.URL, alice, "")
		// A subscriber that never reads.
		stuck, _, err := es.subscribe(alice.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "two clients", func() bool { return es.Stats().Clients == 2 })
		// Batches within the buffer, each read by the fast client before
		// the next: the stuck one falls behind, the fast one never does.
		const n, batch = 320, 32
		var publishing time.Duration
		for i := 0; i < n; i += batch {
			start := time.Now()
			for j := i; j < i+batch; j++ {
				es.Publish(bridge.Event{Type: "filler", UserID: alice.ID, CallID: fmt.Sprint(j)})
			}
			publishing += time.Since(start)
			last := fmt.Sprint(i + batch - 1)
			fast.waitFor("batch", func(ev sseEvent) bool { return ev.data["callId"] == last })
		}
		if publishing > time.Second {
			t.Errorf("%d Publish calls took %v with a subscriber stuck", n, publishing)
		}
		select {
		case <-stuck.gone:
		case <-time.After(10 * time.Second):
			t.Fatal("the stuck subscriber was not dropped")
		}
		// The fast client got every event, in order.
		fast.waitFor("the last", func(ev sseEvent) bool { return ev.data["callId"] == fmt.Sprint(n-1) })
		for i, ev := range fast.events() {
			if ev.data["callId"] != fmt.Sprint(i) {
				t.Fatalf("fast client's event %d is %v", i, ev.data)
			}
		}
		if s := es.Stats(); s.Slow != 1 || s.Dropped != 0 {
			t.Errorf("stats %+v, want one slow client and nothing dropped", s)
		}
	})
}

// TestEventStreamOutlivesServerTimeouts: a stream lasts longer than the
// server's read and write timeouts, with heartbeats while idle.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	b := bridge.New(bridge.Config{}, nil, nil)
	es := NewEventStream(EventStreamConfig{Bridge: b, Heartbeat: 100 * time.Millisecond})
	srv := httptest.NewUnstartedServer(New(Config{Users: []User{alice}, Bridge: b, Events: es}))
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	defer es.Close()
	c := openSSE(t, srv.URL, alice, "")
	start := time.Now()
	for len(c.commentsSoFar()) < 10 || time.Since(start) < time.Second {
		select {
		case <-c.ended:
			t.Fatalf("stream ended after %v: %v", time.Since(start), c.commentsSoFar())
		case <-time.After(20 * time.Millisecond):
		}
	}
	es.append(alice.ID, "", []byte(`{"eventType":"late"}`))
	c.waitFor("an event after the timeouts", func(ev sseEvent) bool { return ev.data["eventType"] == "late" })
}

// TestEventStreamLimit: a user's streams beyond MaxPerUser are refused;
// closing one makes room.
func TestEventStreamLimit(t *testing.T) {
	e, es := newStreamEnv(t, EventStreamConfig{MaxPerUser: 2})
	c1 := openSSE(t, e.srv.URL, alice, "")
	openSSE(t, e.srv.URL, alice, "")
	e.as(alice, "GET", "/events", "").expectError(t, 403, "max-event-streams")
	openSSE(t, e.srv.URL, bob, "") // Bob's own limit
	c1.close()
	eventually(t, "the closed stream released", func() bool { return es.Stats().Clients == 2 })
	openSSE(t, e.srv.URL, alice, "")
}

// FuzzLastEventID: any Last-Event-ID resumes within the history or gets
// a reset, never a panic, a repeat or more than the history holds.
func FuzzLastEventID(f *testing.F) {
	es := NewEventStream(EventStreamConfig{History: 8, MaxPerUser: 1 << 30})
	defer es.Close()
	es.followIDs("e-", 0)
	for i := range 20 {
		es.append("u", "", []byte(`{"eventType":"x"}`))
		if i%3 == 0 {
			es.append("u", fmt.Sprintf("e-%d", i+1), []byte(`{"eventType":"y"}`))
		}
	}
	// "B" stands for this process's boot mark, which differs per run, so
	// that corpus entries can name ids of the history.
	for _, s := range []string{"", "e-0", "e-0.B.1", "e-16.B.1", "e-19.B.1", "e-19.B.2", "e-16", "e-19", "e-20", "e-", "e-18446744073709551615",
		"e--1", "-", "a-b-c", " e-13 ", "e-+13", "e-013", "e-13.B.01", "e-13.B.0", "e-13.B.", "e-13.x.1", "e-13..1", "e-13.B.1.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		id = strings.ReplaceAll(id, "B", es.boot)
		sub, backlog, err := es.subscribe("u", id)
		if err != nil {
			t.Fatal(err)
		}
		defer es.unsubscribe("u", sub)
		if len(backlog) > 8 {
			t.Fatalf("Last-Event-ID %q: backlog of %d, history 8", id, len(backlog))
		}
		if strings.TrimSpace(id) == "" && len(backlog) != 0 {
			t.Fatalf("no Last-Event-ID but a backlog of %d", len(backlog))
		}
		from, known := es.parseID(strings.TrimSpace(id))
		for i, b := range backlog {
			if !strings.HasPrefix(string(b), "id: ") || !strings.HasSuffix(string(b), "\n\n") {
				t.Fatalf("frame %q", b)
			}
			fid, _, _ := strings.Cut(strings.TrimPrefix(string(b), "id: "), "\n")
			key, ok := es.parseID(fid)
			if !ok {
				t.Fatalf("frame id %q does not parse", fid)
			}
			if strings.Contains(string(b), `"eventType":"reset"`) {
				if i != 0 {
					t.Fatalf("a reset after %d frames", i)
				}
				continue
			}
			// A resume: only frames after the id given, in order.
			if !known || key.cmp(from) <= 0 {
				t.Fatalf("Last-Event-ID %q: frame %s resent", id, fid)
			}
			from = key
		}
	})
}

// TestEventStreamKeepsNothingUnwatched: a user who never opened a stream
// costs the stream nothing: its events are neither rendered nor kept.
func TestEventStreamKeepsNothingUnwatched(t *testing.T) {
	e, es := newStreamEnv(t, EventStreamConfig{History: 4})
	e.createConf(bob)
	es.append(bob.ID, "", []byte(`{"eventType":"x"}`))
	if es.watched(bob.ID, "") {
		t.Fatal("an unwatched user's events were kept")
	}
	c := openSSE(t, e.srv.URL, bob, "")
	defer c.close()
	if !es.watched(bob.ID, "") {
		t.Fatal("a user with a stream is not watched")
	}
}
