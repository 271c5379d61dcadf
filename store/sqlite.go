package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// FileName is the database's name in the data directory.
const FileName = "chorus.db"

//go:embed migrations/*.sql
var migrations embed.FS

// SQLite is the Store in an SQLite database file.
type SQLite struct {
	db *sql.DB
}

// Open opens (creating when missing) the database in dir and brings its
// schema up to date. A directory that cannot be made or written, a file
// that is not a database (or is corrupt where the start-up reads), or a
// schema newer than this build knows is an error.
func Open(ctx context.Context, dir string) (*SQLite, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// busy_timeout: a second process (or a checkpoint) holding the lock
	// makes a statement wait, not fail. synchronous=NORMAL in WAL mode
	// survives a killed process (kill -9) and loses at most the last
	// commits on a power cut. _txlock=immediate: a write transaction takes
	// the write lock at BEGIN, so it never fails half-way on a busy lock.
	// cache_size 512 KiB a connection (SQLite's default is 2 MiB): the
	// writer appends to hot B-tree pages and the OS caches the rest, while
	// the default cost ~3 KiB of C heap per member of a 1000-member load.
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(ON)&_pragma=cache_size(-512)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One writer at a time is SQLite's rule anyway; a few connections let
	// the API read while the writer writes.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	// A file whose header is sound but whose pages are not: the quick
	// check reads every page once (cheap next to a day of records), so a
	// corrupt database stops the start rather than a write hours later.
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database %s: check: %w", path, err)
	}
	if res != "ok" {
		_ = db.Close()
		return nil, fmt.Errorf("database %s is corrupt: %s", path, res)
	}
	// A database that opens but cannot be written (a read-only file or
	// directory, a full disk) fails here, at start, not at the first call.
	if _, err := db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('opened', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, time.Now().UnixMilli()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database %s cannot be written: %w", path, err)
	}
	return s, nil
}

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads migrations/NNNN_name.sql in version order.
func loadMigrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must be NNNN_name.sql", e.Name())
		}
		b, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("migration %q: versions must run 1, 2, 3, ... without gaps", out[i].name)
		}
	}
	return out, nil
}

// migrate applies the migrations newer than the schema_version, each in
// its own transaction with the version it brings.
func (s *SQLite) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema_version: %w", err)
	}
	cur, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if cur > len(ms) {
		return fmt.Errorf("schema version %d is newer than this build knows (%d): a newer chorus wrote it", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// SchemaVersion returns the version of the last migration applied.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Close closes the database (checkpointing the WAL into it).
func (s *SQLite) Close() error { return s.db.Close() }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Apply implements Store.
func (s *SQLite) Apply(ctx context.Context, b *Batch) error {
	if b.Empty() {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := apply(ctx, tx, b); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func apply(ctx context.Context, tx *sql.Tx, b *Batch) error {
	if len(b.Put) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO records (kind, uid, id, parent, state, created, ended, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (kind, uid, id) DO UPDATE SET parent = excluded.parent, state = excluded.state,
			created = excluded.created, ended = excluded.ended, data = excluded.data`)
		if err != nil {
			return fmt.Errorf("store: put: %w", err)
		}
		defer st.Close()
		for _, r := range b.Put {
			if _, err := st.ExecContext(ctx, string(r.Kind), r.User, r.ID, r.Parent, r.State, nanos(r.Created), nanos(r.Ended), r.Data); err != nil {
				return fmt.Errorf("store: put %s %s: %w", r.Kind, r.ID, err)
			}
		}
	}
	for _, k := range b.Delete {
		if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE kind = ? AND uid = ? AND id = ?`, string(k.Kind), k.User, k.ID); err != nil {
			return fmt.Errorf("store: delete %s %s: %w", k.Kind, k.ID, err)
		}
	}
	if len(b.Events) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO outbox (seq, uid, queue, type, route, body, failed, error, created, updated)
			VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, ?)`)
		if err != nil {
			return fmt.Errorf("store: events: %w", err)
		}
		defer st.Close()
		for _, e := range b.Events {
			if _, err := st.ExecContext(ctx, e.Seq, e.User, e.Queue, e.Type, e.Route, e.Body, nanos(e.Created), nanos(e.Created)); err != nil {
				return fmt.Errorf("store: event %d: %w", e.Seq, err)
			}
		}
	}
	for _, seq := range b.Delivered {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, seq); err != nil {
			return fmt.Errorf("store: delivered %d: %w", seq, err)
		}
	}
	now := time.Now().UnixNano()
	for _, f := range b.Failed {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET failed = 1, error = ?, updated = ? WHERE seq = ?`, f.Error, now, f.Seq); err != nil {
			return fmt.Errorf("store: failed %d: %w", f.Seq, err)
		}
	}
	if b.Seq > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('event_seq', ?)
			ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)`, b.Seq); err != nil {
			return fmt.Errorf("store: event seq: %w", err)
		}
	}
	return nil
}

const recordCols = `kind, uid, id, parent, state, created, ended, data`

func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var kind string
	var created, ended int64
	err := sc.Scan(&kind, &r.User, &r.ID, &r.Parent, &r.State, &created, &ended, &r.Data)
	r.Kind, r.Created, r.Ended = Kind(kind), fromNanos(created), fromNanos(ended)
	return r, err
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, k Key) (Record, error) {
	return bounded(ctx, func(ctx context.Context) (Record, error) {
		r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+recordCols+` FROM records WHERE kind = ? AND uid = ? AND id = ?`,
			string(k.Kind), k.User, k.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return Record{}, ErrNotFound
		}
		if err != nil {
			return Record{}, fmt.Errorf("store: get %s %s: %w", k.Kind, k.ID, err)
		}
		return r, nil
	})
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, q Query) ([]Record, error) {
	var sb strings.Builder
	args := []any{string(q.Kind)}
	sb.WriteString(`SELECT ` + recordCols + ` FROM records WHERE kind = ?`)
	if q.User != "" {
		sb.WriteString(` AND uid = ?`)
		args = append(args, q.User)
	}
	if q.Parent != "" {
		sb.WriteString(` AND parent = ?`)
		args = append(args, q.Parent)
	}
	if q.State != "" {
		sb.WriteString(` AND state = ?`)
		args = append(args, q.State)
	}
	if q.LiveOnly {
		sb.WriteString(` AND ended = 0`)
	}
	if !q.EndedBefore.IsZero() {
		sb.WriteString(` AND ended <> 0 AND ended < ?`)
		args = append(args, q.EndedBefore.UnixNano())
	}
	if q.Oldest {
		sb.WriteString(` ORDER BY created, id`)
	} else {
		sb.WriteString(` ORDER BY created DESC, id DESC`)
	}
	if q.Limit > 0 || q.Offset > 0 {
		limit := q.Limit
		if limit <= 0 {
			limit = -1
		}
		sb.WriteString(` LIMIT ? OFFSET ?`)
		args = append(args, limit, q.Offset)
	}
	return bounded(ctx, func(ctx context.Context) ([]Record, error) { return s.list(ctx, q.Kind, sb.String(), args) })
}

// list runs List's query.
func (s *SQLite) list(ctx context.Context, kind Kind, query string, args []any) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", kind, err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list %s: %w", kind, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", kind, err)
	}
	return out, nil
}

const eventCols = `seq, uid, queue, type, route, body, failed, error, created, updated`

func (s *SQLite) events(ctx context.Context, query string, args ...any) ([]Event, error) {
	return bounded(ctx, func(ctx context.Context) ([]Event, error) { return s.eventsNow(ctx, query, args) })
}

// eventsNow runs events' query.
func (s *SQLite) eventsNow(ctx context.Context, query string, args []any) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var created, updated int64
		if err := rows.Scan(&e.Seq, &e.User, &e.Queue, &e.Type, &e.Route, &e.Body, &e.Failed, &e.Error, &created, &updated); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		e.Created, e.Updated = fromNanos(created), fromNanos(updated)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return out, nil
}

// Pending implements Store.
func (s *SQLite) Pending(ctx context.Context) ([]Event, error) {
	return s.events(ctx, `SELECT `+eventCols+` FROM outbox WHERE failed = 0 ORDER BY seq`)
}

// Undelivered implements Store.
func (s *SQLite) Undelivered(ctx context.Context, user string, limit, offset int) ([]Event, error) {
	if limit <= 0 {
		limit = -1
	}
	return s.events(ctx, `SELECT `+eventCols+` FROM outbox WHERE uid = ? ORDER BY seq LIMIT ? OFFSET ?`, user, limit, offset)
}

// CountFailed implements Store.
func (s *SQLite) CountFailed(ctx context.Context) (int, error) {
	return bounded(ctx, func(ctx context.Context) (int, error) {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE failed = 1`).Scan(&n); err != nil {
			return 0, fmt.Errorf("store: count failed: %w", err)
		}
		return n, nil
	})
}

// bounded runs a read and returns when it does or when ctx ends, whichever
// comes first. database/sql and SQLite give up on a context only between
// steps of a statement: a read blocked in the kernel on a stalled disk (on
// a FUSE or network file system an open or a read can wait on a write in
// flight) would hold an API request or a metrics scrape past any
// deadline. The read left behind ends when the disk answers, and its
// connection goes back to the pool then; the pool's own wait honours ctx.
func bounded[T any](ctx context.Context, read func(context.Context) (T, error)) (T, error) {
	if ctx.Done() == nil {
		return read(ctx)
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := read(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("store: read: %w", ctx.Err())
	}
}

// LastSeq implements Store.
func (s *SQLite) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(COALESCE((SELECT value FROM meta WHERE key = 'event_seq'), 0),
		COALESCE((SELECT MAX(seq) FROM outbox), 0))`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("store: last seq: %w", err)
	}
	return seq, nil
}

// Prune implements Store.
func (s *SQLite) Prune(ctx context.Context, cutoff time.Time) (records, events int, err error) {
	c := cutoff.UnixNano()
	res, err := s.db.ExecContext(ctx, `DELETE FROM records WHERE ended <> 0 AND ended < ?`, c)
	if err != nil {
		return 0, 0, fmt.Errorf("store: prune records: %w", err)
	}
	n, _ := res.RowsAffected()
	res, err = s.db.ExecContext(ctx, `DELETE FROM outbox WHERE created < ?`, c)
	if err != nil {
		return int(n), 0, fmt.Errorf("store: prune events: %w", err)
	}
	m, _ := res.RowsAffected()
	return int(n), int(m), nil
}
