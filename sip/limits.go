package sip

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Limits bounds what one source address may cost the bridge, so that a
// flood of INVITEs from one place cannot take the RTP ports, the CPU or the
// memory that other callers need. A zero field turns its limit off.
type Limits struct {
	// InviteRate is how many new calls (initial INVITEs) one source IP may
	// place per second, on average; InviteBurst is how many it may place at
	// once (a token bucket). Beyond them the INVITE gets 503 with
	// Retry-After. A burst below 1 is taken as max(1, InviteRate).
	InviteRate  float64
	InviteBurst int
	// MaxUnconfirmed is how many calls one source IP may have admitted but
	// not yet confirmed by an ACK (ringing, or answered and awaiting the
	// ACK). Each holds an RTP port for up to the 2xx retransmission window
	// (64×T1, RFC 3261 §13.3.1.4), so this caps what a caller that never
	// ACKs can hold.
	MaxUnconfirmed int
	// Exempt lists sources that are not limited at all: a PBX or a proxy
	// (kamailio) in front of the bridge, through which every caller comes.
	Exempt []netip.Prefix
}

// maxTrackedSources bounds the limiter's memory under a flood from many
// addresses: at about 100 bytes a source, 64 Ki sources cost ~6 MB.
const maxTrackedSources = 1 << 16

// sourceState is what the limiter keeps about one source address.
type sourceState struct {
	tokens      float64
	last        time.Time // when tokens was last brought up to date
	unconfirmed int
}

// sourceLimiter applies Limits per source IP. Its memory is bounded: a
// source whose bucket has refilled and that has no unconfirmed call is the
// same as an unknown one, so it is forgotten by the next sweep.
type sourceLimiter struct {
	cfg   Limits
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	sources   map[netip.Addr]*sourceState
	nextSweep time.Time
}

// rejectReason says which limit turned a call away.
type rejectReason int

const (
	admitted rejectReason = iota
	rejectRate
	rejectUnconfirmed
)

func newSourceLimiter(cfg Limits, now func() time.Time) *sourceLimiter {
	if now == nil {
		now = time.Now
	}
	burst := float64(cfg.InviteBurst)
	if burst < 1 {
		burst = max(1, math.Ceil(cfg.InviteRate))
	}
	return &sourceLimiter{cfg: cfg, burst: burst, now: now, sources: map[netip.Addr]*sourceState{}}
}

// enabled reports whether any limit is set.
func (l *sourceLimiter) enabled() bool {
	return l != nil && (l.cfg.InviteRate > 0 || l.cfg.MaxUnconfirmed > 0)
}

func (l *sourceLimiter) exempt(a netip.Addr) bool {
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admit decides on a new call from src. When it admits, the call counts as
// unconfirmed until the returned confirm func is called (ACK, or the call
// ended before it); confirm may be called more than once. When it rejects,
// retryAfter says when the source may try again.
func (l *sourceLimiter) admit(src netip.Addr) (confirm func(), reason rejectReason, retryAfter time.Duration) {
	if !l.enabled() || !src.IsValid() {
		return func() {}, admitted, 0
	}
	src = src.Unmap()
	if l.exempt(src) {
		return func() {}, admitted, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.nextSweep) || len(l.sources) >= maxTrackedSources {
		l.sweepLocked(now)
	}
	st := l.sources[src]
	if st == nil {
		if len(l.sources) >= maxTrackedSources {
			// Every tracked source is busy: admit untracked rather than
			// turn away a caller for what other addresses do.
			return func() {}, admitted, 0
		}
		st = &sourceState{tokens: l.burst, last: now}
		l.sources[src] = st
	}
	// Every INVITE costs a token, the ones turned away too: the rate
	// bounds the work a source makes, not only the calls it gets.
	if l.cfg.InviteRate > 0 {
		l.refillLocked(st, now)
		if st.tokens < 1 {
			wait := time.Duration((1 - st.tokens) / l.cfg.InviteRate * float64(time.Second))
			return nil, rejectRate, wait
		}
		st.tokens--
	}
	if l.cfg.MaxUnconfirmed > 0 && st.unconfirmed >= l.cfg.MaxUnconfirmed {
		// The calls in the way end by ACK or by the 2xx window; a second
		// is a fair first guess for a well-behaved peer.
		return nil, rejectUnconfirmed, time.Second
	}
	st.unconfirmed++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			st.unconfirmed--
			l.mu.Unlock()
		})
	}, admitted, 0
}

func (l *sourceLimiter) refillLocked(st *sourceState, now time.Time) {
	if dt := now.Sub(st.last).Seconds(); dt > 0 {
		st.tokens = min(l.burst, st.tokens+dt*l.cfg.InviteRate)
	}
	st.last = now
}

// sweepLocked forgets the sources that would behave as new ones: bucket
// full again and nothing unconfirmed. It runs at most once a second, or
// when the table is full, so its cost per INVITE stays small.
func (l *sourceLimiter) sweepLocked(now time.Time) {
	for a, st := range l.sources {
		if st.unconfirmed > 0 {
			continue
		}
		if l.cfg.InviteRate > 0 {
			l.refillLocked(st, now)
			if st.tokens < l.burst {
				continue
			}
		}
		delete(l.sources, a)
	}
	l.nextSweep = now.Add(time.Second)
}

// tracked returns how many sources the limiter keeps now (for tests).
func (l *sourceLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// retryAfterSeconds renders a wait as a Retry-After value (RFC 3261
// §20.33): whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
