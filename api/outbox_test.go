package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/store"
)

// storeEnv is an env whose bridge's events go through an outbox into a
// store, as the binary wires them.
type storeEnv struct {
	*env
	st     store.Store
	outbox *Outbox
	d      *Dispatcher
}

// newStoreEnv builds an env over st (a fresh one in a temporary directory
// when nil); the events also reach e.events, after the outbox.
func newStoreEnv(t *testing.T, st store.Store, opts ...func(*bridge.Config)) *storeEnv {
	t.Helper()
	if st == nil {
		s, err := store.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		st = s
	}
	e := &env{t: t, events: &eventLog{}, audio: &fakeAudio{ms: 200}, dialer: &fakeDialer{t: t}}
	bcfg := bridge.Config{DefaultUser: alice.ID, AutoCreate: true}
	for _, o := range opts {
		o(&bcfg)
	}
	e.b = bridge.New(bcfg, nil, nil)
	e.b.SetDialer(e.dialer)
	d := NewDispatcher(DispatcherConfig{Bridge: e.b, Targets: allowLoopback(), Backoff: 10 * time.Millisecond})
	o := NewOutbox(OutboxConfig{Store: st, Bridge: e.b, Dispatcher: d, Next: []bridge.EventSink{e.events}})
	if _, err := o.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	o.Start()
	e.b.SetEventSink(o)
	e.srv = httptest.NewServer(New(Config{Users: []User{alice, bob}, Bridge: e.b, Audio: e.audio, AnswerWait: 2 * time.Second,
		Targets: allowLoopback(), Store: st, Outbox: o}))
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.b.HangupAll(ctx, "test-over")
		_ = o.Close(ctx)
	})
	return &storeEnv{env: e, st: st, outbox: o, d: d}
}

// TestStoredCrossUser: a conference, member and call of Bob that only the
// store holds (a previous run's) are, for Alice, exactly like ids that
// never existed; Bob reads them.
func TestStoredCrossUser(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first := newStoreEnv(t, st)
	bConf := first.createConf(bob)
	bMember, bCall, _ := first.addMember(bob, bConf, "")
	bGather := first.mustCreate(first.as(bob, "POST", "/calls/"+bCall.ID()+"/gather", `{"maxDigits":2,"tag":"g"}`),
		"/v1/users/"+bob.ID+"/calls/"+bCall.ID()+"/gather")
	bCall.Digit('4')
	bCall.Digit('2')
	first.events.waitFor(t, "the gather's end", isGather(bridge.GatherMaxDigits, "42"))
	gatherPath := "/calls/" + bCall.ID() + "/gather/" + bGather
	gatherBefore := first.as(bob, "GET", gatherPath, "")
	first.as(bob, "POST", "/conferences/"+bConf, `{"state":"completed"}`).mustOK(t)
	eventually(t, "the call's end", func() bool { return bCall.State() == bridge.CallCompleted })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.outbox.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	e := newStoreEnv(t, st) // a new process on the same store
	for _, p := range []string{"/conferences/" + bConf, "/conferences/" + bConf + "/members", "/conferences/" + bConf + "/members/" + bMember, "/calls/" + bCall.ID(),
		gatherPath} {
		if r := e.as(bob, "GET", p, ""); r.status != 200 {
			t.Errorf("Bob GET %s from the store: %d %s", p, r.status, r.body)
		}
	}
	// The gather reads the same from the store (its URLs name the new
	// server's address); stopping it again changes nothing.
	gatherAfter := e.as(bob, "GET", gatherPath, "")
	if strings.ReplaceAll(string(gatherBefore.body), first.srv.URL, "") != strings.ReplaceAll(string(gatherAfter.body), e.srv.URL, "") {
		t.Errorf("a gather from the store: %s, before %s", gatherAfter.body, gatherBefore.body)
	}
	e.as(bob, "POST", gatherPath, `{"state":"completed"}`).mustOK(t)
	if r := e.as(bob, "GET", "/calls/"+bCall.ID()+"/gather/gather-doesnotexist000000000", ""); r.status != 404 ||
		!strings.Contains(string(r.body), "gather-not-found") {
		t.Errorf("an unknown gather of a stored call: %d %s", r.status, r.body)
	}
	ghost := strings.NewReplacer(bConf, "conf-doesnotexist0000000000", bMember, "member-doesnotexist000000000", bCall.ID(), "c-doesnotexist00000000000",
		bGather, "gather-doesnotexist000000000")
	norm := strings.NewReplacer(bConf, "<c>", bMember, "<m>", bCall.ID(), "<call>", "conf-doesnotexist0000000000", "<c>",
		"member-doesnotexist000000000", "<m>", "c-doesnotexist00000000000", "<call>", bGather, "<g>", "gather-doesnotexist000000000", "<g>")
	for _, rq := range []struct{ method, path, body string }{
		{"GET", "/conferences/" + bConf, ""}, {"POST", "/conferences/" + bConf, `{"mute":true}`},
		{"GET", "/conferences/" + bConf + "/members", ""}, {"GET", "/conferences/" + bConf + "/members/" + bMember, ""},
		{"POST", "/conferences/" + bConf + "/members/" + bMember, `{}`}, {"GET", "/calls/" + bCall.ID(), ""},
		{"GET", gatherPath, ""}, {"POST", gatherPath, `{"state":"completed"}`},
	} {
		r1 := e.as(alice, rq.method, rq.path, rq.body)
		r2 := e.as(alice, rq.method, ghost.Replace(rq.path), rq.body)
		if r1.status != 404 || r1.status != r2.status || norm.Replace(string(r1.body)) != norm.Replace(string(r2.body)) {
			t.Errorf("Alice %s %s: %d %s, a ghost id: %d %s", rq.method, rq.path, r1.status, r1.body, r2.status, r2.body)
		}
	}
	for _, p := range []string{"/conferences", "/calls", "/calls?conferenceId=" + bConf, "/undeliveredEvents"} {
		if r := e.as(alice, "GET", p, ""); strings.TrimSpace(string(r.body)) != "[]" {
			t.Errorf("Alice GET %s: %s", p, r.body)
		}
	}
	// A stored call: hanging up again is 200, answering it 403.
	e.as(bob, "POST", "/calls/"+bCall.ID(), `{"state":"completed"}`).mustOK(t)
	if r := e.as(bob, "POST", "/calls/"+bCall.ID(), `{"state":"active"}`); r.status != 403 {
		t.Errorf("answering a stored call: %d %s", r.status, r.body)
	}
	if r := e.as(alice, "POST", "/calls/"+bCall.ID(), `{"state":"completed"}`); r.status != 404 {
		t.Errorf("Alice hanging up Bob's stored call: %d %s", r.status, r.body)
	}
	// A stored (completed) conference: completing it again is 200, a
	// change is 403, as for one in memory.
	e.as(bob, "POST", "/conferences/"+bConf, `{"state":"completed"}`).mustOK(t)
	if r := e.as(bob, "POST", "/conferences/"+bConf, `{"mute":true}`); r.status != 403 {
		t.Errorf("a change to a stored conference: %d %s", r.status, r.body)
	}
}

// TestStoredMembersOfALiveRoom: a member that left longer than the
// bridge's retention ago, gone from memory, is still listed and read, from
// the store, while its room lives on.
func TestStoredMembersOfALiveRoom(t *testing.T) {
	e := newStoreEnv(t, nil, func(c *bridge.Config) { c.Retention = time.Nanosecond })
	conf := e.createConf(alice)
	gone, _, _ := e.addMember(alice, conf, "")
	stays, _, _ := e.addMember(alice, conf, "")
	e.as(alice, "POST", "/conferences/"+conf+"/members/"+gone, `{"state":"completed"}`).mustOK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.outbox.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.b.Prune()
	c, _ := e.b.Conference(conf)
	if _, inMemory := c.Member(gone); inMemory {
		t.Fatal("the member that left was not pruned from memory")
	}
	var list []memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members", &list)
	if len(list) != 2 || list[0].ID != gone || list[0].State != "completed" || list[1].ID != stays || list[1].State != "active" {
		t.Errorf("members of the live room: %+v", list)
	}
	var m memberJSON
	e.getJSON(alice, "/conferences/"+conf+"/members/"+gone, &m)
	if m.State != "completed" || m.RemovedTime == "" {
		t.Errorf("the pruned member: %+v", m)
	}
}

// slowStore is a store whose writes wait for release (a disk that
// stalls) or fail.
type slowStore struct {
	*store.SQLite
	release chan struct{}
	fail    atomic.Bool
	applies atomic.Int64
}

func (s *slowStore) Apply(ctx context.Context, b *store.Batch) error {
	<-s.release
	s.applies.Add(1)
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.SQLite.Apply(ctx, b)
}

// countingHandler counts log records.
type countingHandler struct {
	slog.Handler
	n atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return nil
}

// TestOutboxNeverWaitsForTheDisk: with the writer stalled, Publish returns
// at once, the overflow is delivered unwritten and counted; failed writes
// are counted and summarised, not logged one by one, and their events are
// delivered all the same.
func TestOutboxNeverWaitsForTheDisk(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	st := &slowStore{SQLite: sq, release: make(chan struct{})}
	var got atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer app.Close()
	b := bridge.New(bridge.Config{}, nil, nil)
	c, err := b.CreateConference(bridge.ConferenceOptions{UserID: "u", Callback: bridge.Callback{URL: app.URL}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &countingHandler{Handler: slog.DiscardHandler}
	d := NewDispatcher(DispatcherConfig{Bridge: b, Targets: allowLoopback(), QueueLimit: 10000})
	o := NewOutbox(OutboxConfig{Store: st, Bridge: b, Dispatcher: d, Queue: 64, Log: slog.New(logs)})
	o.Start()
	const n = 500
	start := time.Now()
	for range n {
		o.Publish(bridge.Event{Type: bridge.EventConference, UserID: "u", ConferenceID: c.ID(), State: bridge.StateActive})
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("%d publishes with the disk stalled took %v", n, el)
	}
	s := o.Stats()
	if s.Unpersisted < n/2 {
		t.Errorf("unpersisted %d, want the overflow beyond the queue of 64 and the stalled batch", s.Unpersisted)
	}
	st.fail.Store(true)
	close(st.release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every event delivered, written or not", func() bool { return got.Load() == n })
	s = o.Stats()
	if s.WriteErrors == 0 || s.Unpersisted != n {
		t.Errorf("after failed writes: %+v", s)
	}
	if logs.n.Load() != 1 {
		t.Errorf("%d log records for %d failed writes, want one summary", logs.n.Load(), s.WriteErrors)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// holdBack is an event sink that keeps the events of one type from the
// outbox until released: the moment a kill can land between an event and
// the next.
type holdBack struct {
	next bridge.EventSink
	typ  string
	mu   sync.Mutex
	held []bridge.Event
}

func (h *holdBack) Publish(ev bridge.Event) {
	h.mu.Lock()
	if ev.Type == h.typ {
		h.held = append(h.held, ev)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.next.Publish(ev)
}

func (h *holdBack) release() {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, ev := range held {
		h.next.Publish(ev)
	}
}

// TestOutboxRecordEndsWithItsEvent: a call that ended is written ended only
// with its hangup. Call.Ended marks the call completed before the member's
// completion and the hangup are published; a batch holding the member's
// completion but not yet the hangup (a kill there) must leave the call
// live in the store, so that the next start ends it with its hangup
// instead of taking it for done with no hangup ever sent. Once the hangup
// is written, a later snapshot of the call keeps it ended.
func TestOutboxRecordEndsWithItsEvent(t *testing.T) {
	s := newStoreEnv(t, nil)
	gate := &holdBack{next: s.outbox, typ: bridge.EventHangup}
	s.b.SetEventSink(gate) // before any room or call: nothing publishes yet
	conf := s.createConf(alice)
	member, call, _ := s.addMember(alice, conf, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	get := func(k store.Kind, id string) store.Record {
		t.Helper()
		if err := s.outbox.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := s.st.Get(ctx, store.Key{Kind: k, User: alice.ID, ID: id})
		if err != nil {
			t.Fatalf("%s %s: %v", k, id, err)
		}
		return r
	}
	if r := get(store.KindCall, call.ID()); !r.Live() {
		t.Fatalf("the call before its end: %s", r.Data)
	}

	call.Ended("NORMAL_CLEARING") // the member's completion is written, the hangup held back
	if r := get(store.KindMember, member); r.Live() {
		t.Errorf("the member after its completion event: live %s", r.Data)
	}
	if r := get(store.KindCall, call.ID()); !r.Live() {
		t.Errorf("the call written ended before its hangup event: %s", r.Data)
	}
	live, err := s.st.List(ctx, store.Query{Kind: store.KindCall, LiveOnly: true})
	if err != nil || len(live) != 1 || live[0].ID != call.ID() {
		t.Errorf("live calls a restart would end: %v %v", live, err)
	}

	gate.release()
	if r := get(store.KindCall, call.ID()); r.Live() {
		t.Errorf("the call after its hangup event: live %s", r.Data)
	}
	s.outbox.Saved(store.KindCall, alice.ID, call.ID()) // a snapshot for no ending event
	if r := get(store.KindCall, call.ID()); r.Live() {
		t.Errorf("the call written live again after its hangup: %s", r.Data)
	}
}

// TestDecodePayload: a stored body reads back into the same fields in the
// same order, so a GET callback sends the same query.
func TestDecodePayload(t *testing.T) {
	p := cbPayload{{"eventType", "conference-member"}, {"activeMembers", 3}, {"mute", true}, {"tag", "x\"y"}, {"eventId", "e-9"}}
	q, err := decodePayload(p.json())
	if err != nil {
		t.Fatal(err)
	}
	if string(q.json()) != string(p.json()) {
		t.Errorf("round trip: %s vs %s", q.json(), p.json())
	}
	for _, bad := range []string{``, `[]`, `{"a":{}}`, `{"a":[1]}`, `{"a":1.5}`, `{"a"`, `{"a":null}`} {
		if _, err := decodePayload([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// FuzzDecodePayload: any bytes give fields or an error, never a panic,
// and what decodes encodes back to JSON that decodes the same.
func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte(`{"eventType":"hangup","cause":"NORMAL_CLEARING","eventId":"e-1"}`))
	f.Add([]byte(`{"activeMembers":2,"mute":false}`))
	f.Add([]byte(`{"a":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePayload(b)
		if err != nil {
			return
		}
		q, err := decodePayload(p.json())
		if err != nil || string(q.json()) != string(p.json()) {
			t.Fatalf("%q: re-decoded %v %s vs %s", b, err, q.json(), p.json())
		}
		var m map[string]any
		if json.Unmarshal(p.json(), &m) != nil {
			t.Fatalf("%q: not JSON: %s", b, p.json())
		}
	})
}

// BenchmarkStoreEvent is the store's cost of one event in a burst (the
// writer batches): snapshots of the conference, member and call, the
// rendered outbox row, its share of one transaction.
func BenchmarkStoreEvent(b *testing.B) {
	benchStore(b, 64)
}

// BenchmarkStoreCallSetup is the store's cost of one call set-up alone,
// one transaction each: the answer and the member's joining (the records
// of call, member and conference, and two outbox rows).
func BenchmarkStoreCallSetup(b *testing.B) {
	benchStore(b, 1)
}

func benchStore(b *testing.B, burst int) {
	st, err := store.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	br := bridge.New(bridge.Config{}, nil, nil)
	c, err := br.CreateConference(bridge.ConferenceOptions{UserID: "u", Callback: bridge.Callback{URL: "http://127.0.0.1:9/cb"}})
	if err != nil {
		b.Fatal(err)
	}
	call := br.NewCall("u", "sip:a@127.0.0.1", "1000", bridge.DirectionIn, newLeg(b), bridge.Callback{})
	call.Answered()
	m, err := c.AddMember(call, bridge.MemberOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.HangupAll(context.Background(), "bench-over")
	d := NewDispatcher(DispatcherConfig{Bridge: br})
	d.Close(context.Background()) // nothing is delivered: the store's cost only
	o := NewOutbox(OutboxConfig{Store: st, Bridge: br, Dispatcher: d, Queue: 4096})
	o.Start()
	defer func() { _ = o.Close(context.Background()) }()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for range burst {
			if burst == 1 {
				o.Publish(bridge.Event{Type: bridge.EventAnswer, UserID: "u", CallID: call.ID()})
			}
			o.Publish(bridge.Event{Type: bridge.EventConferenceMember, UserID: "u", ConferenceID: c.ID(), MemberID: m.ID(),
				CallID: call.ID(), State: bridge.StateActive, ActiveMembers: 1})
		}
		if err := o.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*burst), "µs/op-each")
}

// delayStore is a store whose transactions take delay (a slow disk), or
// wait for release once stalled.
type delayStore struct {
	*store.SQLite
	delay   time.Duration
	stalled atomic.Bool
	waiting atomic.Bool // a transaction waits for release
	release chan struct{}
}

func (s *delayStore) Apply(ctx context.Context, b *store.Batch) error {
	time.Sleep(s.delay)
	if s.stalled.Load() {
		s.waiting.Store(true)
		<-s.release
	}
	return s.SQLite.Apply(ctx, b)
}

// TestChangeAnsweredOnceWritten: a change's success answer comes once its
// records are written, so an app that got 201 finds the conference after a
// crash; a stalled disk delays the answer by at most durableWait, and the
// unwritten answer is counted.
func TestChangeAnsweredOnceWritten(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	e := newStoreEnv(t, &delayStore{SQLite: sq, delay: 200 * time.Millisecond})
	id := e.createConf(alice)
	if _, err := sq.Get(context.Background(), store.Key{Kind: store.KindConference, User: alice.ID, ID: id}); err != nil {
		t.Fatalf("the conference answered 201 is not in the store yet: %v", err)
	}
	if n := e.outbox.Stats().UnwrittenAnswers; n != 0 {
		t.Errorf("%d unwritten answers with a disk that keeps up", n)
	}

	sq2, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq2.Close()
	stalled := &delayStore{SQLite: sq2, release: make(chan struct{})}
	e2 := newStoreEnv(t, stalled)
	stalled.stalled.Store(true)
	t.Cleanup(func() { close(stalled.release) }) // before the env's own cleanup closes the outbox
	start := time.Now()
	e2.createConf(alice)
	if el := time.Since(start); el < durableWait/2 || el > durableWait+3*time.Second {
		t.Errorf("a change with the disk stalled answered after %v, want about %v", el, durableWait)
	}
	if n := e2.outbox.Stats().UnwrittenAnswers; n != 1 {
		t.Errorf("unwritten answers %d, want 1", n)
	}
	if r := e2.as(alice, "GET", "/conferences", ""); r.status != 200 {
		t.Errorf("a read with the disk stalled: %d", r.status)
	}
}

// TestOutboxOverflowedEndIsWritten: an ending event that a full queue sends
// on unwritten still ends its record once the writer catches up; left
// live, the next start would end the call again and send a second
// completion.
func TestOutboxOverflowedEndIsWritten(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	ds := &delayStore{SQLite: sq, release: make(chan struct{})}
	s := newStoreEnv(t, ds)
	var once sync.Once
	release := func() { once.Do(func() { close(ds.release) }) }
	t.Cleanup(release)
	conf := s.createConf(alice)
	member, call, _ := s.addMember(alice, conf, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.outbox.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	ds.stalled.Store(true)
	filler := bridge.Event{Type: bridge.EventConference, UserID: alice.ID, ConferenceID: conf, State: bridge.StateActive}
	s.outbox.Publish(filler)
	eventually(t, "the writer stalled in the store", ds.waiting.Load)
	for i := 0; s.outbox.Stats().Unpersisted == 0; i++ {
		if i > 2*DefaultOutboxQueue {
			t.Fatal("the queue never filled")
		}
		s.outbox.Publish(filler)
	}
	before := s.outbox.Stats().Unpersisted
	call.Ended("NORMAL_CLEARING") // the member's completion and the hangup overflow
	eventually(t, "the member's completion and the hangup overflowing", func() bool {
		return s.outbox.Stats().Unpersisted-before >= 2
	})
	release()
	if err := s.outbox.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{{Kind: store.KindMember, User: alice.ID, ID: member}, {Kind: store.KindCall, User: alice.ID, ID: call.ID()}} {
		r, err := sq.Get(ctx, k)
		if err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
		if r.Live() {
			t.Errorf("the %s whose ending event overflowed is still live in the store: %s", k.Kind, r.Data)
		}
	}
}

// TestOutboxCallbacksFlowWhileTheDiskStalls: once a transaction has held
// delivery past the patience, events go on to the application unwritten
// and in order (the batch in flight first, then those queued behind it),
// so that an app can still answer its calls; the batch in flight is
// written when the disk comes back, the rest are counted unpersisted.
func TestOutboxCallbacksFlowWhileTheDiskStalls(t *testing.T) {
	sq, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	ds := &delayStore{SQLite: sq, release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(ds.release) }) }
	defer release()
	var mu sync.Mutex
	var got []string
	ids := map[string]int{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, fmt.Sprint(body["tag"]))
		ids[fmt.Sprint(body["eventId"])]++
		mu.Unlock()
	}))
	defer app.Close()
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	b := bridge.New(bridge.Config{}, nil, nil)
	c, err := b.CreateConference(bridge.ConferenceOptions{UserID: "u", Callback: bridge.Callback{URL: app.URL, Tag: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(DispatcherConfig{Bridge: b, Targets: allowLoopback()})
	o := NewOutbox(OutboxConfig{Store: ds, Bridge: b, Dispatcher: d, Patience: 200 * time.Millisecond})
	o.Start()
	defer func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = o.Close(ctx)
	}()
	ev := func(i int) bridge.Event {
		return bridge.Event{Type: bridge.EventConferenceSpeak, UserID: "u", ConferenceID: c.ID(), State: bridge.StateActive, Tag: fmt.Sprint(i)}
	}

	ds.stalled.Store(true)
	o.Publish(ev(0))
	eventually(t, "the writer stalled in the store", ds.waiting.Load)
	o.Publish(ev(1)) // queued behind the stalled transaction
	o.Publish(ev(2))
	time.Sleep(300 * time.Millisecond) // past the patience
	if n := len(received()); n != 0 {
		t.Fatalf("%d events delivered before their write", n)
	}
	o.Publish(ev(3))
	eventually(t, "every event delivered with the disk still stalled", func() bool { return len(received()) == 4 })
	if g := received(); !slices.Equal(g, []string{"0", "1", "2", "3"}) {
		t.Errorf("delivered in the order %v", g)
	}
	if s := o.Stats(); s.Unpersisted != 3 || s.Written != 0 {
		t.Errorf("with the disk stalled: %+v, want 3 unpersisted (those behind the stalled transaction)", s)
	}

	release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	o.Publish(ev(4))
	eventually(t, "the next event, through the store", func() bool { return len(received()) == 5 })
	if s := o.Stats(); s.Written != 2 || s.Unpersisted != 3 {
		t.Errorf("after the disk came back: %+v, want the stalled batch and the next written", s)
	}
	if g := received(); !slices.Equal(g, []string{"0", "1", "2", "3", "4"}) {
		t.Errorf("delivered %v, each once", g)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 5 || ids["<nil>"] != 0 || ids[""] != 0 {
		t.Errorf("event ids %v, want 5 distinct ones, written or not", ids)
	}
}
