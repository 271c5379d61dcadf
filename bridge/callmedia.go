package bridge

import (
	"fmt"
	"time"
)

// Media of a call that is in no conference (issue 13): a dialled call
// answered but not yet added, or an incoming application call. Its audio
// (prompts, files, speech), its digits (gather) and its DTMF out need the
// same 20 ms clock, socket draining and encoding that a member has. Rather
// than a second media driver, such a call is parked as the only member of
// an internal room of its own, waiting as a caller in a lobby waits: the
// clock's shard drains its socket every tick, it is never mixed, and it
// hears only its own playback slot. The internal room is not registered
// with the bridge, raises no events and is invisible to the API; when the
// call is added to a real conference, AddMember moves it out of the
// internal room like any move (no second answer, no gap), and the internal
// room, now empty, stops ticking (park).

// parkedForever is the lobby deadline of a parked call: it is never turned
// away for taking too long.
var parkedForever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// mediaMember returns the member that carries the call's media: the one it
// is in a conference (waiting in a lobby included), else a new parked
// member of an internal room. The call must be active.
func (c *Call) mediaMember() (*Member, error) {
	c.joinMu.Lock()
	defer c.joinMu.Unlock()
	if m := c.Member(); m != nil {
		return m, nil
	}
	leg := c.Leg()
	if leg == nil || c.State() != CallActive {
		return nil, fmt.Errorf("media of %s: %w", c.id, ErrCallNotActive)
	}
	room := newConference(c.b, ConferenceOptions{UserID: c.userID, Profile: ProfilePassthruDigits})
	room.internal = true
	m := newMember(room, c, leg, MemberOptions{})
	// A lobby that never times out and takes no key (leaving): digits of
	// a parked call go to its gather or become dtmf events (handleDigit).
	m.lobby = &lobby{leaving: true, deadline: parkedForever}
	m.waiting.Store(true)
	room.waiting.Add(1)
	// What queued on the socket before anyone polled it is stale (as on
	// AddMember): played or timed from now, it would only come late.
	m.ep.Flush()
	room.members.Store(&[]*Member{m})
	room.mixing = true

	c.mu.Lock()
	if c.state != CallActive || c.member != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("media of %s: %w", c.id, ErrCallNotActive)
	}
	c.member = m
	m.phoneHold.Store(c.phoneHold) // a change since newMember read it
	c.mu.Unlock()
	if !c.b.manualClock {
		c.b.clock.start(room)
	}
	m.logger().Info("call parked for its media")
	return m, nil
}

// Park starts the media of an answered call that is in no conference, so
// that it is drained, timed out and can hear prompts before an application
// adds it to a room. A call already in a conference is left as it is.
func (c *Call) Park() error {
	_, err := c.mediaMember()
	return err
}

// Parked reports whether the call's media runs in no conference (Park).
func (c *Call) Parked() bool {
	m := c.Member()
	return m != nil && m.conf.internal
}

// Play plays audio to this call only, replacing what it heard before: into
// its member's private slot in a conference (as Member.Play), or, for a
// call in no conference, to the caller alone. A call that is not active
// gives ErrCallNotActive, and p ends at once as removed.
func (c *Call) Play(p *Playback) error {
	m, err := c.mediaMember()
	if err != nil {
		p.finish(PlaybackHeld) // its done function still runs
		return err
	}
	m.audio.play(p)
	if !m.state.Load() {
		m.audio.stop(PlaybackHeld) // it left meanwhile
	}
	return nil
}

// StopAudio stops what the call hears of its own (Play).
func (c *Call) StopAudio() {
	if m := c.Member(); m != nil {
		m.audio.stop(PlaybackStopped)
	}
}

// Attachment returns what the layer above keeps for this call (the API:
// its audio requests and gathers), made by mk on first use. It lives and
// is pruned with the call's record.
func (c *Call) Attachment(mk func() any) any { return c.attach.get(mk) }
