package api

import (
	"bytes"
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
	boot string // distinguishes this process's event ids from a previous one's
	in   chan bridge.Event
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex
	users  map[string]*userEvents
	closed bool

	published, dropped, slow atomic.Uint64
	clients                  atomic.Int64
}

// userEvents is one user's history and clients, guarded by EventStream.mu.
type userEvents struct {
	ring  []*sseFrame // circular: the last History events
	head  int         // index of the oldest in ring
	n     int
	last  uint64 // id number of the newest event; 0 before the first
	subs  map[*subscriber]struct{}
	stopT chan struct{} // stops the talking poller; nil when none runs
}

// sseFrame is one event as written to every client: "id:" and "data:"
// lines, rendered once.
type sseFrame struct {
	n   uint64
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
		users: map[string]*userEvents{}, boot: strconv.FormatInt(time.Now().UnixMilli(), 36)}
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

// render turns ev into the body its callback would carry and appends it.
func (s *EventStream) render(ev bridge.Event) {
	if !s.watched(ev.UserID) {
		return // nobody of this user ever opened a stream: nothing to keep
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	d := s.cfg.Dispatcher
	cb, _ := d.route(cbItem{ev: ev, confID: ev.ConferenceID}) // for its tag only
	s.append(ev.UserID, d.eventPayload(ev, cb).json())
}

// append numbers body as the user's next event, keeps it in the history
// and hands it to every client of the user.
func (s *EventStream) append(user string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	if u == nil {
		return
	}
	u.last++
	f := &sseFrame{n: u.last, buf: s.frame(u.last, body)}
	if u.n < len(u.ring) {
		u.ring[(u.head+u.n)%len(u.ring)] = f
		u.n++
	} else {
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

// watched reports whether user has ever opened a stream: only then are
// its events rendered and kept. Before, no client can hold an id to resume
// from, and a bridge whose users never stream pays nothing (at 1,000
// members, a user's history was 1.2 KB a member of the load runs' RSS).
func (s *EventStream) watched(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[user] != nil
}

// userLocked returns user's record, made on first use (a subscription).
func (s *EventStream) userLocked(user string) *userEvents {
	u := s.users[user]
	if u == nil {
		u = &userEvents{ring: make([]*sseFrame, s.cfg.History), subs: map[*subscriber]struct{}{}}
		s.users[user] = u
	}
	return u
}

// frame is the SSE text of one event (the HTML Living Standard's
// "Server-sent events" section): its id and its JSON body on one data
// line (the JSON has no newline). No event field: every event comes to an
// EventSource's onmessage, and eventType in the body tells them apart.
func (s *EventStream) frame(n uint64, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + 40)
	b.WriteString("id: ")
	b.WriteString(s.eventID(n))
	b.WriteString("\ndata: ")
	b.Write(body)
	b.WriteString("\n\n")
	return b.Bytes()
}

// eventID is the id of the user's n-th event: the process's boot mark and
// n, so that an id from before a restart is recognised rather than
// mistaken for one of the new numbering.
func (s *EventStream) eventID(n uint64) string {
	return s.boot + "-" + strconv.FormatUint(n, 10)
}

// errTooManyStreams is the answer to a user's stream beyond MaxPerUser.
var errTooManyStreams = errors.New("too many event streams")

// subscribe opens a stream for user. lastID is the client's Last-Event-ID:
// the events after it that are still kept come in backlog; when some are
// no longer kept, or lastID is not one of this process's ids, the backlog
// starts with a reset event.
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
		n, ok := s.parseID(lastID)
		oldest := u.last - uint64(u.n) // the id before the oldest kept
		switch {
		case ok && n <= u.last && n >= oldest:
			for i := range u.n {
				if f := u.ring[(u.head+i)%len(u.ring)]; f.n > n {
					backlog = append(backlog, f.buf)
				}
			}
		default:
			reason := "events since Last-Event-ID are no longer kept"
			if !ok || n > u.last {
				reason = "Last-Event-ID is not an event of this server (restarted?)"
			}
			body := cbPayload{{"eventType", EventReset}, {"reason", reason}, {"time", cbTime(time.Now())}}.json()
			backlog = append(backlog, s.frame(u.last, body))
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

// parseID reads an id of this process: "<boot>-<n>".
func (s *EventStream) parseID(id string) (uint64, bool) {
	boot, num, ok := strings.Cut(id, "-")
	if !ok || boot != s.boot {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return n, err == nil
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
				s.append(user, p.json())
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
