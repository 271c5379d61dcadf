package main

import (
	"context"
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
// every interval, until ctx ends.
func pruneStore(ctx context.Context, st store.Store, retention, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		recs, evs, err := st.Prune(pctx, time.Now().Add(-retention))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("store pruning failed", "err", err)
		case recs+evs > 0:
			log.Info("store pruned", "records", recs, "events", evs, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
