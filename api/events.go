package api

import (
	"bytes"
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chorus/bridge"
)

// Event stream defaults (see EventStreamConfig).
const (
	DefaultEventHistory        = 1000
	DefaultEventBuffer         = 256
	DefaultEventStreamsPerUser = 16
	DefaultEventHeartbeat      = 15 * time.Second
	DefaultTalkingPoll         = 200 * time.Millisecond

	// EventTalking is the stream's own event type: a member's noise gate
	// opened or closed (the member started or stopped talking). Callbacks
	// do not carry it: it comes five times a second at most per member,
	// too often for an HTTP request each.
	EventTalking = "talking"
	// EventReset tells a resuming client that the events since its
	// Last-Event-ID are no longer kept (or come from before a restart):
	// it must read the resources again.
	EventReset = "reset"

	// evQueue bounds the events Publish has handed over and the stream's
	// goroutine has not yet rendered; beyond, events are dropped and counted.
	evQueue = 1024
	// evWriteWait bounds one write to a stream client; a client that takes
	// longer is gone or too slow.
	evWriteWait = 10 * time.Second
)

// EventStreamConfig configures an EventStream. Zero fields take the defaults.
type EventStreamConfig struct {
	// Dispatcher renders each event's body, so that the stream carries
	// exactly what a callback would (required).
	Dispatcher *Dispatcher
	// Bridge is polled for members' talking state while a user has a
	// stream open; without it there are no talking events.
	Bridge *bridge.Bridge
	// History is how many events are kept per user for clients that
	// reconnect with Last-Event-ID (default 1,000).
	History int
	// Buffer is how many events may wait for one client; a client further
	// behind is disconnected (default 256). It resumes from the history.
	Buffer int
	// MaxPerUser bounds the open streams of one user (default 16): each is
	// an HTTP connection the server's connection cap counts as busy.
	MaxPerUser int
	// Heartbeat is how often an idle stream gets a comment line so that
	// proxies keep it open (default 15 s).
	Heartbeat time.Duration
	// TalkingPoll is how often members' talking state is read (default
	// 200 ms, 5 Hz).
	TalkingPoll time.Duration
	Log         *slog.Logger
}

// EventStreamStats counts what the stream did.
type EventStreamStats struct {
	Published uint64 // events accepted by Publish
	Dropped   uint64 // events dropped because the stream's queue was full or it was closed
	Slow      uint64 // clients disconnected for falling Buffer events behind
	Clients   int    // streams open now
}

// EventStream keeps each user's recent events, numbered, and hands them
// to the user's Server-Sent Events clients (GET /v1/users/{userId}/events).
// It implements bridge.EventSink: Publish only puts the event on a bounded
// queue and never blocks; a goroutine renders it (as the Dispatcher does
// for callbacks) and fans it out. Each client has a bounded buffer; a
// client too slow to keep up is disconnected, not waited for.
//
// Talking changes are not bridge events: the mixer only sets each
// member's talking flag (an atomic, read without a lock). While a user has
// at least one stream open, a goroutine reads the flags of the user's
// live members TalkingPoll apart and adds a talking event for each change,
// so the mixer's tick is untouched and a user nobody watches costs nothing.
type EventStream struct {
	cfg  EventStreamConfig
	log  *slog.Logger
	boot string // marks this process's stream-only ids (see evKey)
	in   chan bridge.Event
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex
	users  map[string]*userEvents
	closed bool
	prefix string // the event ids' prefix before their number ("e-")
	seq    int64  // number of the newest event id seen, any user's

	published, dropped, slow atomic.Uint64
	clients                  atomic.Int64
}

// evKey orders a user's frames. An event with an eventId (every bridge
// event, numbered by the Outbox) is {its number, 0}, and its SSE id is the
// eventId itself, so a client that reads both callbacks and the stream
// sees one id per event. A frame of the stream alone (a talking or reset
// event, or an event that reached the stream without an id) is {the
// newest event number when it was made, 1, 2, ...}: its id is
// "<prefix><n>.<boot>.<k>", which names this process (boot) since such
// frames are not numbered across a restart.
type evKey struct {
	n int64
	k uint64
}

func (a evKey) cmp(b evKey) int {
	return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.k, b.k))
}

// userEvents is one user's history and clients, guarded by EventStream.mu.
type userEvents struct {
	ring []*sseFrame // circular: the last History events
	head int         // index of the oldest in ring
	n    int
	last evKey // key of the newest frame; zero before the first
	// floor is the key from which on every frame of the user is in the
	// ring: the newest event number when the user first subscribed (the
	// stream keeps nothing of a user before), then the last frame the
	// ring let go. A Last-Event-ID at or after it resumes exactly.
	floor evKey
	subs  map[*subscriber]struct{}
	stopT chan struct{} // stops the talking poller; nil when none runs
}

// sseFrame is one event as written to every client: "id:" and "data:"
// lines, rendered once.
type sseFrame struct {
	key evKey
	buf []byte
}

// subscriber is one open stream.
type subscriber struct {
	ch   chan *sseFrame
	gone chan struct{} // closed when dropped for being too slow
}

// NewEventStream returns a stream; Close stops it.
func NewEventStream(cfg EventStreamConfig) *EventStream {
	if cfg.History <= 0 {
		cfg.History = DefaultEventHistory
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultEventBuffer
	}
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = DefaultEventStreamsPerUser
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultEventHeartbeat
	}
	if cfg.TalkingPoll <= 0 {
		cfg.TalkingPoll = DefaultTalkingPoll
	}
	if cfg.Dispatcher == nil {
		cfg.Dispatcher = NewDispatcher(DispatcherConfig{Bridge: cfg.Bridge})
	}
	s := &EventStream{cfg: cfg, log: cfg.Log, in: make(chan bridge.Event, evQueue), done: make(chan struct{}),
		users: map[string]*userEvents{}, boot: strconv.FormatInt(time.Now().UnixMilli(), 36), prefix: "e-"}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.wg.Add(1)
	go s.run()
	return s
}

// Publish queues ev for the stream and returns at once; when the queue is
// full the event is dropped and counted.
func (s *EventStream) Publish(ev bridge.Event) {
	if ev.UserID == "" {
		return
	}
	select {
	case s.in <- ev:
		s.published.Add(1)
	default:
		s.dropped.Add(1)
	}
}

// Close ends every open stream (after what was queued has been sent to
// clients that keep up) and stops the stream's goroutines.
func (s *EventStream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, u := range s.users {
		if u.stopT != nil {
			close(u.stopT)
			u.stopT = nil
		}
	}
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
}

// Stats returns the counters.
func (s *EventStream) Stats() EventStreamStats {
	return EventStreamStats{Published: s.published.Load(), Dropped: s.dropped.Load(), Slow: s.slow.Load(),
		Clients: int(s.clients.Load())}
}

// run renders queued events until Close, then renders what is left.
func (s *EventStream) run() {
	defer s.wg.Done()
	for {
		select {
		case ev := <-s.in:
			s.render(ev)
		case <-s.done:
			for {
				select {
				case ev := <-s.in:
					s.render(ev)
				default:
					return
				}
			}
		}
	}
}

// followIDs tells the stream the form of the event ids it will get:
// prefix and a number, numbers above start (those up to start are a
// previous process's, whose frames the stream does not have). The Outbox
// calls it before it hands on its first event.
func (s *EventStream) followIDs(prefix string, start int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefix = prefix
	s.seq = max(s.seq, start)
}

// render turns ev into the body its callback would carry and appends it.
func (s *EventStream) render(ev bridge.Event) {
	if !s.watched(ev.UserID, ev.ID) {
		return // nobody of this user ever opened a stream: nothing to keep
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	d := s.cfg.Dispatcher
	cb, _ := d.route(cbItem{ev: ev, confID: ev.ConferenceID}) // for its tag only
	s.append(ev.UserID, ev.ID, d.eventPayload(ev, cb).json())
}

// append keeps body as the user's next event, with id (its eventId) as
// its SSE id, or an id of the stream's own when id is "" or out of order,
// and hands it to every client of the user.
func (s *EventStream) append(user, id string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, numbered := s.advanceLocked(id)
	u := s.users[user]
	if u == nil {
		return
	}
	key := evKey{n: s.seq}
	if numbered {
		key = evKey{n: n}
	} else {
		key.k = 1
		if u.last.n == s.seq {
			key.k = u.last.k + 1
		}
		id = s.formatID(key)
	}
	u.last = key
	f := &sseFrame{key: key, buf: s.frame(id, body)}
	if u.n < len(u.ring) {
		u.ring[(u.head+u.n)%len(u.ring)] = f
		u.n++
	} else {
		u.floor = u.ring[u.head].key // let go: resuming from before it is no longer exact
		u.ring[u.head] = f
		u.head = (u.head + 1) % len(u.ring)
	}
	for sub := range u.subs {
		select {
		case sub.ch <- f:
		default:
			// Too slow: waiting would hold up every other client and the
			// history; it reconnects and resumes from the history.
			delete(u.subs, sub)
			close(sub.gone)
			s.slow.Add(1)
		}
	}
}

// advanceLocked reads an eventId: when it is one of the ids followed and
// newer than any seen, it becomes the newest and numbered is true.
func (s *EventStream) advanceLocked(id string) (n int64, numbered bool) {
	if id == "" {
		return 0, false
	}
	key, ok := s.parseID(id)
	if !ok || key.k != 0 || key.n <= s.seq {
		return 0, false
	}
	s.seq = key.n
	return key.n, true
}

// watched reports whether user has ever opened a stream: only then are
// its events rendered and kept. Before, no client can hold an id to resume
// from, and a bridge whose users never stream pays nothing (at 1,000
// members, a user's history was 1.2 KB a member of the load runs' RSS).
// An unwatched user's event id still counts as the newest seen.
func (s *EventStream) watched(user, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[user] != nil {
		return true
	}
	s.advanceLocked(id)
	return false
}

// userLocked returns user's record, made on first use (a subscription).
func (s *EventStream) userLocked(user string) *userEvents {
	u := s.users[user]
	if u == nil {
		u = &userEvents{ring: make([]*sseFrame, s.cfg.History), subs: map[*subscriber]struct{}{}, floor: evKey{n: s.seq}}
		u.last = u.floor
		s.users[user] = u
	}
	return u
}

// frame is the SSE text of one event (the HTML Living Standard's
// "Server-sent events" section): its id and its JSON body on one data
// line (the JSON has no newline). No event field: every event comes to an
// EventSource's onmessage, and eventType in the body tells them apart.
func (s *EventStream) frame(id string, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + len(id) + 16)
	b.WriteString("id: ")
	b.WriteString(id)
	b.WriteString("\ndata: ")
	b.Write(body)
	b.WriteString("\n\n")
	return b.Bytes()
}

// formatID is the SSE id of a frame (see evKey).
func (s *EventStream) formatID(k evKey) string {
	id := s.prefix + strconv.FormatInt(k.n, 10)
	if k.k != 0 {
		id += "." + s.boot + "." + strconv.FormatUint(k.k, 10)
	}
	return id
}

// parseID reads an id formatID makes: an eventId of the ids
// followed, or a stream-only id of this process. Numbers must be written
// as formatID writes them, so that one key has one id.
func (s *EventStream) parseID(id string) (evKey, bool) {
	rest, ok := strings.CutPrefix(id, s.prefix)
	if !ok {
		return evKey{}, false
	}
	num, more, only := strings.Cut(rest, ".")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != num {
		return evKey{}, false
	}
	if !only {
		return evKey{n: n}, true
	}
	boot, kk, ok := strings.Cut(more, ".")
	if !ok || boot != s.boot {
		return evKey{}, false
	}
	k, err := strconv.ParseUint(kk, 10, 64)
	if err != nil || k == 0 || strconv.FormatUint(k, 10) != kk {
		return evKey{}, false
	}
	return evKey{n: n, k: k}, true
}

// errTooManyStreams is the answer to a user's stream beyond MaxPerUser.
var errTooManyStreams = errors.New("too many event streams")

// subscribe opens a stream for user. lastID is the client's Last-Event-ID:
// the events after it that are still kept come in backlog; when some are
// no longer kept, or lastID is not an id this stream gave (another
// process's, a restart's), the backlog starts with a reset event.
func (s *EventStream) subscribe(user, lastID string) (*subscriber, [][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errUnavailable("The event stream is shutting down")
	}
	u := s.userLocked(user)
	if len(u.subs) >= s.cfg.MaxPerUser {
		return nil, nil, errTooManyStreams
	}
	var backlog [][]byte
	if lastID = strings.TrimSpace(lastID); lastID != "" {
		key, ok := s.parseID(lastID)
		// An eventId up to the newest seen (another user's, or this user's
		// own from a callback) is a point in the numbering; a stream-only
		// id must be one this stream gave the user.
		known := ok && key.n <= s.seq && (key.k == 0 || key.cmp(u.last) <= 0)
		switch {
		case known && key.cmp(u.floor) >= 0:
			for i := range u.n {
				if f := u.ring[(u.head+i)%len(u.ring)]; f.key.cmp(key) > 0 {
					backlog = append(backlog, f.buf)
				}
			}
		default:
			reason := "events since Last-Event-ID are no longer kept"
			if !known {
				reason = "Last-Event-ID is not an event of this server (restarted?)"
			}
			body := cbPayload{{"eventType", EventReset}, {"reason", reason}, {"time", cbTime(time.Now())}}.json()
			// Its id is the newest frame's: resuming from it is exact.
			backlog = append(backlog, s.frame(s.formatID(u.last), body))
		}
	}
	sub := &subscriber{ch: make(chan *sseFrame, s.cfg.Buffer), gone: make(chan struct{})}
	u.subs[sub] = struct{}{}
	s.clients.Add(1)
	if u.stopT == nil && s.cfg.Bridge != nil {
		u.stopT = make(chan struct{})
		s.wg.Add(1)
		go s.pollTalking(user, u.stopT)
	}
	return sub, backlog, nil
}

// unsubscribe closes a stream; the talking poller stops with the user's
// last stream.
func (s *EventStream) unsubscribe(user string, sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients.Add(-1)
	u := s.users[user]
	if u == nil {
		return
	}
	delete(u.subs, sub)
	if len(u.subs) == 0 && u.stopT != nil {
		close(u.stopT)
		u.stopT = nil
	}
}

// talkKey names a member across the user's conferences.
type talkKey struct{ conf, member string }

// pollTalking adds a talking event whenever one of user's live members
// starts or stops talking, until stop is closed. A member talking when
// polling starts gets a talking event at once, so a new client learns who
// talks without asking.
func (s *EventStream) pollTalking(user string, stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TalkingPoll)
	defer t.Stop()
	talking := map[talkKey]bool{}
	seen := map[talkKey]bool{}
	d := s.cfg.Dispatcher
	for {
		clear(seen)
		for _, c := range s.cfg.Bridge.Conferences(user) {
			if c.State() == bridge.StateCompleted {
				continue
			}
			for _, m := range c.Members() {
				if !m.Active() {
					continue
				}
				k := talkKey{c.ID(), m.ID()}
				seen[k] = true
				now := m.Talking()
				if now == talking[k] {
					continue
				}
				talking[k] = now
				p := cbPayload{{"eventType", EventTalking}, {"conferenceId", c.ID()}}
				if uri := d.cbConferenceURI(user, c.ID()); uri != "" {
					p = append(p, cbField{"conferenceUri", uri}, cbField{"memberUri", uri + "/members/" + m.ID()})
				}
				p = append(p, cbField{"memberId", m.ID()}, cbField{"callId", m.Info().CallID},
					cbField{"talking", now}, cbField{"time", cbTime(time.Now())})
				s.append(user, "", p.json())
			}
		}
		for k := range talking {
			if !seen[k] {
				delete(talking, k)
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// EventSinks publishes every event to each sink in turn (the callback
// dispatcher and the event stream); each must not block.
type EventSinks []bridge.EventSink

// Publish implements bridge.EventSink.
func (ss EventSinks) Publish(ev bridge.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	for _, s := range ss {
		s.Publish(ev)
	}
}

// GET /events: the user's events as Server-Sent Events until the client
// goes (or is too slow, or the server stops).
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request, user string) error {
	es := s.events
	if es == nil {
		return errUnavailable("The event stream is not enabled on this server")
	}
	sub, backlog, err := es.subscribe(user, r.Header.Get("Last-Event-ID"))
	if errors.Is(err, errTooManyStreams) {
		return errTooManyEventStreams(user, es.cfg.MaxPerUser)
	}
	if err != nil {
		return err
	}
	defer es.unsubscribe(user, sub)
	rc := http.NewResponseController(w)
	// The server's read deadline (set for the request) would end the
	// connection's background read and cancel the request under a stream
	// that lasts longer; writes get a deadline each instead.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(b ...[]byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(evWriteWait)); err != nil {
			return err
		}
		for _, p := range b {
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	// retry: how long an EventSource waits before reconnecting.
	if write([]byte(": chorus events of user "+user+"\nretry: 2000\n\n")) != nil || write(backlog...) != nil {
		return nil
	}
	hb := time.NewTicker(es.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case f := <-sub.ch:
			if write(f.buf) != nil {
				return nil
			}
		case <-hb.C:
			if write([]byte(": heartbeat\n\n")) != nil {
				return nil
			}
		case <-sub.gone:
			_ = write([]byte(": too slow: disconnected; reconnect with Last-Event-ID to resume\n\n"))
			return nil
		case <-r.Context().Done():
			return nil
		case <-es.done:
			for {
				select {
				case f := <-sub.ch:
					if write(f.buf) != nil {
						return nil
					}
				default:
					_ = write([]byte(": server stopping\n\n"))
					return nil
				}
			}
		}
	}
}

// errTooManyEventStreams is the 403 of a stream beyond MaxPerUser.
func errTooManyEventStreams(user string, limit int) *apiError {
	return newError(http.StatusForbidden, catLimit, "max-event-streams",
		"User %s has %d event streams open already: close one to open another", user, limit).
		withDetail("limit", strconv.Itoa(limit))
}
