package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chorus/bridge"
	"chorus/store"
)

// Outbox defaults.
const (
	// DefaultOutboxQueue bounds the events (and, apart, the record
	// changes and delivery outcomes) waiting for the writer; beyond, an
	// event goes on to delivery unwritten (and counted), never blocking
	// the bridge. An event takes about 300 bytes of the queue.
	DefaultOutboxQueue = 4096
	// obMaxBatch bounds the changes one transaction writes.
	obMaxBatch = 512
	// obMaxOverflowEnds bounds the records remembered as ended by an
	// event that a full queue sent on unwritten.
	obMaxOverflowEnds = 4096
	// obErrorSummary is how often failed writes are summarised in the log
	// (the first one is logged at once).
	obErrorSummary = time.Minute
	// DefaultOutboxCoalesce is how long the writer gathers members'
	// changes that raise no event (levels keyed on the phone) before it
	// saves them all: a flood of keys writes at most 4 times a second.
	DefaultOutboxCoalesce = 250 * time.Millisecond
	// DefaultOutboxPatience is how long a write may hold the events
	// behind it: past it, the disk is taken as stalled and events go on
	// to delivery unwritten (see Outbox.Publish).
	DefaultOutboxPatience = time.Second
)

// OutboxConfig configures an Outbox.
type OutboxConfig struct {
	// Store keeps the records and the events; nil runs in memory only:
	// events get ids and go on to delivery, nothing is written.
	Store  store.Store
	Bridge *bridge.Bridge
	// Dispatcher delivers the events once written (required).
	Dispatcher *Dispatcher
	// Next gets every event, with its id, once it was written (the event
	// stream).
	Next []bridge.EventSink
	Log  *slog.Logger
	// Queue bounds the changes waiting for the writer (default
	// DefaultOutboxQueue).
	Queue int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Coalesce is how long members' changes without an event wait to be
	// saved together (default DefaultOutboxCoalesce).
	Coalesce time.Duration
	// Patience is how long a transaction may hold delivery (default
	// DefaultOutboxPatience).
	Patience time.Duration
}

// OutboxStats counts what the outbox did.
type OutboxStats struct {
	Written       uint64 // events written to the store
	Unpersisted   uint64 // events delivered without being written: a full queue or a failed write
	WriteErrors   uint64 // transactions that failed
	LostAcks      uint64 // delivery outcomes not recorded (a full queue): redelivered after a restart
	Undeliverable uint64 // events given up after every attempt and kept for inspection
	// UnwrittenAnswers counts API changes answered before their records
	// were written (the store took longer than durableWait).
	UnwrittenAnswers uint64
	Queued           int // changes waiting for the writer now
}

// obCtl is a change for the writer other than an event: a record to save
// or delete, or a flush marker.
type obCtl struct {
	save  store.Key    // a record to snapshot (Kind set)
	put   store.Record // a record as given (Kind set): one no longer in the bridge
	del   store.Key    // a record to delete (Kind set)
	flush chan struct{}
}

// memberChange is a member's change that raised no event (MemberChanged):
// its three ids, joined into a key by the writer, not by the mixer's tick.
type memberChange struct{ user, conf, member string }

// obChanges bounds the member changes waiting for the writer: a change is
// a key press, so a full queue means a stalled writer, not a busy room.
const obChanges = 256

// obAck is a delivery outcome: a nil err is delivered.
type obAck struct {
	seq int64
	err error
}

// Outbox is the bridge's event sink when events must not be lost (issue
// 14): each event is written, with the records its state change touched,
// in one transaction by one writer goroutine, then handed to the
// dispatcher, which reports back what became of it. Publish never blocks:
// it puts the event on a bounded queue. The writer batches whatever
// waits into one transaction, so a burst of joins costs one commit.
//
// Events are numbered in publish order over the life of the store; the
// number is the event's id (eventId in the callback JSON), the same on
// every delivery, before or after a restart. Without a store the outbox
// only numbers the events (ids unique to the process) and hands them on.
type Outbox struct {
	cfg  OutboxConfig
	st   store.Store
	d    *Dispatcher
	log  *slog.Logger
	in   chan bridge.Event
	ctl  chan obCtl
	chg  chan memberChange
	acks chan obAck
	quit chan struct{}
	done chan struct{}
	boot string // memory only: distinguishes this process's ids

	closing atomic.Bool

	// Owned by the writer goroutine (and by Recover before it starts).
	seq   int64
	batch store.Batch
	recs  map[store.Key]store.Record
	ends  map[store.Key]struct{} // records whose ending event is in this batch
	// live holds the records written live whose ending event is not
	// written yet: as many as the bridge has live, and a record whose
	// ending event was not written (a full queue) until the process ends.
	live map[store.Key]struct{}

	// A stalled disk: applying is when the transaction in progress began
	// (nanoseconds since epoch, monotonic), 0 between transactions.
	// handMu orders the hand-on of the batch in flight (out, handed)
	// between the writer and a Publish that finds the disk stalled.
	epoch    time.Time
	applying atomic.Int64
	handMu   sync.Mutex
	handed   bool

	// Records whose ending event a full queue sent on unwritten, noted by
	// Publish (any goroutine) for the writer.
	ovMu      sync.Mutex
	ovEnds    map[store.Key]struct{}
	out       []obOut
	errs      int // failed writes since the last summary
	lastError time.Time
	dirty     map[store.Key]struct{} // records to snapshot when dirtyT fires
	dirtyT    *time.Timer            // armed while dirty holds keys

	written, unpersisted, writeErrors, lostAcks, undeliverable, unwrittenAnswers atomic.Uint64
	unwrittenIDs                                                                 atomic.Uint64 // numbers the ids of events sent unwritten
}

// obOut is an event written (or not) in the current batch, to hand on
// after the commit.
type obOut struct {
	ev   bridge.Event
	item cbItem
	send bool // it has a callback
}

// NewOutbox returns an outbox; Recover (with a store), then Start.
func NewOutbox(cfg OutboxConfig) *Outbox {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultOutboxQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = DefaultOutboxCoalesce
	}
	if cfg.Patience <= 0 {
		cfg.Patience = DefaultOutboxPatience
	}
	o := &Outbox{cfg: cfg, st: cfg.Store, d: cfg.Dispatcher, log: cfg.Log, in: make(chan bridge.Event, cfg.Queue),
		ctl: make(chan obCtl, cfg.Queue), chg: make(chan memberChange, obChanges), acks: make(chan obAck, cfg.Queue), quit: make(chan struct{}), done: make(chan struct{}),
		recs: map[store.Key]store.Record{}, dirty: map[store.Key]struct{}{}, ends: map[store.Key]struct{}{}, live: map[store.Key]struct{}{}, ovEnds: map[store.Key]struct{}{},
		boot: strconv.FormatInt(time.Now().UnixMilli(), 36), epoch: time.Now()}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	o.d.cfg.Done = o.delivered
	if o.st != nil {
		o.d.storedConf = o.storedConference
	}
	o.followIDs()
	return o
}

// idFollower is a sink that orders what it keeps by the events' ids (the
// event stream, whose SSE ids are the eventIds).
type idFollower interface {
	followIDs(prefix string, start int64)
}

// followIDs tells the sinks after the outbox the form of its ids and the
// number they continue after.
func (o *Outbox) followIDs() {
	prefix := o.eventID(0)
	prefix = prefix[:len(prefix)-1]
	for _, s := range o.cfg.Next {
		if f, ok := s.(idFollower); ok {
			f.followIDs(prefix, o.seq)
		}
	}
}

// Start runs the writer.
func (o *Outbox) Start() { go o.run() }

// eventID is the id of event number seq.
func (o *Outbox) eventID(seq int64) string {
	if o.st == nil {
		return "e-" + o.boot + "-" + strconv.FormatInt(seq, 10)
	}
	return "e-" + strconv.FormatInt(seq, 10)
}

// Publish implements bridge.EventSink: it queues ev and returns at once.
// With the queue full the event goes on to delivery unwritten, and is
// counted; it is never dropped for the store's sake.
func (o *Outbox) Publish(ev bridge.Event) {
	if ev.Time.IsZero() {
		ev.Time = o.cfg.Now()
	}
	if o.closing.Load() {
		o.d.dropped.Add(1)
		return
	}
	if o.stalled() && o.bypass(ev) {
		return
	}
	select {
	case o.in <- ev:
	default:
		o.sendUnwritten(ev)
	}
}

// stalled says whether the transaction in progress has held delivery for
// longer than the patience.
func (o *Outbox) stalled() bool {
	since := o.applying.Load()
	return since != 0 && time.Since(o.epoch)-time.Duration(since) > o.cfg.Patience
}

// bypass delivers ev unwritten while the disk is stalled, after what is
// older: the batch the stalled transaction holds and the events queued
// behind it, in order, so that an application keeps getting its events
// (an incoming call to answer) while the disk does not answer. The
// writer, blocked in the store meanwhile, writes the batch in flight when
// the disk comes back; the others are counted unpersisted. It reports
// false when the transaction ended meanwhile: ev takes the queue.
func (o *Outbox) bypass(ev bridge.Event) bool {
	o.handMu.Lock()
	defer o.handMu.Unlock()
	if o.applying.Load() == 0 {
		return false
	}
	o.handOnLocked()
	for {
		select {
		case old := <-o.in:
			o.sendUnwritten(old)
		default:
			o.sendUnwritten(ev)
			return true
		}
	}
}

// sendUnwritten delivers an event that is not written: the queue was full
// or the disk is stalled. A record it ends is noted, so that it is written
// ended later rather than left live.
func (o *Outbox) sendUnwritten(ev bridge.Event) {
	o.unpersisted.Add(1)
	if ev.ID == "" {
		// Not numbered by the writer, never delivered again: an id of
		// this process's own, still one per event for the app to dedupe.
		ev.ID = "e-" + o.boot + "-u" + strconv.FormatUint(o.unwrittenIDs.Add(1), 10)
	}
	if k, ok := endingKey(ev); ok && o.st != nil {
		o.noteOverflowEnd(k)
	}
	o.d.Publish(ev)
	for _, s := range o.cfg.Next {
		s.Publish(ev)
	}
}

// Saved tells the outbox that a record changed without an event (an API
// update, a new call, an application): it is written with the next batch.
// Like Publish, it never blocks; a full queue loses the change (counted).
func (o *Outbox) Saved(kind store.Kind, user, id string) {
	o.queue(obCtl{save: store.Key{Kind: kind, User: user, ID: id}})
}

// MemberChanged implements bridge.ChangeSink: a member's levels changed
// (keyed on the phone) without an event. The writer saves the member
// within Coalesce, with whatever else changed meanwhile, so a crash loses
// at most that much and a flood of keys costs a few writes a second. It
// never blocks (called from the mixer's tick); a full queue loses the
// change until the member's next event (counted as a write error).
func (o *Outbox) MemberChanged(user, confID, memberID string) {
	if o.st == nil || o.closing.Load() {
		return
	}
	select {
	case o.chg <- memberChange{user, confID, memberID}:
	default:
		o.writeErrors.Add(1)
	}
}

var _ bridge.ChangeSink = (*Outbox)(nil)

// SavedRecord tells the outbox to write r as it is: a change to a record
// the bridge no longer holds (a stored recording whose media was
// deleted), which Saved could not snapshot.
func (o *Outbox) SavedRecord(r store.Record) {
	o.queue(obCtl{put: r})
}

// Deleted tells the outbox that a record is gone (a deleted application
// or released number).
func (o *Outbox) Deleted(kind store.Kind, user, id string) {
	o.queue(obCtl{del: store.Key{Kind: kind, User: user, ID: id}})
}

func (o *Outbox) queue(it obCtl) {
	if o.st == nil || o.closing.Load() {
		return
	}
	select {
	case o.ctl <- it:
	default:
		o.writeErrors.Add(1)
	}
}

// delivered is the dispatcher's report on event seq.
func (o *Outbox) delivered(seq int64, err error) {
	if err != nil {
		o.undeliverable.Add(1)
	}
	if o.st == nil {
		return
	}
	select {
	case o.acks <- obAck{seq: seq, err: err}:
	default:
		o.lostAcks.Add(1)
	}
}

// Flush waits until everything published before it was written and handed
// on, or ctx ends.
func (o *Outbox) Flush(ctx context.Context) error {
	f := make(chan struct{})
	select {
	case o.ctl <- obCtl{flush: f}:
	case <-ctx.Done():
		return ctx.Err()
	case <-o.done:
		return nil
	}
	select {
	case <-f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued, then closes the dispatcher (which delivers
// what it can until ctx ends), records the outcomes and stops the writer.
// Events not delivered by then stay in the outbox for the next start.
func (o *Outbox) Close(ctx context.Context) error {
	ferr := o.Flush(ctx)
	o.closing.Store(true)
	derr := o.d.Close(ctx)
	close(o.quit)
	<-o.done
	return errors.Join(ferr, derr)
}

// Stats returns the counters.
func (o *Outbox) Stats() OutboxStats {
	return OutboxStats{Written: o.written.Load(), Unpersisted: o.unpersisted.Load(), WriteErrors: o.writeErrors.Load(),
		LostAcks: o.lostAcks.Load(), Undeliverable: o.undeliverable.Load(), UnwrittenAnswers: o.unwrittenAnswers.Load(),
		Queued: len(o.in) + len(o.ctl) + len(o.chg) + len(o.acks)}
}

// run is the writer: it takes what waits, writes it in one transaction and
// hands the events on, until Close.
func (o *Outbox) run() {
	defer close(o.done)
	var flushes []chan struct{}
	for {
		select {
		case ev := <-o.in:
			o.addEvent(ev)
		case it := <-o.ctl:
			flushes = o.control(it, flushes)
		case it := <-o.acks:
			o.ack(it)
		case mc := <-o.chg:
			o.markDirty(mc)
		case <-o.dirtyFire():
			o.saveDirty()
		case <-o.quit:
			o.saveDirty()
			for {
				select {
				case ev := <-o.in:
					o.addEvent(ev)
				case it := <-o.ctl:
					flushes = o.control(it, flushes)
				case it := <-o.acks:
					o.ack(it)
				case mc := <-o.chg:
					o.markDirty(mc)
				default:
					o.saveDirty()
					o.commit(flushes)
					return
				}
			}
		}
	more:
		for range obMaxBatch {
			select {
			case ev := <-o.in:
				o.addEvent(ev)
			case it := <-o.ctl:
				flushes = o.control(it, flushes)
			case it := <-o.acks:
				o.ack(it)
			case mc := <-o.chg:
				o.markDirty(mc)
			default:
				break more
			}
		}
		flushes = o.commit(flushes)
	}
}

// control adds a record change to the batch, or a flush: a flush takes
// every event queued before it into this batch, so that it is written
// when the flush returns.
func (o *Outbox) control(it obCtl, flushes []chan struct{}) []chan struct{} {
	switch {
	case it.flush != nil:
		for n := len(o.in); n > 0; n-- {
			o.addEvent(<-o.in)
		}
		for n := len(o.chg); n > 0; n-- {
			o.markDirty(<-o.chg)
		}
		o.saveDirty()
		return append(flushes, it.flush)
	case it.save.Kind != "":
		if r, ok := o.snapshot(it.save); ok {
			o.recs[it.save] = r
		}
	case it.put.Kind != "":
		o.recs[it.put.Key] = it.put
	case it.del.Kind != "":
		delete(o.recs, it.del)
		o.batch.Delete = append(o.batch.Delete, it.del)
	}
	return flushes
}

// markDirty notes a member to save when the coalescing timer fires,
// arming it for the first.
func (o *Outbox) markDirty(mc memberChange) {
	o.dirty[store.Key{Kind: store.KindMember, User: mc.user, ID: mc.conf + "/" + mc.member}] = struct{}{}
	if o.dirtyT == nil {
		o.dirtyT = time.NewTimer(o.cfg.Coalesce)
	}
}

// dirtyFire is the channel of the coalescing timer; nil (never ready)
// while no change waits.
func (o *Outbox) dirtyFire() <-chan time.Time {
	if o.dirtyT == nil {
		return nil
	}
	return o.dirtyT.C
}

// saveDirty snapshots the records whose changes waited to be coalesced
// into the batch: each as it is now, every change so far included.
func (o *Outbox) saveDirty() {
	if o.dirtyT != nil {
		o.dirtyT.Stop()
		o.dirtyT = nil
	}
	for k := range o.dirty {
		o.save(k)
	}
	clear(o.dirty)
}

// ack adds a delivery outcome to the batch.
func (o *Outbox) ack(it obAck) {
	if it.err == nil {
		o.batch.Delivered = append(o.batch.Delivered, it.seq)
		return
	}
	msg := it.err.Error()
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	o.batch.Failed = append(o.batch.Failed, store.Failure{Seq: it.seq, Error: msg})
}

// addEvent numbers ev, snapshots the records it changed and, when it has
// a callback, renders it into the outbox.
func (o *Outbox) addEvent(ev bridge.Event) {
	o.seq++
	ev.ID = o.eventID(o.seq)
	if o.st != nil {
		o.snapshotEvent(ev)
	}
	it := cbItem{ev: ev, confID: ev.ConferenceID}
	cb, ok := o.d.route(it)
	if !ok {
		o.d.noCallback.Add(1)
		o.out = append(o.out, obOut{ev: ev})
		return
	}
	it.seq, it.cb, it.p = o.seq, cb, o.d.eventPayload(ev, cb)
	if o.st != nil {
		route, _ := json.Marshal(cb)
		o.batch.Events = append(o.batch.Events, store.Event{Seq: o.seq, User: ev.UserID, Queue: queueName(it),
			Type: ev.Type, Route: route, Body: it.p.json(), Created: ev.Time})
	}
	o.out = append(o.out, obOut{ev: ev, item: it, send: true})
}

// queueName is the stored ordering key of an event: its conference's, or
// its call's outside conferences (the dispatcher's cbKey).
func queueName(it cbItem) string {
	if it.confID != "" {
		return "conf:" + it.confID
	}
	return "call:" + it.ev.CallID
}

// snapshotEvent adds the records an event's state change touched, and
// notes the record whose end the event reports.
func (o *Outbox) snapshotEvent(ev bridge.Event) {
	switch ev.Type {
	case bridge.EventConference:
		o.save(store.Key{Kind: store.KindConference, User: ev.UserID, ID: ev.ConferenceID})
	case bridge.EventConferenceMember:
		o.save(store.Key{Kind: store.KindConference, User: ev.UserID, ID: ev.ConferenceID})
		o.save(store.Key{Kind: store.KindMember, User: ev.UserID, ID: ev.ConferenceID + "/" + ev.MemberID})
		o.save(store.Key{Kind: store.KindCall, User: ev.UserID, ID: ev.CallID})
	case bridge.EventAnswer, bridge.EventHangup, bridge.EventIncomingCall, bridge.EventTransferring:
		o.save(store.Key{Kind: store.KindCall, User: ev.UserID, ID: ev.CallID})
	case bridge.EventRecording:
		o.save(store.Key{Kind: store.KindRecording, User: ev.UserID, ID: ev.RecordingID})
	case bridge.EventGather:
		if ev.GatherID != "" {
			o.save(gatherKey(ev.UserID, ev.CallID, ev.GatherID))
		}
	}
	if k, ok := endingKey(ev); ok {
		o.ends[k] = struct{}{}
	}
}

// endingKey returns the record whose end ev reports: a conference's
// completion, a member's, a call's hangup.
func endingKey(ev bridge.Event) (store.Key, bool) {
	switch {
	case ev.Type == bridge.EventConference && ev.State == bridge.StateCompleted:
		return store.Key{Kind: store.KindConference, User: ev.UserID, ID: ev.ConferenceID}, true
	case ev.Type == bridge.EventConferenceMember && ev.State == bridge.StateCompleted:
		return store.Key{Kind: store.KindMember, User: ev.UserID, ID: ev.ConferenceID + "/" + ev.MemberID}, true
	case ev.Type == bridge.EventHangup:
		return store.Key{Kind: store.KindCall, User: ev.UserID, ID: ev.CallID}, true
	}
	return store.Key{}, false
}

// noteOverflowEnd remembers a record whose ending event went on to
// delivery unwritten (a full queue), so that the writer writes the record
// ended without its event: left live, the next start would end it again
// and send a second completion. Bounded: beyond obMaxOverflowEnds (a disk
// stalled for long) the record is left to the next start, as before.
func (o *Outbox) noteOverflowEnd(k store.Key) {
	o.ovMu.Lock()
	defer o.ovMu.Unlock()
	if len(o.ovEnds) < obMaxOverflowEnds {
		o.ovEnds[k] = struct{}{}
	}
}

// takeOverflowEnds adds the records noted by noteOverflowEnd to the batch
// as ended.
func (o *Outbox) takeOverflowEnds() {
	o.ovMu.Lock()
	defer o.ovMu.Unlock()
	for k := range o.ovEnds {
		o.save(k)
		o.ends[k] = struct{}{}
		delete(o.ovEnds, k)
	}
}

// gatherKey is the writer's key of a gather: "call/gather", since a
// gather is found through its call (the record's id is the gather's).
func gatherKey(user, callID, gatherID string) store.Key {
	return store.Key{Kind: store.KindGather, User: user, ID: callID + "/" + gatherID}
}

// SavedGather is Saved for a gather (a new one: its completion is saved
// with its event).
func (o *Outbox) SavedGather(user, callID, gatherID string) {
	o.queue(obCtl{save: gatherKey(user, callID, gatherID)})
}

func (o *Outbox) save(k store.Key) {
	if k.ID == "" {
		return
	}
	if r, ok := o.snapshot(k); ok {
		o.recs[k] = r
	}
}

// snapshot reads a record's current state from the bridge. A member's
// key names it "conference/member": it is found through its conference.
func (o *Outbox) snapshot(k store.Key) (store.Record, bool) {
	b := o.cfg.Bridge
	switch k.Kind {
	case store.KindConference:
		if c, ok := b.Conference(k.ID); ok && c.UserID() == k.User {
			return conferenceRecord(c.Info(), ""), true
		}
	case store.KindCall:
		if c, ok := b.Call(k.ID); ok && c.UserID() == k.User {
			return callRecord(c.Info()), true
		}
	case store.KindMember:
		if conf, member, ok := strings.Cut(k.ID, "/"); ok {
			if c, ok := b.Conference(conf); ok && c.UserID() == k.User {
				if m, ok := c.Member(member); ok {
					return memberRecordOf(k.User, m.Info()), true
				}
			}
		}
	case store.KindApplication:
		if a, ok := b.Application(k.ID); ok && a.UserID() == k.User {
			return applicationRecord(a.Info()), true
		}
	case store.KindNumber:
		if n, ok := b.PhoneNumber(k.ID); ok && n.UserID() == k.User {
			return numberRecord(n.Info()), true
		}
	case store.KindRecording:
		if r, ok := b.Recording(k.ID); ok && r.UserID() == k.User {
			return recordingRecord(r.Info()), true
		}
	case store.KindGather:
		if call, gather, ok := strings.Cut(k.ID, "/"); ok {
			if c, ok := b.Call(call); ok && c.UserID() == k.User {
				if g, ok := c.Gather(gather); ok {
					return gatherRecord(k.User, g.Info()), true
				}
			}
		}
	}
	return store.Record{}, false
}

// SavedMember is Saved for a member, which is found through its
// conference.
func (o *Outbox) SavedMember(user, confID, memberID string) {
	o.Saved(store.KindMember, user, confID+"/"+memberID)
}

// commit writes the batch and hands its events on, written or not.
func (o *Outbox) commit(flushes []chan struct{}) []chan struct{} {
	b := &o.batch
	if o.st != nil {
		o.takeOverflowEnds()
	}
	// A wake-up with nothing to write (a change left to coalesce) costs
	// no transaction.
	if o.st != nil && len(o.recs)+len(b.Put)+len(b.Delete)+len(b.Events)+len(b.Delivered)+len(b.Failed) > 0 {
		for k, r := range o.recs {
			o.batch.Put = append(o.batch.Put, o.endWithEvent(k, r))
		}
		clear(o.ends)
		o.batch.Seq = o.seq
		o.applying.Store(max(int64(time.Since(o.epoch)), 1))
		err := o.st.Apply(context.Background(), &o.batch)
		if err != nil {
			o.writeFailed(err)
		} else {
			o.written.Add(uint64(len(o.batch.Events)))
		}
		o.batch.Reset()
		clear(o.recs)
	}
	o.handMu.Lock()
	o.applying.Store(0)
	o.handOnLocked()
	o.handed = false
	o.out = o.out[:0]
	o.handMu.Unlock()
	for _, f := range flushes {
		close(f)
	}
	return flushes[:0]
}

// handOnLocked hands the batch's events to delivery and the event stream,
// once: by the writer after its transaction, or by a Publish that found
// the transaction stalled (bypass). handMu is held.
func (o *Outbox) handOnLocked() {
	if o.handed {
		return
	}
	o.handed = true
	for i := range o.out {
		x := &o.out[i]
		if x.send {
			o.d.enqueueRouted(x.item)
		}
		for _, s := range o.cfg.Next {
			s.Publish(x.ev)
		}
		*x = obOut{}
	}
}

// endWithEvent returns r as it is written in this batch: a conference,
// member or call is written ended only with the event that reports its end
// (conference completed, member completed, hangup). A snapshot taken for
// another event can already show the end (Call.Ended marks the call
// completed, then the member's completion is published, then the hangup;
// a member's joining may be written after it left): written ended there,
// a kill before the ending event's batch would leave a record that a
// restart takes for done and an event that is never sent. Such a record
// is written with its data but live (Ended zero, from which Recover and
// retention go) until its ending event's batch; a kill in between makes
// Recover end it (SERVER_RESTART) with its event. Only a record neither
// written live by this run nor seen ending costs a read, to tell one
// whose end is already written (it stays ended) from a new one.
func (o *Outbox) endWithEvent(k store.Key, r store.Record) store.Record {
	switch k.Kind {
	case store.KindConference, store.KindMember, store.KindCall:
	default:
		return r
	}
	if r.Live() {
		o.live[k] = struct{}{}
		return r
	}
	if _, ok := o.ends[k]; ok {
		delete(o.live, k)
		return r
	}
	if _, ok := o.live[k]; !ok {
		old, err := o.st.Get(context.Background(), r.Key)
		if !errors.Is(err, store.ErrNotFound) && (err != nil || !old.Live()) {
			return r // its end is written (or unknown: written as it is)
		}
		o.live[k] = struct{}{}
	}
	r.Ended = time.Time{}
	return r
}

// writeFailed counts a failed transaction: its events are delivered all
// the same (they are only not durable). The first failure is logged at
// once, later ones in a summary a minute apart, never a line per write.
func (o *Outbox) writeFailed(err error) {
	o.writeErrors.Add(1)
	o.unpersisted.Add(uint64(len(o.batch.Events)))
	o.errs++
	now := time.Now()
	if o.lastError.IsZero() || now.Sub(o.lastError) >= obErrorSummary {
		o.log.Error("store write failed: records and events of this batch are not durable", "failed_writes", o.errs, "err", err)
		o.errs, o.lastError = 0, now
	}
}

// storedConference reads a conference from the store, for the
// createdTime of an event of a conference no longer in memory.
func (o *Outbox) storedConference(user, id string) (bridge.ConferenceInfo, bool) {
	r, err := o.st.Get(context.Background(), store.Key{Kind: store.KindConference, User: user, ID: id})
	if err != nil {
		return bridge.ConferenceInfo{}, false
	}
	cr, err := decodeRecord[confRecord](r)
	return cr.ConferenceInfo, err == nil
}

// RecoverStats is what Recover found.
type RecoverStats struct {
	Applications, Numbers int
	// Pending events of the previous run, queued again.
	Pending int
	// Conferences, members and calls a crash left live, now completed.
	Conferences, Members, Calls int
	// Recordings a crash left recording, now ended in state error.
	Recordings int
	// Gathers a crash left collecting, now completed (hung-up).
	Gathers int
}

// Recover runs once at start, before Start and before traffic: it brings
// the applications and numbers back into the bridge, completes the
// conferences, members and calls a crash left live (cause
// CauseServerRestart, ended now) with their completion events, ends the
// gathers it left collecting (reason hung-up) with their gather events,
// ends the recordings it left recording (state error, error CauseServerRestart,
// their files repaired: bridge.CloseCrashedRecording) with their recording
// events, and queues every event not yet delivered, in order.
func (o *Outbox) Recover(ctx context.Context) (RecoverStats, error) {
	var rs RecoverStats
	if o.st == nil {
		return rs, nil
	}
	st, b := o.st, o.cfg.Bridge
	seq, err := st.LastSeq(ctx)
	if err != nil {
		return rs, err
	}
	o.seq = seq
	o.followIDs()
	if rs.Applications, err = restoreRecords(ctx, o, store.KindApplication, b.RestoreApplication); err != nil {
		return rs, err
	}
	if rs.Numbers, err = restoreRecords(ctx, o, store.KindNumber, b.RestoreNumber); err != nil {
		return rs, err
	}
	pending, err := st.Pending(ctx)
	if err != nil {
		return rs, err
	}
	for _, e := range pending {
		it, err := o.storedItem(e)
		if err != nil {
			o.log.Warn("stored event unreadable: kept as undeliverable", "seq", e.Seq, "err", err)
			o.batch.Failed = append(o.batch.Failed, store.Failure{Seq: e.Seq, Error: err.Error()})
			continue
		}
		o.out = append(o.out, obOut{item: it, send: true})
		rs.Pending++
	}
	if err := o.closeLive(ctx, &rs); err != nil {
		return rs, err
	}
	// Written before anything is delivered: the completions are durable
	// like any event. The pending ones are queued first, in their order.
	if err := st.Apply(ctx, &o.batch); err != nil {
		return rs, fmt.Errorf("recover: %w", err)
	}
	o.written.Add(uint64(len(o.batch.Events)))
	o.batch.Reset()
	for _, x := range o.out {
		if x.send {
			o.d.enqueueRouted(x.item)
		}
		if x.ev.Type != "" {
			for _, s := range o.cfg.Next {
				s.Publish(x.ev)
			}
		}
	}
	o.out = o.out[:0]
	return rs, nil
}

// storedItem turns a stored event back into a routed dispatcher item.
func (o *Outbox) storedItem(e store.Event) (cbItem, error) {
	var cb bridge.Callback
	if err := json.Unmarshal(e.Route, &cb); err != nil {
		return cbItem{}, fmt.Errorf("route: %w", err)
	}
	p, err := decodePayload(e.Body)
	if err != nil {
		return cbItem{}, fmt.Errorf("body: %w", err)
	}
	it := cbItem{ev: bridge.Event{ID: o.eventID(e.Seq), Type: e.Type, UserID: e.User, Time: e.Created},
		seq: e.Seq, routed: true, cb: cb, p: p}
	kind, id, _ := strings.Cut(e.Queue, ":")
	if kind == "conf" {
		it.confID, it.ev.ConferenceID = id, id
	} else {
		it.ev.CallID = id
	}
	return it, nil
}

// closeLive completes the records a crash left live and writes their
// completion events into the batch.
func (o *Outbox) closeLive(ctx context.Context, rs *RecoverStats) error {
	st, now := o.st, o.cfg.Now()
	list := func(k store.Kind) ([]store.Record, error) {
		return st.List(ctx, store.Query{Kind: k, LiveOnly: true, Oldest: true})
	}
	confRecs, err := list(store.KindConference)
	if err != nil {
		return err
	}
	memberRecs, err := list(store.KindMember)
	if err != nil {
		return err
	}
	callRecs, err := list(store.KindCall)
	if err != nil {
		return err
	}
	confs := map[string]confRecord{}
	for _, r := range confRecs {
		cr, err := decodeRecord[confRecord](r)
		if err != nil {
			o.log.Warn("conference record unreadable", "id", r.ID, "err", err)
			continue
		}
		cr.State, cr.Completed, cr.ActiveMembers, cr.Waiting, cr.Cause = bridge.StateCompleted, now, 0, 0, CauseServerRestart
		confs[cr.ID] = cr
		rs.Conferences++
	}
	// A member's or call's conference may have ended cleanly: read it for
	// its callback.
	conf := func(user, id string) (confRecord, bool) {
		if cr, ok := confs[id]; ok {
			return cr, true
		}
		if id == "" {
			return confRecord{}, false
		}
		r, err := st.Get(ctx, store.Key{Kind: store.KindConference, User: user, ID: id})
		if err != nil {
			return confRecord{}, false
		}
		cr, err := decodeRecord[confRecord](r)
		return cr, err == nil
	}
	for _, r := range memberRecs {
		mr, err := decodeRecord[memberRecord](r)
		if err != nil {
			o.log.Warn("member record unreadable", "id", r.ID, "err", err)
			continue
		}
		mr.State, mr.Removed = bridge.StateCompleted, now
		o.batch.Put = append(o.batch.Put, memberRecordOf(mr.UserID, mr.MemberInfo))
		rs.Members++
		cr, ok := conf(mr.UserID, mr.ConferenceID)
		if !ok {
			continue
		}
		o.recoveryEvent(bridge.Event{Type: bridge.EventConferenceMember, Time: now, UserID: mr.UserID, ConferenceID: mr.ConferenceID,
			MemberID: mr.ID, CallID: mr.CallID, State: bridge.StateCompleted, Cause: CauseServerRestart, Tag: cr.Callback.Tag},
			cr.Callback, &cr.ConferenceInfo, nil)
	}
	calls := map[string]bridge.CallInfo{}
	for _, r := range callRecs {
		in, err := decodeRecord[bridge.CallInfo](r)
		if err != nil {
			o.log.Warn("call record unreadable", "id", r.ID, "err", err)
			continue
		}
		calls[in.ID] = in
	}
	// The call of a stored record: one the crash left live, or one that
	// had ended.
	callOf := func(user, id string) (bridge.CallInfo, bool) {
		if in, ok := calls[id]; ok {
			return in, true
		}
		r, err := st.Get(ctx, store.Key{Kind: store.KindCall, User: user, ID: id})
		if err != nil {
			return bridge.CallInfo{}, false
		}
		in, err := decodeRecord[bridge.CallInfo](r)
		return in, err == nil
	}
	callback := func(in bridge.CallInfo) bridge.Callback {
		cb := in.Callback
		if cb.URL == "" && in.ApplicationID != "" {
			if a, ok := o.cfg.Bridge.Application(in.ApplicationID); ok {
				cb = a.Callback()
			}
		}
		if cb.URL == "" {
			if cr, ok := conf(in.UserID, in.ConferenceID); ok {
				cb = cr.Callback
			}
		}
		return cb
	}
	// Gathers still collecting end as their calls did (hung-up, one of
	// Catapult's reasons), each with its gather event before its call's
	// hangup, as when a call ends live.
	gatherRecs, err := list(store.KindGather)
	if err != nil {
		return err
	}
	for _, r := range gatherRecs {
		gr, err := decodeRecord[gatherRecordData](r)
		if err != nil {
			o.log.Warn("gather record unreadable", "id", r.ID, "err", err)
			continue
		}
		gr.State, gr.Reason, gr.Completed = bridge.GatherCompleted, bridge.GatherHungUp, now
		o.batch.Put = append(o.batch.Put, gatherRecord(gr.UserID, gr.GatherInfo))
		rs.Gathers++
		call, _ := callOf(gr.UserID, gr.CallID)
		cb := callback(call)
		tag := gr.Tag
		if tag == "" {
			tag = cb.Tag
		}
		o.recoveryEvent(bridge.Event{Type: bridge.EventGather, Time: now, UserID: gr.UserID, ConferenceID: call.ConferenceID,
			CallID: gr.CallID, GatherID: gr.ID, State: string(bridge.GatherCompleted), Digits: gr.Digits, Reason: bridge.GatherHungUp,
			Tag: tag}, cb, nil, nil)
	}
	for _, r := range callRecs {
		in, ok := calls[r.ID]
		if !ok {
			continue
		}
		in.State, in.Ended, in.Cause = bridge.CallCompleted, now, CauseServerRestart
		o.batch.Put = append(o.batch.Put, callRecord(in))
		rs.Calls++
		calls[in.ID] = in
		o.recoveryEvent(bridge.Event{Type: bridge.EventHangup, Time: now, UserID: in.UserID, ConferenceID: in.ConferenceID,
			CallID: in.ID, Cause: CauseServerRestart, From: in.From, To: in.To, Tag: in.Callback.Tag}, callback(in), nil, nil)
	}
	for _, cr := range confs {
		o.batch.Put = append(o.batch.Put, conferenceRecord(cr.ConferenceInfo, cr.Cause))
		o.recoveryEvent(bridge.Event{Type: bridge.EventConference, Time: now, UserID: cr.UserID, ConferenceID: cr.ID,
			State: bridge.StateCompleted, Cause: CauseServerRestart, Tag: cr.Callback.Tag}, cr.Callback, &cr.ConferenceInfo, nil)
	}
	// Recordings last, as live: a recording's event follows the end of
	// what it recorded.
	recRecs, err := list(store.KindRecording)
	if err != nil {
		return err
	}
	for _, r := range recRecs {
		in, err := decodeRecord[bridge.RecordingInfo](r)
		if err != nil {
			o.log.Warn("recording record unreadable", "id", r.ID, "err", err)
			continue
		}
		in = o.cfg.Bridge.CloseCrashedRecording(in, CauseServerRestart)
		o.batch.Put = append(o.batch.Put, recordingRecord(in))
		rs.Recordings++
		var cb bridge.Callback
		switch {
		case in.CallID != "":
			call, _ := callOf(in.UserID, in.CallID)
			cb = callback(call)
		case in.ConferenceID != "":
			if cr, ok := conf(in.UserID, in.ConferenceID); ok {
				cb = cr.Callback
			}
		}
		o.recoveryEvent(bridge.Event{Type: bridge.EventRecording, Time: now, UserID: in.UserID, ConferenceID: in.ConferenceID,
			CallID: in.CallID, RecordingID: in.ID, State: string(in.State), Cause: in.Error, Tag: cb.Tag}, cb, nil, &in)
	}
	return nil
}

// recoveryEvent numbers and renders a completion event of Recover.
func (o *Outbox) recoveryEvent(ev bridge.Event, cb bridge.Callback, conf *bridge.ConferenceInfo, rec *bridge.RecordingInfo) {
	o.seq++
	ev.ID = o.eventID(o.seq)
	it := cbItem{ev: ev, confID: ev.ConferenceID}
	if cb.URL == "" {
		o.out = append(o.out, obOut{ev: ev})
		return
	}
	it.seq, it.cb = o.seq, cb
	it.p = o.d.payloadWith(ev, cb, conf, rec)
	if ev.Type == bridge.EventConference && ev.Cause != "" {
		it.p = append(it.p, cbField{"cause", ev.Cause}) // extension: why the bridge ended it
	}
	route, _ := json.Marshal(cb)
	o.batch.Events = append(o.batch.Events, store.Event{Seq: o.seq, User: ev.UserID, Queue: queueName(it),
		Type: ev.Type, Route: route, Body: it.p.json(), Created: ev.Time})
	o.batch.Seq = o.seq
	o.out = append(o.out, obOut{ev: ev, item: it, send: true})
}

// decodePayload reads a stored event body back into its fields, in order
// (a GET callback sends them as query parameters in that order).
func decodePayload(body []byte) (cbPayload, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var p cbPayload
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := kt.(string)
		if !ok {
			return nil, fmt.Errorf("not a JSON object")
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch v := vt.(type) {
		case string, bool:
			p = append(p, cbField{key, v})
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", key, err)
			}
			p = append(p, cbField{key, int(n)})
		default:
			return nil, fmt.Errorf("field %s: not a string, number or boolean", key)
		}
	}
	return p, nil
}

// restoreRecords hands every stored record of kind, oldest first, to
// restore and counts those it took; one that does not decode or is
// refused is logged and skipped, so one bad record does not stop a start.
func restoreRecords[T any](ctx context.Context, o *Outbox, kind store.Kind, restore func(T) error) (int, error) {
	recs, err := o.st.List(ctx, store.Query{Kind: kind, Oldest: true})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		in, err := decodeRecord[T](r)
		if err == nil {
			err = restore(in)
		}
		if err != nil {
			o.log.Warn("record not restored", "kind", kind, "id", r.ID, "err", err)
			continue
		}
		n++
	}
	return n, nil
}
