package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"chorus/dtmf"
	"chorus/media"
	"chorus/media/recfile"
)

// Conference states (Catapult).
const (
	StateCreated   = "created"
	StateActive    = "active"
	StateCompleted = "completed"
)

// DTMF profiles (Catapult).
const (
	ProfileInterpretDigits = dtmf.ProfileInterpretDigits
	ProfilePassthruDigits  = dtmf.ProfilePassthruDigits
)

// Conference is a room: members and their mixer.
type Conference struct {
	id      string
	userID  string
	from    string
	profile string
	created time.Time
	b       *Bridge
	log     *slog.Logger

	mu        sync.Mutex
	state     string
	completed time.Time
	callback  Callback
	all       []*Member // every member ever admitted, in join order
	stop      context.CancelFunc
	mixing    bool   // the mixer was started (on the first member, waiting or not)
	pin       string // callers who dial in wait in the lobby for it; "" for none
	// internal marks the room of a call in no conference (callmedia.go):
	// never registered, no events, invisible to the API.
	internal bool
	// pair marks an internal room bridging two calls (transfer.go): when
	// one leaves, the other is hung up.
	pair bool

	// waiting counts the snapshot's members that wait in the lobby; the
	// others are the active members. Changed under mu with the snapshot.
	waiting atomic.Int32
	// locked refuses new dial-ins (members in, and API adds, are not
	// affected).
	locked atomic.Bool

	mute, hold atomic.Bool
	ended      atomic.Bool // completed: the clock drops it

	// members is the snapshot the mixer iterates: the active members,
	// rebuilt on join and leave, never modified in place.
	members atomic.Pointer[[]*Member]

	// gone are members that left, whose memory the mixer frees at its next
	// tick (or when it stops).
	gone      []*Member
	goneCount atomic.Int32

	audio slot // file or sentence for the whole room
	tone  slot // join and leave tones

	// rec is the running recording whose tap the tick feeds (recording.go);
	// nil, the common case, costs the tick one load. recMu serialises
	// starting and stopping it; recFormat is the format the next one takes.
	rec       atomic.Pointer[Recording]
	recMu     sync.Mutex
	recFormat atomic.Pointer[recfile.Format]
	recMax    atomic.Int64 // recordingMaxDuration of the next one; 0: the default
	// recCalls counts the members whose call records (changed under the
	// call's mu with its member and recording): a room with none skips
	// the per-member recording check altogether.
	recCalls atomic.Int32

	// mix is the mixer's working memory (about 2 kB). Only the goroutine
	// running the room's ticks touches it, and it drops it once the room
	// has ended, so that a completed record kept for the API is small.
	mix        *mixer
	attach     attachment
	testWorker *tickWorker // mixOnce's (tests step the mixer with it)
}

func newConference(b *Bridge, opts ConferenceOptions) *Conference {
	c := &Conference{id: newID(ConferencePrefix), userID: opts.UserID, from: opts.From,
		profile: opts.Profile, created: b.cfg.Now(), b: b, state: StateCreated, callback: opts.Callback}
	c.log = b.log.With("conf", c.id)
	c.mute.Store(opts.Mute)
	c.hold.Store(opts.Hold)
	c.locked.Store(opts.Locked)
	c.pin = opts.PIN
	c.members.Store(&[]*Member{})
	c.mix = newMixer(b.cfg.LoudestN)
	return c
}

// ID returns the conference id.
func (c *Conference) ID() string { return c.id }

// UserID returns the owner.
func (c *Conference) UserID() string { return c.userID }

// From returns the hosting number.
func (c *Conference) From() string { return c.from }

// Profile returns the DTMF profile.
func (c *Conference) Profile() string { return c.profile }

// Created returns the creation time.
func (c *Conference) Created() time.Time { return c.created }

// State returns created, active or completed.
func (c *Conference) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ConferenceInfo is a snapshot of a conference.
type ConferenceInfo struct {
	ID, UserID, From, Profile, State string
	Created, Completed               time.Time
	ActiveMembers                    int
	// Waiting counts the callers in the lobby, not yet admitted.
	Waiting    int
	Mute, Hold bool
	// Locked refuses new dial-ins; PINSet says a PIN is asked of them.
	Locked, PINSet bool
	Callback       Callback
	// RecordingFormat is the format of the room's recordings.
	RecordingFormat recfile.Format
	// RecordingMaxDuration bounds the length of each of its recordings.
	RecordingMaxDuration time.Duration `json:",omitzero"`
}

// Info returns a snapshot.
func (c *Conference) Info() ConferenceInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConferenceInfo{ID: c.id, UserID: c.userID, From: c.from, Profile: c.profile, State: c.state,
		Created: c.created, Completed: c.completed, ActiveMembers: c.activeLocked(), Waiting: int(c.waiting.Load()),
		Mute: c.mute.Load(), Hold: c.hold.Load(), Locked: c.locked.Load(), PINSet: c.pin != "", Callback: c.callback,
		RecordingFormat: c.RecordingFormat(), RecordingMaxDuration: c.RecordingMaxDuration()}
}

// activeLocked counts the active members: the snapshot less the callers
// waiting in the lobby. c.mu is held, or the count may be a moment old.
func (c *Conference) activeLocked() int {
	return len(*c.members.Load()) - int(c.waiting.Load())
}

// SetPIN sets the PIN asked of callers who dial in (ValidPIN); "" removes
// it. Callers already waiting are asked for the new one.
func (c *Conference) SetPIN(pin string) error {
	if err := ValidPIN(pin); err != nil {
		return fmt.Errorf("set pin of %s: %w", c.id, err)
	}
	c.mu.Lock()
	c.pin = pin
	c.mu.Unlock()
	return nil
}

// PIN returns the room's PIN, "" for none. It is for the bridge's own use
// and tests; the API never shows it.
func (c *Conference) PIN() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pin
}

// SetLocked locks or unlocks the room: a locked room refuses new dial-ins
// (ErrConferenceLocked) and turns away callers still waiting for their
// PIN; members already in stay, and members added through the API still
// join.
func (c *Conference) SetLocked(v bool) { c.locked.Store(v) }

// Locked reports whether the room refuses new dial-ins.
func (c *Conference) Locked() bool { return c.locked.Load() }

// Callback returns where events go.
func (c *Conference) Callback() Callback {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callback
}

// SetCallback changes where events go.
func (c *Conference) SetCallback(cb Callback) {
	c.mu.Lock()
	c.callback = cb
	c.mu.Unlock()
}

// SetMute sets the conference-wide mute: members without a mute setting of
// their own are not heard.
func (c *Conference) SetMute(v bool) { c.mute.Store(v) }

// SetHold sets the conference-wide hold: members without a hold setting of
// their own neither hear nor are heard.
func (c *Conference) SetHold(v bool) { c.hold.Store(v) }

// Members returns every member ever added, active and removed, in join order.
func (c *Conference) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.all...)
}

// pruneMembers forgets the members that left before cutoff.
func (c *Conference) pruneMembers(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.all[:0]
	for _, m := range c.all {
		if m.Active() {
			keep = append(keep, m)
			continue
		}
		m.mu.Lock()
		removed := m.removed
		m.mu.Unlock()
		if removed.IsZero() || !removed.Before(cutoff) {
			keep = append(keep, m)
		}
	}
	clear(c.all[len(keep):])
	c.all = keep
}

// Attachment returns what the layer above keeps for this conference (the
// API: its audio requests), made by mk on first use. It lives and is
// pruned with the conference's record, so the API keeps no map of its own.
func (c *Conference) Attachment(mk func() any) any { return c.attach.get(mk) }

// Member returns a member by id.
func (c *Conference) Member(id string) (*Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.all {
		if m.id == id {
			return m, true
		}
	}
	return nil, false
}

// MemberOptions are the settings of a new member.
type MemberOptions struct {
	JoinTone, LeavingTone bool
	Mute, Hold            *bool // nil: follow the conference
	// DialIn says the call dialled in to the room (SIP routing) rather
	// than being added through the API: a locked room refuses it
	// (ErrConferenceLocked), and in a room with a PIN it waits in the
	// lobby (Member.Waiting) until the caller enters the PIN.
	DialIn bool
}

// AddMember puts an answered call into the conference. A call that is a
// member of another conference moves here without being hung up; a call
// waiting in this room's lobby is admitted (an API add skips the PIN).
func (c *Conference) AddMember(call *Call, opts MemberOptions) (*Member, error) {
	// One join or move of a call at a time.
	call.joinMu.Lock()
	defer call.joinMu.Unlock()
	leg := call.Leg()
	if leg == nil || call.State() != CallActive {
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrCallNotActive)
	}
	if old := call.Member(); old != nil {
		if old.conf == c && old.Active() {
			return old, nil
		}
		if old.conf == c && old.Waiting() && !opts.DialIn {
			old.SetTones(opts.JoinTone, opts.LeavingTone)
			old.applyOptions(opts)
			c.admit(old, true)
			if !old.Active() {
				return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrConferenceComplete)
			}
			return old, nil
		}
		old.conf.removeMember(old, false, "moved")
	}
	m := newMember(c, call, leg, opts)
	var prompts Prompts
	if opts.DialIn && c.PIN() != "" {
		prompts = c.b.cfg.Prompts().valid() // may render speech: not under c.mu
	}

	c.mu.Lock()
	if c.state == StateCompleted {
		c.mu.Unlock()
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrConferenceComplete)
	}
	if opts.DialIn && c.locked.Load() {
		c.mu.Unlock()
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrConferenceLocked)
	}
	cur := *c.members.Load()
	if len(cur) >= c.b.cfg.MaxMembers {
		c.mu.Unlock()
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrMaxMembers)
	}
	wait := opts.DialIn && c.pin != ""
	if wait {
		if prompts.EnterPIN == nil { // the PIN was set a moment ago
			prompts = TonePrompts()
		}
		m.lobby = &lobby{prompts: prompts}
		m.waiting.Store(true)
		c.waiting.Add(1)
	}
	m.ep.Flush()
	next := make([]*Member, len(cur)+1)
	copy(next, cur)
	next[len(cur)] = m
	c.members.Store(&next)
	if !wait {
		c.all = append(c.all, m)
		c.state = StateActive
	}
	// The mixer starts with the first member, waiting or not: it is what
	// reads a waiting caller's keys.
	if !c.mixing {
		c.mixing = true
		if !c.b.manualClock {
			c.b.clock.start(c)
		}
	}
	active := c.activeLocked()
	c.mu.Unlock()

	call.mu.Lock()
	call.member = m
	if call.rec.Load() != nil {
		c.recCalls.Add(1)
	}
	if !c.internal { // a bridged pair's room is no conference of the call's
		call.confID = c.id
		if !wait {
			call.memberID = m.id
		}
	}
	m.phoneHold.Store(call.phoneHold) // a change since newMember read it
	call.mu.Unlock()
	if wait {
		m.logger().Info("caller waits for the PIN", "codec", m.ep.Codec())
		m.audio.play(m.lobby.prompts.playback(m.lobby.prompts.EnterPIN, nil))
		return m, nil
	}
	c.joined(m, active, m.ep.Codec())
	return m, nil
}

// joined counts, logs and announces a member that is now in the room.
func (c *Conference) joined(m *Member, active int, codec media.Codec) {
	c.b.stats.Members.Add(1)
	m.logger().Info("member joined", "active", active, "codec", codec)
	if c.internal {
		return // a bridged pair (transfer.go): no conference to tell of
	}
	c.b.publish(Event{Type: EventConferenceMember, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
		CallID: m.call.id, State: StateActive, ActiveMembers: active, Mute: m.Muted(), Hold: m.Held(),
		PhoneHold: m.PhoneHold(), Tag: c.Callback().Tag})
	if m.joinTone.Load() {
		c.tone.play(NewPlayback(joinTone, false, nil))
	}
}

// RemoveMember takes a member out and hangs its call up.
func (c *Conference) RemoveMember(m *Member) error {
	if !c.removeMember(m, true, "removed") {
		return fmt.Errorf("remove %s: %w", m.id, ErrMemberRemoved)
	}
	return nil
}

// removeMember takes m out of the mix; hangup says whether its call is
// ended too. It reports whether m was active.
func (c *Conference) removeMember(m *Member, hangup bool, cause string) bool {
	c.mu.Lock()
	cur := *c.members.Load()
	idx := -1
	for i, x := range cur {
		if x == m {
			idx = i
			break
		}
	}
	if idx < 0 {
		c.mu.Unlock()
		return false
	}
	next := make([]*Member, 0, len(cur)-1)
	next = append(next, cur[:idx]...)
	next = append(next, cur[idx+1:]...)
	c.members.Store(&next)
	m.mu.Lock()
	m.removed = c.b.cfg.Now()
	m.mu.Unlock()
	m.state.Store(false)
	m.talking.Store(false)
	waited := m.waiting.Load()
	if waited {
		c.waiting.Add(-1)
	}
	c.gone = append(c.gone, m)
	c.goneCount.Add(1)
	active := c.activeLocked()
	// The room ends when its last member leaves, a caller still waiting
	// for its PIN included (so that it does not end under the caller);
	// a room nobody ever got into stays created.
	last := len(next) == 0 && c.state == StateActive
	c.mu.Unlock()

	m.audio.stop(PlaybackHeld)
	m.call.mu.Lock()
	if m.call.member == m {
		m.call.member = nil
		if m.call.rec.Load() != nil {
			c.recCalls.Add(-1)
		}
	}
	m.call.mu.Unlock()
	if waited {
		// Never a member: no conference-member event, no leaving tone.
		if c.internal {
			m.logger().Info("call unparked", "cause", cause)
		} else {
			m.logger().Info("caller left the lobby", "cause", cause)
		}
		c.afterLeave(m, hangup, last, cause)
		return true
	}
	m.logger().Info("member left", "cause", cause, "active", active)
	if c.pair {
		// A bridged pair ends with either call: the other is hung up.
		for _, other := range next {
			go c.removeMember(other, true, "NORMAL_CLEARING")
		}
	}
	if !c.internal {
		c.b.publish(Event{Type: EventConferenceMember, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
			CallID: m.call.id, State: StateCompleted, ActiveMembers: active, Cause: cause, Tag: c.Callback().Tag})
	}
	if m.leavingTone.Load() && !last {
		c.tone.play(NewPlayback(leaveTone, false, nil))
	}
	c.afterLeave(m, hangup, last, cause)
	return true
}

// afterLeave finishes a member's leaving: its call is hung up when asked
// (in the background: the BYE must not hold up the caller), and the room
// completes when it was the last.
func (c *Conference) afterLeave(m *Member, hangup, last bool, cause string) {
	if hangup {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = m.call.Hangup(ctx, cause)
		}()
	}
	if last {
		c.complete()
	}
}

// Complete ends the conference: every member leaves and is hung up.
func (c *Conference) Complete() {
	for _, m := range *c.members.Load() {
		c.removeMember(m, true, "conference-completed")
	}
	c.complete()
}

func (c *Conference) complete() {
	c.mu.Lock()
	if c.state == StateCompleted {
		c.mu.Unlock()
		return
	}
	neverMixed := !c.mixing // no mixer started, and none will
	rec := c.rec.Swap(nil)
	c.state = StateCompleted
	c.ended.Store(true)
	c.completed = c.b.cfg.Now()
	stop := c.stop
	if neverMixed {
		c.mix = nil
	}
	c.mu.Unlock()
	c.b.releaseNumber(c) // the next caller to the number makes a new room
	if stop != nil {
		stop()
	}
	c.audio.stop(PlaybackHeld)
	c.tone.stop(PlaybackHeld)
	c.log.Info("conference completed")
	if !c.internal {
		c.b.publish(Event{Type: EventConference, UserID: c.userID, ConferenceID: c.id, State: StateCompleted, Tag: c.Callback().Tag})
	}
	if rec != nil {
		rec.stop() // its writer finishes the file: the recording event follows the conference's
	}
}

// Play plays audio to the whole room, replacing what was playing. On a
// completed conference the playback ends at once as removed.
func (c *Conference) Play(p *Playback) {
	c.audio.play(p)
	if c.State() == StateCompleted {
		c.audio.stop(PlaybackHeld)
	}
}

// StopAudio stops the room's playback.
func (c *Conference) StopAudio() { c.audio.stop(PlaybackStopped) }

// The tones played when a member joins or leaves (rising and falling).
var (
	joinTone  = media.Tone(880, -16, 150)
	leaveTone = media.Tone(440, -16, 150)
)

// handleDigit applies a DTMF digit of a member. It may run on any
// goroutine.
func (c *Conference) handleDigit(m *Member, d rune) {
	c.b.stats.Digits.Add(1)
	if m.call.gatherDigit(d) {
		return // a running gather takes every digit of its call
	}
	if c.internal {
		// A call in no conference: its application hears of the digit.
		c.b.publish(Event{Type: EventDTMF, UserID: m.call.userID, CallID: m.call.id, Digit: string(d),
			Tag: m.call.Info().Callback.Tag})
		return
	}
	if m.waiting.Load() {
		// Not in the room yet: the keypad map does not act, and no digit
		// reaches the application; the PIN entry takes it.
		c.lobbyKey(m, d)
		return
	}
	if c.profile == ProfilePassthruDigits {
		c.b.publish(Event{Type: EventDTMF, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
			CallID: m.call.id, Digit: string(d), Tag: c.Callback().Tag})
		return
	}
	action := dtmf.KeyAction(d)
	// Digits are a few a second at most: a debug line each shows an
	// operator what a caller's keypad did. (Guarded: the mixer's tick
	// calls this, and the arguments would be built even when discarded.)
	if m.conf.log.Enabled(context.Background(), slog.LevelDebug) {
		m.logger().Debug("dtmf", "digit", string(d), "action", action.String())
	}
	switch action {
	case dtmf.ActionTalkDown:
		m.talk.Store(clampLevel(m.talk.Load() - 1))
	case dtmf.ActionTalkReset:
		m.talk.Store(0)
	case dtmf.ActionTalkUp:
		m.talk.Store(clampLevel(m.talk.Load() + 1))
	case dtmf.ActionReceiveDown:
		m.receive.Store(clampLevel(m.receive.Load() - 1))
	case dtmf.ActionReceiveReset:
		m.receive.Store(0)
	case dtmf.ActionReceiveUp:
		m.receive.Store(clampLevel(m.receive.Load() + 1))
	case dtmf.ActionSensitivityUp:
		m.sens.Store(clampLevel(m.sens.Load() + 1))
	case dtmf.ActionSensitivityReset:
		m.sens.Store(0)
	case dtmf.ActionSensitivityDown:
		m.sens.Store(clampLevel(m.sens.Load() - 1))
	case dtmf.ActionToggleMute: // mute and hold raise an event, which saves the member
		m.SetMute(!m.Muted())
		return
	case dtmf.ActionToggleHold:
		m.SetHold(!m.Held())
		return
	case dtmf.ActionLeave:
		go c.removeMember(m, true, "dtmf-leave")
		return
	default:
		return
	}
	// No event tells of levels: the record keeper is told instead, so that
	// a crash before the member's next event does not lose them.
	m.levelsChanged()
}
