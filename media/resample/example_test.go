package resample_test

import (
	"fmt"

	"chorus/media/resample"
)

// A G.711 member's decoded 20 ms frame (160 samples at 8 kHz) goes up to a
// room mixing at 48 kHz (960 samples), and the room's mix comes back down
// for it.
func Example() {
	up, err := resample.New(8000, 48000)
	if err != nil {
		panic(err)
	}
	down, _ := resample.New(48000, 8000)

	decoded := make([]int16, 160) // from the jitter buffer
	toRoom := make([]int16, up.OutLen(len(decoded)))
	n := up.Process(toRoom, decoded)
	fmt.Println("to the room:", n, "samples")

	mix := make([]int16, 960) // from the mixer
	toCodec := make([]int16, 160)
	fmt.Println("to the codec:", down.Process(toCodec, mix), "samples")
	fmt.Println("delay each way:", resample.Delay)
	// Output:
	// to the room: 960 samples
	// to the codec: 160 samples
	// delay each way: 3.625ms
}
