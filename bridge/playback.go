package bridge

import (
	"fmt"
	"sync"
	"sync/atomic"

	"chorus/media"
	"chorus/media/resample"
)

// Playback ends, as reported to a Playback's done function.
const (
	PlaybackDone     = "done"     // played to the end
	PlaybackStopped  = "stopped"  // stopped by request
	PlaybackReplaced = "replaced" // another playback took its place
	PlaybackHeld     = "removed"  // its member or conference went away
)

// Playback is audio being played into a conference or to one member. It
// is mixed like a talker's audio on the mixer goroutine, at the room's
// rate: its samples stay at their own rate (8, 16 or 48 kHz, so a
// wideband file is heard in HD by those who can hear it) and a resampler
// brings them to the room's, made when the playback starts or the room's
// rate changes. At equal rates the samples are copied as they are, so a
// narrowband room's playback costs what it did before rooms had rates.
type Playback struct {
	samples []int16
	rate    int // of samples
	loop    bool
	ended   atomic.Bool
	once    sync.Once
	done    func(status string)

	// The mixer goroutine's only:
	pos int
	// up converts samples to the rate the mixer last asked for; nil when
	// that is the playback's own rate (or before the first frame).
	up *resample.Resampler
	// src is one frame at rate: up's input. It holds the source frame
	// before the current one, for the next path to be primed with when the
	// room changes rate.
	src []int16
}

// NewPlayback returns a playback of 8 kHz samples. done, if not nil, is
// called once, on its own goroutine, with how it ended.
func NewPlayback(samples []int16, loop bool, done func(status string)) *Playback {
	return &Playback{samples: samples, rate: media.ClockRate, loop: loop, done: done}
}

// NewPlaybackAt is NewPlayback of samples at rate: 8000, 16000 or 48000 Hz
// (what media/audiofile and media/tts decode to).
func NewPlaybackAt(samples []int16, rate int, loop bool, done func(status string)) (*Playback, error) {
	if rate != 8000 && rate != 16000 && rate != 48000 {
		return nil, fmt.Errorf("bridge: playback at %d Hz (8000, 16000 or 48000)", rate)
	}
	return &Playback{samples: samples, rate: rate, loop: loop, done: done}, nil
}

// Rate returns the sample rate of the playback's samples, in Hz.
func (p *Playback) Rate() int { return p.rate }

// finish ends the playback once.
func (p *Playback) finish(status string) {
	p.once.Do(func() {
		p.ended.Store(true)
		if p.done != nil {
			go p.done(status)
		}
	})
}

// read writes the next frame into cur, at the rate its length gives (a
// 20 ms frame: len(cur)·50 Hz), and reports whether the playback gave
// anything. With old not nil (the tick after the room changed rate) the
// same instant also goes into old at the old rate, through the path in
// use before, so that the mixer can hand over without a click (package
// resample). It runs on the mixer goroutine and allocates only when the
// rate it is asked for changes.
func (p *Playback) read(old, cur []int16) bool {
	if p.ended.Load() || len(p.samples) == 0 {
		return false
	}
	rate := len(cur) * 50
	oldUp := p.up
	if old != nil && (oldUp == nil || oldUp.To() != len(old)*50) {
		oldUp = nil
	}
	if rate == p.rate {
		p.up = nil
	} else if (p.up == nil || p.up.To() != rate) && !p.follow(rate) {
		return false
	}
	src := cur
	if p.up != nil || old != nil {
		if p.src == nil {
			p.src = make([]int16, p.rate/50)
		}
		src = p.src
	}
	if p.pos >= len(p.samples) && !p.loop {
		// The samples ended last frame; this one lets the resampler's
		// delay out instead of cutting the sound's last milliseconds.
		clear(src)
		p.finish(PlaybackDone)
	} else {
		p.fill(src)
		if p.pos >= len(p.samples) && !p.loop && p.up == nil {
			p.finish(PlaybackDone)
		}
	}
	if old != nil {
		switch {
		case len(old)*50 == p.rate:
			copy(old, src)
		case oldUp != nil:
			oldUp.Process(old, src)
		default:
			clear(old) // it started this tick: the hand-over fades it in
		}
	}
	if p.up != nil {
		p.up.Process(cur, src)
	} else if old != nil {
		copy(cur, src)
	}
	return true
}

// follow makes the path from the playback's rate to rate, primed with the
// source frame before this one when the playback is under way, so that
// the new path continues where the old one stopped.
func (p *Playback) follow(rate int) bool {
	up, err := resample.New(p.rate, rate)
	if err != nil {
		return false // the mixer asks only for rates it mixes at
	}
	if n := p.rate / 50; p.pos > 0 && len(p.samples) > 0 {
		end := min(p.pos, len(p.samples))
		if start := end - n; start >= 0 || !p.loop {
			up.Prime(p.samples[max(0, start):end])
		} else {
			up.Prime(p.samples[max(0, len(p.samples)+start):])
			up.Prime(p.samples[:end])
		}
	}
	p.up = up
	return true
}

// fill copies the next len(dst) samples into dst, from the start again
// when the playback loops and with silence past the end when it does not.
func (p *Playback) fill(dst []int16) {
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

// frame reads the slot's next frame into dst at the rate its length gives;
// false when nothing plays.
func (s *slot) frame(dst []int16) bool { return s.frameSwitch(nil, dst) }

// frameSwitch reads the slot's next frame into cur, and with old not nil
// the same instant at the room's old rate into old (see Playback.read);
// false when nothing plays.
func (s *slot) frameSwitch(old, cur []int16) bool {
	p := s.p.Load()
	if p == nil {
		return false
	}
	if !p.read(old, cur) {
		s.p.CompareAndSwap(p, nil)
		return false
	}
	return true
}
