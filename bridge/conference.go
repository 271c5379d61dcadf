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
	all       []*Member // every member ever, in join order
	stop      context.CancelFunc

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
	Mute, Hold                       bool
	Callback                         Callback
}

// Info returns a snapshot.
func (c *Conference) Info() ConferenceInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConferenceInfo{ID: c.id, UserID: c.userID, From: c.from, Profile: c.profile, State: c.state,
		Created: c.created, Completed: c.completed, ActiveMembers: len(*c.members.Load()),
		Mute: c.mute.Load(), Hold: c.hold.Load(), Callback: c.callback}
}

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
}

// AddMember puts an answered call into the conference. A call that is a
// member of another conference moves here without being hung up.
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
		old.conf.removeMember(old, false, "moved")
	}
	m := newMember(c, call, leg.Media(), opts)

	c.mu.Lock()
	if c.state == StateCompleted {
		c.mu.Unlock()
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrConferenceComplete)
	}
	cur := *c.members.Load()
	if len(cur) >= c.b.cfg.MaxMembers {
		c.mu.Unlock()
		return nil, fmt.Errorf("add %s to %s: %w", call.id, c.id, ErrMaxMembers)
	}
	m.sess.Flush()
	next := make([]*Member, len(cur)+1)
	copy(next, cur)
	next[len(cur)] = m
	c.members.Store(&next)
	c.all = append(c.all, m)
	startMixer := c.state == StateCreated
	c.state = StateActive
	if startMixer && !c.b.manualClock {
		c.b.clock.start(c)
	}
	active := len(next)
	c.mu.Unlock()

	call.mu.Lock()
	call.member = m
	call.confID = c.id
	call.memberID = m.id
	m.phoneHold.Store(call.phoneHold) // a change since newMember read it
	call.mu.Unlock()
	c.b.stats.Members.Add(1)
	m.log.Info("member joined", "active", active, "codec", leg.Media().Params().Codec)
	c.b.publish(Event{Type: EventConferenceMember, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
		CallID: call.id, State: StateActive, ActiveMembers: active, Mute: m.Muted(), Hold: m.Held(),
		PhoneHold: m.PhoneHold(), Tag: c.Callback().Tag})
	if opts.JoinTone {
		c.tone.play(NewPlayback(joinTone, false, nil))
	}
	return m, nil
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
	c.gone = append(c.gone, m)
	c.goneCount.Add(1)
	active := len(next)
	last := active == 0
	c.mu.Unlock()

	m.audio.stop(PlaybackHeld)
	m.call.mu.Lock()
	if m.call.member == m {
		m.call.member = nil
	}
	m.call.mu.Unlock()
	m.log.Info("member left", "cause", cause, "active", active)
	c.b.publish(Event{Type: EventConferenceMember, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
		CallID: m.call.id, State: StateCompleted, ActiveMembers: active, Cause: cause, Tag: c.Callback().Tag})
	if m.leavingTone.Load() && !last {
		c.tone.play(NewPlayback(leaveTone, false, nil))
	}
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
	return true
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
	neverMixed := c.state == StateCreated // no mixer started, and none will
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
	c.b.publish(Event{Type: EventConference, UserID: c.userID, ConferenceID: c.id, State: StateCompleted, Tag: c.Callback().Tag})
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
	if c.profile == ProfilePassthruDigits {
		c.b.publish(Event{Type: EventDTMF, UserID: c.userID, ConferenceID: c.id, MemberID: m.id,
			CallID: m.call.id, Digit: string(d), Tag: c.Callback().Tag})
		return
	}
	switch dtmf.KeyAction(d) {
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
	case dtmf.ActionToggleMute:
		m.SetMute(!m.Muted())
	case dtmf.ActionToggleHold:
		m.SetHold(!m.Held())
	case dtmf.ActionLeave:
		go c.removeMember(m, true, "dtmf-leave")
	}
}
