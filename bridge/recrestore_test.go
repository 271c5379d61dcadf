package bridge

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/recfile"
)

// TestPruneKeepsRecordingFiles: with KeepRecordingFiles (a store keeps
// the records longer than the bridge), Prune forgets an ended recording
// but leaves its file for the store's pruning to remove.
func TestPruneKeepsRecordingFiles(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, _ := recRoom(t, Config{Now: clock, Retention: time.Hour, KeepRecordingFiles: true})
	r.join(media.PCMU, tone(500, -12))
	rec, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	stepPaced(t, r, rec, 10)
	r.conf.StopRecording()
	info := finished(t, rec)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	r.b.Prune()
	if _, ok := r.b.Recording(rec.ID()); ok {
		t.Error("the recording outlived the bridge's retention")
	}
	if _, err := os.Stat(filepath.Join(r.b.cfg.RecordingsDir, info.Media)); err != nil {
		t.Errorf("its file, which the store's pruning owns: %v", err)
	}
}

// TestCloseCrashedRecording: a WAV file whose writer died (its header
// still says "to the end of the file", half a sample at its end) is
// repaired, and the recording ends in state error at the file's last
// write; a missing file leaves the recording without media; a name that
// is not a recording's never reaches the file system.
func TestCloseCrashedRecording(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	b := New(Config{RecordingsDir: dir, Now: func() time.Time { return now }}, nil, nil)
	const rate = 16000
	var buf bytes.Buffer // no Seek: Close leaves the header as a crash does
	w, err := recfile.New(recfile.WAV, &buf, rate)
	if err != nil {
		t.Fatal(err)
	}
	src := audiotest.ToneSource(700, -10, rate)
	frame := make([]int16, rate/50)
	for range 25 {
		src(frame)
		if err := w.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	buf.WriteByte(0x7f) // a write cut short
	name := "rec-crashed.wav"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	written := now.Add(-time.Minute)
	if err := os.Chtimes(path, written, written); err != nil {
		t.Fatal(err)
	}
	in := b.CloseCrashedRecording(RecordingInfo{ID: "rec-crashed", UserID: "u", ConferenceID: "conf-x", Format: recfile.WAV,
		Rate: rate, Media: name, State: RecordingActive, Start: now.Add(-time.Hour)}, "SERVER_RESTART")
	if in.State != RecordingError || in.Error != "SERVER_RESTART" || !in.End.Equal(written) || in.Media != name || in.Bytes != 44+25*rate/50*2 {
		t.Errorf("closed recording %+v", in)
	}
	fileRate, pcm := readWAV(t, path)
	if fileRate != rate || len(pcm) != 25*rate/50 {
		t.Errorf("repaired file: %d Hz, %d samples", fileRate, len(pcm))
	}
	if l := audiotest.LevelDBFS(pcm, 700, rate); l < -11 || l > -9 {
		t.Errorf("the tone at %.1f dBFS after the repair", l)
	}

	gone := b.CloseCrashedRecording(RecordingInfo{ID: "rec-gone", Format: recfile.MP3, Media: "rec-gone.mp3", State: RecordingActive,
		Start: now.Add(-time.Hour)}, "SERVER_RESTART")
	if gone.State != RecordingError || gone.Media != "" || !gone.End.Equal(now) {
		t.Errorf("a crashed recording without its file: %+v", gone)
	}
	for _, bad := range []string{"../chorus.db", "rec-x/../../y", "/etc/passwd", "conf-x.wav", "rec-..wav", ""} {
		if _, err := b.MediaPath(bad); err == nil {
			t.Errorf("MediaPath(%q) accepted", bad)
		}
	}
	if err := b.RemoveMedia(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed media: %v", err)
	}
	if err := b.RemoveMedia(name); err != nil {
		t.Errorf("removing a file already gone: %v", err)
	}
}

// FuzzMediaPath: whatever a request names, a path MediaPath accepts is a
// file directly in the recordings directory, and a recording's.
func FuzzMediaPath(f *testing.F) {
	for _, s := range []string{"rec-abc.wav", "rec-x.mp3", "../x", "rec-/../..", "rec-a\x00.wav", `rec-a\..\b`, "rec-.", "rec-"} {
		f.Add(s)
	}
	dir := f.TempDir()
	b := New(Config{RecordingsDir: dir}, nil, nil)
	f.Fuzz(func(t *testing.T, name string) {
		path, err := b.MediaPath(name)
		if err != nil {
			return
		}
		if filepath.Dir(path) != filepath.Clean(dir) || !strings.HasPrefix(filepath.Base(path), RecordingPrefix) {
			t.Fatalf("MediaPath(%q) = %q: outside %s", name, path, dir)
		}
	})
}
