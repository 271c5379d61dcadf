// Package g722 is the ITU-T G.722 wideband speech codec at 64 kbit/s
// (mode 1): 16 kHz 16-bit PCM in, one byte per pair of samples out, so 8
// bytes per millisecond and 160 bytes per 20 ms frame.
//
// The algorithm is ITU-T G.722's sub-band ADPCM (SB-ADPCM): a 24-tap
// quadrature mirror filter (QMF, coefficients of Table 11) splits the
// signal into a lower band of 0–4 kHz and a higher band of 4–8 kHz, each
// at 8 kHz; the lower band is coded with 6-bit ADPCM and the higher band
// with 2-bit ADPCM, each with its own backward-adaptive quantizer and
// pole-zero predictor. A code word carries the higher band's 2 bits (IH)
// in its most significant bits and the lower band's 6 bits (IL) below
// them. The arithmetic is the standard's fixed-point arithmetic (the
// blocks of its computational description are named in the comments), so
// the output agrees bit for bit with other conforming implementations:
// the tests check encoder and decoder against FFmpeg's (whose decoder, its
// authors state, passes the ITU test sequences; see testdata/README.md). Only mode 1 (64 kbit/s) is
// implemented: modes 2 and 3, which give one or two lower-band bits to an
// auxiliary data channel, are not used on RTP.
//
// # RTP clock rate: 8000, not 16000
//
// RFC 3551 §4.5.2 (https://www.rfc-editor.org/rfc/rfc3551#section-4.5.2)
// registers G.722 (static payload type 9) with an RTP clock rate of 8000
// Hz although it samples at 16 kHz: the value was assigned in error by RFC
// 1890 and kept for compatibility. SDP therefore says "G722/8000", and RTP
// timestamps advance by 160 per 20 ms frame (the number of code words, one
// per two samples), not by 320. A sender that counts samples advances its
// timestamps twice as fast as time passes, so its peer takes every packet
// for one that follows a 20 ms gap.
//
// # State and buffers
//
// G.722 is backward-adaptive: each code word depends on everything before
// it, so an Encoder or Decoder belongs to one direction of one call and
// must not be shared. Both work into caller-owned buffers and allocate
// nothing. They are not safe for concurrent use.
package g722

// SampleRate is the audio sampling rate of G.722, in Hz.
const SampleRate = 16000

// RTPClockRate is the RTP clock rate of G.722 (RFC 3551 §4.5.2): 8000 Hz,
// half the sampling rate, so an RTP timestamp counts code words (bytes),
// not samples.
const RTPClockRate = 8000

// PayloadType is G.722's static RTP payload type (RFC 3551 §6).
const PayloadType uint8 = 9

// FrameSamples is the number of 16 kHz samples in one 20 ms frame.
const FrameSamples = SampleRate / 50

// FrameBytes is the size of one 20 ms frame of G.722 at 64 kbit/s: one byte
// per two samples.
const FrameBytes = FrameSamples / 2

// qmfCoeffs are the QMF coefficients h0..h11 of G.722's Table 11; the
// 24-tap filter is symmetric, h(23-i) = h(i). qmf.push has them written
// out; this table is the reference its test checks against.
var qmfCoeffs = [12]int32{3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11}

// qmf holds the last 24 samples entering the QMF (the input pairs in the
// encoder, the reconstructed sub-band sums and differences in the decoder).
// Each sample is stored twice, at i and i+24, so that the 24 most recent
// samples are always the contiguous window x[pos:pos+24], oldest first:
// no shifting, two stores per sample.
type qmf struct {
	x   [48]int32
	pos int
}

// push appends the pair (a, b) and returns the two filter sums of the
// transmit and receive QMF over the new window: even (taps on the even
// samples, "xout2" in the reference code) and odd ("xout1").
func (q *qmf) push(a, b int32) (odd, even int32) {
	p := q.pos
	q.x[p], q.x[p+24] = a, a
	q.x[p+1], q.x[p+25] = b, b
	p += 2
	if p == 24 {
		p = 0
	}
	q.pos = p
	// The taps of qmfCoeffs, written out: constant multipliers and no
	// loop make this twice as fast, and it runs once per code word.
	// TestQMFTaps checks it against the table.
	w := (*[24]int32)(q.x[p : p+24])
	even = w[0]*3 + w[2]*-11 + w[4]*12 + w[6]*32 + w[8]*-210 + w[10]*951 +
		w[12]*3876 + w[14]*-805 + w[16]*362 + w[18]*-156 + w[20]*53 + w[22]*-11
	odd = w[1]*-11 + w[3]*53 + w[5]*-156 + w[7]*362 + w[9]*-805 + w[11]*3876 +
		w[13]*951 + w[15]*-210 + w[17]*32 + w[19]*12 + w[21]*-11 + w[23]*3
	return odd, even
}

// band is the ADPCM state of one sub-band, the same for encoder and
// decoder. The comments give the standard's names (lower band L, higher
// band H).
type band struct {
	sp      int32    // predictor output s(n) (SL / SH)
	sz      int32    // zero-section output sz(n) (SZL / SZH)
	pNeg    [2]bool  // signs of the past partially reconstructed signals p(n-1), p(n-2): true if negative
	rPrev   int32    // previous reconstructed signal r(n-1), doubled
	a       [2]int32 // pole coefficients a1, a2
	d       [6]int32 // past quantized differences d(n-1)..d(n-6), doubled
	b       [6]int32 // zero coefficients b1..b6
	logScal int32    // logarithmic quantizer scale factor ∇ (NBL / NBH)
	scale   int32    // linear scale factor Δ (DETL / DETH), divided by 4
}

// reset puts a band in its initial state: everything zero except the
// scale factor (DETL = 32, DETH = 8; scale holds a quarter of it).
func (s *band) reset(scale int32) {
	*s = band{scale: scale}
}

// Initial scale factors (a quarter of DETL and DETH) and the upper limits
// of the logarithmic ones (NBL ≤ 18432, NBH ≤ 22528; LOGSCL, LOGSCH).
const (
	lowScaleInit  = 8
	highScaleInit = 2
	lowLogMax     = 18432
	highLogMax    = 22528
)

// invLog2 is the antilog table of SCALEL/SCALEH (ILA) for the five
// fractional bits of the logarithmic scale factor; the integer bits
// become a shift.
var invLog2 = [32]int32{
	2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383,
	2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
	2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371,
	3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
}

// linearScale converts a logarithmic scale factor (already offset by the
// band's constant) to the linear one (block 3L/3H, SCALEL/SCALEH).
func linearScale(log int32) int32 {
	m := invLog2[(log>>6)&31]
	if sh := log >> 11; sh < 0 {
		return m >> -sh
	}
	return m << (log >> 11)
}

// lowLogStep is the lower band's scale factor multiplier WL (LOGSCL),
// indexed by the 4-bit code word that drives its adaptation.
var lowLogStep = [16]int32{
	-60, 3042, 1198, 538, 334, 172, 58, -30,
	3042, 1198, 538, 334, 172, 58, -30, -60,
}

// highLogStep is the higher band's multiplier WH (LOGSCH), indexed by the
// magnitude bit of its 2-bit code word.
var highLogStep = [2]int32{798, -214}

// lowInvQ4 is the 4-bit inverse quantizer (QQ4, INVQAL) with its sign,
// indexed by the top 4 bits of the lower-band code word: the lower band's
// predictor adapts on these 4 bits only, so that a decoder reading 6, 5 or
// 4 of them (modes 1–3) stays in step.
var lowInvQ4 = [16]int32{
	0, -2557, -1612, -1121, -786, -530, -323, -150,
	2557, 1612, 1121, 786, 530, 323, 150, 0,
}

// lowInvQ6 is the 6-bit inverse quantizer (QQ6, INVQBL) with its sign,
// indexed by the lower-band code word: the decoder's output path.
var lowInvQ6 = [64]int32{
	-17, -17, -17, -17, -3101, -2738, -2376, -2088,
	-1873, -1689, -1535, -1399, -1279, -1170, -1072, -982,
	-899, -822, -750, -682, -618, -558, -501, -447,
	-396, -347, -300, -254, -211, -170, -130, -91,
	3101, 2738, 2376, 2088, 1873, 1689, 1535, 1399,
	1279, 1170, 1072, 982, 899, 822, 750, 682,
	618, 558, 501, 447, 396, 347, 300, 254,
	211, 170, 130, 91, 54, 17, -54, -17,
}

// highInvQ is the 2-bit inverse quantizer (QQ2, INVQAH) with its sign,
// indexed by the higher-band code word.
var highInvQ = [4]int32{-926, -202, 926, 202}

// lowQ holds the decision levels of the 6-bit lower-band quantizer (Q6,
// QUANTL): the magnitude thresholds between its 30 levels per sign.
var lowQ = [29]int32{
	35, 72, 110, 150, 190, 233, 276, 323,
	370, 422, 473, 530, 587, 650, 714, 786,
	858, 940, 1023, 1121, 1219, 1339, 1458, 1612,
	1765, 1980, 2195, 2557, 2919,
}

// adapt runs the adaptive predictor (blocks 4L/4H: PARREC, RECONS,
// UPPOL1, UPPOL2, UPZERO, DELAYA, FILTEP, FILTEZ, PREDIC) for the quantized
// difference dq of the current sample. It is shared by both bands and by
// the encoder and decoder, which is what keeps the two in step.
func (s *band) adapt(dq int32) {
	// Sign of the partially reconstructed signal p = sz + dq.
	neg := s.sz+dq < 0
	sg0 := int32(-1) // sgn[p(n)]·sgn[p(n-1)] in the form UPPOL needs
	if neg != s.pNeg[0] {
		sg0 = 1
	}
	sg1 := int32(-1)
	if neg == s.pNeg[1] {
		sg1 = 1
	}
	s.pNeg[1], s.pNeg[0] = s.pNeg[0], neg

	// UPPOL2: a2 with leakage 127/128, limited to ±0.75.
	a2 := (sg0*clamp(s.a[0], -8191, 8191))>>5 + sg1*128 + (s.a[1]*127)>>7
	a2 = clamp(a2, -12288, 12288)
	s.a[1] = a2
	// UPPOL1: a1 with leakage 255/256, limited so the pole pair is stable.
	lim := 15360 - a2
	s.a[0] = clamp(-192*sg0+(s.a[0]*255)>>8, -lim, lim)

	// UPZERO: sign-sign update of the zero coefficients, leakage 255/256;
	// no update for a zero difference. Then DELAYA and FILTEZ over the
	// new difference history. Written out for six taps: this is most of
	// the codec's time, and the signs are unpredictable, so no branches.
	b, d := &s.b, &s.d
	if dq != 0 {
		b[0] = (b[0]*255)>>8 + signStep(d[0], dq)
		b[1] = (b[1]*255)>>8 + signStep(d[1], dq)
		b[2] = (b[2]*255)>>8 + signStep(d[2], dq)
		b[3] = (b[3]*255)>>8 + signStep(d[3], dq)
		b[4] = (b[4]*255)>>8 + signStep(d[4], dq)
		b[5] = (b[5]*255)>>8 + signStep(d[5], dq)
	} else {
		b[0] = (b[0] * 255) >> 8
		b[1] = (b[1] * 255) >> 8
		b[2] = (b[2] * 255) >> 8
		b[3] = (b[3] * 255) >> 8
		b[4] = (b[4] * 255) >> 8
		b[5] = (b[5] * 255) >> 8
	}
	d[5], d[4], d[3], d[2], d[1] = d[4], d[3], d[2], d[1], d[0]
	d[0] = clamp16(dq << 1)
	sz := (b[0]*d[0])>>15 + (b[1]*d[1])>>15 + (b[2]*d[2])>>15 +
		(b[3]*d[3])>>15 + (b[4]*d[4])>>15 + (b[5]*d[5])>>15
	s.sz = sz

	// RECONS, FILTEP and PREDIC: the next prediction.
	r := clamp16((s.sp + dq) << 1)
	s.sp = clamp16(sz + (s.a[0]*r)>>15 + (s.a[1]*s.rPrev)>>15)
	s.rPrev = r
}

// adaptLow adapts the lower band to the 4-bit code word ilow4 (blocks
// 3L and 4L).
func (s *band) adaptLow(ilow4 int) {
	s.adapt((s.scale * lowInvQ4[ilow4]) >> 10)
	s.logScal = clamp((s.logScal*127)>>7+lowLogStep[ilow4], 0, lowLogMax)
	s.scale = linearScale(s.logScal - 8<<11)
}

// adaptHigh adapts the higher band to its quantized difference dh and
// 2-bit code word ihigh (blocks 3H and 4H).
func (s *band) adaptHigh(dh int32, ihigh int) {
	s.adapt(dh)
	s.logScal = clamp((s.logScal*127)>>7+highLogStep[ihigh&1], 0, highLogMax)
	s.scale = linearScale(s.logScal - 10<<11)
}

// signStep is UPZERO's step for one coefficient: +128 if the past
// difference d and the current one dq have the same sign, -128 if not.
func signStep(d, dq int32) int32 {
	return ((d^dq)>>31 | 1) << 7
}

func clamp(v, lo, hi int32) int32 {
	return min(max(v, lo), hi)
}

func clamp16(v int32) int32 {
	return min(max(v, -32768), 32767)
}

// Encoder is the G.722 encoder state of one stream. The zero value is not
// ready: use NewEncoder or call Reset.
type Encoder struct {
	qmf  qmf
	low  band
	high band
}

// NewEncoder returns an encoder in the initial state.
func NewEncoder() *Encoder {
	e := new(Encoder)
	e.Reset()
	return e
}

// Reset returns the encoder to its initial state, as at the start
// of a stream: call it when the stream restarts (a new call, a new SSRC).
func (e *Encoder) Reset() {
	e.qmf = qmf{}
	e.low.reset(lowScaleInit)
	e.high.reset(highScaleInit)
}

// Encode codes the 16 kHz samples of pcm into dst, one byte per pair of
// samples, and returns the number of bytes written: min(len(pcm)/2,
// len(dst)). A 20 ms frame is FrameSamples samples into FrameBytes bytes.
// An odd trailing sample is ignored; keep frames even. It allocates
// nothing.
func (e *Encoder) Encode(dst []byte, pcm []int16) int {
	n := min(len(pcm)/2, len(dst))
	for i := range n {
		dst[i] = e.encodePair(int32(pcm[2*i]), int32(pcm[2*i+1]))
	}
	return n
}

// encodePair runs the transmit QMF over one pair of samples and
// codes its two sub-band samples into one code word.
func (e *Encoder) encodePair(x0, x1 int32) byte {
	odd, even := e.qmf.push(x0, x1)
	xl := (odd + even) >> 14
	xh := (odd - even) >> 14

	// Higher band (QUANTH): 2-bit quantizer, one decision level.
	h := &e.high
	ih := quantizeHigh(clamp16(xh-h.sp), h.scale)
	// Lower band (QUANTL): 6-bit quantizer.
	l := &e.low
	il := quantizeLow(clamp16(xl-l.sp), l.scale)

	h.adaptHigh((h.scale*highInvQ[ih])>>10, ih)
	l.adaptLow(il >> 2)
	return byte(ih<<6 | il)
}

// quantizeHigh quantizes the higher band's prediction error eh with the
// scale factor scale (DETH/4) into its 2-bit code word.
func quantizeHigh(eh, scale int32) int {
	mag := eh ^ (eh >> 31) // |eh| for eh ≥ 0, |eh|-1 below: the standard's WD
	ih := 0
	if mag < (141*scale)>>8 {
		ih = 1
	}
	if eh >= 0 {
		ih += 2
	}
	return ih
}

// quantizeLow quantizes the lower band's prediction error el with the
// scale factor scale (DETL/4) into its 6-bit code word: it finds
// the first decision level above |el| and maps the interval and sign to
// the code word.
func quantizeLow(el, scale int32) int {
	mag := (el ^ (el >> 31) + 1) << 10
	i := 0
	// The levels rise; most errors are small, but starting halfway for
	// large ones halves the scan.
	if mag > lowQ[8]*scale {
		i = 9
	}
	for i < len(lowQ) && mag > lowQ[i]*scale {
		i++
	}
	if el < 0 {
		if i < 2 {
			return 63 - i
		}
		return 33 - i
	}
	return 61 - i
}

// Decoder is the G.722 decoder state of one stream. The zero value is not
// ready: use NewDecoder or call Reset.
type Decoder struct {
	qmf  qmf
	low  band
	high band
}

// NewDecoder returns a decoder in the initial state.
func NewDecoder() *Decoder {
	d := new(Decoder)
	d.Reset()
	return d
}

// Reset returns the decoder to its initial state, as at the start of
// a stream: call it when the stream restarts (a new call, a new SSRC).
func (d *Decoder) Reset() {
	d.qmf = qmf{}
	d.low.reset(lowScaleInit)
	d.high.reset(highScaleInit)
}

// Decode decodes the 64 kbit/s code words of payload into 16 kHz samples
// in dst, two per byte, and returns the number of samples written:
// 2·min(len(payload), len(dst)/2). Every byte is a valid code word, so
// there is no error: any input yields audio. It allocates nothing.
func (d *Decoder) Decode(dst []int16, payload []byte) int {
	n := min(len(payload), len(dst)/2)
	for i, c := range payload[:n] {
		dst[2*i], dst[2*i+1] = d.decodeByte(c)
	}
	return 2 * n
}

// decodeByte decodes one code word into two samples: the lower- and
// higher-band ADPCM decoders, then the receive QMF.
func (d *Decoder) decodeByte(c byte) (int16, int16) {
	il := int(c & 0x3f)
	ih := int(c >> 6)

	l := &d.low
	rl := clamp((l.scale*lowInvQ6[il])>>10+l.sp, -16384, 16383)
	l.adaptLow(il >> 2)

	h := &d.high
	dh := (h.scale * highInvQ[ih]) >> 10
	rh := clamp(dh+h.sp, -16384, 16383)
	h.adaptHigh(dh, ih)

	odd, even := d.qmf.push(rl+rh, rl-rh)
	return int16(clamp16(odd >> 11)), int16(clamp16(even >> 11))
}
