package main

// Recording limits and crash repair with the real binary: an MP3 and an
// Ogg recording cut by kill -9 (and a write cut short) decode cleanly
// after the next start; a recording file no record names is removed at
// start, other files are not; files of an earlier run count against
// their user's --recording-quota, not another user's.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chorus/internal/audiotest"
)

// TestStoreKillWhileRecordingMP3Ogg: kill -9 while a conference records
// to MP3 and its caller's leg to Ogg Opus. Both files are then given a
// write cut short (half an MP3 frame; part of an Ogg page), as a crash
// in the middle of a write leaves them. A recording file no record names
// (a crash between a file's creation and its first record) and a file of
// the operator's sit in the recordings directory too. At the next start
// the recordings are closed (error, SERVER_RESTART), their files are
// served and decode with ffmpeg without a complaint, holding the tone up
// to the cut; the orphan is gone and the operator's file is not. With a
// quota smaller than those files, u1 cannot start a recording (403) and
// u2 can; once u1 deletes its media, u1 can.
func TestStoreKillWhileRecordingMP3Ogg(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"--rtp-ports", "34800-34899"}
	p := startProc(t, dir, flags...)
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550601", "recordingEnabled": true, "recordingFileFormat": "mp3"})
	conf := createdID(t, resp, "conference")
	ph := dialTone(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	var members []map[string]any
	_, b := u1.do("GET", "/conferences/"+conf+"/members", nil)
	if err := json.Unmarshal(b, &members); err != nil || len(members) != 1 {
		t.Fatalf("members %s", b)
	}
	callURL := fmt.Sprint(members[0]["call"])
	call := callURL[strings.LastIndex(callURL, "/")+1:]
	if resp, b := u1.do("POST", "/calls/"+call, map[string]any{"recordingEnabled": true, "recordingFileFormat": "ogg"}); resp.StatusCode != 200 {
		t.Fatalf("record the call: %d %s", resp.StatusCode, b)
	}
	confRec, callRec := recordingIDs(t, u1, call)
	mp3, ogg := mediaName(t, u1, confRec), mediaName(t, u1, callRec)
	recDir := filepath.Join(dir, "recordings")
	// Two seconds of Ogg pages (a page a second) and of MP3 frames.
	deadline := time.Now().Add(20 * time.Second)
	for oggPages(t, filepath.Join(recDir, ogg)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the Ogg recording does not grow\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill()
	ph.Close()

	// A write cut short: half of the file's first MP3 frame after its
	// end, and the start of an Ogg page (its header and part of a body).
	appendTo := func(name string, b []byte) {
		f, err := os.OpenFile(filepath.Join(recDir, name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	mp3Data, err := os.ReadFile(filepath.Join(recDir, mp3))
	if err != nil {
		t.Fatal(err)
	}
	appendTo(mp3, mp3Data[:100])
	oggData, err := os.ReadFile(filepath.Join(recDir, ogg))
	if err != nil {
		t.Fatal(err)
	}
	third := oggPageOffsets(oggData)[2]
	appendTo(ogg, oggData[third:third+300])

	orphan := "rec-0123456789abcdefghijklm.wav"
	for name, body := range map[string]string{orphan: "RIFF", "operator-notes.txt": "keep me"} {
		if err := os.WriteFile(filepath.Join(recDir, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	quota := int64(len(mp3Data)) // smaller than u1's two files
	p2 := startProc(t, dir, append(flags, "--recording-quota", fmt.Sprint(quota))...)
	u1 = p2.client("u1", "t1", "s1")
	if _, err := os.Stat(filepath.Join(recDir, orphan)); !os.IsNotExist(err) {
		t.Errorf("the orphan recording file after the start: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(recDir, "operator-notes.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("the operator's file after the start: %q, %v", b, err)
	}
	for _, rec := range []struct{ id, media string }{{confRec, mp3}, {callRec, ogg}} {
		_, b := u1.do("GET", "/recordings/"+rec.id, nil)
		var rj map[string]any
		_ = json.Unmarshal(b, &rj)
		if rj["state"] != "error" || rj["error"] != "SERVER_RESTART" || rj["media"] == nil {
			t.Errorf("recording after kill -9 and restart: %s", b)
		}
		resp, data := u1.media("/media/"+rec.media, "")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s after the restart: %d", rec.media, resp.StatusCode)
		}
		// The caller's leg is what it says (the tone) plus what it
		// hears (nothing): the tone at its level, as the room's.
		checkToneMostly(t, data, 1.5)
	}
	// LAME's output is not cut at frames: the kill itself may have left
	// part of one, cut with the half frame appended.
	if b, _ := os.ReadFile(filepath.Join(recDir, mp3)); len(b) > len(mp3Data) || len(b) < len(mp3Data)-2000 {
		t.Errorf("the MP3 file is %d bytes after the repair, want at most %d (the half frame cut)", len(b), len(mp3Data))
	}
	if b, _ := os.ReadFile(filepath.Join(recDir, ogg)); len(b) != len(oggData) {
		t.Errorf("the Ogg file is %d bytes after the repair, want %d (the partial page cut)", len(b), len(oggData))
	}

	// The files of the earlier run count against u1's quota, not u2's.
	resp, b = u1.do("POST", "/conferences", map[string]any{"from": "+15550602", "recordingEnabled": true})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "recording-quota-exceeded") {
		t.Errorf("u1 over its quota: %d %s", resp.StatusCode, b)
	}
	// An operator sees it: the refusal counted, the earlier run's two
	// files (as repaired, a little shorter) in the bytes on disk.
	if m, _ := scrape(t, p2.http); m["chorus_recordings_refused_total"] != 1 || m["chorus_recording_bytes"] <= float64(max(len(mp3Data), len(oggData))) {
		t.Errorf("metrics: %v recordings refused, %v bytes of recordings (files of %d and %d)",
			m["chorus_recordings_refused_total"], m["chorus_recording_bytes"], len(mp3Data), len(oggData))
	}
	u2 := p2.client("u2", "t2", "s2")
	resp, _ = u2.do("POST", "/conferences", map[string]any{"from": "+15550603", "recordingEnabled": true})
	createdID(t, resp, "u2's recorded conference")
	for _, m := range []string{mp3, ogg} {
		if resp, b := u1.do("DELETE", "/media/"+m, nil); resp.StatusCode != 200 {
			t.Fatalf("DELETE %s: %d %s", m, resp.StatusCode, b)
		}
	}
	resp, _ = u1.do("POST", "/conferences", map[string]any{"from": "+15550604", "recordingEnabled": true})
	createdID(t, resp, "u1's recorded conference once its media was deleted")
	p2.stop()
}

// oggPageOffsets returns where each whole page of an Ogg stream starts.
func oggPageOffsets(b []byte) []int {
	var offs []int
	for off := 0; off+27 <= len(b) && string(b[off:off+4]) == "OggS"; {
		n := int(b[off+26])
		if off+27+n > len(b) {
			break
		}
		size := 27 + n
		for _, l := range b[off+27 : off+27+n] {
			size += int(l)
		}
		if off+size > len(b) {
			break
		}
		offs = append(offs, off)
		off += size
	}
	return offs
}

// oggPages counts the whole pages of the Ogg file at path so far.
func oggPages(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(oggPageOffsets(b))
}

// checkToneMostly is checkTone for a machine that may stall a tick now
// and then: the file decodes with ffmpeg without a complaint, lasts at
// least minSecs, and most of its fifths of a second (the median) hold
// the phone's tone at about its level.
func checkToneMostly(t *testing.T, data []byte, minSecs float64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pcm, err := audiotest.DecodeFile(path, recRate)
	if err != nil {
		t.Fatal(err)
	}
	if secs := float64(len(pcm)) / recRate; secs < minSecs {
		t.Fatalf("%.2f s decoded, want at least %.2f", secs, minSecs)
	}
	const win = recRate / 5
	var levels []float64
	for i := win; i+2*win <= len(pcm); i += win { // past the first and last fifth
		levels = append(levels, audiotest.LevelDBFS(pcm[i:i+win], recToneHz, recRate))
	}
	slices.Sort(levels)
	if l := levels[len(levels)/2]; l < recToneLevel-3 || l > recToneLevel+1 {
		t.Errorf("the tone at %.1f dBFS (median of %v) in the recording, want about %v", l, levels, recToneLevel)
	}
}

// TestRecordingQuotaConfig: --recording-quota defaults to 2 GiB, takes
// bytes from the flag and its environment twin, 0 is no limit, and a
// negative or non-numeric quota is a clear error.
func TestRecordingQuotaConfig(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil || cfg.RecordingQuota != 2<<30 {
		t.Fatalf("default quota %d, %v", cfg.RecordingQuota, err)
	}
	if cfg, err = loadConfig([]string{"--recording-quota", "0"}, noEnv, io.Discard); err != nil || cfg.RecordingQuota != 0 {
		t.Errorf("--recording-quota 0: %d, %v", cfg.RecordingQuota, err)
	}
	env := func(k string) string {
		if k == "CHORUS_RECORDING_QUOTA" {
			return "1000000"
		}
		return ""
	}
	if cfg, err = loadConfig(nil, env, io.Discard); err != nil || cfg.RecordingQuota != 1_000_000 {
		t.Errorf("CHORUS_RECORDING_QUOTA: %d, %v", cfg.RecordingQuota, err)
	}
	for _, v := range []string{"-1", "2GB"} {
		if _, err := loadConfig([]string{"--recording-quota", v}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "recording-quota") {
			t.Errorf("--recording-quota %s: %v", v, err)
		}
	}
}
