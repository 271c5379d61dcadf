package bridge

import "math"

// Levels run from MinLevel to MaxLevel; 0 is the default.
const (
	MinLevel = -4
	MaxLevel = 4
)

// dBPerStep is the gain of one volume step.
const dBPerStep = 3.0

// gainQ14 holds the Q14 fixed-point gain of each volume level, index
// level-MinLevel: 3 dB a step, ±12 dB at the ends.
var gainQ14 = func() (t [MaxLevel - MinLevel + 1]int32) {
	for i := range t {
		level := i + MinLevel
		t[i] = int32(math.Round(16384 * math.Pow(10, dBPerStep*float64(level)/20)))
	}
	return t
}()

// gateThreshold holds the noise gate threshold on the mean absolute sample
// value for each sensitivity level: 100 × 2^(−level), so +4 (most
// sensitive) opens at about 6 and −4 needs 1600.
var gateThreshold = func() (t [MaxLevel - MinLevel + 1]int32) {
	for i := range t {
		level := i + MinLevel
		t[i] = int32(math.Round(100 * math.Pow(2, -float64(level))))
	}
	return t
}()

func clampLevel(l int32) int32 { return max(MinLevel, min(MaxLevel, l)) }

// limiterKnee is where the soft limiter starts bending (about −2.5 dBFS).
const limiterKnee = 24576

// limit maps a mixed sample to int16. Below the knee it is exact; above, a
// tanh curve approaches full scale without ever reaching or wrapping it, so
// several people shouting give a compressed mix instead of harsh clipping.
//
// The common case is small enough for the compiler to inline into the
// mixer's per-sample loops; only samples above the knee pay for a call.
func limit(x int64) int16 {
	if x <= limiterKnee && x >= -limiterKnee {
		return int16(x)
	}
	return limitAbove(x)
}

// limitAbove is limit above the knee.
func limitAbove(x int64) int16 {
	const span = 32767 - limiterKnee
	a := x
	if a < 0 {
		a = -a
	}
	y := limiterKnee + span*math.Tanh(float64(a-limiterKnee)/span)
	if x < 0 {
		return -int16(y)
	}
	return int16(y)
}
