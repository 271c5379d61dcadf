package bridge

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// dedicatedMembers is the room size from which a conference's mixer runs on
// a goroutine of its own. Smaller rooms share a few clock goroutines: a
// timer wake-up every 20 ms per room costs more than mixing five members
// (measured with 200 rooms of 5), while a big room's tick is long enough to
// deserve a core to itself.
const dedicatedMembers = 64

// clock drives the mixers of small conferences: one goroutine per shard
// (GOMAXPROCS of them), each waking every 20 ms and running one mixOnce for
// each conference it holds, in a stable order. A shard's goroutine runs
// only while it holds conferences.
type clock struct {
	b      *Bridge
	shards []*shard
}

type shard struct {
	mu      sync.Mutex
	confs   []*Conference
	running bool
}

func newClock(b *Bridge) *clock {
	k := &clock{b: b, shards: make([]*shard, runtime.GOMAXPROCS(0))}
	for i := range k.shards {
		k.shards[i] = &shard{}
	}
	return k
}

// start puts c on the shard with the fewest conferences.
func (k *clock) start(c *Conference) {
	var best *shard
	bestN := int(^uint(0) >> 1)
	for _, s := range k.shards {
		s.mu.Lock()
		n := len(s.confs)
		s.mu.Unlock()
		if n < bestN {
			best, bestN = s, n
		}
	}
	best.mu.Lock()
	best.confs = append(best.confs, c)
	if !best.running {
		best.running = true
		k.b.wg.Add(1)
		go best.run(k.b)
	}
	best.mu.Unlock()
}

func (s *shard) remove(c *Conference) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.confs {
		if x == c {
			s.confs = append(s.confs[:i], s.confs[i+1:]...)
			return
		}
	}
}

// run is a shard's clock goroutine.
func (s *shard) run(b *Bridge) {
	defer b.wg.Done()
	st := b.stats
	p := newPacer(st)
	defer p.stop()
	var list []*Conference
	for {
		now, _ := p.wait(nil)
		s.mu.Lock()
		if len(s.confs) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		list = append(list[:0], s.confs...)
		s.mu.Unlock()
		for _, c := range list {
			switch {
			case c.ended.Load():
				s.remove(c)
				c.releaseGone()
			case len(*c.members.Load()) >= dedicatedMembers:
				s.remove(c)
				c.startDedicated()
			default:
				c.safeMixOnce(now)
			}
		}
		clear(list) // hold no finished conference until the next tick
		st.TickNanos.Add(uint64(time.Since(now)))
	}
}

// startDedicated moves c's mixer to a goroutine of its own.
func (c *Conference) startDedicated() {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.state == StateCompleted {
		c.mu.Unlock()
		cancel()
		c.releaseGone()
		return
	}
	c.stop = cancel
	c.mu.Unlock()
	c.b.wg.Add(1)
	go func() {
		defer c.b.wg.Done()
		c.run(ctx)
	}()
}

// pacer wakes a mixer loop every TickInterval. A tick later than
// maxCatchUp restarts the schedule from now (bounded catch-up); lateness
// and restarts go to the stats.
type pacer struct {
	st    *Stats
	timer *time.Timer
	next  time.Time
}

func newPacer(st *Stats) *pacer {
	return &pacer{st: st, timer: time.NewTimer(time.Hour), next: time.Now()}
}

func (p *pacer) stop() { p.timer.Stop() }

// wait sleeps until the next tick and returns the wake time, or false when
// done closes first (a nil done never does).
func (p *pacer) wait(done <-chan struct{}) (time.Time, bool) {
	p.next = p.next.Add(TickInterval)
	if d := time.Until(p.next); d > 0 {
		p.timer.Reset(d)
		select {
		case <-done:
			return time.Time{}, false
		case <-p.timer.C:
		}
	} else {
		select {
		case <-done:
			return time.Time{}, false
		default:
		}
	}
	now := time.Now()
	late := now.Sub(p.next)
	if late > maxCatchUp {
		p.next = now
		p.st.Restarts.Add(1)
	}
	p.st.observeLateness(late)
	return now, true
}
