package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/media/recfile"
	"chorus/store"
)

// TestPruneStoreRemovesRecordingFiles: the store's pruning removes the
// file of a recording whose record it prunes, and keeps the files of a
// recent recording and of one still being written.
func TestPruneStoreRemovesRecordingFiles(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	recDir := filepath.Join(dataDir, "recordings")
	st, err := store.Open(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	br := bridge.New(bridge.Config{RecordingsDir: recDir, KeepRecordingFiles: true}, nil, nil)
	now := time.Now()
	b := &store.Batch{}
	for _, r := range []struct {
		id    string
		ended time.Time
	}{{"rec-old", now.Add(-48 * time.Hour)}, {"rec-recent", now.Add(-time.Hour)}, {"rec-live", time.Time{}}} {
		in := bridge.RecordingInfo{ID: r.id, UserID: "u1", ConferenceID: "conf-1", Format: recfile.WAV, Media: r.id + ".wav",
			State: bridge.RecordingComplete, Start: now.Add(-72 * time.Hour), End: r.ended}
		if r.ended.IsZero() {
			in.State = bridge.RecordingActive
		}
		data, _ := json.Marshal(in)
		b.Put = append(b.Put, store.Record{Key: store.Key{Kind: store.KindRecording, User: "u1", ID: r.id}, Parent: "conf-1",
			State: string(in.State), Created: in.Start, Ended: r.ended, Data: data})
		if err := os.MkdirAll(recDir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(recDir, in.Media), []byte("RIFF"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pruneStore(pctx, st, 24*time.Hour, time.Hour, br.RemoveMedia, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := st.Get(ctx, store.Key{Kind: store.KindRecording, User: "u1", ID: "rec-old"})
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old recording was not pruned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if _, err := os.Stat(filepath.Join(recDir, "rec-old.wav")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pruned recording's file: %v", err)
	}
	for _, keep := range []string{"rec-recent.wav", "rec-live.wav"} {
		if _, err := os.Stat(filepath.Join(recDir, keep)); err != nil {
			t.Errorf("%s: %v", keep, err)
		}
	}
}
