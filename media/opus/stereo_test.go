//go:build cgo

package opus

import (
	"math"
	"testing"

	"chorus/internal/audiotest"
	libopus "gopkg.in/hraban/opus.v2"
)

// TestStereoFoldsToMono: a peer that sends stereo (sprop-stereo=1) is
// heard in mono: a 1 kHz tone in both channels keeps its level.
func TestStereoFoldsToMono(t *testing.T) {
	enc, err := libopus.NewEncoder(SampleRate, 2, libopus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(64000); err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	mono := make([]int16, SampleRate)
	audiotest.Tone(mono, 1000, -20, SampleRate, nil)
	stereo := make([]int16, 2*FrameSamples)
	pkt := make([]byte, MaxPacketBytes)
	buf := make([]int16, MaxFrameSamples)
	var out []int16
	for off := 0; off+FrameSamples <= len(mono); off += FrameSamples {
		for i, s := range mono[off : off+FrameSamples] {
			stereo[2*i], stereo[2*i+1] = s, s
		}
		n, err := enc.Encode(stereo, pkt)
		if err != nil {
			t.Fatal(err)
		}
		if pkt[0]&4 == 0 {
			t.Fatalf("TOC %#x: not a stereo packet", pkt[0])
		}
		m, err := dec.Decode(buf, pkt[:n])
		if err != nil || m != FrameSamples {
			t.Fatalf("decoded %d samples, %v", m, err)
		}
		out = append(out, buf[:m]...)
	}
	got := audiotest.LevelDBFS(out[SampleRate/4:], 1000, SampleRate)
	t.Logf("stereo 1 kHz at -20 dBFS heard in mono at %.2f dBFS", got)
	if math.Abs(got+20) > 1.5 {
		t.Errorf("level %.2f dBFS, want -20 ± 1.5", got)
	}
}
