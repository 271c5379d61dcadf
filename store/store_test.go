package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openT(t *testing.T, dir string) *SQLite {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestMigrations: a new database gets every migration once, in order, and
// opening it again applies none; a database from a newer build is refused.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(ms))
	}
	s := openT(t, dir)
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != len(ms) {
		t.Fatalf("schema version %d (%v), want %d", v, err, len(ms))
	}
	if err := s.Apply(ctx, &Batch{Put: []Record{{Key: Key{KindConference, "u", "conf-1"}, State: "active", Created: time.Unix(1, 0), Data: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openT(t, dir)
	var rows int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != len(ms) {
		t.Errorf("schema_version has %d rows (%v), want %d: a migration ran twice", rows, err, len(ms))
	}
	if _, err := s.Get(ctx, Key{KindConference, "u", "conf-1"}); err != nil {
		t.Errorf("record lost over reopen: %v", err)
	}
	if _, err := s.db.Exec(`INSERT INTO schema_version (version, name, applied) VALUES (?, 'future.sql', 0)`, len(ms)+1); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("a newer schema opened: %v", err)
	}
}

// TestCorruptDatabase: a file that is not a database, and a directory that
// cannot be written, are errors at Open that name the file.
func TestCorruptDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a database\n", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("garbage opened as a database: %v", err)
	}
	// A database path that is a directory cannot be opened.
	isDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(isDir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), isDir); err == nil {
		t.Error("a directory opened as the database")
	}
	// A data directory under a regular file cannot be made.
	_, err = Open(context.Background(), filepath.Join(dir, FileName, "sub"))
	if err == nil {
		t.Error("a data directory under a file opened")
	}
}

// TestRecordsAndEvents: what Apply writes, Get, List and the outbox
// queries read back; another user's record is not found.
func TestRecordsAndEvents(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir())
	t0 := time.Unix(1000, 0)
	b := &Batch{Seq: 7}
	for i, id := range []string{"conf-a", "conf-b", "conf-c"} {
		b.Put = append(b.Put, Record{Key: Key{KindConference, "u1", id}, State: "active", Created: t0.Add(time.Duration(i) * time.Second), Data: []byte(`{"id":"` + id + `"}`)})
	}
	b.Put = append(b.Put, Record{Key: Key{KindMember, "u1", "member-1"}, Parent: "conf-a", State: "completed", Created: t0, Ended: t0.Add(time.Minute), Data: []byte(`{}`)})
	b.Events = []Event{{Seq: 3, User: "u1", Queue: "conf-a", Type: "conference", Route: []byte(`{}`), Body: []byte(`{"n":3}`), Created: t0},
		{Seq: 4, User: "u1", Queue: "conf-a", Type: "conference", Route: []byte(`{}`), Body: []byte(`{"n":4}`), Created: t0},
		{Seq: 5, User: "u2", Queue: "conf-z", Type: "conference", Route: []byte(`{}`), Body: []byte(`{"n":5}`), Created: t0}}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, Key{KindConference, "u2", "conf-a"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("another user's record: %v", err)
	}
	list, err := s.List(ctx, Query{Kind: KindConference, User: "u1", Limit: 2})
	if err != nil || len(list) != 2 || list[0].ID != "conf-c" || list[1].ID != "conf-b" {
		t.Errorf("newest first, limit 2: %+v %v", list, err)
	}
	list, _ = s.List(ctx, Query{Kind: KindMember, User: "u1", Parent: "conf-a"})
	if len(list) != 1 || list[0].Live() || !list[0].Ended.Equal(t0.Add(time.Minute)) {
		t.Errorf("members of conf-a: %+v", list)
	}
	if err := s.Apply(ctx, &Batch{Delivered: []int64{3}, Failed: []Failure{{Seq: 5, Error: "503"}}}); err != nil {
		t.Fatal(err)
	}
	pend, _ := s.Pending(ctx)
	if len(pend) != 1 || pend[0].Seq != 4 {
		t.Errorf("pending %+v", pend)
	}
	und, _ := s.Undelivered(ctx, "u2", 10, 0)
	if len(und) != 1 || !und[0].Failed || und[0].Error != "503" {
		t.Errorf("u2 undelivered %+v", und)
	}
	if n, _ := s.CountFailed(ctx); n != 1 {
		t.Errorf("failed count %d", n)
	}
	if seq, _ := s.LastSeq(ctx); seq != 7 {
		t.Errorf("last seq %d, want 7 (meta)", seq)
	}
	// What Prune is about to delete, listed first (a recording's file
	// goes with its record).
	if list, err := s.List(ctx, Query{Kind: KindMember, EndedBefore: t0.Add(2 * time.Minute)}); err != nil || len(list) != 1 {
		t.Errorf("ended before the cutoff: %+v %v", list, err)
	}
	if list, _ := s.List(ctx, Query{Kind: KindMember, EndedBefore: t0.Add(time.Minute)}); len(list) != 0 {
		t.Errorf("ended before its end: %+v", list)
	}
	if list, _ := s.List(ctx, Query{Kind: KindConference, EndedBefore: t0.Add(time.Hour)}); len(list) != 0 {
		t.Errorf("live records listed as ended: %+v", list)
	}
	recs, evs, err := s.Prune(ctx, t0.Add(2*time.Minute))
	if err != nil || recs != 1 || evs != 2 {
		t.Errorf("prune: %d records, %d events, %v; want 1 (the ended member), 2", recs, evs, err)
	}
}
