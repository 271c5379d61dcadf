package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"chorus/bridge"
	"chorus/store"
)

// openStore opens the store in --data-dir, or returns nil when it is ""
// (memory only). A directory that cannot be made or written, or a database
// that is corrupt or from a newer build, is an error: the binary exits
// non-zero rather than run without the records it promised to keep.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	if cfg.DataDir == "" {
		log.Warn("no --data-dir: records and undelivered events are kept in memory only and lost at exit")
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := store.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// bridgeRetention is how long the bridge keeps completed records in
// memory: with a store, an hour (the store serves older ones); without
// one, the whole --retention.
func bridgeRetention(cfg Config, st store.Store) time.Duration {
	if st != nil {
		return min(cfg.Retention, memoryRetention)
	}
	return cfg.Retention
}

// pruneStore deletes what the retention no longer keeps, at start and then
// every interval, until ctx ends. A recording's file goes with its record
// (removeMedia): with a store, this is the one place recording files are
// removed by age (the bridge's pruning forgets them from memory only,
// bridge.Config.KeepRecordingFiles).
func pruneStore(ctx context.Context, st store.Store, retention, interval time.Duration, removeMedia func(name string) error, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		cutoff := time.Now().Add(-retention)
		files, ferr := pruneRecordingFiles(pctx, st, cutoff, removeMedia)
		if ferr != nil && ctx.Err() == nil {
			log.Warn("pruned recordings' files not all removed", "removed", files, "err", ferr)
		}
		recs, evs, err := st.Prune(pctx, cutoff)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("store pruning failed", "err", err)
		case recs+evs > 0:
			log.Info("store pruned", "records", recs, "events", evs, "recording_files", files, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneRecordingFiles removes the files of the recordings whose records
// Prune is about to delete (before it, so that a crash between the two
// leaves a record without its file, served as 404, never a file without
// a record that nothing would remove). It returns how many it removed.
func pruneRecordingFiles(ctx context.Context, st store.Store, cutoff time.Time, removeMedia func(name string) error) (int, error) {
	recs, err := st.List(ctx, store.Query{Kind: store.KindRecording, EndedBefore: cutoff, Oldest: true})
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, r := range recs {
		var in bridge.RecordingInfo
		if err := json.Unmarshal(r.Data, &in); err != nil {
			errs = append(errs, fmt.Errorf("recording %s: %w", r.ID, err))
			continue
		}
		if in.Media == "" {
			continue
		}
		if err := removeMedia(in.Media); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// completeAll completes every conference still live at shutdown (rooms
// nobody joined stay created otherwise), so that a clean stop leaves no
// record live: the store would take them for a crash's at the next start.
func completeAll(br *bridge.Bridge, users []User) {
	for _, u := range users {
		for _, c := range br.Conferences(u.ID) {
			if c.State() != bridge.StateCompleted {
				c.Complete()
			}
		}
	}
}

// storedCompleted is the SIP server's Config.Completed: whether the store
// holds a completed conference of that id, of any user (a conf-… id is
// unique across users; a dial-in names no user). Nil without a store.
func storedCompleted(st store.Store, users []User) func(ctx context.Context, id string) bool {
	if st == nil {
		return nil
	}
	return func(ctx context.Context, id string) bool {
		for _, u := range users {
			r, err := st.Get(ctx, store.Key{Kind: store.KindConference, User: u.ID, ID: id})
			if err == nil {
				return r.State == bridge.StateCompleted
			}
		}
		return false
	}
}
