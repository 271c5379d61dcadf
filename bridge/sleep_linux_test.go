package bridge

import (
	"context"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRealtimeThread: where the kernel grants SCHED_FIFO (CI runs as root),
// a realtime sleeper's thread runs with it, other threads do not, and a
// demotion brings the thread back to normal scheduling.
func TestRealtimeThread(t *testing.T) {
	type result struct {
		granted         Priority
		policy, demoted uint32
	}
	res := make(chan result, 1)
	go func() {
		s, _ := newSleeper(PriorityRealtime)
		defer s.close()
		var r result
		r.granted = s.priority
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			r.policy = a.Policy
		}
		s.demote()
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			r.demoted = a.Policy
		}
		res <- r
	}()
	r := <-res
	if r.granted != PriorityRealtime {
		t.Skipf("SCHED_FIFO not granted here (got %v)", r.granted)
	}
	if r.policy != unix.SCHED_FIFO || r.demoted != unix.SCHED_NORMAL {
		t.Fatalf("policy %d, after demote %d", r.policy, r.demoted)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if a, err := unix.SchedGetAttr(0, 0); err != nil || a.Policy != unix.SCHED_NORMAL {
		t.Fatalf("the test's own thread has policy %v (%v)", a, err)
	}
}

// TestPacerDemotes: a realtime mixer loop that falls more than maxCatchUp
// behind real time restarts its clock and drops to normal priority, once.
func TestPacerDemotes(t *testing.T) {
	b := New(Config{MixerPriority: PriorityRealtime}, nil, nil)
	type result struct {
		granted Priority
		policy  uint32
	}
	res := make(chan result, 1)
	go func() {
		p := newPacer(context.Background(), b)
		defer p.stop()
		r := result{granted: p.sleep.priority}
		for range 3 {
			p.wait()
			time.Sleep(maxCatchUp + 30*time.Millisecond) // a tick far longer than real time
		}
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			r.policy = a.Policy
		}
		res <- r
	}()
	r := <-res
	if r.granted != PriorityRealtime {
		t.Skipf("SCHED_FIFO not granted here (got %v)", r.granted)
	}
	st := b.Stats()
	if st.Restarts.Load() < 1 || st.Demotions.Load() != 1 || r.policy != unix.SCHED_NORMAL {
		t.Fatalf("restarts %d, demotions %d, policy %d", st.Restarts.Load(), st.Demotions.Load(), r.policy)
	}
}

// TestHighPriorityThread: PriorityHigh sets nice −10 on the calling thread
// only, where the kernel allows it.
func TestHighPriorityThread(t *testing.T) {
	type result struct {
		err  error
		nice int32
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // the goroutine ends locked: the thread goes with it
		var r result
		if r.err = setThreadPriority(PriorityHigh); r.err == nil {
			if a, err := unix.SchedGetAttr(0, 0); err == nil {
				r.nice = a.Nice
			}
		}
		res <- r
	}()
	r := <-res
	if r.err != nil {
		t.Skipf("nice -10 not granted here: %v", r.err)
	}
	if r.nice != -10 {
		t.Fatalf("nice %d, want -10", r.nice)
	}
}
