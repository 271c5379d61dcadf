package bridge

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"chorus/media"
)

// Member is a call in a conference.
type Member struct {
	// What the mixer reads every tick, first and together, so that a
	// listener costs the mixer as few cache lines as possible.
	sess *media.Session
	// dtmfOut holds digits to send in place of audio (dtmfout.go); read
	// with sess by every tick's send, so it sits on sess's cache line.
	dtmfOut atomic.Pointer[dtmfQueue]
	// mx is released by the mixer once the member has left, so that a
	// removed member kept for the API's records holds no buffers.
	mx               *mixState
	conf             *Conference
	audio            slot  // audio to this member only
	hang             int32 // frames of hangover left
	energy           int32 // mean absolute sample value of this tick's frame
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
	log         *slog.Logger
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

// mixState is a member's audio working memory, used only by the mixer.
type mixState struct {
	jb      media.JitterBuffer
	digits  [8]rune
	nDigits int
	in      [media.FrameSamples]int16 // this tick's frame, gated
	priv    [media.FrameSamples]int16 // this tick's frame of audio to this member only
	payload [media.FrameSamples]byte  // this member's own encoded output
}

// hangoverFrames keeps the gate open for 400 ms after the last loud frame.
const hangoverFrames = 20

func newMember(c *Conference, call *Call, sess *media.Session, opts MemberOptions) *Member {
	m := &Member{id: newID(MemberPrefix), conf: c, call: call, sess: sess, added: c.b.cfg.Now()}
	m.joinTone.Store(opts.JoinTone)
	m.leavingTone.Store(opts.LeavingTone)
	m.log = c.log.With("member", m.id, "call", call.id)
	m.mx = &mixState{}
	m.state.Store(true)
	m.applyOptions(opts)
	m.phoneHold.Store(call.PhoneHold())
	return m
}

// ID returns the member id.
func (m *Member) ID() string { return m.id }

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

// Audio implements media.Handler: audio goes into the jitter buffer.
func (m *Member) Audio(ssrc, ts uint32, codec media.Codec, payload []byte) {
	m.mx.jb.Put(ssrc, ts, codec, payload)
}

// Event implements media.Handler: telephone-events go to the detector and
// never into the mix.
func (m *Member) Event(ssrc, ts uint32, payload []byte) {
	x := m.mx
	if d, ok := m.call.feedDTMF(ssrc, ts, payload); ok && x.nDigits < len(x.digits) {
		x.digits[x.nDigits] = d
		x.nDigits++
	}
}

func (m *Member) score() int32 { return m.scoreVal }

// release drops the member's audio memory and session. Only the mixer
// calls it, after the member has left its snapshot.
func (m *Member) release() {
	if m.mx != nil {
		// The jitter buffer's counters belong to the mixer; they reach
		// the metrics here, once, when the member's memory goes.
		js, st := m.mx.jb.Stats(), m.conf.b.stats
		st.JitterPackets.Add(js.Packets)
		st.JitterLate.Add(js.Late)
		st.JitterConcealed.Add(js.Concealed)
		st.JitterUnderruns.Add(js.Underruns)
	}
	m.mx = nil
	m.sess = nil
}
