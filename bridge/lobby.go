package bridge

import (
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"chorus/media"
)

// Room PINs and locks (issue 11; design.md routing (c): "join it, after its
// PIN if it has one, unless it is locked").
//
// A caller who dials in to a room with a PIN waits in the room's lobby. It
// is a Member in the room's snapshot, so the mixer drains its socket every
// tick as it does any member's (no goroutine, timer or socket reader of its
// own), but while it waits it is neither mixed in nor does it hear the
// room: it hears only its own prompts, played in its per-member playback
// slot, and its digits go to its PIN entry instead of the room's keypad
// map. The right PIN and # admit it: only then is it a member the API
// lists and counts, and only then is the conference-member event raised.
// Three wrong entries, or the PIN timeout, play the goodbye and hang up.

// MaxPINLength is the longest room PIN, in digits.
const MaxPINLength = 12

// pinTries is how many wrong entries a caller is allowed.
const pinTries = 3

// Hang-up causes of callers turned away from a room's lobby.
const (
	CausePINFailed  = "pin-failed"        // three wrong PINs
	CausePINTimeout = "pin-timeout"       // no right PIN within Config.PINTimeout
	CauseLocked     = "conference-locked" // the room was locked while the caller waited
)

// ValidPIN checks a room PIN: 1 to MaxPINLength digits 0-9. The empty
// string means no PIN and is valid too.
func ValidPIN(pin string) error {
	if len(pin) > MaxPINLength {
		return fmt.Errorf("pin of %d digits: %w", len(pin), ErrBadPIN)
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return fmt.Errorf("pin with a non-digit: %w", ErrBadPIN)
		}
	}
	return nil
}

// Prompts are what a caller waiting in a room's lobby hears, as PCM at Rate.
// The bridge only plays them; the binary renders them with espeak-ng.
type Prompts struct {
	// EnterPIN greets the caller, and is repeated after an empty entry.
	EnterPIN []int16
	// WrongPIN follows a wrong entry while tries remain.
	WrongPIN []int16
	// Goodbye precedes the hang-up of a caller turned away.
	Goodbye []int16
	// Rate is the sample rate of the three, 8000, 16000 or 48000 Hz (0
	// means 8000; speech from media/tts is 16000, heard in HD by wideband
	// callers); prompts at another rate are replaced by TonePrompts.
	Rate int
}

// playback returns a playback of one of the prompts.
func (p Prompts) playback(samples []int16, done func(string)) *Playback {
	if pb, err := NewPlaybackAt(samples, p.Rate, false, done); err == nil {
		return pb
	}
	return NewPlayback(samples, false, done)
}

// valid returns p, or TonePrompts if its rate is not one the mixer plays.
func (p Prompts) valid() Prompts {
	switch p.Rate {
	case 0:
		p.Rate = media.ClockRate
	case 8000, 16000, 48000:
	default:
		return TonePrompts()
	}
	return p
}

// TonePrompts are the prompts when no speech is available: two rising
// beeps ask for the PIN, a low buzz says it was wrong, three falling beeps
// say goodbye. They use 440, 660 and 880 Hz only.
func TonePrompts() Prompts {
	return Prompts{
		EnterPIN: join(media.Tone(660, -16, 150), silence(100), media.Tone(880, -16, 150)),
		WrongPIN: media.Tone(440, -16, 500),
		Goodbye: join(media.Tone(880, -16, 150), silence(80), media.Tone(660, -16, 150), silence(80),
			media.Tone(440, -16, 250)),
		Rate: media.ClockRate,
	}
}

func silence(ms int) []int16 { return make([]int16, media.ClockRate*ms/1000) }

func join(parts ...[]int16) []int16 {
	var out []int16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// pinResult is what one key did to a PIN entry.
type pinResult uint8

const (
	pinPending  pinResult = iota // a key of the entry; nothing to say yet
	pinEmpty                     // # with nothing entered: ask again, no try counted
	pinCleared                   // * started the entry afresh
	pinAccepted                  // the right PIN and #
	pinRejected                  // a wrong PIN and #, tries remain
	pinFailed                    // the last allowed try was wrong
)

// pinEntry collects the keys of a PIN: digits, then #. * starts the entry
// again; any other key (A-D, flash) spoils it. An entry longer than
// MaxPINLength is wrong, however it ends. It is a pure state machine, fed
// one key at a time.
type pinEntry struct {
	buf     [MaxPINLength]byte
	n       int
	spoiled bool // too long, or a key no PIN has
	tries   int  // wrong entries so far
}

func (e *pinEntry) reset() {
	e.n = 0
	e.spoiled = false
}

// key takes one key against the room's PIN (not empty).
func (e *pinEntry) key(d rune, pin string) pinResult {
	switch {
	case d >= '0' && d <= '9':
		if e.n < len(e.buf) {
			e.buf[e.n] = byte(d)
			e.n++
		} else {
			e.spoiled = true
		}
		return pinPending
	case d == '*':
		e.reset()
		return pinCleared
	case d == '#':
		if e.n == 0 && !e.spoiled {
			return pinEmpty
		}
		// Constant time over the digits, so that timing does not tell
		// how much of a guess was right.
		right := !e.spoiled && subtle.ConstantTimeCompare(e.buf[:e.n], []byte(pin)) == 1
		e.reset()
		if right {
			return pinAccepted
		}
		e.tries++
		if e.tries >= pinTries {
			return pinFailed
		}
		return pinRejected
	}
	e.spoiled = true
	return pinPending
}

// lobby is the waiting state of a member that dialled in to a room with a
// PIN.
type lobby struct {
	prompts Prompts

	mu      sync.Mutex
	entry   pinEntry
	leaving bool // turned away: the goodbye plays, keys do nothing

	// deadline is when the caller is turned away for taking too long; the
	// mixer goroutine sets it at the lobby's first tick, in its own clock,
	// and is the only one to touch it.
	deadline time.Time
}

// lobbyTick is the mixer's look at a waiting member, once per tick: the
// PIN timeout.
func (c *Conference) lobbyTick(m *Member, now time.Time) {
	lb := m.lobby
	if lb.deadline.IsZero() {
		lb.deadline = now.Add(c.b.cfg.PINTimeout)
		return
	}
	if now.After(lb.deadline) {
		lb.deadline = now.Add(time.Hour) // once; the goodbye ends the call
		c.turnAway(m, CausePINTimeout)
	}
}

// lobbyKey takes a key of a waiting member. It may run on any goroutine
// (the mixer's for RFC 4733, a SIP handler's for INFO).
func (c *Conference) lobbyKey(m *Member, d rune) {
	lb := m.lobby
	pin := c.PIN()
	lb.mu.Lock()
	if lb.leaving {
		lb.mu.Unlock()
		return
	}
	var res pinResult
	if pin == "" {
		// The PIN was removed while the caller waited: # lets it in.
		if res = pinPending; d == '#' {
			res = pinAccepted
		}
	} else {
		res = lb.entry.key(d, pin)
	}
	lb.mu.Unlock()
	// Any key cuts the prompt short: the caller knows what to do.
	m.audio.stop(PlaybackStopped)
	switch res {
	case pinAccepted:
		c.admit(m, false)
	case pinEmpty:
		m.audio.play(lb.prompts.playback(lb.prompts.EnterPIN, nil))
	case pinRejected:
		m.logger().Info("wrong PIN", "tries", lb.tries())
		m.audio.play(lb.prompts.playback(lb.prompts.WrongPIN, nil))
	case pinFailed:
		c.turnAway(m, CausePINFailed)
	}
}

func (lb *lobby) tries() int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.entry.tries
}

// turnAway plays the goodbye to a waiting member and then hangs it up.
func (c *Conference) turnAway(m *Member, cause string) {
	lb := m.lobby
	lb.mu.Lock()
	if lb.leaving {
		lb.mu.Unlock()
		return
	}
	lb.leaving = true
	lb.mu.Unlock()
	m.logger().Info("caller turned away from the lobby", "cause", cause)
	bye := func(string) { c.removeMember(m, true, cause) }
	if len(lb.prompts.Goodbye) == 0 {
		go bye("")
		return
	}
	// Whatever ends the goodbye (played out, or the call gone meanwhile)
	// ends the call; a second removal finds nothing to do.
	m.audio.play(lb.prompts.playback(lb.prompts.Goodbye, bye))
	if !m.state.Load() {
		m.audio.stop(PlaybackHeld) // it left meanwhile
	}
}

// admit lets a waiting member in: the right PIN, or an API request to add
// its call here (api is set; a lock does not stop that).
func (c *Conference) admit(m *Member, api bool) {
	c.mu.Lock()
	if !m.state.Load() || !m.waiting.Load() || c.state == StateCompleted {
		c.mu.Unlock()
		return
	}
	if c.locked.Load() && !api {
		c.mu.Unlock()
		c.turnAway(m, CauseLocked)
		return
	}
	m.added = c.b.cfg.Now()
	m.waiting.Store(false)
	c.waiting.Add(-1)
	c.all = append(c.all, m)
	c.state = StateActive
	active := c.activeLocked()
	codec := m.ep.Codec() // m is in the snapshot: its endpoint is not released
	c.mu.Unlock()
	if m.lobby != nil {
		m.lobby.mu.Lock()
		m.lobby.leaving = true // no key reaches the entry any more
		m.lobby.mu.Unlock()
	}
	m.audio.stop(PlaybackStopped)
	m.call.mu.Lock()
	if m.call.member == m {
		m.call.memberID = m.id
	}
	m.call.mu.Unlock()
	c.joined(m, active, codec)
}

// Waiting reports whether the member waits in the lobby for its PIN: it
// is not in the room yet.
func (m *Member) Waiting() bool { return m.waiting.Load() }
