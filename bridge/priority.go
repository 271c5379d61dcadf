package bridge

import (
	"fmt"
	"strings"
)

// Priority is how the kernel is asked to schedule the threads that run
// mixer ticks. On a machine whose cores are busy, a mixer thread woken at
// normal priority waits its turn behind everything else: measured on a
// 2-core VM carrying 1000 callers and their load generator, ticks woke p99
// 4–7 ms late at normal priority, 1.8–4.2 ms at nice −10, and 0.55–0.72 ms
// with SCHED_FIFO. FreeSWITCH's packaged unit (CPUSchedulingPolicy=rr) and
// Asterisk's -p make the same choice.
type Priority int

const (
	// PriorityNormal leaves mixer ticks on Go's own threads; they sleep on a
	// timerfd through the network poller.
	PriorityNormal Priority = iota
	// PriorityHigh runs each mixer loop on a thread of its own at nice −10
	// (setpriority(2); needs CAP_SYS_NICE or RLIMIT_NICE).
	PriorityHigh
	// PriorityRealtime runs each mixer loop on a thread of its own with
	// SCHED_FIFO priority 10 (sched_setattr(2); needs CAP_SYS_NICE or
	// RLIMIT_RTPRIO), falling back to PriorityHigh, then PriorityNormal,
	// where that is not permitted. A loop that falls behind real time drops
	// to normal priority for good, so an overloaded mixer cannot starve
	// signalling or the rest of the machine.
	PriorityRealtime
)

var priorityNames = [...]string{"normal", "high", "realtime"}

func (p Priority) String() string {
	if p >= 0 && int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// ParsePriority reads "normal", "high" or "realtime".
func ParsePriority(s string) (Priority, error) {
	for i, n := range priorityNames {
		if strings.EqualFold(s, n) {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("mixer priority %q: want normal, high or realtime", s)
}

// raisePriority asks set for want, then for each lower priority, and
// returns what was granted with the first refusal (nil if want was).
func raisePriority(want Priority, set func(Priority) error) (Priority, error) {
	var first error
	for p := want; p > PriorityNormal; p-- {
		err := set(p)
		if err == nil {
			return p, first
		}
		if first == nil {
			first = fmt.Errorf("mixer priority %s: %w", p, err)
		}
	}
	return PriorityNormal, first
}
