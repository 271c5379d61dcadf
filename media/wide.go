package media

import (
	"fmt"

	"chorus/media/g722"
	"chorus/media/opus"
	"chorus/media/resample"
)

// The wideband codecs (G.722, Opus) keep decoder state from packet to
// packet, so their jitter buffer (wideBuffer) keeps packets and decodes
// them when they are played, in timestamp order, rather than decoding on
// arrival into a PCM ring as the G.711 JitterBuffer does:
//   - a backward-adaptive G.722 decoder fed a reordered packet would decode
//     it, and everything after it, from the wrong state;
//   - Opus can only recover a lost packet from the next one's in-band FEC
//     (RFC 7587 §3.3) or conceal it with its own PLC when it is the
//     decoder's turn to play that packet, which only read time knows.
//
// The G.711 path keeps its JitterBuffer untouched: a G.711 member pays
// nothing for this (its endpoint holds a nil *wideState).

// wideSlots is how many packets the buffer holds: 160 ms of 10 ms packets,
// above the 100 ms of delay the buffer ever keeps.
const wideSlots = 16

// wideArena is the bytes the buffered packets share: 16 packets of 512
// bytes (an Opus packet of 20 ms at 200 kbit/s), or fewer bigger ones.
const wideArena = 8192

// maxWidePacket is the largest payload the buffer takes: a 1276-byte Opus
// packet (RFC 6716 §3.2.1), or 60 ms of G.722 with room to spare.
const maxWidePacket = opus.MaxPacketBytes

// maxWidePend is the decoded audio the buffer may hold at once: what is
// left of one 20 ms frame and a 60 ms packet, at 48 kHz.
const maxWidePend = opus.FrameSamples + 3*opus.FrameSamples

// widePacket is a buffered packet: its bytes are data[at:at+n] of the
// arena, still there while the arena has not lapped them.
type widePacket struct {
	ts   uint32 // RTP timestamp
	dur  uint32 // duration in RTP clock ticks
	at   uint64 // absolute arena position of the first byte
	n    uint16
	full bool
}

// wideState is the working memory of an endpoint whose codec is G.722 or
// Opus: made only for such calls, behind a pointer, so that a G.711
// member's endpoint does not grow. It holds the decode side (packet
// buffer, decoder, resampler to the room) and the encode side (encoder,
// resampler from the room, the encoded payload).
type wideState struct {
	codec   Codec
	rate    int // the codec's audio rate, Hz
	clock   int // the codec's RTP clock rate, Hz
	perTick int // samples of audio per RTP clock tick (2 for G.722)
	// maxRate is the highest mix rate the call hears (Endpoint.MaxRate).
	maxRate int
	// opusCfg is the encoder configuration the peer's fmtp asked for.
	opusCfg opus.Config

	g722 *g722.Decoder
	opus *opus.Decoder
	buf  wideBuffer

	// frame is one 20 ms frame at the codec's rate, between the decoder
	// (or encoder) and the resamplers.
	frame [opus.FrameSamples]int16
	// up converts decoded frames to the room's rate (a delay line when
	// equal); prevUp is the path of the rate before, until PullSwitch has
	// handed over from it (inFrom: that rate).
	up, prevUp *resample.Resampler
	inFrom     int

	// enc is the endpoint's own encoder (Push), made at the first Push:
	// a listener who never gets audio of its own never pays for one.
	enc     *wideEncoder
	payload [maxWidePacket]byte
}

// newWideState makes the state of a G.722 or Opus endpoint.
func newWideState(p Params, opusBitrate int) (*wideState, error) {
	w := &wideState{codec: p.Codec, rate: p.Codec.AudioRate(), clock: p.Codec.RTPClockRate()}
	w.perTick = w.rate / w.clock
	w.maxRate = w.rate
	switch p.Codec {
	case G722:
		w.g722 = g722.NewDecoder()
	case Opus:
		d, err := opus.NewDecoder()
		if err != nil {
			return nil, fmt.Errorf("media: Opus endpoint: %w", err)
		}
		w.opus = d
		w.opusCfg = OpusConfig(p.Opus, opusBitrate)
		w.maxRate = w.opusCfg.MaxPlaybackRate
	default:
		return nil, fmt.Errorf("media: %s is not a wideband codec", p.Codec)
	}
	w.buf.init(w)
	return w, nil
}

// OpusConfig returns the encoder configuration for a peer whose fmtp is f
// (RFC 7587 §6.1: its maxplaybackrate, maxaveragebitrate, useinbandfec,
// usedtx) at bitrate (bit/s; 0 for opus.DefaultBitrate). The playback
// rate is rounded up to a mix rate (8000, 16000 or 48000 Hz), so that
// peers whose fmtp differ only within one of those bands share one
// encoder in a room (an encoder told 24 kHz spends bits on a band up to
// 12 kHz; told 48 kHz, on up to 20 kHz that such a peer drops: a little
// waste against one encode less per tick).
func OpusConfig(f opus.Fmtp, bitrate int) opus.Config {
	base := opus.DefaultConfig()
	if bitrate > 0 {
		base.Bitrate = bitrate
	}
	c := f.EncoderConfig(base)
	c.MaxPlaybackRate = opusMixRate(c.MaxPlaybackRate)
	return c
}

// opusMixRate rounds a playback rate up to a mix rate.
func opusMixRate(r int) int {
	switch {
	case r <= 8000:
		return 8000
	case r <= 16000:
		return 16000
	}
	return 48000
}

// wideBuffer is the packet jitter buffer of a wideband codec: packets of
// any duration (2.5 to 60 ms for Opus; any length of G.722), in any order,
// played out as 20 ms frames at the codec's rate. Like the JitterBuffer it
// starts playing at the first packet, conceals and waits when the next
// audio is late (raising the delay by what was seen), and lowers the
// delay when it has held more than needed for a while. On a loss with
// the next packet at hand, Opus recovers the lost audio from that packet's
// in-band FEC; otherwise its PLC conceals it. G.722 has neither, and plays
// a faded, time-reversed copy of what came before (as the JitterBuffer).
type wideBuffer struct {
	w     *wideState
	pkts  [wideSlots]widePacket
	arena [wideArena]byte
	head  uint64 // absolute arena position of the next write

	primed   bool
	ssrc     uint32
	readTS   uint32 // timestamp of the next audio to decode
	highTS   uint32 // one past the newest buffered packet
	emptyRun int
	lateRun  int

	// pend[pendPos:pendN] is decoded audio not yet played.
	pend           [maxWidePend]int16
	pendPos, pendN int

	// adaptation, as the JitterBuffer's
	reads, lastUnder, lastShrink uint64
	holdoff                      uint64
	minSurplus                   int32
	windowReads                  int

	// G.722 concealment: the last output, mirrored and faded.
	hist       [g722.FrameSamples]int16
	histPos    int
	concealRun int

	stats JitterStats
}

func (b *wideBuffer) init(w *wideState) {
	b.w = w
	b.holdoff = shrinkWindow
}

// ticks converts samples at the codec's rate to RTP clock ticks.
func (b *wideBuffer) ticks(samples int) uint32 { return uint32(samples / b.w.perTick) }

// restart begins a new timeline at ts.
func (b *wideBuffer) restart(ssrc, ts uint32) {
	if b.primed && ssrc != b.ssrc && b.w.g722 != nil {
		b.w.g722.Reset() // a new stream: its coder started from the initial state
	}
	b.primed = true
	b.ssrc = ssrc
	b.readTS, b.highTS = ts, ts
	b.emptyRun, b.lateRun = 0, 0
	b.pkts = [wideSlots]widePacket{}
	b.pendPos, b.pendN = 0, 0
	b.minSurplus = 1 << 30
	b.windowReads = 0
	b.holdoff = shrinkWindow
	b.stats.Resyncs++
}

// duration returns a payload's duration in RTP clock ticks, or false for
// one the codec cannot play.
func (b *wideBuffer) duration(payload []byte) (uint32, bool) {
	if b.w.codec == G722 {
		return uint32(len(payload)), true // a code word per tick (RFC 3551 §4.5.2)
	}
	n, err := opus.PacketSamples(payload)
	if err != nil || n%120 != 0 || n > 3*opus.FrameSamples {
		return 0, false // beyond 60 ms, or not whole 2.5 ms: not what RFC 7587 peers send
	}
	return uint32(n), true
}

// put stores one packet. Invalid packets are counted and dropped.
func (b *wideBuffer) put(ssrc, ts uint32, payload []byte) {
	if len(payload) > maxWidePacket {
		b.stats.Invalid++
		return
	}
	dur, ok := b.duration(payload)
	if !ok || dur == 0 {
		b.stats.Invalid++
		return
	}
	if !b.primed || ssrc != b.ssrc {
		b.restart(ssrc, ts)
	}
	clock := int32(b.w.clock)
	maxDelay := clock / 10 // 100 ms
	d := int32(ts - b.readTS)
	if d+int32(dur) <= 0 {
		b.stats.Late++
		if d > -clock { // late by under a second: jitter
			b.lateRun = 0
			return
		}
		if b.lateRun++; b.lateRun < lateRunToRestart {
			return
		}
		b.restart(ssrc, ts) // the sender moved its timestamps back
		d = 0
	}
	b.lateRun = 0
	if d > maxDelay+clock/4 {
		b.restart(ssrc, ts) // a jump forward: follow the new timeline
		d = 0
	}
	frame := uint32(clock / 50)
	if end := d + int32(dur); end > maxDelay+int32(frame) {
		// Too far ahead of play-out: skip forward so that this packet
		// ends one frame beyond the play-out point.
		b.readTS += uint32(end) - frame
		b.pendPos, b.pendN = 0, 0
		b.stats.Resyncs++
	}
	slot := -1
	for i := range b.pkts {
		p := &b.pkts[i]
		if p.full && int32(p.ts+p.dur-b.readTS) <= 0 {
			p.full = false // played or skipped
		}
		if p.full && p.ts == ts {
			return // a duplicate
		}
		if !p.full && slot < 0 {
			slot = i
		}
	}
	if slot < 0 {
		b.stats.Late++ // no room: more packets ahead than the buffer keeps
		return
	}
	at := b.head
	if off := at % wideArena; off+uint64(len(payload)) > wideArena {
		at += wideArena - off // the packet does not fit before the end: start over
	}
	copy(b.arena[at%wideArena:], payload)
	b.head = at + uint64(len(payload))
	b.pkts[slot] = widePacket{ts: ts, dur: dur, at: at, n: uint16(len(payload)), full: true}
	if end := ts + dur; int32(end-b.highTS) > 0 {
		b.highTS = end
	}
	b.emptyRun = 0
	b.stats.Packets++
}

// bytes returns a packet's payload, or nil if the arena has since lapped it.
func (b *wideBuffer) bytes(p *widePacket) []byte {
	if b.head-p.at > wideArena {
		return nil
	}
	off := p.at % wideArena
	return b.arena[off : off+uint64(p.n)]
}

// read fills dst (one 20 ms frame at the codec's rate) and reports whether
// the stream is live; when it is not, dst is silence.
func (b *wideBuffer) read(dst []int16) bool {
	if !b.primed {
		clear(dst)
		return false
	}
	b.reads++
	got := b.take(dst)
	for got < len(dst) {
		if b.fill() {
			got += b.take(dst[got:])
			continue
		}
		if b.emptyRun++; b.emptyRun >= emptyReadsToUnprime {
			b.primed = false // the sender stopped (DTX, hold, hang-up)
			clear(dst)
			return false
		}
		// Nothing to play yet: conceal and wait for it (the delay grows
		// by what is missing).
		b.stats.Underruns++
		b.lastUnder = b.reads
		b.conceal(dst[got:])
		got = len(dst)
	}
	b.adapt()
	return true
}

// take plays decoded audio into dst and returns how many samples.
func (b *wideBuffer) take(dst []int16) int {
	n := copy(dst, b.pend[b.pendPos:b.pendN])
	b.pendPos += n
	if b.w.g722 != nil {
		b.pushHist(dst[:n])
	}
	return n
}

// fill decodes the audio at the play-out point into pend (which is
// empty): the packet there, or, when it is lost and a later packet is
// here, the gap recovered or concealed. It reports false when nothing is
// buffered at or after the play-out point.
func (b *wideBuffer) fill() bool {
	b.pendPos, b.pendN = 0, 0
	var next *widePacket
	for i := range b.pkts {
		p := &b.pkts[i]
		if !p.full {
			continue
		}
		if int32(p.ts+p.dur-b.readTS) <= 0 {
			p.full = false
			continue
		}
		if int32(p.ts-b.readTS) <= 0 {
			// The packet at the play-out point (or over it, after a skip).
			p.full = false
			skip := int(b.readTS-p.ts) * b.w.perTick
			b.readTS = p.ts + p.dur
			n := b.decode(b.bytes(p), int(p.dur)*b.w.perTick)
			b.pendPos = min(skip, n)
			b.pendN = n
			return true
		}
		if next == nil || int32(p.ts-next.ts) < 0 {
			next = p
		}
	}
	if next == nil {
		return false
	}
	// The packet at the play-out point is missing, and next is the first
	// one after it. It is given up for lost as soon as a later one is
	// here: at one frame of delay the later one is what shows the loss.
	gap := int(next.ts-b.readTS) * b.w.perTick
	gap = min(gap, opus.FrameSamples*b.w.rate/opus.SampleRate)
	b.stats.Concealed += uint64(gap)
	if b.w.opus != nil {
		gap -= gap % 120
		if gap == 0 {
			gap = 120
		}
		var err error
		if int(next.ts-b.readTS) == gap {
			// The loss ends where next begins: its FEC data carries it.
			_, err = b.w.opus.DecodeFEC(b.pend[:gap], b.bytes(next))
			b.stats.Recovered += uint64(gap)
		} else {
			_, err = b.w.opus.Conceal(b.pend[:], gap)
		}
		if err != nil {
			clear(b.pend[:gap])
		}
	} else {
		b.concealRun = 0
		b.g722Conceal(b.pend[:gap])
	}
	b.readTS += b.ticks(gap)
	b.pendN = gap
	return true
}

// decode decodes one packet of samples samples into pend and returns how
// many it wrote; a packet the codec rejects (or one the arena lost) is
// concealed.
func (b *wideBuffer) decode(payload []byte, samples int) int {
	samples = min(samples, len(b.pend))
	if payload != nil {
		if b.w.g722 != nil {
			b.concealRun = 0
			return b.w.g722.Decode(b.pend[:samples], payload)
		}
		if n, err := b.w.opus.Decode(b.pend[:], payload); err == nil {
			return n
		}
	}
	b.stats.Concealed += uint64(samples)
	if b.w.opus != nil {
		if _, err := b.w.opus.Conceal(b.pend[:], samples-samples%120); err != nil {
			clear(b.pend[:samples])
		}
		return samples
	}
	b.g722Conceal(b.pend[:samples])
	return samples
}

// conceal fills dst for audio that has not arrived yet; the play-out
// point stays, so the audio is played when it comes.
func (b *wideBuffer) conceal(dst []int16) {
	b.stats.Concealed += uint64(len(dst))
	if b.w.opus != nil {
		n := len(dst) - len(dst)%120
		if n > 0 {
			if _, err := b.w.opus.Conceal(dst, n); err != nil {
				clear(dst[:n])
			}
		}
		clear(dst[n:])
		return
	}
	b.g722Conceal(dst)
}

// g722Conceal plays the output before the gap mirrored in time, under a
// linear fade to silence over one frame (as the JitterBuffer's conceal).
func (b *wideBuffer) g722Conceal(dst []int16) {
	const n = g722.FrameSamples
	for i := range dst {
		k := b.concealRun
		b.concealRun++
		if k >= n {
			dst[i] = 0
			continue
		}
		idx := (b.histPos - 1 - k + 2*n) % n
		dst[i] = int16(int32(b.hist[idx]) * int32(n-k) / n)
	}
}

// pushHist appends played G.722 audio to the concealment history.
func (b *wideBuffer) pushHist(s []int16) {
	n := len(b.hist)
	if len(s) > n {
		s = s[len(s)-n:]
	}
	k := copy(b.hist[b.histPos:], s)
	copy(b.hist[:], s[k:])
	b.histPos = (b.histPos + len(s)) % n
}

// adapt lowers the delay when the buffer has held more than it needed for
// a whole window without an underrun (as the JitterBuffer's adapt), by
// dropping buffered audio at the start of the next packet's decode.
func (b *wideBuffer) adapt() {
	surplus := int32(b.highTS - b.readTS)
	b.minSurplus = min(b.minSurplus, surplus)
	b.windowReads++
	if b.windowReads < shrinkWindow {
		return
	}
	minSurplus := b.minSurplus
	b.windowReads = 0
	b.minSurplus = 1 << 30
	sinceUnder := b.reads - b.lastUnder
	if b.lastShrink != 0 && b.lastUnder > b.lastShrink && b.lastUnder-b.lastShrink < 2*shrinkWindow {
		b.holdoff = min(b.holdoff*2, 16*shrinkWindow) // the last shrink was premature
		b.lastShrink = 0
	}
	if sinceUnder >= 8*b.holdoff && b.holdoff > shrinkWindow {
		b.holdoff /= 2
	}
	half := int32(b.w.clock / 100) // 10 ms
	if sinceUnder < b.holdoff || minSurplus < half {
		return
	}
	// Drop whole packets' worth from the front of what is buffered: the
	// next fill starts at the later timestamp, and the packets before it
	// are discarded unplayed (the decoder resumes on the next one, which
	// Opus and G.722 both take with a brief transition).
	b.readTS += uint32(minSurplus / half * half)
	b.lastShrink = b.reads
	b.stats.Shrinks++
}

// wideEncoder encodes frames at a room's mix rate in G.722 or Opus: it
// resamples to the codec's rate when they differ and keeps the codec's
// state across rate changes (setRate swaps only the resampler), so a
// listener's stream stays one stream when its room changes rate.
type wideEncoder struct {
	codec Codec
	rate  int // the room's
	g722  *g722.Encoder
	opus  *opus.Encoder
	// down brings the room's rate to the codec's (a delay line when they
	// are equal, so that every path delays alike); prevDown is the path
	// of the rate before, until encodeSwitch has handed over from it.
	down, prevDown *resample.Resampler
	frame, next    [opus.FrameSamples]int16
}

func newWideEncoder(codec Codec, rate int, cfg opus.Config) (*wideEncoder, error) {
	e := &wideEncoder{codec: codec}
	switch codec {
	case G722:
		e.g722 = g722.NewEncoder()
	case Opus:
		if cfg.Bitrate == 0 {
			cfg = opus.DefaultConfig()
		}
		enc, err := opus.NewEncoder(cfg)
		if err != nil {
			return nil, fmt.Errorf("media: Opus encoder: %w", err)
		}
		e.opus = enc
	default:
		return nil, fmt.Errorf("media: %s is not a wideband codec", codec)
	}
	if err := e.setRate(rate); err != nil {
		return nil, err
	}
	e.prevDown = nil // a new stream has nothing to hand over from
	return e, nil
}

// setRate makes the encoder take frames at rate. It allocates.
func (e *wideEncoder) setRate(rate int) error {
	down, err := resample.New(rate, e.codec.AudioRate())
	if err != nil {
		return fmt.Errorf("media: %s encoder at %d Hz: %w", e.codec, rate, err)
	}
	e.prevDown, e.down = e.down, down
	e.rate = rate
	return nil
}

// SetRate implements RateSwitcher.
func (e *wideEncoder) SetRate(rate int) error { return e.setRate(rate) }

// EncodeSwitch implements RateSwitcher.
func (e *wideEncoder) EncodeSwitch(dst []byte, old, cur []int16) int {
	if e.prevDown == nil {
		return e.Encode(dst, cur)
	}
	return e.encodeSwitch(dst, old, cur)
}

// encodeSwitch encodes the tick of a rate change: old converted by the
// old path and cur by the new, joined by a crossfade at the codec's rate.
func (e *wideEncoder) encodeSwitch(dst []byte, old, cur []int16) int {
	n := e.prevDown.Process(e.frame[:], old)
	e.prevDown = nil
	e.down.Process(e.next[:], cur)
	resample.Crossfade(e.frame[:n], e.frame[:n], e.next[:n], e.codec.AudioRate())
	return e.encodeFrame(dst, e.frame[:n])
}

// Encode implements Encoder. It returns 0 (nothing to send) if the codec
// fails, which a frame of the right length never makes it do.
func (e *wideEncoder) Encode(dst []byte, pcm []int16) int {
	n := e.down.Process(e.frame[:], pcm)
	return e.encodeFrame(dst, e.frame[:n])
}

// encodeFrame encodes a frame at the codec's rate.
func (e *wideEncoder) encodeFrame(dst []byte, pcm []int16) int {
	if e.g722 != nil {
		return e.g722.Encode(dst, pcm)
	}
	n, err := e.opus.Encode(dst, pcm)
	if err != nil {
		return 0
	}
	return n
}

// pullSwitch is PullSwitch of a wideband call: the old path and the new,
// primed with the frame decoded before (still in w.frame), convert this
// tick's decoded frame (package resample).
func (w *wideState) pullSwitch(old, cur []int16) bool {
	prev := w.prevUp
	w.prevUp = nil
	if prev == nil || w.inFrom == 0 || len(old) != w.inFrom/50 {
		clear(old)
		frame := w.frame[:w.rate/50]
		live := w.buf.read(frame)
		w.up.Process(cur, frame)
		return live
	}
	w.inFrom = 0
	frame := w.frame[:w.rate/50]
	w.up.Prime(frame)
	live := w.buf.read(frame)
	prev.Process(old, frame)
	w.up.Process(cur, frame)
	return live
}
