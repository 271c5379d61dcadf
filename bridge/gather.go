package bridge

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Gather collects the digits a caller keys on one call (Catapult's
// POST /calls/{id}/gather, spec §5 and §8): until maxDigits digits, a
// terminating digit, the inter-digit timeout, a stop request or the end of
// the call. While a gather runs, the call's digits (RFC 4733 or SIP INFO)
// go to it instead of the room's keypad map, the lobby's PIN entry or the
// dtmf events of passthru_digits. A call runs one gather at a time: a new
// one ends the one before with GatherReplaced.

// GatherReason is why a gather completed.
type GatherReason string

// Gather reasons: Catapult's four, and two of ours for ends it does not
// name.
const (
	GatherMaxDigits         GatherReason = "max-digits"
	GatherTerminatingDigit  GatherReason = "terminating-digit"
	GatherInterDigitTimeout GatherReason = "inter-digit-timeout"
	GatherHungUp            GatherReason = "hung-up"
	GatherStopped           GatherReason = "stopped"  // POST .../gather/{id} {"state":"completed"}
	GatherReplaced          GatherReason = "replaced" // a newer gather on the same call
)

// GatherState is created (collecting) or completed.
type GatherState string

// Gather states.
const (
	GatherCreated   GatherState = "created"
	GatherCompleted GatherState = "completed"
)

// GatherPrefix starts a gather id.
const GatherPrefix = "gather-"

// Gather limits.
const (
	MaxGatherDigits          = 30               // Catapult's maximum of maxDigits
	MaxTerminatingDigits     = 12               // characters of terminatingDigits
	DefaultInterDigitTimeout = 5 * time.Second  // Catapult's default
	MaxInterDigitTimeout     = 30 * time.Second // Catapult's maximum
)

// ValidDigits reports whether s has only DTMF keys: 0-9, *, # and A-D.
func ValidDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= '0' && b <= '9', b == '*', b == '#', b >= 'A' && b <= 'D':
		default:
			return false
		}
	}
	return true
}

// GatherOptions are the settings of a gather. Zero fields take the
// defaults: MaxDigits MaxGatherDigits, InterDigitTimeout
// DefaultInterDigitTimeout. TerminatingDigits is taken as given ("" means
// none; the API fills in Catapult's default "#").
type GatherOptions struct {
	MaxDigits         int
	InterDigitTimeout time.Duration
	TerminatingDigits string
	Tag               string
	// Prompt says a prompt will be played (Gather.PlayPrompt or
	// Gather.PromptFailed follows): the inter-digit timeout starts when it
	// ends.
	Prompt bool
	// Bargeable lets a digit cut the prompt short and count; otherwise
	// digits keyed while the prompt is pending or playing are dropped.
	Bargeable bool
}

// Gather is one digit collection on a call.
type Gather struct {
	id      string
	call    *Call
	opts    GatherOptions
	created time.Time

	mu        sync.Mutex
	state     GatherState
	reason    GatherReason
	digits    []byte
	completed time.Time
	timer     Timer
	armed     uint64    // counts armings: a timer that fired as it was re-armed is stale
	prompting bool      // the prompt is pending or playing
	prompt    *Playback // the prompt playing, if any
}

// GatherInfo is a snapshot of a gather.
type GatherInfo struct {
	ID, CallID         string
	State              GatherState
	Reason             GatherReason
	Digits             string
	Tag                string
	Created, Completed time.Time
}

// StartGather starts collecting the call's digits; a gather running on the
// call ends with GatherReplaced. The call must be active; a call in no
// conference gets its media started (Park).
func (c *Call) StartGather(opts GatherOptions) (*Gather, error) {
	if opts.MaxDigits <= 0 || opts.MaxDigits > MaxGatherDigits {
		opts.MaxDigits = MaxGatherDigits
	}
	if opts.InterDigitTimeout <= 0 {
		opts.InterDigitTimeout = DefaultInterDigitTimeout
	}
	opts.InterDigitTimeout = min(opts.InterDigitTimeout, MaxInterDigitTimeout)
	if !ValidDigits(opts.TerminatingDigits) || len(opts.TerminatingDigits) > MaxTerminatingDigits {
		return nil, fmt.Errorf("gather on %s: bad terminating digits %q", c.id, opts.TerminatingDigits)
	}
	if _, err := c.mediaMember(); err != nil {
		return nil, err
	}
	g := &Gather{id: newID(GatherPrefix), call: c, opts: opts, created: c.b.cfg.Now(), state: GatherCreated,
		prompting: opts.Prompt}
	c.mu.Lock()
	if c.state != CallActive {
		c.mu.Unlock()
		return nil, fmt.Errorf("gather on %s: %w", c.id, ErrCallNotActive)
	}
	old := c.gather
	c.gather = g
	c.gathers = append(c.gathers, g)
	c.mu.Unlock()
	if old != nil {
		old.complete(GatherReplaced)
	}
	c.log.Info("gather started", "gather", g.id, "max_digits", opts.MaxDigits, "prompt", opts.Prompt)
	if !opts.Prompt {
		g.mu.Lock()
		g.armLocked()
		g.mu.Unlock()
	}
	return g, nil
}

// Gather returns one of the call's gathers by id.
func (c *Call) Gather(id string) (*Gather, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.gathers {
		if g.id == id {
			return g, true
		}
	}
	return nil, false
}

// gatherDigit hands a digit to the call's running gather and reports
// whether one took it.
func (c *Call) gatherDigit(d rune) bool {
	c.mu.Lock()
	g := c.gather
	c.mu.Unlock()
	return g != nil && g.key(d)
}

// ID returns the gather id.
func (g *Gather) ID() string { return g.id }

// Info returns a snapshot.
func (g *Gather) Info() GatherInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	return GatherInfo{ID: g.id, CallID: g.call.id, State: g.state, Reason: g.reason, Digits: string(g.digits),
		Tag: g.opts.Tag, Created: g.created, Completed: g.completed}
}

// PlayPrompt plays the rendered prompt, pcm at rate (8000, 16000 or
// 48000 Hz), to the call; the inter-digit timeout starts when it has
// played (or was cut short). A gather that ended meanwhile plays nothing;
// a prompt at another rate fails as PromptFailed does.
func (g *Gather) PlayPrompt(pcm []int16, rate int, loop bool) {
	var p *Playback
	p, err := NewPlaybackAt(pcm, rate, loop, func(string) { g.promptEnded(p) })
	if err != nil {
		g.PromptFailed()
		return
	}
	g.mu.Lock()
	if g.state != GatherCreated {
		g.mu.Unlock()
		return
	}
	g.prompt = p
	g.mu.Unlock()
	_ = g.call.Play(p) // on a call that ended, p ends at once: promptEnded runs
}

// PromptFailed says the prompt could not be had: the gather collects
// without it.
func (g *Gather) PromptFailed() { g.promptEnded(nil) }

func (g *Gather) promptEnded(p *Playback) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != GatherCreated || !g.prompting || (p != nil && g.prompt != p) {
		return
	}
	g.prompting = false
	g.prompt = nil
	g.armLocked()
}

// armLocked (re)starts the inter-digit timeout. g.mu is held.
func (g *Gather) armLocked() {
	if g.timer != nil {
		g.timer.Stop()
	}
	g.armed++
	n := g.armed
	g.timer = g.call.b.cfg.AfterFunc(g.opts.InterDigitTimeout, func() { g.timedOut(n) })
}

// timedOut is the inter-digit timeout of arming n.
func (g *Gather) timedOut(n uint64) {
	g.mu.Lock()
	stale := n != g.armed
	g.mu.Unlock()
	if !stale {
		g.complete(GatherInterDigitTimeout)
	}
}

// key takes one digit; it reports whether the gather took it (a digit
// keyed while a prompt that is not bargeable plays is taken and dropped).
func (g *Gather) key(d rune) bool {
	g.mu.Lock()
	if g.state != GatherCreated {
		g.mu.Unlock()
		return false
	}
	if g.prompting {
		if !g.opts.Bargeable {
			g.mu.Unlock()
			return true
		}
		g.prompting = false
		if p := g.prompt; p != nil {
			g.prompt = nil
			p.finish(PlaybackStopped) // the slot drops it at its next frame
		}
	}
	var reason GatherReason
	switch {
	case d < 0x80 && strings.IndexByte(g.opts.TerminatingDigits, byte(d)) >= 0:
		reason = GatherTerminatingDigit // not part of the digits, as Catapult's
	default:
		g.digits = append(g.digits, byte(d))
		if len(g.digits) >= g.opts.MaxDigits {
			reason = GatherMaxDigits
		}
	}
	if reason == "" {
		g.armLocked()
		g.mu.Unlock()
		return true
	}
	g.mu.Unlock()
	g.complete(reason)
	return true
}

// Stop ends the gather at the application's request (GatherStopped); a
// completed gather stays as it is.
func (g *Gather) Stop() { g.complete(GatherStopped) }

// complete ends the gather once and raises its gather event.
func (g *Gather) complete(reason GatherReason) {
	g.mu.Lock()
	if g.state != GatherCreated {
		g.mu.Unlock()
		return
	}
	g.state = GatherCompleted
	g.reason = reason
	g.completed = g.call.b.cfg.Now()
	if g.timer != nil {
		g.timer.Stop()
	}
	prompt := g.prompt
	g.prompt = nil
	digits := string(g.digits)
	g.mu.Unlock()
	if prompt != nil {
		prompt.finish(PlaybackStopped)
	}
	c := g.call
	c.mu.Lock()
	if c.gather == g {
		c.gather = nil
	}
	cb := c.callback
	conf := c.confID
	if c.member != nil && !c.member.conf.internal {
		conf = c.member.conf.id
	}
	c.mu.Unlock()
	tag := g.opts.Tag
	if tag == "" {
		tag = cb.Tag
	}
	c.log.Info("gather completed", "gather", g.id, "reason", reason, "digits", len(digits))
	c.b.publish(Event{Type: EventGather, UserID: c.userID, CallID: c.id, ConferenceID: conf, GatherID: g.id,
		State: string(GatherCompleted), Digits: digits, Reason: reason, Tag: tag})
}
