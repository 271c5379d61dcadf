package bridge

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
// wideband file is heard in HD by those who can hear it) and a path
// brings them to the room's, made when the playback starts or the room's
// rate changes.
//
// The paths keep the delays the room's hand-overs between rates count on
// (package resample, media.Endpoint): that of a G.711 talker's audio, none
// in an 8 kHz room and resample.Delay in a faster one. So an 8 kHz file in
// an 8 kHz room is copied as it is (a narrowband room's playback costs
// what it did before rooms had rates); a wideband file in an 8 kHz room
// is resampled from resample.Delay ahead of the frame (a file, unlike a
// talker, can be read ahead), which cancels the resampler's delay; and in
// a faster room every file goes through a resampler, at equal rates a
// delay line of resample.Delay (int16 copies, no filter), not a plain
// copy, so that a change between 16 and 48 kHz finds both paths equally
// late and joins them without a click.
type Playback struct {
	samples []int16
	rate    int // of samples
	loop    bool
	ended   atomic.Bool
	once    sync.Once
	done    func(status string)

	// The mixer goroutine's only:
	pos     int  // the next frame's first sample
	wrapped bool // a looping playback went back to the start at least once
	path    playPath
	// src is one frame at rate: a resampler's input.
	src []int16
}

// playPath brings a playback's samples to a room's rate.
type playPath struct {
	rate int                 // the room's; 0: no path yet
	up   *resample.Resampler // nil: the samples as they are (8 kHz to 8 kHz)
	lead int                 // samples read ahead of pos, cancelling up's delay
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
	prev := p.path
	if rate := len(cur) * 50; p.path.rate != rate && !p.follow(rate) {
		return false
	}
	p.render(p.path, cur)
	if old != nil {
		if prev.rate == len(old)*50 {
			p.render(prev, old)
		} else {
			clear(old) // it started this tick: the hand-over fades it in
		}
	}
	p.pos += p.rate / 50
	if p.loop {
		if p.pos >= len(p.samples) {
			p.pos %= len(p.samples)
			p.wrapped = true
		}
	} else if p.pos >= len(p.samples)+p.tail() {
		p.finish(PlaybackDone)
	}
	return true
}

// tail is how many samples past the end a non-looping playback keeps
// playing to let its path's delay out: none when the path has none.
func (p *Playback) tail() int {
	if p.path.up == nil || p.path.lead > 0 {
		return 0
	}
	return lead(p.rate)
}

// lead is resample.Delay in samples at rate (58 at 16 kHz, 174 at 48).
func lead(rate int) int { return int(resample.Delay * time.Duration(rate) / time.Second) }

// render writes the frame that starts at pos into dst through path.
func (p *Playback) render(path playPath, dst []int16) {
	if path.up == nil {
		p.fillAt(dst, p.pos)
		return
	}
	p.fillAt(p.src, p.pos+path.lead)
	path.up.Process(dst, p.src)
}

// follow makes the path from the playback's rate to rate (see Playback),
// its filter history filled with the samples before the frame it reads
// first, so that it continues where the old path stopped.
func (p *Playback) follow(rate int) bool {
	path := playPath{rate: rate}
	if rate != media.ClockRate || p.rate != media.ClockRate {
		up, err := resample.New(p.rate, rate)
		if err != nil {
			// The mixer asks only for rates it mixes at; were it not so,
			// the playback ends rather than hang without its done.
			p.finish(PlaybackDone)
			return false
		}
		if rate == media.ClockRate {
			path.lead = lead(p.rate)
		}
		if p.src == nil {
			p.src = make([]int16, p.rate/50)
		}
		p.fillAt(p.src, p.pos+path.lead-len(p.src))
		up.Prime(p.src)
		path.up = up
	}
	p.path = path
	return true
}

// fillAt copies the samples from position at on into dst: past the end
// from the start again when the playback loops, else silence; before the
// start silence, or the end when a loop went round.
func (p *Playback) fillAt(dst []int16, at int) {
	n := len(p.samples)
	for len(dst) > 0 {
		switch {
		case at < 0 && p.loop && p.wrapped:
			at += n * (1 + -at/n)
		case at < 0:
			k := min(len(dst), -at)
			clear(dst[:k])
			dst, at = dst[k:], at+k
		case at >= n && p.loop:
			at %= n
		case at >= n:
			clear(dst)
			return
		default:
			k := copy(dst, p.samples[at:])
			dst, at = dst[k:], at+k
		}
	}
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
