package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chorus/bridge"
	"chorus/internal/egress"
)

// Callback delivery defaults.
const (
	// CallbackDefaultTimeout bounds one delivery attempt when the resource
	// sets no callbackTimeout; it is also the maximum (Catapult: 10000 ms).
	CallbackDefaultTimeout = 10 * time.Second
	// CallbackDefaultUserAgent is the User-Agent of event requests.
	CallbackDefaultUserAgent = "BandwidthAPI/v1 (chorus)"

	cbDefaultRetries    = 3
	cbDefaultBackoff    = 500 * time.Millisecond
	cbMaxBackoff        = 30 * time.Second
	cbDefaultQueueLimit = 1000
	cbMaxResponseDrain  = 64 << 10
)

// DispatcherConfig configures a Dispatcher. Zero fields take the defaults.
type DispatcherConfig struct {
	// Bridge is where the dispatcher looks up where a conference's or a
	// call's events go. Without it every event is dropped (no callback).
	Bridge *bridge.Bridge
	// Client sends the requests; nil gives a client with sane transport
	// settings (dial and TLS handshake timeouts, pooled connections) whose
	// connections and redirects pass through Targets.
	Client *http.Client
	// Targets is the outbound request policy of the default client. Nil is
	// the safe default, which refuses loopback, private, link-local and
	// other internal addresses. A refused delivery is not retried: the
	// event goes to fallbackUrl, and is given up (logged and counted as
	// Failed) if that is refused or fails too.
	Targets *egress.Policy
	// Log receives one warning per event given up, one per queue overflow.
	Log *slog.Logger
	// MaxRetries is the number of delivery attempts to callbackUrl before
	// fallbackUrl is tried (with as many attempts). Default 3.
	MaxRetries int
	// Backoff is the delay before the first retry; it doubles per retry
	// (at most 30 s). Default 500 ms.
	Backoff time.Duration
	// QueueLimit caps the pending events of one conference (or of one call
	// outside conferences). Beyond it the oldest pending event is dropped
	// and counted. Default 1000.
	QueueLimit int
	// UserAgent of event requests. Default "BandwidthAPI/v1 (chorus)".
	UserAgent string
	// BaseURL is the public base of the API, such as
	// "http://127.0.0.1:8080", for the conferenceUri, memberUri and callUri
	// fields of events. Empty: those fields are left out.
	BaseURL string
	// Done, if set, is told what became of each event the outbox queued
	// (Outbox): err is nil once it was delivered, the last error once it
	// was given up. It is not called for events dropped by Close.
	Done func(seq int64, err error)
}

// DispatcherStats counts what became of the published events.
type DispatcherStats struct {
	Published  uint64 // events accepted by Publish
	Delivered  uint64 // events an application answered with 2xx (callbackUrl or fallbackUrl)
	Failed     uint64 // events given up after every attempt on callbackUrl and fallbackUrl
	Retried    uint64 // attempts after the first, on either URL
	Fallback   uint64 // events sent to fallbackUrl after callbackUrl failed
	Dropped    uint64 // events dropped by a full queue or after Close
	NoCallback uint64 // events whose resource has no callback URL
	Pending    int    // events queued or being delivered now
	Workers    int    // delivery goroutines running now
}

// Dispatcher delivers bridge events to the applications' callback URLs. It
// implements bridge.EventSink: Publish only queues.
//
// Events of one conference (and call events of the conference's member
// calls) are delivered one at a time in publish order: the next is not sent
// until the previous was delivered or given up. Call events of calls in no
// conference are ordered per call. Queues are served in parallel, each by
// a goroutine that exits when its queue is empty.
type Dispatcher struct {
	cfg    DispatcherConfig
	client *http.Client
	log    *slog.Logger
	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc

	// storedConf reads a conference no longer in memory (the outbox's
	// store), for an event's createdTime; nil without a store.
	storedConf func(user, id string) (bridge.ConferenceInfo, bool)

	mu     sync.Mutex
	queues map[cbKey]*cbQueue
	closed bool
	wg     sync.WaitGroup

	published, delivered, failed, retried, fallback, dropped, noCallback atomic.Uint64
	pending, workers                                                     atomic.Int64
}

// cbKey names a queue: a conference's, or a call's outside conferences.
type cbKey struct {
	conf bool
	id   string
}

// cbItem is one queued event and the conference it belongs to, if any.
// An event from the outbox comes routed and rendered (routed): its
// callback and payload were fixed when it was written, so that it is
// delivered the same after a restart, and seq names it for the outbox's
// acknowledgement.
type cbItem struct {
	ev     bridge.Event
	confID string
	seq    int64
	routed bool
	cb     bridge.Callback
	p      cbPayload
}

// cbQueue is the FIFO of one conference or one call: a slice used as a
// deque. It is guarded by Dispatcher.mu.
type cbQueue struct {
	items    []cbItem
	head     int
	running  bool // a worker serves it
	overflow bool // the overflow was logged
}

func (q *cbQueue) len() int { return len(q.items) - q.head }

func (q *cbQueue) push(it cbItem) { q.items = append(q.items, it) }

func (q *cbQueue) pop() cbItem {
	it := q.items[q.head]
	q.items[q.head] = cbItem{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 64 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return it
}

// NewDispatcher returns a dispatcher. Set it as the bridge's event sink
// with bridge.SetEventSink (or pass it to bridge.New).
func NewDispatcher(cfg DispatcherConfig) *Dispatcher {
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = cbDefaultRetries
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = cbDefaultBackoff
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = cbDefaultQueueLimit
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = CallbackDefaultUserAgent
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	d := &Dispatcher{cfg: cfg, client: cfg.Client, log: cfg.Log,
		queues: map[cbKey]*cbQueue{}}
	if d.client == nil {
		d.client = cbDefaultClient(cfg.Targets)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d
}

// cbDefaultClient connects only where targets allows, at connect time
// and on every redirect. It uses no proxy: through one, the policy would
// check the proxy's address instead of the application's.
func cbDefaultClient(targets *egress.Policy) *http.Client {
	return &http.Client{CheckRedirect: targets.CheckRedirect, Transport: &http.Transport{
		DialContext:           targets.Dialer(net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// Publish queues ev for delivery and returns at once. It takes no lock of
// the bridge, so the bridge may call it from anywhere.
func (d *Dispatcher) Publish(ev bridge.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	d.published.Add(1)
	d.enqueueLocked(cbItem{ev: ev, confID: ev.ConferenceID})
}

// enqueueRouted queues an event the outbox routed and rendered; key is
// its queue (Outbox: "conf:" or "call:" and the id).
func (d *Dispatcher) enqueueRouted(it cbItem) {
	it.routed = true
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	d.published.Add(1)
	d.enqueueLocked(it)
}

// enqueueLocked puts it on its queue and starts the queue's worker if
// none runs; it releases d.mu.
func (d *Dispatcher) enqueueLocked(it cbItem) {
	ev := it.ev
	// A member call's own events (hangup in particular, which comes after
	// the member left) stay in its conference's order: the bridge names
	// the conference a call joined on every event of the call, so the
	// dispatcher keeps no call → conference map of its own.
	confID := it.confID
	key := cbKey{conf: true, id: confID}
	if confID == "" {
		key = cbKey{id: ev.CallID}
	}
	q := d.queues[key]
	if q == nil {
		q = &cbQueue{}
		d.queues[key] = q
	}
	var overflowed bool
	if q.len() >= d.cfg.QueueLimit {
		q.pop()
		d.dropped.Add(1)
		d.pending.Add(-1)
		overflowed = !q.overflow
		q.overflow = true
	}
	q.push(it)
	d.pending.Add(1)
	if !q.running {
		q.running = true
		d.wg.Add(1)
		d.workers.Add(1)
		go d.work(key, q)
	}
	d.mu.Unlock()
	if overflowed {
		d.log.Warn("callback queue full: dropping the oldest events", "conference", confID, "call", ev.CallID,
			"limit", d.cfg.QueueLimit)
	}
}

// work delivers q's events in order and exits when q is empty.
func (d *Dispatcher) work(key cbKey, q *cbQueue) {
	defer d.wg.Done()
	defer d.workers.Add(-1)
	for {
		d.mu.Lock()
		if q.len() == 0 {
			q.running = false
			delete(d.queues, key)
			d.mu.Unlock()
			return
		}
		it := q.pop()
		d.mu.Unlock()
		if d.ctx.Err() != nil {
			d.dropped.Add(1)
		} else {
			d.deliver(it)
		}
		d.pending.Add(-1)
	}
}

// Close stops accepting events and waits until the queued ones were
// delivered or given up, or ctx ends; then it aborts what is in flight,
// drops the rest and returns ctx's error.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		<-done
		return ctx.Err()
	}
}

// Stats returns the counters.
func (d *Dispatcher) Stats() DispatcherStats {
	return DispatcherStats{
		Published: d.published.Load(), Delivered: d.delivered.Load(), Failed: d.failed.Load(),
		Retried: d.retried.Load(), Fallback: d.fallback.Load(), Dropped: d.dropped.Load(),
		NoCallback: d.noCallback.Load(), Pending: int(d.pending.Load()), Workers: int(d.workers.Load()),
	}
}

// route finds where it goes: conference events to the conference's
// callback; call events to the call's callback if it has a URL, else to
// its application's incomingCallUrl if it came in for one, else to the
// callback of the conference the call is (or was last) a member of.
func (d *Dispatcher) route(it cbItem) (bridge.Callback, bool) {
	b := d.cfg.Bridge
	if b == nil {
		return bridge.Callback{}, false
	}
	confCallback := func(id string) (bridge.Callback, bool) {
		if id == "" {
			return bridge.Callback{}, false
		}
		c, ok := b.Conference(id)
		if !ok {
			return bridge.Callback{}, false
		}
		cb := c.Callback()
		return cb, cb.URL != ""
	}
	if eventIsConference(it.ev.Type) {
		return confCallback(it.ev.ConferenceID)
	}
	confID := it.confID
	if it.ev.CallID != "" {
		if call, ok := b.Call(it.ev.CallID); ok {
			info := call.Info()
			if info.Callback.URL != "" {
				return info.Callback, true
			}
			// A call that came in for an application: the application's
			// incomingCallUrl, unless the call has a callbackUrl of its own.
			if info.ApplicationID != "" {
				if app, ok := b.Application(info.ApplicationID); ok {
					if cb := app.Callback(); cb.URL != "" {
						return cb, true
					}
				}
			}
			if confID == "" {
				confID = info.ConferenceID
			}
		}
	}
	return confCallback(confID)
}

// eventIsConference reports whether typ is a conference's own event type
// (as opposed to a call event).
func eventIsConference(typ string) bool {
	switch typ {
	case bridge.EventConference, bridge.EventConferenceMember, bridge.EventConferencePlayback, bridge.EventConferenceSpeak:
		return true
	}
	return false
}

// deliver sends one event: callbackUrl with retries, then fallbackUrl
// with retries, then gives up.
func (d *Dispatcher) deliver(it cbItem) {
	if !it.routed {
		cb, ok := d.route(it)
		if !ok {
			d.noCallback.Add(1)
			return
		}
		it.cb, it.p = cb, d.eventPayload(it.ev, cb)
	}
	err := d.send(it)
	if d.cfg.Done != nil && it.seq != 0 && d.ctx.Err() == nil {
		d.cfg.Done(it.seq, err)
	}
}

// send delivers one routed event: callbackUrl with retries, then
// fallbackUrl with retries, then gives up; it returns nil once delivered.
func (d *Dispatcher) send(it cbItem) error {
	cb, p := it.cb, it.p
	get := strings.EqualFold(strings.TrimSpace(cb.Method), http.MethodGet)
	timeout := cb.Timeout
	if timeout <= 0 || timeout > CallbackDefaultTimeout {
		timeout = CallbackDefaultTimeout
	}
	err := d.try(cb.URL, get, p, timeout)
	if err == nil {
		d.delivered.Add(1)
		return nil
	}
	if cb.FallbackURL != "" && d.ctx.Err() == nil {
		d.fallback.Add(1)
		ferr := d.try(cb.FallbackURL, get, p, timeout)
		if ferr == nil {
			d.delivered.Add(1)
			return nil
		}
		err = fmt.Errorf("%w; fallbackUrl: %w", err, ferr)
	}
	if d.ctx.Err() != nil { // Close gave up waiting
		d.dropped.Add(1)
		return err
	}
	d.failed.Add(1)
	d.log.Warn("callback given up", "event", it.ev.Type, "id", it.ev.ID, "state", it.ev.State, "user", it.ev.UserID,
		"conference", it.ev.ConferenceID, "member", it.ev.MemberID, "call", it.ev.CallID,
		"url", cbRedact(cb.URL), "err", err)
	return err
}

// try makes up to MaxRetries attempts to deliver p to rawURL.
func (d *Dispatcher) try(rawURL string, get bool, p cbPayload, timeout time.Duration) error {
	backoff := d.cfg.Backoff
	var err error
	for i := range d.cfg.MaxRetries {
		if i > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-d.ctx.Done():
				t.Stop()
				return d.ctx.Err()
			}
			backoff = min(2*backoff, cbMaxBackoff)
			d.retried.Add(1)
		}
		var permanent bool
		err, permanent = d.attempt(rawURL, get, p, timeout)
		if err == nil || permanent || d.ctx.Err() != nil {
			return err
		}
		d.log.Debug("callback attempt failed", "url", cbRedact(rawURL), "attempt", i+1, "err", err)
	}
	return err
}

// attempt makes one request. permanent reports an error that retrying
// cannot cure (a malformed URL).
func (d *Dispatcher) attempt(rawURL string, get bool, p cbPayload, timeout time.Duration) (err error, permanent bool) {
	ctx, cancel := context.WithTimeout(d.ctx, timeout)
	defer cancel()
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("callback URL %q is not an absolute http(s) URL", cbRedact(rawURL)), true
	}
	var req *http.Request
	if get {
		q := u.Query()
		for _, f := range p {
			q.Set(f.key, f.text())
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(p.json()))
		if req != nil {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
		}
	}
	if err != nil {
		return err, true
	}
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	resp, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrRefused) {
			return err, true // the same address will be refused again
		}
		if errors.Is(err, context.DeadlineExceeded) && d.ctx.Err() == nil {
			return fmt.Errorf("no answer within callbackTimeout %v: %w", timeout, err), false
		}
		return err, false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, cbMaxResponseDrain))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("callback answered %s", resp.Status), false
	}
	return nil, false
}

// cbRedact hides the password of a URL with credentials, for logs.
func cbRedact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
