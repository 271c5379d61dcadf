// Package store keeps the bridge's records and the callback outbox on
// disk, behind the small Store interface: the rest of Chorus knows records
// (a resource's JSON keyed by kind, user and id) and events, never SQL.
// The implementation is embedded SQLite (modernc.org/sqlite, pure Go) in
// WAL mode, with schema migrations embedded from migrations/*.sql and
// applied at Open; a networked database could take its place for a fleet.
//
// Writes come from one goroutine (the caller's writer), a batch per
// transaction; reads may come from any goroutine at the same time (WAL
// readers do not wait for the writer).
package store

import (
	"context"
	"errors"
	"time"
)

// Kind names a kind of record.
type Kind string

// The kinds of records. A new kind (recordings) needs no schema change:
// records are JSON with the same few columns.
const (
	KindConference  Kind = "conference"
	KindMember      Kind = "member"
	KindCall        Kind = "call"
	KindApplication Kind = "application"
	KindNumber      Kind = "number"
	KindRecording   Kind = "recording"
	KindGather      Kind = "gather"
)

// ErrNotFound is returned for a record that is not stored.
var ErrNotFound = errors.New("store: not found")

// Key names one record.
type Key struct {
	Kind     Kind
	User, ID string
}

// Record is one resource: its JSON (Data) and the columns queries use.
type Record struct {
	Key
	// Parent is the record it belongs to: a member's or a call's
	// conference ("" for none). Lists by parent are in Created order.
	Parent string
	State  string
	// Created orders lists; Ended, when set, is when the record stopped
	// being live, from which retention counts. A zero Ended is live (or
	// never ends: applications and numbers are never pruned).
	Created, Ended time.Time
	Data           []byte
}

// Live reports whether the record has not ended.
func (r Record) Live() bool { return r.Ended.IsZero() }

// Event is one callback event in the outbox.
type Event struct {
	// Seq is the event's number: unique over the life of the store and
	// increasing in publish order; the event's id is derived from it.
	Seq  int64
	User string
	// Queue is the ordering key: events of one queue are delivered in Seq
	// order (a conference's id, or a call's outside conferences).
	Queue string
	Type  string
	// Route is where the event goes (opaque to the store: the
	// dispatcher's callback target as JSON); Body is the payload.
	Route, Body []byte
	// Failed marks an event given up after every attempt; Error says why.
	Failed  bool
	Error   string
	Created time.Time
	Updated time.Time
}

// Failure marks an event undeliverable.
type Failure struct {
	Seq   int64
	Error string
}

// Batch is what one transaction writes.
type Batch struct {
	Put       []Record
	Delete    []Key
	Events    []Event   // new outbox rows
	Delivered []int64   // outbox rows to forget
	Failed    []Failure // outbox rows to keep as undeliverable
	// Seq, when larger than the stored one, is kept as the last event
	// number given out (events without a callback are not written).
	Seq int64
}

// Empty reports whether the batch writes nothing.
func (b *Batch) Empty() bool {
	return len(b.Put)+len(b.Delete)+len(b.Events)+len(b.Delivered)+len(b.Failed) == 0 && b.Seq == 0
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.Put)
	clear(b.Events)
	b.Put, b.Delete, b.Events, b.Delivered, b.Failed, b.Seq = b.Put[:0], b.Delete[:0], b.Events[:0], b.Delivered[:0], b.Failed[:0], 0
}

// Query selects records of one kind, newest first unless Oldest.
type Query struct {
	Kind Kind
	// User selects one user's records; "" every user's (start-up only).
	User string
	// Parent, if set, selects the records of one parent.
	Parent string
	// State, if set, selects one state.
	State string
	// LiveOnly selects records that have not ended.
	LiveOnly bool
	// EndedBefore, if set, selects records that ended before it (those
	// Prune would delete: a recording's file goes with its record).
	EndedBefore time.Time
	// Oldest lists oldest first.
	Oldest bool
	// Limit bounds the rows (0: no bound); Offset skips rows first.
	Limit, Offset int
}

// Store is where records and events live.
type Store interface {
	// Apply writes a batch in one transaction.
	Apply(ctx context.Context, b *Batch) error
	// Get returns a user's record (ErrNotFound).
	Get(ctx context.Context, k Key) (Record, error)
	// List returns the records q selects.
	List(ctx context.Context, q Query) ([]Record, error)
	// Pending returns every event neither delivered nor failed, in Seq order.
	Pending(ctx context.Context) ([]Event, error)
	// Undelivered returns a user's events not delivered (pending and
	// failed), oldest first, at most limit after offset.
	Undelivered(ctx context.Context, user string, limit, offset int) ([]Event, error)
	// CountFailed counts the events kept as undeliverable.
	CountFailed(ctx context.Context) (int, error)
	// LastSeq returns the last event number given out.
	LastSeq(ctx context.Context) (int64, error)
	// Prune deletes records that ended before cutoff and events created
	// before it, and returns how many of each.
	Prune(ctx context.Context, cutoff time.Time) (records, events int, err error)
	// Close releases the database.
	Close() error
}
