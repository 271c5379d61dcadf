package resample

import (
	"fmt"
	"math"
	"testing"
)

// roomRates is a room's mix rate tick by tick: members with wider codecs
// join and leave, and the room follows them up and down.
var roomRates = func() []int {
	var rates []int
	for _, r := range []int{8000, 16000, 48000, 8000, 48000, 16000, 8000} {
		for range 5 {
			rates = append(rates, r)
		}
	}
	return rates
}()

const switchAmp = 10000.0

// sineAt is the test tone at time t seconds.
func sineAt(freq, t float64) float64 { return switchAmp * math.Sin(2*math.Pi*freq*t) }

// frameAt returns the 20 ms frame of tick k of the tone at rate, its phase
// continuous in time whatever the rate.
func frameAt(freq float64, k, rate int) []int16 {
	f := make([]int16, rate/50)
	for i := range f {
		f[i] = int16(math.Round(sineAt(freq, float64(k)/50+float64(i)/float64(rate))))
	}
	return f
}

// deviation returns the largest difference of frame (tick k, at rate) from
// the tone delayed by delay seconds.
func deviation(frame []int16, freq float64, k, rate int, delay float64) float64 {
	var worst float64
	for i, v := range frame {
		want := sineAt(freq, float64(k)/50+float64(i)/float64(rate)-delay)
		worst = max(worst, math.Abs(float64(v)-want))
	}
	return worst
}

// call is the audio of one call through a room whose mix rate follows
// roomRates: a talker's codec frames go through the capture path to the
// room's rate, the mix (here the talker alone) through a listener's path to
// its codec. The paths switch as the package comment says, or, naively,
// to new paths that start cold.
type call struct {
	talker, listener int // codec rates
	freq             float64
	naive            bool

	capture, listen *Resampler
	prevIn          []int16
}

func (c *call) path(t *testing.T, from, to int) *Resampler {
	r, err := New(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// warmup is the number of ticks the paths of the call take to fill after
// its start from silence; the room changes rate only after it.
const warmup = 2

// run returns the largest deviation, over the whole call after warmup, of each
// stage's output from the talker's tone delayed by the paths: at the room
// (after one Delay) and at the listener (after two).
func (c *call) run(t *testing.T) (atRoom, atListener float64) {
	d := Delay.Seconds()
	out := make([]int16, c.listener/50)
	for k, room := range roomRates {
		in := frameAt(c.freq, k, c.talker)
		if c.capture == nil {
			c.capture, c.listen = c.path(t, c.talker, room), c.path(t, room, c.listener)
		}
		if room == c.capture.To() {
			mix := make([]int16, room/50)
			c.capture.Process(mix, in)
			if k >= warmup {
				atRoom = max(atRoom, deviation(mix, c.freq, k, room, d))
			}
			c.listen.Process(out, mix)
		} else {
			nextCapture, nextListen := c.path(t, c.talker, room), c.path(t, room, c.listener)
			newMix := make([]int16, room/50)
			if c.naive {
				nextCapture.Process(newMix, in)
				nextListen.Process(out, newMix)
			} else {
				// Toward the room: the old path makes this tick's mix at
				// the old rate, the new one, primed, at the new rate.
				oldMix := make([]int16, c.capture.To()/50)
				c.capture.Process(oldMix, in)
				nextCapture.Prime(c.prevIn)
				nextCapture.Process(newMix, in)
				// Toward the listener: each path converts its mix, and
				// the frames are crossfaded.
				prev := make([]int16, len(out))
				c.listen.Process(prev, oldMix)
				nextListen.Process(out, newMix)
				Crossfade(out, prev, out, c.listener)
			}
			atRoom = max(atRoom, deviation(newMix, c.freq, k, room, d))
			c.capture, c.listen = nextCapture, nextListen
		}
		if k >= warmup {
			atListener = max(atListener, deviation(out, c.freq, k, c.listener, 2*d))
		}
		c.prevIn = in
	}
	return atRoom, atListener
}

// TestRateSwitch changes a room's rate up and down while a tone plays and
// checks that the audio goes on as the delayed tone, with no click: no
// sample, at the room or at the listener, more than 1 % of the tone's
// amplitude (−40 dB) away from it. A naive switch to paths that start cold
// is measured for comparison.
func TestRateSwitch(t *testing.T) {
	for _, talker := range []int{8000, 16000, 48000} {
		for _, listener := range []int{8000, 16000, 48000} {
			for _, freq := range []float64{440, 1000, 3000} {
				name := fmt.Sprintf("%d Hz talker to %d Hz listener, %g Hz", talker, listener, freq)
				room, lis := (&call{talker: talker, listener: listener, freq: freq}).run(t)
				nroom, nlis := (&call{talker: talker, listener: listener, freq: freq, naive: true}).run(t)
				t.Logf("%s: off by at most %.2f %% at the room, %.2f %% at the listener (naive switch: %.0f %%, %.0f %%)",
					name, 100*room/switchAmp, 100*lis/switchAmp, 100*nroom/switchAmp, 100*nlis/switchAmp)
				if room > 0.01*switchAmp || lis > 0.01*switchAmp {
					t.Errorf("%s: a sample is off by %.0f at the room, %.0f at the listener, want at most %.0f",
						name, room, lis, 0.01*switchAmp)
				}
			}
		}
	}
}

// TestCrossfadeEnds checks the shape of the fade: the first 2·Delay is the
// previous path's, the last sample the next path's, and between them the
// output moves monotonically from one to the other.
func TestCrossfadeEnds(t *testing.T) {
	prev, next, dst := make([]int16, 320), make([]int16, 320), make([]int16, 320)
	for i := range prev {
		prev[i], next[i] = 1000, 3000
	}
	Crossfade(dst, prev, next, 16000)
	start := 2 * delayTicks / 3 // 2·Delay at 16 kHz
	for i := range start {
		if dst[i] != 1000 {
			t.Fatalf("sample %d = %d, want the previous path's 1000 while the next fills", i, dst[i])
		}
	}
	if dst[319] != 3000 {
		t.Errorf("last sample %d, want the next path's 3000", dst[319])
	}
	for i := start + 1; i < 320; i++ {
		if dst[i] < dst[i-1] {
			t.Fatalf("fade goes back at sample %d: %d after %d", i, dst[i], dst[i-1])
		}
	}
}
