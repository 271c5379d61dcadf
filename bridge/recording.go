package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chorus/media/recfile"
	"chorus/media/resample"
)

// Recording of a room's mix (issue 14). The mixer's tick hands the room's
// full mix — every talker and the room's playbacks, after gains and the
// gate, as a listener who says nothing hears it at unity receive gain — to
// the recording's tap: a ring of pre-allocated frames. The tick copies one
// frame into it and moves on; it never blocks, never allocates and never
// waits for the disk. A writer goroutine per recording drains the ring,
// brings each frame to the recording's rate and encodes it to the file.
// When the writer falls so far behind that the ring is full, the tick
// stops writing, and the writer ends the recording with state error and a
// recording event: a slow disk costs the recording, never the mix.
//
// A recording's rate is fixed when it starts: the highest rate any room
// may mix at (Config.MaxMixRate, 48 kHz by default). A room's rate follows
// its members (8, 16 or 48 kHz) and may change while it records; its
// frames are resampled up (or, below a lowered cap, down) by the writer,
// off the tick, so that a file has one rate and nobody who joins later
// loses their band. An all-G.711 deployment that wants 8 kHz files caps
// the mix rate at 8000.

// RecordingPrefix starts a recording id.
const RecordingPrefix = "rec-"

// RecordingState is where a recording is in its life.
type RecordingState string

// Recording states (Catapult's names).
const (
	RecordingActive   RecordingState = "recording" // the writer is writing
	RecordingComplete RecordingState = "complete"  // the file is whole
	RecordingError    RecordingState = "error"     // the recording ended early; the file holds what was written
)

// EventRecording tells an application that a recording's file is complete,
// or that the recording ended with an error.
const EventRecording = "recording"

// Recording errors.
var (
	ErrRecordingDisabled = errors.New("recordings are disabled: no recordings directory")
	ErrRecordingActive   = errors.New("the recording is still being written")
	ErrMediaDeleted      = errors.New("the recording's media was deleted")
)

// defaultRecordingBuffer is how much mix a recording's ring holds for its
// writer: two seconds of a disk that does not answer.
const defaultRecordingBuffer = 2 * time.Second

// tapWakeFrames: the tick wakes the writer once every this many frames
// (100 ms), not at every frame.
const tapWakeFrames = 5

// RecordingInfo is a snapshot of a recording, in the shape a store can
// keep as JSON.
type RecordingInfo struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	// ConferenceID is the recorded conference; CallID the recorded call
	// (one of the two).
	ConferenceID string         `json:"conferenceId,omitempty"`
	CallID       string         `json:"callId,omitempty"`
	Format       recfile.Format `json:"format"`
	// Rate is the file's sample rate in Hz.
	Rate int `json:"rate"`
	// Media is the file's name under the recordings directory; "" once
	// deleted.
	Media string         `json:"media,omitempty"`
	State RecordingState `json:"state"`
	Start time.Time      `json:"startTime"`
	End   time.Time      `json:"endTime,omitzero"`
	// Error says why a recording in state error ended.
	Error string `json:"error,omitempty"`
	// Bytes is the file's length as written so far.
	Bytes int64 `json:"bytes"`
}

// Recording is the recording of a room's mix (or of a call) to a file.
type Recording struct {
	id, userID     string
	confID, callID string
	format         recfile.Format
	rate           int
	name, path     string
	start          time.Time
	b              *Bridge
	log            *slog.Logger
	tag            func() string // the callback tag of the recorded resource, for the event
	// maxFrames is recordingMaxDuration in ticks: the writer completes
	// the recording once it has written that many frames.
	maxFrames uint64

	tap      tap
	stopOnce sync.Once
	stopReq  chan struct{}
	done     chan struct{}
	bytes    atomic.Int64
	// ended makes the first end (the writer's, or the watch's when the
	// ring overflows) the one that sets the state and sends the event.
	ended sync.Once

	mu        sync.Mutex
	state     RecordingState
	end       time.Time
	errMsg    string
	mediaGone bool
}

// tap is a single-producer, single-consumer ring of mix frames: the
// room's tick puts, the recording's writer takes. Frames are a frame of
// the room's rate at the time (up to 48 kHz), tagged with that rate.
type tap struct {
	pcm   []int16 // len(rates) frames of maxFrameSamples
	lens  []int32
	rates []int32
	// head is the next frame the writer takes, tail the next the tick
	// puts; tail-head frames wait.
	head, tail atomic.Uint64
	// full: the ring was full at a tick, and a frame was lost; the tick
	// writes no more.
	full atomic.Bool
	// wake wakes the writer; overflow tells the recording's watch that
	// the ring was full (a writer stuck in a write cannot notice).
	wake, overflow chan struct{}
}

// maxFrameSamples is a 20 ms frame at the highest mix rate.
const maxFrameSamples = 48000 / 50

func newTap(frames int) *tap {
	frames = max(frames, 2*tapWakeFrames)
	return &tap{pcm: make([]int16, frames*maxFrameSamples), lens: make([]int32, frames),
		rates: make([]int32, frames), wake: make(chan struct{}, 1), overflow: make(chan struct{}, 1)}
}

// put copies this tick's mix into the ring, limited to 16 bits as a
// listener at unity receive gain hears it. It runs on the tick: a few
// atomics and the copy, no allocation, no blocking.
func (t *tap) put(acc []int32, rate int) {
	if t.full.Load() {
		return
	}
	tail := t.tail.Load()
	n := uint64(len(t.lens))
	if tail-t.head.Load() >= n || len(acc) > maxFrameSamples {
		t.full.Store(true)
		select {
		case t.overflow <- struct{}{}:
		default:
		}
		t.signal()
		return
	}
	i := tail % n
	dst := t.pcm[int(i)*maxFrameSamples:][:len(acc)]
	for j, v := range acc {
		dst[j] = limit(int64(v))
	}
	t.lens[i], t.rates[i] = int32(len(acc)), int32(rate)
	t.tail.Store(tail + 1)
	if tail%tapWakeFrames == 0 {
		t.signal()
	}
}

// signal wakes the writer without waiting.
func (t *tap) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// frame returns the frame at position pos (head ≤ pos < tail) and its rate.
func (t *tap) frame(pos uint64) ([]int16, int) {
	i := pos % uint64(len(t.lens))
	return t.pcm[int(i)*maxFrameSamples:][:t.lens[i]], int(t.rates[i])
}

// ID returns the recording id.
func (r *Recording) ID() string { return r.id }

// UserID returns the owner.
func (r *Recording) UserID() string { return r.userID }

// Media returns the file's name, "" once deleted.
func (r *Recording) Media() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mediaGone {
		return ""
	}
	return r.name
}

// Info returns a snapshot.
func (r *Recording) Info() RecordingInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := RecordingInfo{ID: r.id, UserID: r.userID, ConferenceID: r.confID, CallID: r.callID, Format: r.format,
		Rate: r.rate, Media: r.name, State: r.state, Start: r.start, End: r.end, Error: r.errMsg, Bytes: r.bytes.Load()}
	if r.mediaGone {
		in.Media = ""
	}
	return in
}

// State returns the recording's state.
func (r *Recording) State() RecordingState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Done is closed once the writer has finished: the file is closed and the
// recording event published.
func (r *Recording) Done() <-chan struct{} { return r.done }

// OpenMedia opens the recording's file for reading (a recording still
// being written too: what is written so far).
func (r *Recording) OpenMedia() (*os.File, error) {
	r.mu.Lock()
	gone := r.mediaGone
	r.mu.Unlock()
	if gone {
		return nil, fmt.Errorf("open %s: %w", r.name, ErrMediaDeleted)
	}
	f, err := os.Open(r.path)
	if err != nil {
		return nil, fmt.Errorf("open recording %s: %w", r.id, err)
	}
	return f, nil
}

// DeleteMedia removes the recording's file; the record stays, without
// media. A recording still being written must be stopped first
// (ErrRecordingActive).
func (r *Recording) DeleteMedia() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == RecordingActive:
		return fmt.Errorf("delete %s: %w", r.name, ErrRecordingActive)
	case r.mediaGone:
		return fmt.Errorf("delete %s: %w", r.name, ErrMediaDeleted)
	}
	if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete recording %s: %w", r.id, err)
	}
	r.mediaGone = true
	r.b.recUse.release(r.name) // its bytes no longer count against the quota
	return nil
}

// stop asks the writer to finish the file: what the ring holds is written
// first. It does not wait (Done).
func (r *Recording) stop() { r.stopOnce.Do(func() { close(r.stopReq) }) }

// RecordingFile opens a new recording file for writing; the default
// creates name under Config.RecordingsDir. A *os.File (an io.Seeker) lets
// a WAV file's sizes be written at the end.
type RecordingFile func(path string) (io.WriteCloser, error)

func createRecordingFile(path string) (io.WriteCloser, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
}

// startRecording makes a recording of userID's conference or call, of
// at most maxDur, opens its file and starts its writer. The caller
// attaches its tap to a mixer. A user at the quota, or a disk nearly
// full, is refused (CanRecord).
func (b *Bridge) startRecording(userID, confID, callID string, format recfile.Format, maxDur time.Duration, tag func() string) (*Recording, error) {
	if err := b.CanRecord(userID); err != nil {
		return nil, err
	}
	id := newID(RecordingPrefix)
	r := &Recording{id: id, userID: userID, confID: confID, callID: callID, format: format,
		rate: b.cfg.MaxMixRate, name: id + "." + format.Ext(), start: b.cfg.Now(), b: b, tag: tag,
		maxFrames: maxFrames(maxDur), stopReq: make(chan struct{}), done: make(chan struct{}), state: RecordingActive}
	r.path = filepath.Join(b.cfg.RecordingsDir, r.name)
	r.log = b.log.With("recording", id)
	frames := int(b.cfg.RecordingBuffer / TickInterval)
	r.tap = *newTap(frames)
	f, err := b.cfg.OpenRecordingFile(r.path)
	if err != nil {
		return nil, fmt.Errorf("start recording: %w", err)
	}
	b.recUse.track(r.name, userID, 0)
	cf := &countingFile{f: f, n: &r.bytes, use: &b.recUse, name: r.name}
	w, err := recfile.New(format, cf, r.rate)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(r.path)
		b.recUse.release(r.name)
		return nil, fmt.Errorf("start recording: %w", err)
	}
	b.mu.Lock()
	b.recordings[id] = r
	b.mu.Unlock()
	b.stats.Recordings.Add(1)
	r.log.Info("recording started", "conf", confID, "call", callID, "format", format, "rate", r.rate)
	go r.run(w, cf)
	go r.watch()
	return r, nil
}

// countingFile counts what reaches the file, for the recording and
// against its user's quota, and lets the WAV writer seek when the file
// can.
type countingFile struct {
	f    io.WriteCloser
	n    *atomic.Int64
	use  *recUsage
	name string
}

func (c *countingFile) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	c.n.Add(int64(n))
	c.use.grow(c.name, int64(n))
	return n, err
}

func (c *countingFile) Seek(off int64, whence int) (int64, error) {
	s, ok := c.f.(io.Seeker)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	return s.Seek(off, whence)
}

// run is the writer: it drains the tap whenever the tick wakes it, and
// finishes the file when asked to stop or when the tick could not hand it
// a frame. Its failure is the recording's, never the mix's.
func (r *Recording) run(w recfile.Writer, f *countingFile) {
	defer close(r.done)
	var (
		rs      *resample.Resampler
		conv    = make([]int16, r.rate/50)
		werr    error
		written uint64 // frames, against maxFrames
	)
	drain := func() {
		t := &r.tap
		for pos, tail := t.head.Load(), t.tail.Load(); pos < tail && werr == nil && written < r.maxFrames; pos++ {
			pcm, rate := t.frame(pos)
			if rate != r.rate {
				if rs == nil || rs.From() != rate {
					// The room changed its rate (or first mixes at one
					// below the recording's): a new filter from it.
					if rs, werr = resample.New(rate, r.rate); werr != nil {
						break
					}
				}
				rs.Process(conv, pcm)
				pcm = conv
			}
			werr = w.Write(pcm)
			written++
			t.head.Store(pos + 1)
		}
	}
	for {
		stopping := false
		select {
		case <-r.tap.wake:
		case <-r.stopReq:
			stopping = true
		}
		drain()
		switch {
		case werr != nil:
			r.finish(w, f, fmt.Errorf("write: %w", werr))
			return
		case written >= r.maxFrames:
			// recordingMaxDuration: the recording completes, the room
			// or call goes on without it. Off the tick first, so that
			// the ring cannot fill while the file is finished.
			r.log.Info("recording reached its maximum duration", "max", time.Duration(r.maxFrames)*TickInterval)
			r.detach()
			r.finish(w, f, nil)
			return
		case r.tap.full.Load():
			r.finish(w, f, errFellBehind)
			return
		case stopping:
			r.finish(w, f, nil)
			return
		}
		if err := r.overQuota(); err != nil {
			// The user's files crossed the quota: the recording ends
			// with an error, the room or call goes on.
			r.detach()
			r.finish(w, f, err)
			return
		}
	}
}

// errFellBehind ends a recording whose writer could not keep up.
var errFellBehind = errors.New("the writer fell behind the mix (disk too slow)")

// watch ends the recording with an error as soon as the tick finds the
// ring full, even while the writer is still stuck in a write: the app
// hears of it then, not when the disk answers.
func (r *Recording) watch() {
	select {
	case <-r.tap.overflow:
		r.conclude(errFellBehind)
	case <-r.done:
	}
}

// finish closes the encoder and the file, then concludes.
func (r *Recording) finish(w recfile.Writer, f *countingFile, failure error) {
	if err := w.Close(); err != nil && failure == nil {
		failure = fmt.Errorf("finish file: %w", err)
	}
	if err := f.f.Close(); err != nil && failure == nil {
		failure = fmt.Errorf("close file: %w", err)
	}
	r.conclude(failure)
}

// conclude sets the recording's end, once, and publishes the recording
// event: complete, or error with why.
func (r *Recording) conclude(failure error) {
	r.ended.Do(func() { r.concludeOnce(failure) })
}

func (r *Recording) concludeOnce(failure error) {
	r.detach()
	r.mu.Lock()
	r.end = r.b.cfg.Now()
	r.state = RecordingComplete
	if failure != nil {
		r.state, r.errMsg = RecordingError, failure.Error()
	}
	state, msg := r.state, r.errMsg
	r.mu.Unlock()
	if failure != nil {
		r.b.stats.RecordingErrors.Add(1)
		r.log.Warn("recording ended with an error", "err", failure, "bytes", r.bytes.Load())
	} else {
		r.log.Info("recording complete", "bytes", r.bytes.Load())
	}
	tag := ""
	if r.tag != nil {
		tag = r.tag()
	}
	r.b.publish(Event{Type: EventRecording, UserID: r.userID, ConferenceID: r.confID, CallID: r.callID,
		RecordingID: r.id, State: string(state), Cause: msg, Tag: tag})
}

// detach takes the recording's tap off the conference or call it taps,
// if it is still there (a recording that ended on its own).
func (r *Recording) detach() {
	if r.confID != "" {
		if c, ok := r.b.Conference(r.confID); ok {
			c.rec.CompareAndSwap(r, nil)
		}
	}
	if r.callID != "" {
		if c, ok := r.b.Call(r.callID); ok {
			c.detachRecording(r)
		}
	}
}

// Recording returns a recording by id.
func (b *Bridge) Recording(id string) (*Recording, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.recordings[id]
	return r, ok
}

// RecordingByMedia returns the recording whose file is name.
func (b *Bridge) RecordingByMedia(name string) (*Recording, bool) {
	id, _, _ := strings.Cut(name, ".")
	r, ok := b.Recording(id)
	if !ok || r.name != name {
		return nil, false
	}
	return r, true
}

// Recordings returns the recordings of a user, newest first.
func (b *Bridge) Recordings(userID string) []*Recording {
	b.mu.Lock()
	out := make([]*Recording, 0, len(b.recordings))
	for _, r := range b.recordings {
		if r.userID == userID {
			out = append(out, r)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y *Recording) int {
		if c := y.start.Compare(x.start); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	return out
}

// pruneRecordings forgets the recordings that ended before cutoff and
// removes their files: a record and its file go together, so that the
// recordings directory does not outgrow the retention. With
// Config.KeepRecordingFiles the files stay: a store still serves their
// records, and its pruning removes them.
func (b *Bridge) pruneRecordings(cutoff time.Time) int {
	var old []*Recording
	b.mu.Lock()
	for id, r := range b.recordings {
		r.mu.Lock()
		ended := r.state != RecordingActive && r.end.Before(cutoff)
		r.mu.Unlock()
		if ended {
			delete(b.recordings, id)
			old = append(old, r)
		}
	}
	b.mu.Unlock()
	if b.cfg.KeepRecordingFiles {
		return len(old)
	}
	for _, r := range old {
		if err := r.DeleteMedia(); err != nil && !errors.Is(err, ErrMediaDeleted) {
			r.log.Warn("pruned recording's file not removed", "err", err)
		}
	}
	return len(old)
}

// StartRecording starts recording the room's mix to a file of format, if
// it is not recording already (then it returns the running recording).
// The recording ends with StopRecording or when the conference completes.
func (c *Conference) StartRecording(format recfile.Format) (*Recording, error) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	if r := c.rec.Load(); r != nil {
		return r, nil
	}
	if c.State() == StateCompleted {
		return nil, fmt.Errorf("record %s: %w", c.id, ErrConferenceComplete)
	}
	r, err := c.b.startRecording(c.userID, c.id, "", format, c.RecordingMaxDuration(), func() string { return c.Callback().Tag })
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", c.id, err)
	}
	c.rec.Store(r)
	if c.State() == StateCompleted { // completed meanwhile: its complete found no recording to stop
		c.stopRecordingLocked()
	}
	return r, nil
}

// StopRecording ends the room's recording, if any: the writer finishes
// the file and the recording event follows. It does not wait.
func (c *Conference) StopRecording() {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.stopRecordingLocked()
}

// stopRecordingLocked is StopRecording with c.recMu held.
func (c *Conference) stopRecordingLocked() {
	if r := c.rec.Swap(nil); r != nil {
		r.stop()
	}
}

// ActiveRecording returns the room's running recording, nil if none.
func (c *Conference) ActiveRecording() *Recording { return c.rec.Load() }

// RecordingFormat is the format the room's next recording takes (WAV
// unless SetRecordingFormat chose another).
func (c *Conference) RecordingFormat() recfile.Format {
	if f := c.recFormat.Load(); f != nil {
		return *f
	}
	return recfile.WAV
}

// SetRecordingFormat sets the format of the room's next recording; a
// running one keeps its own.
func (c *Conference) SetRecordingFormat(f recfile.Format) { c.recFormat.Store(&f) }

// stopRecordings ends every running recording and waits, until ctx ends,
// for their files to be finished: a shutdown leaves whole files.
func (b *Bridge) stopRecordings(ctx context.Context) {
	b.mu.Lock()
	var live []*Recording
	for _, r := range b.recordings {
		if r.State() == RecordingActive {
			live = append(live, r)
		}
	}
	b.mu.Unlock()
	for _, r := range live {
		if c, ok := b.Conference(r.confID); ok {
			c.StopRecording()
		}
		if c, ok := b.Call(r.callID); ok {
			c.detachRecording(r)
		}
		r.stop()
	}
	for _, r := range live {
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
}

// tapCall hands a recording call's frame to its recording: what the
// caller said this tick (its frame as pulled, whether or not the room
// hears it) plus what it heard (heard; the shared mix at its receive
// volume when shared; nil for silence). It runs on the tick, only in a
// room where some call records; it allocates only the first time.
func (c *Conference) tapCall(m *Member, heard []int16, shared bool) {
	r := m.call.rec.Load()
	if r == nil {
		return
	}
	x := c.mix
	n := x.frame
	if len(x.callRec) != n {
		x.callRec = make([]int32, n)
	}
	out := x.callRec
	in := m.mx.in[:n]
	switch {
	case shared:
		g := int64(gainQ14[m.receive.Load()-MinLevel])
		for i, v := range x.acc[:n] {
			out[i] = int32(in[i]) + int32(limit(int64(v)*g>>14))
		}
	case heard != nil:
		for i, s := range heard[:n] {
			out[i] = int32(in[i]) + int32(s)
		}
	default:
		for i, s := range in {
			out[i] = int32(s)
		}
	}
	r.tap.put(out, x.rate)
}

// StartRecording starts recording the call: what its caller says and
// what it hears, mixed, whenever its audio runs through a room (a
// conference, or the bridge's own room of a call in none). It returns
// the running recording if there is one. The recording ends with
// StopRecording or when the call ends.
func (c *Call) StartRecording(format recfile.Format) (*Recording, error) {
	c.joinMu.Lock() // no join or move meanwhile
	defer c.joinMu.Unlock()
	if r := c.rec.Load(); r != nil {
		return r, nil
	}
	if c.State() == CallCompleted {
		return nil, fmt.Errorf("record %s: %w", c.id, ErrCallNotActive)
	}
	r, err := c.b.startRecording(c.userID, "", c.id, format, c.RecordingMaxDuration(), func() string { return c.Info().Callback.Tag })
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", c.id, err)
	}
	c.mu.Lock()
	ended := c.state == CallCompleted
	if !ended {
		c.rec.Store(r)
		if c.member != nil {
			c.member.conf.recCalls.Add(1)
		}
	}
	c.mu.Unlock()
	if ended { // ended meanwhile: its Ended found no recording to stop
		r.stop()
	}
	return r, nil
}

// StopRecording ends the call's recording, if any; its writer finishes
// the file and the recording event follows. It does not wait.
func (c *Call) StopRecording() {
	if r := c.detachRecording(nil); r != nil {
		r.stop()
	}
}

// detachRecording takes the call's recording off it (only r, unless r is
// nil) and off its room's count, and returns what it took.
func (c *Call) detachRecording(r *Recording) *Recording {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.rec.Load()
	if cur == nil || (r != nil && cur != r) {
		return nil
	}
	c.rec.Store(nil)
	if c.member != nil {
		c.member.conf.recCalls.Add(-1)
	}
	return cur
}

// ActiveRecording returns the call's running recording, nil if none.
func (c *Call) ActiveRecording() *Recording { return c.rec.Load() }

// RecordingFormat is the format of the call's next recording (WAV
// unless SetRecordingFormat chose another).
func (c *Call) RecordingFormat() recfile.Format {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recFormat == "" {
		return recfile.WAV
	}
	return c.recFormat
}

// SetRecordingFormat sets the format of the call's next recording.
func (c *Call) SetRecordingFormat(f recfile.Format) {
	c.mu.Lock()
	c.recFormat = f
	c.mu.Unlock()
}
