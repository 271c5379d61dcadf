package opus

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"chorus/internal/audiotest"
)

// newPair returns an encoder set up by cfg and a decoder, failing the test
// (never skipping it) when libopus is missing.
func newPair(t testing.TB, cfg Config) (*Encoder, *Decoder) {
	t.Helper()
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	return enc, dec
}

// encodeAll codes pcm as consecutive 20 ms frames and returns the packets.
func encodeAll(t testing.TB, enc *Encoder, pcm []int16) [][]byte {
	t.Helper()
	var pkts [][]byte
	for off := 0; off+FrameSamples <= len(pcm); off += FrameSamples {
		buf := make([]byte, MaxPacketBytes)
		n, err := enc.Encode(buf, pcm[off:off+FrameSamples])
		if err != nil {
			t.Fatalf("Encode frame %d: %v", off/FrameSamples, err)
		}
		pkts = append(pkts, buf[:n])
	}
	return pkts
}

// decodeAll decodes every packet in order.
func decodeAll(t testing.TB, dec *Decoder, pkts [][]byte) []int16 {
	t.Helper()
	out := make([]int16, 0, len(pkts)*FrameSamples)
	buf := make([]int16, MaxFrameSamples)
	for i, p := range pkts {
		n, err := dec.Decode(buf, p)
		if err != nil {
			t.Fatalf("Decode packet %d (%d bytes): %v", i, len(p), err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

// voice is a deterministic speech-like signal: a glottal pulse train (f0
// gliding between 110 and 190 Hz) through two moving formants, with
// syllables about four times a second. Unlike a steady tone it keeps
// changing, so concealment cannot simply repeat the last period.
func voice(samples int) []int16 {
	out := make([]int16, samples)
	var ph, f1, f2 float64
	var y1a, y1b, y2a, y2b float64
	for i := range out {
		t := float64(i) / SampleRate
		f0 := 150 + 40*math.Sin(2*math.Pi*1.3*t)
		ph += f0 / SampleRate
		pulse := 0.0
		if ph >= 1 {
			ph--
			pulse = 1
		}
		f1 = 500 + 300*math.Sin(2*math.Pi*2.1*t)
		f2 = 1500 + 700*math.Sin(2*math.Pi*1.7*t+1)
		y1 := resonate(pulse, f1, 80, &y1a, &y1b)
		y2 := resonate(pulse, f2, 120, &y2a, &y2b)
		env := 0.5 - 0.5*math.Cos(2*math.Pi*4*t)
		out[i] = int16(4000 * env * (y1 + 0.5*y2))
	}
	return out
}

// resonate is a two-pole resonator at f Hz of bandwidth bw Hz with unity
// peak-ish gain.
func resonate(x, f, bw float64, y1, y2 *float64) float64 {
	r := math.Exp(-math.Pi * bw / SampleRate)
	y := (1-r)*x*20 + 2*r*math.Cos(2*math.Pi*f/SampleRate)**y1 - r*r**y2
	*y2, *y1 = *y1, y
	return y
}

// TestRoundTripTones: a 1 kHz and a 6 kHz tone keep their level within
// ±1.5 dB through encode and decode at the default settings, and nothing
// else (harmonics, images about 8, 12, 16 or 24 kHz, the 2 kHz a
// narrowband path would alias 6 kHz to) comes up strongly.
func TestRoundTripTones(t *testing.T) {
	for _, tc := range []struct {
		freq   float64
		others []float64
	}{
		{1000, []float64{2000, 3000, 7000, 15000, 23000}},
		{6000, []float64{2000, 4000, 10000, 12000, 18000}},
	} {
		const level = -20.0
		pcm := make([]int16, SampleRate) // 1 s
		audiotest.Tone(pcm, tc.freq, level, SampleRate, nil)
		enc, dec := newPair(t, DefaultConfig())
		out := decodeAll(t, dec, encodeAll(t, enc, pcm))
		steady := out[SampleRate/4:] // past the encoder's start-up
		got := audiotest.LevelDBFS(steady, tc.freq, SampleRate)
		t.Logf("%.0f Hz at %.1f dBFS: decoded %.2f dBFS", tc.freq, level, got)
		if math.Abs(got-level) > 1.5 {
			t.Errorf("%.0f Hz: level %.2f dBFS, want %.1f ± 1.5", tc.freq, got, level)
		}
		for _, f := range tc.others {
			o := audiotest.LevelDBFS(steady, f, SampleRate)
			t.Logf("  %.0f Hz: %.1f dBFS", f, o)
			if o > level-40 {
				t.Errorf("%.0f Hz tone: %.0f Hz at %.1f dBFS, want below %.0f", tc.freq, f, o, level-40)
			}
		}
	}
}

// TestEncoderDelay measures the codec's delay (the encoder's lookahead) by
// cross-correlating decoded voice with the input; the package comment
// quotes it.
func TestEncoderDelay(t *testing.T) {
	in := voice(SampleRate)
	enc, dec := newPair(t, DefaultConfig())
	out := decodeAll(t, dec, encodeAll(t, enc, in))
	best, bestLag := math.Inf(-1), -1
	for lag := 0; lag <= 1000; lag++ {
		var c float64
		for i := SampleRate / 4; i+lag < len(out) && i < len(in); i++ {
			c += float64(in[i]) * float64(out[i+lag])
		}
		if c > best {
			best, bestLag = c, lag
		}
	}
	t.Logf("codec delay: %d samples (%.2f ms)", bestLag, float64(bestLag)*1000/SampleRate)
	if bestLag < 200 || bestLag > 400 {
		t.Errorf("delay %d samples, want about 312 (6.5 ms)", bestLag)
	}
}

// errorEnergy is the sum of squared differences over [from, to).
func errorEnergy(a, b []int16, from, to int) float64 {
	var e float64
	for i := from; i < to; i++ {
		d := float64(a[i]) - float64(b[i])
		e += d * d
	}
	return e
}

// TestFECBeatsConcealment drops every tenth packet of voice and repairs
// each loss twice, with in-band FEC from the next packet and with plain
// concealment; against the loss-free decode, FEC must leave clearly less
// error energy in the lost frames.
func TestFECBeatsConcealment(t *testing.T) {
	in := voice(3 * SampleRate)
	enc, _ := newPair(t, DefaultConfig())
	pkts := encodeAll(t, enc, in)
	_, refDec := newPair(t, DefaultConfig())
	ref := decodeAll(t, refDec, pkts)

	lost := func(i int) bool { return i%10 == 5 && i+1 < len(pkts) }
	repair := func(useFEC bool) []int16 {
		_, dec := newPair(t, DefaultConfig())
		out := make([]int16, 0, len(ref))
		buf := make([]int16, MaxFrameSamples)
		for i, p := range pkts {
			var n int
			var err error
			switch {
			case lost(i) && useFEC:
				n, err = dec.DecodeFEC(buf[:FrameSamples], pkts[i+1])
			case lost(i):
				n, err = dec.Conceal(buf, FrameSamples)
			default:
				n, err = dec.Decode(buf, p)
			}
			if err != nil || n != FrameSamples {
				t.Fatalf("packet %d (fec %v): %d samples, %v", i, useFEC, n, err)
			}
			out = append(out, buf[:n]...)
		}
		return out
	}
	fec, plc := repair(true), repair(false)
	var eFEC, ePLC, signal float64
	for i := range pkts {
		if !lost(i) {
			continue
		}
		from, to := i*FrameSamples, (i+1)*FrameSamples
		eFEC += errorEnergy(fec, ref, from, to)
		ePLC += errorEnergy(plc, ref, from, to)
		signal += errorEnergy(ref, make([]int16, len(ref)), from, to)
	}
	snr := func(e float64) float64 { return 10 * math.Log10(signal/e) }
	t.Logf("lost frames: SNR with FEC %.1f dB, with concealment %.1f dB", snr(eFEC), snr(ePLC))
	if snr(eFEC) < snr(ePLC)+3 {
		t.Errorf("FEC SNR %.1f dB is not 3 dB better than concealment's %.1f dB", snr(eFEC), snr(ePLC))
	}
}

// TestDTX: with DTX on, silence becomes 1–2 byte packets, and those decode
// without error to a full frame of near-silence.
func TestDTX(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DTX = true
	enc, dec := newPair(t, cfg)
	pcm := make([]int16, 2*SampleRate)
	audiotest.Tone(pcm[:SampleRate/2], 1000, -20, SampleRate, nil) // talk, then silence
	buf := make([]int16, MaxFrameSamples)
	var dtx int
	for i, p := range encodeAll(t, enc, pcm) {
		n, err := dec.Decode(buf, p)
		if err != nil {
			t.Fatalf("packet %d (%d bytes): %v", i, len(p), err)
		}
		if !IsDTX(p) {
			continue
		}
		dtx++
		if want, err := PacketSamples(p); err != nil || n != want || n != FrameSamples {
			t.Errorf("DTX packet %d: decoded %d samples, PacketSamples %d, %v", i, n, want, err)
		}
		if l := audiotest.RMSDBFS(buf[:n]); l > -50 {
			t.Errorf("DTX packet %d decodes to %.1f dBFS, want comfort noise below -50", i, l)
		}
	}
	t.Logf("%d DTX packets in 1.5 s of silence", dtx)
	if dtx == 0 {
		t.Fatal("no DTX packet in 1.5 s of silence")
	}
	// A DTX frame from elsewhere (a TOC alone) decodes too.
	for _, p := range [][]byte{{0x08}, {0x78, 0x00}, {0xf8}} {
		want, _ := PacketSamples(p)
		if n, err := dec.Decode(buf, p); err != nil || n != want {
			t.Errorf("DTX %x: %d samples, %v; want %d", p, n, err, want)
		}
	}
}

// TestDecodeErrors: empty, malformed and oversized inputs are errors with
// the right sentinel, never panics.
func TestDecodeErrors(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]int16, MaxFrameSamples)
	if _, err := dec.Decode(buf, nil); !errors.Is(err, ErrEmptyPayload) {
		t.Errorf("nil payload: %v", err)
	}
	if _, err := dec.DecodeFEC(buf[:FrameSamples], nil); !errors.Is(err, ErrEmptyPayload) {
		t.Errorf("FEC from nil: %v", err)
	}
	if _, err := dec.Decode(nil, []byte{0x78, 1, 2}); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("nil dst: %v", err)
	}
	for _, p := range [][]byte{
		{0x79, 1, 2, 3},           // code 1: two frames of equal length need an even remainder
		{0x7a, 200, 1},            // code 2: first frame longer than the packet
		{0x7b},                    // code 3 without a count
		{0x7b, 0x00},              // code 3, zero frames
		{0x7b, 0x07, 1, 2, 3},     // code 3, 7 × 20 ms > 120 ms
		{0x7b, 0x43, 255, 255, 1}, // code 3 padding longer than the packet
	} {
		if n, err := dec.Decode(buf, p); err == nil {
			t.Errorf("payload %x decoded to %d samples, want an error", p, n)
		}
	}
	// A 60 ms packet does not fit a 20 ms buffer.
	if _, err := dec.Decode(buf[:FrameSamples], []byte{0x18, 1, 2, 3}); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("60 ms packet into 20 ms buffer: %v", err)
	}
	if _, err := dec.Decode(buf, []byte{0x7b, 0}); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("code 3 packet of no frames: %v", err)
	}
	for _, n := range []int{0, 100, 961, MaxFrameSamples + 120} {
		if _, err := dec.Conceal(make([]int16, 2*MaxFrameSamples), n); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Conceal %d: %v", n, err)
		}
	}
	if _, err := dec.Conceal(buf[:480], FrameSamples); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("Conceal into short buffer: %v", err)
	}
	// Random garbage: errors or audio, never a panic or an overrun.
	rng := rand.New(rand.NewPCG(1, 2))
	var bad int
	for range 2000 {
		p := make([]byte, 1+rng.IntN(300))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		n, err := dec.Decode(buf, p)
		if err != nil {
			bad++
			continue
		}
		if want, perr := PacketSamples(p); perr != nil || n != want {
			t.Fatalf("payload %x: decoded %d samples, PacketSamples says %d, %v", p, n, want, perr)
		}
	}
	t.Logf("%d of 2000 random payloads rejected", bad)
}

// TestEncoderSettings: out-of-range settings are refused with ErrConfig,
// odd frame sizes with ErrFrameSize, and a short buffer does not overrun.
func TestEncoderSettings(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.Bitrate = 5999 },
		func(c *Config) { c.Bitrate = 510001 },
		func(c *Config) { c.Complexity = 11 },
		func(c *Config) { c.ExpectedLoss = -1 },
		func(c *Config) { c.MaxPlaybackRate = 7999 },
		func(c *Config) { *c = Config{} },
	} {
		c := DefaultConfig()
		mut(&c)
		if _, err := NewEncoder(c); !errors.Is(err, ErrConfig) {
			t.Errorf("NewEncoder(%+v): %v, want ErrConfig", c, err)
		}
	}
	enc, _ := newPair(t, DefaultConfig())
	if err := enc.SetBitrate(1); !errors.Is(err, ErrConfig) {
		t.Errorf("SetBitrate(1): %v", err)
	}
	if err := enc.SetBitrate(64000); err != nil || enc.Config().Bitrate != 64000 {
		t.Errorf("SetBitrate(64000): %v, config %+v", err, enc.Config())
	}
	if err := enc.SetExpectedLoss(25); err != nil || enc.Config().ExpectedLoss != 25 {
		t.Errorf("SetExpectedLoss(25): %v", err)
	}
	for _, n := range []int{0, 100, 959, 961, 3840} {
		if _, err := enc.Encode(make([]byte, MaxPacketBytes), make([]int16, n)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("Encode %d samples: %v", n, err)
		}
	}
	pcm := make([]int16, FrameSamples)
	audiotest.Noise(pcm, -10, rand.New(rand.NewPCG(3, 4)))
	big := make([]byte, 64)
	for i := range big {
		big[i] = 0xee
	}
	n, err := enc.Encode(big[:10], pcm) // noise wants far more than 10 bytes
	if err != nil || n > 10 {
		t.Fatalf("Encode into 10 bytes: %d, %v", n, err)
	}
	for i, b := range big[10:] {
		if b != 0xee {
			t.Fatalf("Encode wrote byte %d beyond its 10-byte dst", 10+i)
		}
	}
}

// TestMaxPlaybackRate: a receiver at 16 kHz (fmtp maxplaybackrate=16000)
// gets no band above 8 kHz, so a 10 kHz tone is gone and 1 kHz stays.
func TestMaxPlaybackRate(t *testing.T) {
	f, err := ParseFmtp("maxplaybackrate=16000;useinbandfec=1")
	if err != nil {
		t.Fatal(err)
	}
	enc, dec := newPair(t, f.EncoderConfig(DefaultConfig()))
	pcm := make([]int16, SampleRate)
	audiotest.Tone(pcm, 1000, -20, SampleRate, nil)
	hi := make([]int16, SampleRate)
	audiotest.Tone(hi, 10000, -20, SampleRate, nil)
	for i := range pcm {
		pcm[i] += hi[i]
	}
	out := decodeAll(t, dec, encodeAll(t, enc, pcm))[SampleRate/4:]
	lo, high := audiotest.LevelDBFS(out, 1000, SampleRate), audiotest.LevelDBFS(out, 10000, SampleRate)
	t.Logf("at maxplaybackrate 16000: 1 kHz %.1f dBFS, 10 kHz %.1f dBFS", lo, high)
	if math.Abs(lo+20) > 1.5 || high > -50 {
		t.Errorf("1 kHz %.1f dBFS (want -20 ± 1.5), 10 kHz %.1f dBFS (want below -50)", lo, high)
	}
}

// TestZeroAllocs: encoding, decoding, FEC and concealment allocate nothing
// per frame.
func TestZeroAllocs(t *testing.T) {
	enc, dec := newPair(t, DefaultConfig())
	pcm := voice(FrameSamples)
	pkt := make([]byte, MaxPacketBytes)
	out := make([]int16, MaxFrameSamples)
	n, err := enc.Encode(pkt, pcm)
	if err != nil {
		t.Fatal(err)
	}
	payload := pkt[:n]
	for name, fn := range map[string]func(){
		"Encode":    func() { _, _ = enc.Encode(pkt, pcm) },
		"Decode":    func() { _, _ = dec.Decode(out, payload) },
		"DecodeFEC": func() { _, _ = dec.DecodeFEC(out[:FrameSamples], payload) },
		"Conceal":   func() { _, _ = dec.Conceal(out, FrameSamples) },
	} {
		if a := testing.AllocsPerRun(200, fn); a != 0 {
			t.Errorf("%s: %.1f allocations per frame, want 0", name, a)
		}
	}
}

// BenchmarkEncode is the CPU of one 20 ms frame of voice at 48 kHz mono,
// 32 kbit/s with FEC, at complexity 1, the default 5 and libopus' 10.
func BenchmarkEncode(b *testing.B) {
	in := voice(SampleRate)
	for _, cx := range []int{1, DefaultComplexity, 10} {
		b.Run(fmt.Sprintf("complexity=%d", cx), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Complexity = cx
			enc, _ := newPair(b, cfg)
			pkt := make([]byte, MaxPacketBytes)
			b.ReportAllocs()
			cpuPerOp(b, "cpu-ns/frame", func() int {
				i := 0
				for b.Loop() {
					off := (i % 50) * FrameSamples
					if _, err := enc.Encode(pkt, in[off:off+FrameSamples]); err != nil {
						b.Fatal(err)
					}
					i++
				}
				return i
			})
		})
	}
}

// BenchmarkDecode is the CPU of decoding one 20 ms frame of voice (the
// decoder's cost does not depend on the encoder's complexity).
func BenchmarkDecode(b *testing.B) {
	enc, dec := newPair(b, DefaultConfig())
	pkts := encodeAll(b, enc, voice(SampleRate))
	out := make([]int16, MaxFrameSamples)
	b.ReportAllocs()
	cpuPerOp(b, "cpu-ns/frame", func() int {
		i := 0
		for b.Loop() {
			if _, err := dec.Decode(out, pkts[i%len(pkts)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		return i
	})
}

// TestFrameSizes: every frame duration a peer may send (2.5 to 60 ms)
// decodes to its duration, and a tone keeps its level at each.
func TestFrameSizes(t *testing.T) {
	for _, size := range []int{120, 240, 480, 960, 1920, 2880} {
		enc, dec := newPair(t, DefaultConfig())
		pcm := make([]int16, SampleRate)
		audiotest.Tone(pcm, 1000, -20, SampleRate, nil)
		pkt := make([]byte, MaxPacketBytes)
		out := make([]int16, 0, len(pcm))
		buf := make([]int16, MaxFrameSamples)
		for off := 0; off+size <= len(pcm); off += size {
			n, err := enc.Encode(pkt, pcm[off:off+size])
			if err != nil {
				t.Fatalf("%d samples: Encode: %v", size, err)
			}
			if d, err := PacketSamples(pkt[:n]); err != nil || d != size {
				t.Fatalf("%d samples: PacketSamples %d, %v", size, d, err)
			}
			m, err := dec.Decode(buf, pkt[:n])
			if err != nil || m != size {
				t.Fatalf("%d samples: decoded %d, %v", size, m, err)
			}
			out = append(out, buf[:m]...)
		}
		got := audiotest.LevelDBFS(out[SampleRate/4:], 1000, SampleRate)
		t.Logf("%.1f ms frames: 1 kHz at %.2f dBFS", float64(size)*1000/SampleRate, got)
		if math.Abs(got+20) > 1.5 {
			t.Errorf("%d-sample frames: level %.2f dBFS, want -20 ± 1.5", size, got)
		}
	}
}

// BenchmarkConceal is the CPU of decoding one 20 ms frame and concealing
// the next (loss of every other packet, so concealment always follows
// real speech); subtract BenchmarkDecode for concealment alone.
func BenchmarkConceal(b *testing.B) {
	enc, dec := newPair(b, DefaultConfig())
	pkts := encodeAll(b, enc, voice(SampleRate))
	out := make([]int16, MaxFrameSamples)
	b.ReportAllocs()
	cpuPerOp(b, "cpu-ns/pair", func() int {
		i := 0
		for b.Loop() {
			if _, err := dec.Decode(out, pkts[i%len(pkts)]); err != nil {
				b.Fatal(err)
			}
			if _, err := dec.Conceal(out, FrameSamples); err != nil {
				b.Fatal(err)
			}
			i++
		}
		return i
	})
}
