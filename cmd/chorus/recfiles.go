package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"chorus/bridge"
	"chorus/store"
)

// adoptRecordingFiles reconciles the recordings directory with the
// store at start, after Recover has closed what a crash left recording
// and before any traffic: every file a recording record names counts
// against its user's --recording-quota, and a recording file no record
// names is removed. Such a file is what a crash between a recording
// file's creation and its first record leaves: nothing could serve,
// count or prune it, so it would hold the disk for ever. Only files of
// the bridge's own naming (rec-<id>.<wav|mp3|ogg>) are removed; without
// a store nothing is (no record could name a file).
func adoptRecordingFiles(ctx context.Context, st store.Store, br *bridge.Bridge, log *slog.Logger) error {
	if st == nil {
		return nil
	}
	recs, err := st.List(ctx, store.Query{Kind: store.KindRecording})
	if err != nil {
		return fmt.Errorf("list recordings: %w", err)
	}
	owners := make(map[string]string, len(recs))
	for _, r := range recs {
		var in bridge.RecordingInfo
		if err := json.Unmarshal(r.Data, &in); err != nil {
			// Its file, if any, is kept: an unreadable record is no
			// proof that nothing names it.
			log.Warn("recording record not readable", "recording", r.ID, "err", err)
			for _, ext := range []string{".wav", ".mp3", ".ogg"} {
				owners[r.ID+ext] = r.User
			}
			continue
		}
		if in.Media != "" {
			owners[in.Media] = r.User
		}
	}
	adopted, removed, err := br.AdoptRecordingFiles(owners)
	if adopted > 0 || len(removed) > 0 {
		log.Info("recording files reconciled with the store", "counted", adopted, "orphans_removed", len(removed))
	}
	return err
}
