package g722_test

import (
	"fmt"

	"chorus/media/g722"
)

// One 20 ms frame each way, as an RTP session sends and receives it. The
// RTP timestamp advances by the number of bytes, at the 8000 Hz clock of
// RFC 3551 §4.5.2, although the audio is sampled at 16 kHz.
func Example() {
	enc, dec := g722.NewEncoder(), g722.NewDecoder()
	pcm := make([]int16, g722.FrameSamples) // 20 ms at 16 kHz, from the mixer
	payload := make([]byte, g722.FrameBytes)

	var timestamp uint32
	n := enc.Encode(payload, pcm)
	timestamp += uint32(n) // 160 ticks of the RTP clock, not 320

	out := make([]int16, g722.FrameSamples)
	m := dec.Decode(out, payload[:n])
	fmt.Println(n, "bytes,", m, "samples, timestamp +", timestamp)
	// Output: 160 bytes, 320 samples, timestamp + 160
}
