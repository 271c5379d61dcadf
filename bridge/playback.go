package bridge

import (
	"sync"
	"sync/atomic"
)

// Playback ends, as reported to a Playback's done function.
const (
	PlaybackDone     = "done"     // played to the end
	PlaybackStopped  = "stopped"  // stopped by request
	PlaybackReplaced = "replaced" // another playback took its place
	PlaybackHeld     = "removed"  // its member or conference went away
)

// Playback is audio (8 kHz PCM) being played into a conference or to one
// member. It is mixed like a talker's audio on the mixer goroutine.
type Playback struct {
	samples []int16
	loop    bool
	pos     int // mixer goroutine only
	ended   atomic.Bool
	once    sync.Once
	done    func(status string)
}

// NewPlayback returns a playback of samples. done, if not nil, is called
// once, on its own goroutine, with how it ended.
func NewPlayback(samples []int16, loop bool, done func(status string)) *Playback {
	return &Playback{samples: samples, loop: loop, done: done}
}

// finish ends the playback once.
func (p *Playback) finish(status string) {
	p.once.Do(func() {
		p.ended.Store(true)
		if p.done != nil {
			go p.done(status)
		}
	})
}

// read adds the next frame into acc and reports whether anything was added.
// It runs on the mixer goroutine.
func (p *Playback) read(dst []int16) bool {
	if p.ended.Load() || len(p.samples) == 0 {
		return false
	}
	n := 0
	for n < len(dst) {
		if p.pos >= len(p.samples) {
			if !p.loop {
				break
			}
			p.pos = 0
		}
		k := copy(dst[n:], p.samples[p.pos:])
		p.pos += k
		n += k
	}
	clear(dst[n:])
	if p.pos >= len(p.samples) && !p.loop {
		p.finish(PlaybackDone)
	}
	return n > 0
}

// slot holds at most one playback; a new one replaces the old.
type slot struct{ p atomic.Pointer[Playback] }

func (s *slot) play(p *Playback) {
	if old := s.p.Swap(p); old != nil {
		old.finish(PlaybackReplaced)
	}
}

func (s *slot) stop(status string) {
	if old := s.p.Swap(nil); old != nil {
		old.finish(status)
	}
}

// playing reports whether the slot holds a playback, without touching
// anything else.
func (s *slot) playing() bool { return s.p.Load() != nil }

// frame reads the slot's next frame into dst; false when nothing plays.
func (s *slot) frame(dst []int16) bool {
	p := s.p.Load()
	if p == nil {
		return false
	}
	if !p.read(dst) {
		s.p.CompareAndSwap(p, nil)
		return false
	}
	return true
}
