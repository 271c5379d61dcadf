package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"chorus/internal/slowfs"
)

// TestReadsBoundedOnStalledDisk: with the database on a FUSE file system
// whose writes hang, a transaction blocks in the kernel, and so do reads
// that open a connection or touch a page the write holds (FUSE keeps a
// page locked while its write is out): database/sql's context cannot
// reach a goroutine inside a system call. Reads still end at their
// context's deadline, so an API request or a metrics scrape is answered;
// once the disk answers, the write and later reads complete.
func TestReadsBoundedOnStalledDisk(t *testing.T) {
	fsys, err := slowfs.Mount(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
	})
	s := openT(t, fsys.Dir)
	t.Cleanup(fsys.Gate.Release) // before the store closes
	ctx := context.Background()
	put := func(i int) *Batch {
		return &Batch{Put: []Record{{Key: Key{KindConference, "u", fmt.Sprintf("conf-%d", i)}, State: "active",
			Created: time.Unix(int64(i), 0), Data: []byte(`{}`)}}}
	}
	if err := s.Apply(ctx, put(0)); err != nil {
		t.Fatal(err)
	}
	fsys.Gate.Stall()
	applied := make(chan error, 1)
	go func() { applied <- s.Apply(ctx, put(1)) }()
	time.Sleep(300 * time.Millisecond) // the write reaches the FUSE and waits
	reads := map[string]func(context.Context) error{
		"get": func(ctx context.Context) error {
			_, err := s.Get(ctx, Key{KindConference, "u", "conf-0"})
			return err
		},
		"list": func(ctx context.Context) error {
			_, err := s.List(ctx, Query{Kind: KindConference})
			return err
		},
		"count": func(ctx context.Context) error {
			_, err := s.CountFailed(ctx)
			return err
		},
		"undelivered": func(ctx context.Context) error {
			_, err := s.Undelivered(ctx, "u", 10, 0)
			return err
		},
	}
	for name, read := range reads {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		t0 := time.Now()
		done := make(chan error, 1)
		go func() { done <- read(rctx) }()
		select {
		case err := <-done:
			t.Logf("%s while the disk is stalled: %v after %v", name, err, time.Since(t0).Round(time.Millisecond))
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(3 * time.Second):
			// Released by the cleanup, which unblocks it.
			t.Errorf("%s still waits for the stalled disk after 3 s, past its 500 ms deadline", name)
		}
		cancel()
	}
	select {
	case err := <-applied:
		t.Fatalf("a write finished on a stalled disk: %v", err)
	default:
	}
	fsys.Gate.Release()
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, Key{KindConference, "u", "conf-1"}); err != nil {
		t.Errorf("the write made during the stall: %v", err)
	}
}
