package bridge

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// parkMargin is how long before a tick a raised mixer thread stops waiting
// parked in Go's scheduler and sleeps in the kernel instead. Sleeping the
// whole tick in a system call keeps the goroutine on one schedtick for
// over 10 ms, so the runtime's sysmon preempts it and takes its P every
// tick, then spins at 20 µs to do it again: a bridge with 10 callers spent
// 8 % of a core on that, against 1.4 % at normal priority. Parked, the
// thread holds no P and the goroutine reschedules every tick (10 callers:
// 2–2.7 %; 1000 callers in 200 rooms: 10 % less CPU). The kernel sleep
// covers only the last stretch, where precision matters; the margin
// absorbs a late wake from the park (p99 4–7 ms under load) and stays
// under sysmon's 10 ms.
const parkMargin = 8 * time.Millisecond

// sleeper wakes a mixer loop at an absolute time. At a raised priority
// (PriorityHigh, PriorityRealtime) the goroutine is locked to a thread of
// its own, which parks until parkMargin before the tick and then sleeps
// in clock_nanosleep(2) with TIMER_ABSTIME, so the kernel wakes that very
// thread, at its priority, when the tick is due; the thread ends with the
// goroutine, so its priority never leaks to other goroutines. At normal
// priority it is a time.Timer.
//
// Measured under load (1000 callers and their load generator on a 2-core
// VM): a timer woke ticks p99 4–7 ms late; a timerfd(2) read through Go's
// network poller was precise when idle (p99 0.25 ms) but worse under load
// (p99 9 ms with 200 rooms), because nobody waits in epoll while both Ps
// are busy; SCHED_FIFO on a thread of its own woke p99 0.55–0.72 ms late.
type sleeper struct {
	priority Priority  // granted; > PriorityNormal means a locked thread
	base     time.Time // time.Now() when mono was read
	mono     int64     // CLOCK_MONOTONIC at base, in ns
	timer    timerSleeper
}

// newSleeper makes a sleeper for the calling goroutine, which must be the
// loop that sleeps with it. It returns the sleeper and, if want could not
// be granted in full, why.
func newSleeper(want Priority) (*sleeper, error) {
	s := &sleeper{}
	if want == PriorityNormal {
		return s, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return s, err
	}
	s.base, s.mono = time.Now(), ts.Nano()
	runtime.LockOSThread()
	var refused error
	s.priority, refused = raisePriority(want, setThreadPriority)
	if s.priority == PriorityNormal {
		runtime.UnlockOSThread()
	}
	return s, refused
}

// setThreadPriority sets the calling thread's scheduling.
func setThreadPriority(p Priority) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	switch p {
	case PriorityRealtime:
		attr.Policy, attr.Priority = unix.SCHED_FIFO, 10
	case PriorityHigh:
		attr.Policy, attr.Nice = unix.SCHED_NORMAL, -10
	default:
		attr.Policy = unix.SCHED_NORMAL
	}
	return unix.SchedSetAttr(0, &attr, 0)
}

// demote drops a raised thread to normal priority (see PriorityRealtime).
// It reports whether the priority was raised.
func (s *sleeper) demote() bool {
	if s.priority == PriorityNormal {
		return false
	}
	_ = setThreadPriority(PriorityNormal)
	s.priority = PriorityNormal // the thread stays locked and sleeps on a timer from now on
	return true
}

func (s *sleeper) monoAt(t time.Time) int64 { return s.mono + int64(t.Sub(s.base)) }

// until sleeps until t. It returns false when ctx ends first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	if s.priority == PriorityNormal {
		return s.timer.until(ctx, t)
	}
	// A locked thread of its own: park until the last stretch, then
	// sleep in the kernel, at the thread's priority, until t.
	if park := t.Add(-parkMargin); time.Until(park) > 0 && !s.timer.until(ctx, park) {
		return false
	}
	if ctx.Err() != nil {
		return false
	}
	ts := unix.NsecToTimespec(s.mono + int64(t.Sub(s.base)))
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
	return ctx.Err() == nil
}

func (s *sleeper) close() { s.timer.close() }
