package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/recfile"
)

// rateTone is a tone source that follows the room's rate (the length of
// the frame it is asked for), its phase continuous across a change.
func rateTone(freq, dBFS float64) func([]int16) {
	var t float64 // seconds
	amp := audiotest.FullScale * math.Pow(10, dBFS/20)
	return func(dst []int16) {
		rate := float64(len(dst) * 50)
		for i := range dst {
			dst[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freq*t)))
			t += 1 / rate
		}
	}
}

// recRoom is a memRoom that records into a temporary directory, with the
// bridge's events kept.
func recRoom(t *testing.T, cfg Config) (*memRoom, *eventRec) {
	t.Helper()
	if cfg.RecordingsDir == "" {
		cfg.RecordingsDir = t.TempDir()
	}
	r := newMemRoom(t, cfg)
	ev := &eventRec{}
	r.b.SetEventSink(ev)
	return r, ev
}

// stepPaced steps the room n ticks, letting the writer drain the tap
// every few ticks as it would in real time (a test steps far faster than
// 50 ticks a second).
func stepPaced(t *testing.T, r *memRoom, rec *Recording, n int) {
	t.Helper()
	for i := range n {
		r.step(1)
		if i%10 == 9 {
			waitDrained(t, rec)
		}
	}
	waitDrained(t, rec)
}

func waitDrained(t *testing.T, rec *Recording) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rec.tap.head.Load() != rec.tap.tail.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not drain the tap in 10 s")
		}
		rec.tap.signal()
		time.Sleep(time.Millisecond)
	}
}

// finished waits for the recording's writer to end.
func finished(t *testing.T, rec *Recording) RecordingInfo {
	t.Helper()
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the recording did not finish in 10 s")
	}
	return rec.Info()
}

// readWAV reads a WAV file the recording wrote: its rate and samples.
func readWAV(t *testing.T, path string) (int, []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[:4]) != "RIFF" || int(binary.LittleEndian.Uint32(b[40:])) != len(b)-44 {
		t.Fatalf("not a finished WAV file: %d bytes", len(b))
	}
	pcm := make([]int16, (len(b)-44)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[44+2*i:]))
	}
	return int(binary.LittleEndian.Uint32(b[24:])), pcm
}

// TestRecordingMix: at each mix rate, two talkers' tones at different
// levels are in the room's recording at the level a listener hears them
// (± 1 dB, over the recorded span), a silent member adds nothing, the file
// is at the recording's rate, and a complete recording event follows the
// stop.
func TestRecordingMix(t *testing.T) {
	for _, rate := range mixRates {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			r, ev := recRoom(t, Config{})
			r.setRate(rate)
			r.join(media.PCMU, rateTone(500, -12))
			r.join(media.PCMA, rateTone(1300, -24))
			r.join(media.PCMU, nil)
			rec, err := r.conf.StartRecording(recfile.WAV)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := r.conf.StartRecording(recfile.MP3); err != nil || again != rec {
				t.Errorf("a second start gave %v, %v: want the running recording", again, err)
			}
			stepPaced(t, r, rec, 100)
			r.conf.StopRecording()
			info := finished(t, rec)
			if info.State != RecordingComplete || info.End.IsZero() || info.Rate != 48000 {
				t.Fatalf("recording ended as %+v", info)
			}
			fileRate, pcm := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, info.Media))
			if fileRate != 48000 || len(pcm) != 100*960 {
				t.Fatalf("file at %d Hz of %d samples, want 48000 Hz, %d", fileRate, len(pcm), 100*960)
			}
			span := pcm[10*960:] // past the resampler's start
			for _, tn := range []struct{ f, level float64 }{{500, -12}, {1300, -24}} {
				for j := 0; j+9600 <= len(span); j += 9600 { // every 200 ms of it
					if got := audiotest.LevelDBFS(span[j:j+9600], tn.f, 48000); math.Abs(got-tn.level) > 1 {
						t.Errorf("%v Hz recorded at %.2f dBFS at %d ms, want %v ± 1", tn.f, got, 200+j/48, tn.level)
					}
				}
			}
			evs := ev.of(EventRecording)
			if len(evs) != 1 || evs[0].State != string(RecordingComplete) || evs[0].RecordingID != rec.ID() || evs[0].ConferenceID != r.conf.ID() {
				t.Errorf("recording events %+v", evs)
			}
		})
	}
}

// TestRecordingRateChange: a room that goes from 8 to 48 kHz and back
// while it records gives one 48 kHz file whose tone keeps its level in
// each part, and whose band widens while the room is wideband.
func TestRecordingRateChange(t *testing.T) {
	r, _ := recRoom(t, Config{})
	r.join(media.PCMU, rateTone(700, -15))
	rec, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	stepPaced(t, r, rec, 50)
	r.setRate(48000)
	_, wide := r.join(media.PCMU, rateTone(6000, -20))
	stepPaced(t, r, rec, 50)
	if r.conf.mix.rate != 48000 {
		t.Fatalf("the room mixes at %d Hz", r.conf.mix.rate)
	}
	r.conf.removeMember(wide, false, "test")
	stepPaced(t, r, rec, 50)
	r.conf.StopRecording()
	info := finished(t, rec)
	_, pcm := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, info.Media))
	if len(pcm) != 150*960 {
		t.Fatalf("%d samples, want %d", len(pcm), 150*960)
	}
	parts := [][]int16{pcm[10*960 : 45*960], pcm[60*960 : 95*960], pcm[110*960 : 145*960]}
	for i, p := range parts {
		if got := audiotest.LevelDBFS(p, 700, 48000); math.Abs(got+15) > 1 {
			t.Errorf("part %d: 700 Hz at %.2f dBFS, want -15 ± 1", i, got)
		}
		got6k := audiotest.LevelDBFS(p, 6000, 48000)
		switch {
		case i == 1 && math.Abs(got6k+20) > 1:
			t.Errorf("the wideband part holds 6 kHz at %.2f dBFS, want -20", got6k)
		case i != 1 && got6k > -50:
			t.Errorf("part %d holds 6 kHz at %.2f dBFS: nobody said it", i, got6k)
		}
	}
}

// stalledFile is a disk that never answers: every Write blocks until the
// test releases it.
type stalledFile struct {
	release chan struct{}
	once    sync.Once
}

func (s *stalledFile) Write(p []byte) (int, error) {
	<-s.release
	return 0, errors.New("released")
}

func (s *stalledFile) Close() error { return nil }

func (s *stalledFile) free() { s.once.Do(func() { close(s.release) }) }

// TestRecordingStalledWriter: a recording whose disk stops answering is
// ended with state error and an error event once its buffer is full,
// while the writer is still stuck; the tick never waits for it.
func TestRecordingStalledWriter(t *testing.T) {
	disk := &stalledFile{release: make(chan struct{})}
	t.Cleanup(disk.free)
	r, ev := recRoom(t, Config{RecordingBuffer: 200 * time.Millisecond,
		OpenRecordingFile: func(string) (io.WriteCloser, error) { return disk, nil }})
	r.join(media.PCMU, tone(500, -12))
	r.join(media.PCMU, nil)
	rec, err := r.conf.StartRecording(recfile.MP3) // writes nothing until LAME has a frame
	if err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	for range 200 {
		start := time.Now()
		r.step(1)
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 200*time.Millisecond { // a tick is ~10 µs here; generous for a loaded machine
		t.Errorf("a tick took %v with a stalled recording", slowest)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rec.State() == RecordingActive {
		if time.Now().After(deadline) {
			t.Fatal("the stalled recording is still active")
		}
		time.Sleep(5 * time.Millisecond)
	}
	info := rec.Info()
	if info.State != RecordingError || info.Error == "" {
		t.Errorf("stalled recording ended as %+v", info)
	}
	evs := ev.of(EventRecording)
	if len(evs) != 1 || evs[0].State != string(RecordingError) || evs[0].Cause == "" {
		t.Errorf("recording events %+v", evs)
	}
	if r.conf.ActiveRecording() != nil {
		t.Error("the conference still holds the failed recording")
	}
	if got := r.b.stats.RecordingErrors.Load(); got != 1 {
		t.Errorf("%d recording errors counted", got)
	}
	disk.free()
	finished(t, rec)
	if got := len(ev.of(EventRecording)); got != 1 {
		t.Errorf("%d recording events once the writer returned, want still 1", got)
	}
}

// TestRecordingEndsWithConference: a conference that completes finishes
// its recording; the event follows the conference's; a completed
// conference cannot start one; Prune forgets it with its file once the
// retention has passed.
func TestRecordingEndsWithConference(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, ev := recRoom(t, Config{Now: clock, Retention: time.Hour})
	r.join(media.PCMU, tone(500, -12))
	rec, err := r.conf.StartRecording(recfile.OGG)
	if err != nil {
		t.Fatal(err)
	}
	stepPaced(t, r, rec, 20)
	r.conf.Complete()
	info := finished(t, rec)
	if info.State != RecordingComplete {
		t.Fatalf("recording %+v", info)
	}
	var order []string
	ev.mu.Lock()
	evs := append([]Event(nil), ev.evs...)
	ev.mu.Unlock()
	for _, e := range evs {
		if e.Type == EventConference || e.Type == EventRecording {
			order = append(order, e.Type+":"+e.State)
		}
	}
	if len(order) < 2 || order[len(order)-2] != "conference:completed" || order[len(order)-1] != "recording:complete" {
		t.Errorf("events in order %v", order)
	}
	if _, err := r.conf.StartRecording(recfile.WAV); !errors.Is(err, ErrConferenceComplete) {
		t.Errorf("recording a completed conference: %v", err)
	}
	path := filepath.Join(r.b.cfg.RecordingsDir, info.Media)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if got := r.b.Recordings("u-test"); len(got) != 1 || got[0] != rec {
		t.Errorf("the user's recordings: %v", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	r.b.Prune()
	if _, ok := r.b.Recording(rec.ID()); ok {
		t.Error("the recording outlived the retention")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its file: %v", err)
	}
}

// TestRecordingDisabled: without a recordings directory a recording is
// refused with ErrRecordingDisabled.
func TestRecordingDisabled(t *testing.T) {
	r := newMemRoom(t, Config{})
	if _, err := r.conf.StartRecording(recfile.WAV); !errors.Is(err, ErrRecordingDisabled) {
		t.Errorf("got %v", err)
	}
}

// TestRecordingTapAllocs: a tick of a recording room allocates nothing,
// the tap's copy included.
func TestRecordingTapAllocs(t *testing.T) {
	tp := newTap(100)
	acc := make([]int32, maxFrameSamples)
	if allocs := testing.AllocsPerRun(200, func() {
		tp.put(acc, 48000)
		tp.head.Store(tp.tail.Load()) // the writer's part
	}); allocs != 0 {
		t.Errorf("the tap's put allocates %.1f times", allocs)
	}
	if tp.full.Load() {
		t.Error("the tap overflowed")
	}

	r, _ := recRoom(t, Config{OpenRecordingFile: func(string) (io.WriteCloser, error) { return discardFile{}, nil }})
	r.setRate(48000)
	_, talker := r.join(media.PCMU, tone(400, -10))
	_, listener := r.join(media.PCMU, nil)
	rec, err := r.conf.StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	stepPaced(t, r, rec, 20)
	if allocs := testing.AllocsPerRun(50, func() { r.step(1); waitDrained(t, rec) }); allocs != 0 {
		t.Errorf("a recording tick (and its writer) allocates %.1f times", allocs)
	}
	// Two calls that record too: a talker (its own frame) and a listener
	// (the shared mix).
	recT, err := talker.Call().StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	recL, err := listener.Call().StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	drained := func() {
		waitDrained(t, rec)
		waitDrained(t, recT)
		waitDrained(t, recL)
	}
	for range 20 {
		r.step(1)
		drained()
	}
	if allocs := testing.AllocsPerRun(50, func() { r.step(1); drained() }); allocs != 0 {
		t.Errorf("a tick with recording calls allocates %.1f times", allocs)
	}
}

type discardFile struct{}

func (discardFile) Write(p []byte) (int, error) { return len(p), nil }
func (discardFile) Close() error                { return nil }

// BenchmarkRecordingTap is the tick's cost of recording: one 20 ms frame
// into the tap, at each mix rate.
func BenchmarkRecordingTap(b *testing.B) {
	for _, rate := range mixRates {
		b.Run(fmt.Sprint(rate), func(b *testing.B) {
			tp := newTap(100)
			acc := make([]int32, rate/50)
			for i := range acc {
				acc[i] = int32(i * 7)
			}
			b.ReportAllocs()
			for b.Loop() {
				tp.put(acc, rate)
				tp.head.Store(tp.tail.Load())
			}
		})
	}
}

// TestCallRecording: a call's recording holds what its caller says and
// what it hears — a talker's (its own frame plus the others), a silent
// listener's (the shared mix) — each at its level, follows the call into
// another room at another rate, and ends with the call.
func TestCallRecording(t *testing.T) {
	r, ev := recRoom(t, Config{})
	_, talker := r.join(media.PCMU, rateTone(500, -12))
	r.join(media.PCMA, rateTone(1300, -20))
	_, listener := r.join(media.PCMU, nil)
	if r.conf.recCalls.Load() != 0 {
		t.Fatal("a room counts recording calls before any records")
	}
	recT, err := talker.Call().StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	recL, err := listener.Call().StartRecording(recfile.WAV)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.conf.recCalls.Load(); got != 2 {
		t.Fatalf("the room counts %d recording calls", got)
	}
	for range 10 {
		stepPaced(t, r, recT, 10)
		waitDrained(t, recL)
	}
	// The listener moves to a 16 kHz room where a 2 kHz tone plays.
	r2 := &memRoom{t: t, b: r.b, now: r.now, rate: 16000}
	c2, err := r.b.CreateConference(ConferenceOptions{UserID: "u-test"})
	if err != nil {
		t.Fatal(err)
	}
	r2.conf = c2
	r2.join(media.PCMU, rateTone(2000, -15))
	if _, err := c2.AddMember(listener.Call(), MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	if r.conf.recCalls.Load() != 1 || c2.recCalls.Load() != 1 {
		t.Fatalf("after the move the rooms count %d and %d recording calls", r.conf.recCalls.Load(), c2.recCalls.Load())
	}
	for range 10 {
		r2.step(10)
		waitDrained(t, recL)
	}
	if c2.mix.rate != 16000 {
		t.Fatalf("the second room mixes at %d Hz", c2.mix.rate)
	}
	talker.Call().StopRecording()
	listener.Call().Ended("test")
	infoT, infoL := finished(t, recT), finished(t, recL)
	if infoT.State != RecordingComplete || infoL.State != RecordingComplete || infoT.CallID != talker.Call().ID() || infoT.ConferenceID != "" {
		t.Fatalf("recordings %+v %+v", infoT, infoL)
	}
	if r.conf.recCalls.Load() != 0 || c2.recCalls.Load() != 0 {
		t.Errorf("rooms still count recording calls: %d, %d", r.conf.recCalls.Load(), c2.recCalls.Load())
	}
	_, pcmT := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, infoT.Media))
	_, pcmL := readWAV(t, filepath.Join(r.b.cfg.RecordingsDir, infoL.Media))
	if len(pcmT) != 100*960 || len(pcmL) != 200*960 {
		t.Fatalf("%d and %d samples", len(pcmT), len(pcmL))
	}
	check := func(name string, pcm []int16, f, want float64) {
		t.Helper()
		if got := audiotest.LevelDBFS(pcm, f, 48000); math.Abs(got-want) > 1 {
			t.Errorf("%s: %v Hz at %.2f dBFS, want %v ± 1", name, f, got, want)
		}
	}
	check("talker", pcmT[10*960:], 500, -12)
	check("talker", pcmT[10*960:], 1300, -20)
	check("listener in the first room", pcmL[10*960:95*960], 500, -12)
	check("listener in the first room", pcmL[10*960:95*960], 1300, -20)
	check("listener in the second room", pcmL[110*960:], 2000, -15)
	if got := audiotest.LevelDBFS(pcmL[110*960:], 500, 48000); got > -50 {
		t.Errorf("the listener's recording holds the first room's 500 Hz after the move: %.1f dBFS", got)
	}
	n := 0
	for _, e := range ev.of(EventRecording) {
		if e.CallID != "" && e.State == string(RecordingComplete) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d call recording events, want 2", n)
	}
}

// TestRecordingStalledDiskLiveClock: on the real clock, a room whose
// recording's disk stops answering keeps ticking on time: the recording
// ends with an error within its buffer's span, and the ticks go on while
// the writer is still stuck, none of them restarting the clock.
func TestRecordingStalledDiskLiveClock(t *testing.T) {
	disk := &stalledFile{release: make(chan struct{})}
	t.Cleanup(disk.free)
	r, _ := recRoom(t, Config{RecordingBuffer: 200 * time.Millisecond,
		OpenRecordingFile: func(string) (io.WriteCloser, error) { return disk, nil }})
	r.b.manualClock = false // the members' join starts the room's clock
	t.Cleanup(func() { r.conf.Complete() })
	rec, err := r.conf.StartRecording(recfile.MP3)
	if err != nil {
		t.Fatal(err)
	}
	r.join(media.PCMU, tone(500, -12))
	r.join(media.PCMU, nil)
	st := r.b.Stats()
	deadline := time.Now().Add(10 * time.Second)
	for rec.State() == RecordingActive {
		if time.Now().After(deadline) {
			t.Fatal("the stalled recording is still active after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ticks, restarts := st.Ticks.Load(), st.Restarts.Load()
	time.Sleep(time.Second)
	if got := st.Ticks.Load() - ticks; got < 25 { // 50 on time; generous for a loaded machine
		t.Errorf("%d ticks in the second after the recording failed, want about 50", got)
	}
	if got := st.Restarts.Load() - restarts; got != 0 {
		t.Errorf("the clock restarted %d times while the writer was stuck", got)
	}
	t.Logf("ticks %d, max lateness %v", st.Ticks.Load(), time.Duration(st.MaxLateness.Load()))
}

// BenchmarkMixTickRecording is a 48 kHz tick of a room of 10 in-memory
// members (3 talking): not recording, recording the room, and recording
// the room and one listener's call. The taps' rings are drained by the
// benchmark itself (no writer), so that what it shows is the tick's cost.
func BenchmarkMixTickRecording(b *testing.B) {
	for _, mode := range []string{"none", "room", "room+call"} {
		b.Run(mode, func(b *testing.B) {
			// The clock the room steps runs far ahead of the endpoints' own
			// (time.Now): no RTP timeout in a long run.
			r := newMemRoom(b, Config{RTPTimeout: 24 * time.Hour})
			r.setRate(48000)
			r.join(media.PCMU, rateTone(400, -12))
			r.join(media.PCMA, rateTone(700, -12))
			r.join(media.PCMU, rateTone(1100, -12))
			var listener *Member
			for range 7 {
				ep, m := r.join(media.PCMU, nil)
				ep.bare = true
				listener = m
			}
			var taps []*tap
			if mode != "none" {
				rec := &Recording{tap: *newTap(100), stopReq: make(chan struct{})}
				r.conf.rec.Store(rec)
				taps = append(taps, &rec.tap)
			}
			if mode == "room+call" {
				rec := &Recording{tap: *newTap(100), stopReq: make(chan struct{})}
				listener.Call().rec.Store(rec)
				r.conf.recCalls.Add(1)
				taps = append(taps, &rec.tap)
			}
			r.step(20)
			b.ReportAllocs()
			for b.Loop() {
				r.step(1)
				for _, tp := range taps {
					tp.head.Store(tp.tail.Load())
				}
			}
		})
	}
}
