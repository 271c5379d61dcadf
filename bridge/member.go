package bridge

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"chorus/media"
	"chorus/media/resample"
)

// Member is a call in a conference.
type Member struct {
	// What the mixer reads every tick, first and together, so that a
	// listener costs the mixer as few cache lines as possible.
	ep Endpoint
	// epv is the endpoint of a call with a media.Session (ep points to
	// it): kept here by value so that reaching the session costs a
	// listener no cache line of its own.
	epv media.Endpoint
	// dtmfOut holds digits to send in place of audio (dtmfout.go); read
	// with the endpoint by every tick's send, so it sits on its cache line.
	dtmfOut atomic.Pointer[dtmfQueue]
	// mx is released by the mixer once the member has left, so that a
	// removed member kept for the API's records holds no buffers.
	mx               *mixState
	conf             *Conference
	audio            slot  // audio to this member only
	hang             int32 // frames of hangover left
	prevE            int32
	smooth           int32 // smoothed energy for loudest-N
	scoreVal         int32
	talkGain         int32 // the talk gain (Q14) this tick's mix used
	talk             atomic.Int32
	receive          atomic.Int32
	sens             atomic.Int32
	selected         bool // mixed this tick
	mute, hold       atomic.Bool
	muteSet, holdSet atomic.Bool // set on the member: the conference's value no longer applies
	phoneHold        atomic.Bool // the phone holds the call (Call.SetPhoneHold): not mixed
	talking          atomic.Bool
	waiting          atomic.Bool // in the lobby, for its PIN: not mixed, hears only its prompts

	id          string
	call        *Call
	added       time.Time
	joinTone    atomic.Bool
	leavingTone atomic.Bool
	state       atomic.Bool // in the snapshot (active, or waiting in the lobby)
	timingOut   atomic.Bool
	lobby       *lobby // set before the member is in the snapshot; nil without a PIN

	mu      sync.Mutex
	removed time.Time
	attach  attachment
}

// attachment is a value a layer above the bridge keeps with a record,
// made on first use.
type attachment struct {
	mu sync.Mutex
	v  any
}

func (a *attachment) get(mk func() any) any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.v == nil {
		a.v = mk()
	}
	return a.v
}

// Attachment returns what the layer above keeps for this member (the API:
// its audio requests), made by mk on first use. It lives and is pruned with
// the member's record.
func (m *Member) Attachment(mk func() any) any { return m.attach.get(mk) }

// mixState is a member's audio working memory, used only by the mixer:
// the frames it passes to and from the member's Endpoint (caller-owned
// buffers; the endpoint keeps its codec state and encoded output), at the
// room's mix rate.
type mixState struct {
	in []int16 // this tick's frame, gated
	// sw holds the frames at the room's old rate in the tick after a rate
	// change, which the mixer mixes at both rates; nil otherwise.
	sw *mixSwitch
	// priv is this tick's frame of audio to this member only, then (in
	// place: each sample is read before it is written) the member's own
	// output when it is not the shared mix.
	priv []int16
	// buf backs in and priv at 8 kHz, so that a narrowband room's member
	// costs one allocation.
	buf [2 * media.FrameSamples]int16
}

func newMixState() *mixState {
	mx := &mixState{}
	mx.in, mx.priv = mx.buf[:media.FrameSamples], mx.buf[media.FrameSamples:]
	return mx
}

// mixSwitch is a member's frames at the old rate of a rate change.
type mixSwitch struct{ in, priv []int16 }

// setRate sizes the frames for a room mixed at rate. It allocates: the
// mixer calls it only when the room's rate changes. With handover, the
// frames of the old rate are kept for the tick that mixes at both.
func (mx *mixState) setRate(rate int, handover bool) error {
	mx.sw = nil
	if handover {
		mx.sw = &mixSwitch{in: mx.in, priv: mx.priv}
	}
	n := rate / 50
	if rate == media.ClockRate {
		mx.in, mx.priv = mx.buf[:n], mx.buf[n:]
		return nil
	}
	if rate != 16000 && rate != 48000 {
		return fmt.Errorf("member at %d Hz: %w", rate, resample.ErrRate)
	}
	mx.in, mx.priv = make([]int16, n), make([]int16, n)
	return nil
}

// privFrame reads the member's own audio into priv at the room's rate
// (its playback resamples, see Playback.read).
func (mx *mixState) privFrame(s *slot) bool { return s.frame(mx.priv) }

// hangoverFrames keeps the gate open for 400 ms after the last loud frame.
const hangoverFrames = 20

func newMember(c *Conference, call *Call, leg Leg, opts MemberOptions) *Member {
	m := &Member{id: newID(MemberPrefix), conf: c, call: call, added: c.b.cfg.Now()}
	if el, ok := leg.(endpointLeg); ok {
		m.ep = el.endpoint()
	} else {
		m.epv = media.NewEndpoint(leg.Media())
		m.epv.SetOpusBitrate(c.b.cfg.OpusBitrate)
		m.epv.SetDetector(call.feedDTMF) // one detector per call, across rooms
		m.ep = &m.epv
	}
	m.joinTone.Store(opts.JoinTone)
	m.leavingTone.Store(opts.LeavingTone)
	m.mx = newMixState()
	m.state.Store(true)
	m.applyOptions(opts)
	m.phoneHold.Store(call.PhoneHold())
	return m
}

// ID returns the member id.
func (m *Member) ID() string { return m.id }

// logger is the member's scoped logger, made when there is something to
// log (joins, leaves, timeouts), so that a member keeps no logger of its
// own: a member's bytes are what the mixer walks every tick.
func (m *Member) logger() *slog.Logger { return m.conf.log.With("member", m.id, "call", m.call.id) }

// Call returns the member's call.
func (m *Member) Call() *Call { return m.call }

// Conference returns the member's conference.
func (m *Member) Conference() *Conference { return m.conf }

// Active reports whether the member is in the conference: admitted, and
// not yet left.
func (m *Member) Active() bool { return m.state.Load() && !m.waiting.Load() }

// applyOptions applies the mute and hold of opts that are set.
func (m *Member) applyOptions(opts MemberOptions) {
	if opts.Mute != nil {
		m.mute.Store(*opts.Mute)
		m.muteSet.Store(true)
	}
	if opts.Hold != nil {
		m.hold.Store(*opts.Hold)
		m.holdSet.Store(true)
	}
}

// Muted reports whether the member is not heard (its own setting, else the
// conference's).
func (m *Member) Muted() bool {
	if m.muteSet.Load() {
		return m.mute.Load()
	}
	return m.conf.mute.Load()
}

// Held reports whether the member neither hears nor is heard.
func (m *Member) Held() bool {
	if m.holdSet.Load() {
		return m.hold.Load()
	}
	return m.conf.hold.Load()
}

// SetMute sets the member's mute and raises a conference-member event.
func (m *Member) SetMute(v bool) {
	m.mute.Store(v)
	m.muteSet.Store(true)
	m.changed()
}

// SetHold sets the member's hold and raises a conference-member event.
func (m *Member) SetHold(v bool) {
	m.hold.Store(v)
	m.holdSet.Store(true)
	m.changed()
}

func (m *Member) changed() {
	if !m.Active() {
		return
	}
	c := m.conf
	c.b.publish(Event{Type: EventConferenceMember, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
		CallID: m.call.id, State: StateActive, ActiveMembers: c.activeLocked(),
		Mute: m.Muted(), Hold: m.Held(), PhoneHold: m.PhoneHold(), Tag: c.Callback().Tag})
}

// levelsChanged hands a change that raises no event (levels keyed on the
// phone) to the event sink when it keeps records (ChangeSink). It runs on
// the mixer's tick, a few times a second at most (a key press each): the
// sink takes it without waiting and coalesces the writes.
func (m *Member) levelsChanged() {
	if cs, ok := m.conf.b.events.(ChangeSink); ok {
		cs.MemberChanged(m.conf.userID, m.conf.id, m.id)
	}
}

// PhoneHold reports whether the member's phone holds the call (see
// Call.SetPhoneHold): nothing it sends is mixed.
func (m *Member) PhoneHold() bool { return m.phoneHold.Load() }

// Levels returns talk volume, receive volume and mic sensitivity, each
// −4..+4.
func (m *Member) Levels() (talk, receive, sensitivity int) {
	return int(m.talk.Load()), int(m.receive.Load()), int(m.sens.Load())
}

// SetLevels sets talk volume, receive volume and mic sensitivity, clamped
// to −4..+4.
func (m *Member) SetLevels(talk, receive, sensitivity int) {
	m.talk.Store(clampLevel(int32(talk)))
	m.receive.Store(clampLevel(int32(receive)))
	m.sens.Store(clampLevel(int32(sensitivity)))
}

// Talking reports whether the member's noise gate is open.
func (m *Member) Talking() bool { return m.talking.Load() }

// SetTones sets whether a tone marks the member's joining (kept for the
// record; the join is past) and leaving.
func (m *Member) SetTones(join, leaving bool) {
	m.joinTone.Store(join)
	m.leavingTone.Store(leaving)
}

// Play plays audio to this member only, replacing what was playing. On a
// removed member the playback ends at once as removed.
func (m *Member) Play(p *Playback) {
	m.audio.play(p)
	if !m.Active() {
		m.audio.stop(PlaybackHeld)
	}
}

// StopAudio stops this member's playback.
func (m *Member) StopAudio() { m.audio.stop(PlaybackStopped) }

// MemberInfo is a snapshot of a member.
type MemberInfo struct {
	ID, CallID, ConferenceID, State string
	Added, Removed                  time.Time
	Mute, Hold, JoinTone, Leaving   bool
	Talk, Receive, Sensitivity      int
	Talking                         bool
	PhoneHold                       bool // the phone holds the call
}

// Info returns a snapshot.
func (m *Member) Info() MemberInfo {
	m.mu.Lock()
	removed := m.removed
	m.mu.Unlock()
	st := StateActive
	if !m.Active() {
		st = StateCompleted
	}
	t, r, s := m.Levels()
	return MemberInfo{ID: m.id, CallID: m.call.id, ConferenceID: m.conf.id, State: st, Added: m.added,
		Removed: removed, Mute: m.Muted(), Hold: m.Held(), JoinTone: m.joinTone.Load(), Leaving: m.leavingTone.Load(),
		Talk: t, Receive: r, Sensitivity: s, Talking: m.Talking(), PhoneHold: m.PhoneHold()}
}

func (m *Member) score() int32 { return m.scoreVal }

// release drops the member's audio memory and endpoint. Only the mixer
// calls it, after the member has left its snapshot.
func (m *Member) release() {
	// What the mixer has not yet published of the member's reception
	// (mixTick publishes it once a second) reaches the metrics now.
	var d rtpDelta
	m.takeStats(&d, false)
	d.flush(m.conf.b.stats)
	m.mx = nil
	m.ep = nil
	m.epv = media.Endpoint{}
}
