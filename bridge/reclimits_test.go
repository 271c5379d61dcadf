package bridge

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"chorus/media"
	"chorus/media/recfile"
)

// stepUntilDone steps the room in batches the writer can keep up with
// until rec has finished, at most maxTicks ticks.
func stepUntilDone(t *testing.T, r *memRoom, rec *Recording, maxTicks int) RecordingInfo {
	t.Helper()
	for i := 0; i < maxTicks; i += 10 {
		r.step(10)
		rec.tap.signal()
		deadline := time.Now().Add(10 * time.Second)
		for rec.tap.head.Load() != rec.tap.tail.Load() && time.Now().Before(deadline) {
			select {
			case <-rec.Done():
				return rec.Info()
			case <-time.After(time.Millisecond):
				rec.tap.signal()
			}
		}
	}
	return finished(t, rec)
}

// TestRecordingMaxDuration: a room's recording that reaches its
// recordingMaxDuration completes with exactly that much audio and a
// complete recording event with its end; the room goes on, not
// recording, and may record again.
func TestRecordingMaxDuration(t *testing.T) {
	r, ev := recRoom(t, Config{})
	r.join(media.PCMU, rateTone(500, -12))
	if got := r.conf.RecordingMaxDuration(); got != DefaultRecordingMaxDuration {
		t.Errorf("default max duration %v, want %v", got, DefaultRecordingMaxDuration)
	}
	r.conf.SetRecordingMaxDuration(300 * time.Millisecond) // 15 ticks
	if got := r.conf.Info().RecordingMaxDuration; got != 300*time.Millisecond {
		t.Errorf("Info's max duration %v", got)
	}
	rec, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	info := stepUntilDone(t, r, rec, 200)
	if info.State != RecordingComplete || info.End.IsZero() || info.Error != "" {
		t.Fatalf("recording ended as %+v, want complete", info)
	}
	_, pcm := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, info.Media))
	if want := 15 * 960; len(pcm) != want {
		t.Errorf("file of %d samples, want %d (300 ms at 48 kHz)", len(pcm), want)
	}
	if r.conf.ActiveRecording() != nil {
		t.Error("the room still records after the recording's max duration")
	}
	if st := r.conf.State(); st == StateCompleted {
		t.Error("the room completed with its recording")
	}
	r.step(20) // the room goes on without the tap
	evs := ev.of(EventRecording)
	if len(evs) != 1 || evs[0].State != string(RecordingComplete) || evs[0].RecordingID != rec.ID() {
		t.Errorf("recording events %+v", evs)
	}
	again, err := r.conf.StartRecording(recfile.WAV)
	if err != nil || again == rec {
		t.Fatalf("a new recording after the max: %v, %v", again, err)
	}
	r.conf.StopRecording()
	finished(t, again)
}

// TestCallRecordingMaxDuration: a call's recording stops at its own
// recordingMaxDuration; the call stays up.
func TestCallRecordingMaxDuration(t *testing.T) {
	r, _ := recRoom(t, Config{})
	_, m := r.join(media.PCMU, rateTone(500, -12))
	call := m.call
	call.SetRecordingMaxDuration(200 * time.Millisecond)
	if got := call.Info().RecordingMaxDuration; got != 200*time.Millisecond {
		t.Errorf("Info's max duration %v", got)
	}
	rec, err := call.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	info := stepUntilDone(t, r, rec, 200)
	if info.State != RecordingComplete {
		t.Fatalf("recording ended as %+v", info)
	}
	if _, pcm := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, info.Media)); len(pcm) != 10*960 {
		t.Errorf("file of %d samples, want %d", len(pcm), 10*960)
	}
	if call.ActiveRecording() != nil || call.State() == CallCompleted {
		t.Errorf("after the max: recording %v, call %v", call.ActiveRecording(), call.State())
	}
}

// TestRecordingQuota: a recording that takes its user's files past the
// quota ends with state error and the quota as its reason; the user can
// start no other until a file is deleted, which gives its bytes back;
// another user is not limited by it.
func TestRecordingQuota(t *testing.T) {
	const quota = 100_000 // about a second of 48 kHz WAV
	r, ev := recRoom(t, Config{RecordingQuota: quota})
	r.join(media.PCMU, rateTone(500, -12))
	rec, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	info := stepUntilDone(t, r, rec, 500)
	if info.State != RecordingError || !strings.Contains(info.Error, "quota") {
		t.Fatalf("recording ended as %+v, want error for the quota", info)
	}
	if r.conf.ActiveRecording() != nil || r.conf.State() == StateCompleted {
		t.Error("the room should go on, not recording")
	}
	used := r.b.RecordingBytes("u-test")
	st, err := os.Stat(filepath.Join(r.b.cfg.RecordingsDir, info.Media))
	if err != nil {
		t.Fatal(err)
	}
	// Over the quota by at most a drain (100 ms, ~10 kB) and the header
	// rewrite.
	if used <= quota || used > quota+30_000 || used < st.Size() {
		t.Errorf("%d bytes counted for a file of %d, quota %d", used, st.Size(), quota)
	}
	evs := ev.of(EventRecording)
	if len(evs) != 1 || evs[0].State != string(RecordingError) || !strings.Contains(evs[0].Cause, "quota") {
		t.Errorf("recording events %+v", evs)
	}
	if _, err := r.conf.StartRecording(recfile.WAV); !errors.Is(err, ErrRecordingQuota) {
		t.Errorf("a start over the quota: %v", err)
	}
	if n := r.b.Stats().RecordingsRefused.Load(); n != 1 {
		t.Errorf("%d refusals counted, want 1", n)
	}
	if total := r.b.RecordingBytesTotal(); total != used {
		t.Errorf("%d bytes of recordings in all, %d of the only user", total, used)
	}
	if err := r.b.CanRecord("u-other"); err != nil {
		t.Errorf("another user: %v", err)
	}
	if err := rec.DeleteMedia(); err != nil {
		t.Fatal(err)
	}
	if got := r.b.RecordingBytes("u-test"); got != 0 {
		t.Errorf("%d bytes counted once the file was deleted", got)
	}
	again, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatalf("a start once the file was deleted: %v", err)
	}
	r.conf.StopRecording()
	finished(t, again)
}

// TestRecordingDiskFull: no recording starts on a filesystem with less
// free space than RecordingMinFree.
func TestRecordingDiskFull(t *testing.T) {
	r, _ := recRoom(t, Config{RecordingMinFree: 1 << 62})
	if _, err := r.conf.StartRecording(recfile.WAV); !errors.Is(err, ErrRecordingDiskFull) {
		t.Errorf("a start on a full disk: %v", err)
	}
	r2, _ := recRoom(t, Config{RecordingMinFree: 1 << 20, RecordingsDir: filepath.Join(t.TempDir(), "not", "yet")})
	if err := r2.b.CanRecord("u-test"); err != nil {
		t.Errorf("a directory not made yet, on a disk with room: %v", err)
	}
}

// TestAdoptRecordingFiles: at start, the files records name count
// against their users' quotas, a recording file no record names is
// removed, and any other file is left alone.
func TestAdoptRecordingFiles(t *testing.T) {
	dir := t.TempDir()
	b := New(Config{RecordingsDir: dir, RecordingQuota: 5000}, nil, nil)
	owned := newID(RecordingPrefix) + ".wav"
	orphan := newID(RecordingPrefix) + ".ogg"
	others := []string{"notes.txt", "rec-short.wav", newID(RecordingPrefix) + ".wav.tmp", newID("conf-") + ".mp3"}
	write := func(name string, n int) {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(owned, 6000)
	write(orphan, 100)
	for _, n := range others {
		write(n, 10)
	}
	adopted, removed, err := b.AdoptRecordingFiles(map[string]string{owned: "u-a"})
	if err != nil || adopted != 1 || len(removed) != 1 || removed[0] != orphan {
		t.Fatalf("adopted %d, removed %v, %v", adopted, removed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan: %v", err)
	}
	for _, n := range append(others, owned) {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if got := b.RecordingBytes("u-a"); got != 6000 {
		t.Errorf("u-a has %d bytes counted, want 6000", got)
	}
	if err := b.CanRecord("u-a"); !errors.Is(err, ErrRecordingQuota) {
		t.Errorf("u-a over its quota by an earlier run's file: %v", err)
	}
	if err := b.CanRecord("u-b"); err != nil {
		t.Errorf("u-b: %v", err)
	}
	if err := b.RemoveMedia(owned); err != nil {
		t.Fatal(err)
	}
	if got := b.RecordingBytes("u-a"); got != 0 {
		t.Errorf("%d bytes counted after the removal", got)
	}
}

// TestIsRecordingFile: only names of the bridge's own pattern.
func TestIsRecordingFile(t *testing.T) {
	id := newID(RecordingPrefix)
	for name, want := range map[string]bool{
		id + ".wav": true, id + ".mp3": true, id + ".ogg": true,
		id: false, id + ".WAV": false, id + ".flac": false, id + ".wav.part": false, "rec-x.wav": false,
		"x" + id[1:] + ".wav": false, strings.ToUpper(id) + ".wav": false, "": false, ".wav": false,
	} {
		if got := IsRecordingFile(name); got != want {
			t.Errorf("IsRecordingFile(%q) = %v, want %v", name, got, want)
		}
	}
}
