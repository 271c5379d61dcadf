package main

import (
	"math"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// TestAudioWidebandFile (issue 12): a 16 kHz WAV of a 6 kHz tone, fetched
// over HTTP and played into a room of a G.722 phone and a PCMU phone (real
// SIP and RTP over loopback), keeps its band: the G.722 phone hears the
// tone at the file's level ±2 dB (G.722's upper band codes 4–8 kHz
// coarsely), the PCMU phone nothing of it (below −50 dBFS, and no alias
// at 2 kHz).
func TestAudioWidebandFile(t *testing.T) {
	rg := newAudioRig(t, "34800-34849", "+15557772000", 0)
	rg.dialCodecs(t, []string{"G722"})
	rg.dialCodecs(t, []string{"PCMU"})
	wide, narrow := rg.phones[0], rg.phones[1]
	if wide.Codec() != "G722" || narrow.Codec() != "PCMU" {
		t.Fatalf("the phones got %s and %s, want G722 and PCMU", wide.Codec(), narrow.Codec())
	}
	tone6k := rg.serveFile("/tone6k.wav", "audio/wav", audioWAV(16000, 1, 6000, audioFileLevel, 2*time.Second))
	rg.roomAudio(t, map[string]any{"fileUrl": tone6k, "loopEnabled": true, "tag": "hd"})
	rg.events.wait(t, "conference-playback started", 5*time.Second, audioEv("conference-playback", "started", "hd"))

	// The G.722 phone records at 16 kHz: wait until it hears the tone,
	// then take a second of both phones.
	const window = 1600 // 100 ms at 16 kHz
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := wide.Mark(); m >= window && audiotest.LevelDBFS(wide.RecordingSince(m-window), 6000, 16000) > audioOn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the G.722 phone never heard 6 kHz")
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := recordFor(t, []*testphone.Phone{wide, narrow}, []int{16000, 8000}, time.Second)
	rg.roomAudio(t, map[string]any{"fileUrl": "", "tag": "hd"})

	level := audiotest.LevelDBFS(recs[0], 6000, 16000)
	rms := audiotest.RMSDBFS(recs[1])
	alias := audiotest.LevelDBFS(recs[1], 2000, 8000)
	t.Logf("G.722 phone: 6 kHz at %.2f dBFS; PCMU phone: %.1f dBFS RMS, 2 kHz at %.1f dBFS", level, rms, alias)
	if math.Abs(level-audioFileLevel) > 2 {
		t.Errorf("the G.722 phone hears 6 kHz at %.2f dBFS, want %.0f ± 2", level, audioFileLevel)
	}
	if rms > -50 {
		t.Errorf("the PCMU phone hears %.1f dBFS of a 6 kHz file, want below -50", rms)
	}
	if alias > -50 {
		t.Errorf("the PCMU phone hears an alias at 2 kHz at %.1f dBFS", alias)
	}
}

// recordFor returns d of each phone's recording from now, rates[i] being
// the rate phone i records at.
func recordFor(t *testing.T, phones []*testphone.Phone, rates []int, d time.Duration) [][]int16 {
	t.Helper()
	marks := make([]int, len(phones))
	for i, p := range phones {
		marks[i] = p.Mark()
	}
	deadline := time.Now().Add(d + 5*time.Second)
	recs := make([][]int16, len(phones))
	for i, p := range phones {
		n := int(d.Seconds() * float64(rates[i]))
		for p.Mark()-marks[i] < n {
			if time.Now().After(deadline) {
				t.Fatalf("phone %d recorded %d samples, want %d", i, p.Mark()-marks[i], n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		recs[i] = p.RecordingSince(marks[i])[:n]
	}
	return recs
}
