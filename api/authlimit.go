package api

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the failed-authentication limit.
const (
	// DefaultAuthFailures is how many wrong credentials one source may send
	// a minute before its requests are refused with 429 unchecked.
	DefaultAuthFailures = 10
	// DefaultAuthSources bounds how many sources the limit remembers.
	DefaultAuthSources = 10000
)

// authWindow is the period the failure limit counts over.
const authWindow = time.Minute

// authLimiter limits failed authentication per source address, as a
// generic cell rate algorithm (one timestamp per source): each failure
// moves the source's theoretical arrival time tat on by window/limit, and
// a source whose tat is more than window−window/limit ahead of now has
// spent its burst. So a fresh source may fail limit times at once, then
// once every window/limit: limit a minute in the long run, never more than
// 2×limit in any one minute. What a blocked source sends is not checked.
// Guesses sent at once may each pass blocked before the first is counted,
// but every failure is counted, so the source then waits that much longer:
// the long-run rate holds.
//
// Memory is bounded: at most maxSources entries; when the table is full of
// sources still counting, new sources share one overflow entry (they are
// limited together, not forgotten). IPv6 sources count per /64, what one
// subscriber usually holds.
type authLimiter struct {
	interval   time.Duration // window / limit
	burst      time.Duration // window − interval
	maxSources int
	now        func() time.Time
	log        *slog.Logger

	mu        sync.Mutex
	tat       map[netip.Prefix]time.Time
	overflow  time.Time // the shared entry of sources beyond maxSources
	lastSweep time.Time
	// Blocking is logged at most once a second, with how many sources
	// were blocked since the last line.
	lastLog    time.Time
	newBlocked int
}

// newAuthLimiter allows limit failures per window from one source.
func newAuthLimiter(limit, maxSources int, now func() time.Time, log *slog.Logger) *authLimiter {
	interval := authWindow / time.Duration(limit)
	return &authLimiter{interval: interval, burst: authWindow - interval, maxSources: maxSources,
		now: now, log: log, tat: map[netip.Prefix]time.Time{}}
}

// sourceKey is the address a request counts against: the peer's IP (the
// TCP peer: forwarding headers are not trusted), IPv6 by its /64.
func sourceKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // unknown sources share the zero key
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// blocked reports whether src has spent its failures, and when it may try
// again.
func (l *authLimiter) blocked(src netip.Prefix) (retryAfter time.Duration, blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[src]
	if !ok {
		if len(l.tat) < l.maxSources {
			return 0, false
		}
		tat = l.overflow
	}
	ahead := tat.Sub(l.now())
	if ahead > l.burst {
		return ahead - l.burst, true
	}
	return 0, false
}

// fail counts a failed authentication from src.
func (l *authLimiter) fail(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	tat, ok := l.tat[src]
	if !ok && len(l.tat) >= l.maxSources {
		l.sweep(now)
	}
	var prev time.Time
	switch {
	case ok || len(l.tat) < l.maxSources:
		prev = later(tat, now)
		l.tat[src] = prev.Add(l.interval)
	default:
		prev = later(l.overflow, now)
		l.overflow = prev.Add(l.interval)
		src = netip.Prefix{}
	}
	if ahead := prev.Add(l.interval).Sub(now); ahead > l.burst && prev.Sub(now) <= l.burst {
		l.noteBlocked(now, src)
	}
}

// sweep forgets sources back at a clean slate (tat in the past), at most
// once a second so that a flood of new sources costs O(1) per failure.
func (l *authLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for k, tat := range l.tat {
		if !tat.After(now) {
			delete(l.tat, k)
		}
	}
}

// noteBlocked logs that src has just spent its failures: once a second at
// most, counting the sources blocked in between.
func (l *authLimiter) noteBlocked(now time.Time, src netip.Prefix) {
	l.newBlocked++
	if now.Sub(l.lastLog) < time.Second {
		return
	}
	l.log.Warn("api: too many failed logins; refusing the source's requests with 429 for a while",
		"source", src, "sources_blocked", l.newBlocked, "limit_per_minute", int(authWindow/l.interval))
	l.lastLog, l.newBlocked = now, 0
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
