package bridge

import (
	"context"
	"runtime"
	"slices"
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
	epoch  time.Time // shard i ticks at epoch + i·TickInterval/len(shards) + k·TickInterval
}

type shard struct {
	phase   time.Duration // offset of this shard's ticks from the clock's epoch
	mu      sync.Mutex
	confs   []*Conference
	running bool
}

func newClock(b *Bridge) *clock {
	k := &clock{b: b, shards: make([]*shard, runtime.GOMAXPROCS(0)), epoch: time.Now()}
	for i := range k.shards {
		// Spread the shards over the tick, so that they do not all wake at
		// once and queue for the cores and Go's Ps.
		k.shards[i] = &shard{phase: time.Duration(i) * TickInterval / time.Duration(len(k.shards))}
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
		k.b.loops.add()
		go best.run(k.b, k.epoch)
	}
	best.mu.Unlock()
}

func (s *shard) remove(c *Conference) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.confs, c); i >= 0 {
		// slices.Delete zeroes the vacated tail slot: a plain append would
		// leave the last conference in the backing array, reachable long
		// after it completed and was pruned.
		s.confs = slices.Delete(s.confs, i, i+1)
	}
}

// run is a shard's clock goroutine.
func (s *shard) run(b *Bridge, epoch time.Time) {
	defer b.loops.done()
	st := b.stats
	p := newPacer(context.Background(), b)
	p.align(epoch.Add(s.phase))
	defer p.stop()
	var list []*Conference
	w := newTickWorker() // one for every room of the shard
	for {
		now, _ := p.wait()
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
				c.releaseEnded()
			case len(*c.members.Load()) == 0 && c.park():
				s.remove(c)
			case len(*c.members.Load()) >= dedicatedMembers:
				s.remove(c)
				c.startDedicated()
			default:
				c.safeMixOnce(now, w)
			}
		}
		clear(list) // hold no finished conference until the next tick
		w.flush(st)
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
		c.releaseEnded()
		return
	}
	c.stop = cancel
	c.mu.Unlock()
	// c.park, when it stops this goroutine, leaves c.stop to cancel a
	// context already done: harmless.
	c.b.loops.add()
	go func() {
		defer c.b.loops.done()
		c.run(ctx)
	}()
}

// pacer wakes a mixer loop every TickInterval. A tick later than
// maxCatchUp restarts the schedule from now (bounded catch-up); lateness
// and restarts go to the stats. A restart also drops a raised priority
// (see PriorityRealtime).
type pacer struct {
	b     *Bridge
	sleep *sleeper
	next  time.Time
	ctx   context.Context
}

// newPacer starts a schedule whose first tick is one TickInterval from
// now; ctx ending wakes and ends it. It must be called on the goroutine
// that waits on it.
func newPacer(ctx context.Context, b *Bridge) *pacer {
	s, refused := newSleeper(b.cfg.MixerPriority)
	if refused != nil && b.priorityRefused.CompareAndSwap(false, true) {
		b.log.Warn("mixer runs at a lower priority than configured; grant CAP_SYS_NICE or raise RLIMIT_RTPRIO (systemd: LimitRTPRIO=) for real-time mixing",
			"want", b.cfg.MixerPriority, "got", s.priority, "err", refused)
	}
	return &pacer{b: b, sleep: s, next: time.Now(), ctx: ctx}
}

func (p *pacer) stop() { p.sleep.close() }

// align moves the schedule so that ticks fall on at + k·TickInterval,
// the first one less than a tick from now.
func (p *pacer) align(at time.Time) {
	now := time.Now()
	since := now.Sub(at) % TickInterval
	if since < 0 {
		since += TickInterval
	}
	p.next = now.Add(-since) // the last aligned time; wait adds a tick
}

// wait sleeps until the next tick and returns the wake time, or false when
// the pacer's context ends first.
func (p *pacer) wait() (time.Time, bool) {
	p.next = p.next.Add(TickInterval)
	if time.Until(p.next) > 0 {
		if !p.sleep.until(p.ctx, p.next) {
			return time.Time{}, false
		}
	} else if p.ctx.Err() != nil {
		return time.Time{}, false
	}
	now := time.Now()
	late := now.Sub(p.next)
	st := p.b.stats
	if late > maxCatchUp {
		p.next = now
		st.Restarts.Add(1)
		if p.sleep.demote() {
			st.Demotions.Add(1)
			p.b.log.Warn("mixer fell behind real time: its thread drops to normal priority", "late", late)
		}
	}
	st.observeLateness(late)
	return now, true
}

// timerSleeper sleeps with a time.Timer: the portable fallback of sleeper.
type timerSleeper struct{ t *time.Timer }

func (s *timerSleeper) until(ctx context.Context, t time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	if s.t == nil {
		s.t = time.NewTimer(time.Until(t))
	} else {
		s.t.Reset(time.Until(t))
	}
	select {
	case <-ctx.Done():
		return false
	case <-s.t.C:
		return true
	}
}

func (s *timerSleeper) close() {
	if s.t != nil {
		s.t.Stop()
	}
}
