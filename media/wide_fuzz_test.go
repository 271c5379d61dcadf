package media

import (
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/media/g722"
	"chorus/media/opus"
)

// memSession is a session with no socket, for driving an endpoint's
// handler directly: SetParams, Params and Generation work on it.
func memSession(p Params) *Session {
	s := &Session{now: time.Now, learning: true}
	s.SetParams(p)
	return s
}

// FuzzEndpointPayload feeds a G.722 or Opus endpoint a series of RTP
// payloads (any bytes, timestamps moving by any step, forward or back,
// reordered, repeated) as Session.handle hands them over, pulling a frame
// after each at a room rate: whatever the payloads, nothing panics and
// every frame is whole.
func FuzzEndpointPayload(f *testing.F) {
	enc, err := opus.NewEncoder(opus.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	pcm := make([]int16, opus.FrameSamples)
	audiotest.Tone(pcm, 700, -20, opus.SampleRate, new(float64))
	pkt := make([]byte, opus.MaxPacketBytes)
	n, err := enc.Encode(pkt, pcm)
	if err != nil {
		f.Fatal(err)
	}
	g := make([]byte, g722.FrameBytes)
	g722.NewEncoder().Encode(g, pcm[:g722.FrameSamples])
	seq := func(payload []byte, steps ...byte) []byte {
		var b []byte
		for _, s := range steps {
			b = append(b, byte(len(payload)), s)
			b = append(b, payload...)
		}
		return b
	}
	f.Add(true, uint8(2), seq(pkt[:n], 8, 8, 16, 8, 0, 250, 8))
	f.Add(true, uint8(0), seq([]byte{0xf8}, 8, 24, 8))                 // DTX
	f.Add(true, uint8(1), seq([]byte{0xff, 0x3f, 1, 2, 3}, 8, 8))      // code 3, 63 frames
	f.Add(true, uint8(1), seq([]byte{0x0b, 0x00}, 8, 8, 255, 8))       // code 3, no frames
	f.Add(false, uint8(1), seq(g, 1, 1, 3, 1, 200, 1))                 // G.722
	f.Add(false, uint8(2), seq([]byte{0, 0xff, 0x55}, 1, 0, 255, 255)) // G.722 odd
	f.Fuzz(func(t *testing.T, isOpus bool, rateSel uint8, data []byte) {
		codec, unit := G722, uint32(20) // timestamp steps of 2.5 ms
		if isOpus {
			codec, unit = Opus, 120
		}
		rate := []int{8000, 16000, 48000}[int(rateSel)%3]
		ep := NewEndpoint(memSession(Params{Codec: codec, PayloadType: 101, Direction: SendRecv}))
		ep.st.gen = ep.sess.Generation()
		ep.reconfigure()
		if ep.st.w == nil {
			t.Fatal("no wideband state")
		}
		if err := ep.SetRate(rate); err != nil {
			t.Fatal(err)
		}
		h := (*endpointHandler)(ep.st)
		frame := make([]int16, rate/50)
		ts := uint32(1 << 31)
		for len(data) >= 2 {
			n, step := min(int(data[0]), len(data)-2), data[1]
			payload := data[2 : 2+n]
			data = data[2+n:]
			ts += (uint32(step) - 64) * unit // back as well as forward
			if n > 0 {
				h.Audio(7, ts, codec, payload)
			}
			ep.Pull(frame)
			_ = ep.Push(frame) // no socket: the send fails, the encode runs
		}
	})
}
