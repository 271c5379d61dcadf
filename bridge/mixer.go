package bridge

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"chorus/media"
	"chorus/media/opus"
	"chorus/media/resample"
)

// TickInterval is the mixer's clock: one 20 ms frame per tick.
const TickInterval = 20 * time.Millisecond

// maxCatchUp is how late a tick may be before the mixer gives up on the
// missed ticks and restarts its clock (bounded catch-up).
const maxCatchUp = 5 * TickInterval

// timeoutCheckTicks is how often (in ticks) RTP timeouts are checked.
const timeoutCheckTicks = 50

const numLevels = MaxLevel - MinLevel + 1

// sharedOut is one encoded output shared by every listener that would get
// the same bytes (not a talker, same codec, same receive level, and for
// Opus the same encoder configuration): the mixer encodes it once a tick
// with an Encoder of its own, and each of those listeners' endpoints sends
// the payload as it is.
//
// G.722 and Opus encoders keep state, so a shared output is one stream
// that its listeners join and leave: a listener who starts talking gets
// its endpoint's own encoder, and one who stops goes back to the shared
// stream. Its timestamps and sequence numbers are its session's and stay
// continuous; what its decoder sees at such a switch is another encoder's
// state, which G.722's backward adaptation and Opus's decoder absorb
// within a few milliseconds (a brief glitch at the start and end of each
// of its talk spurts, as in other mixing bridges that share encodes), for
// the price of an encode per listener a tick otherwise.
type sharedOut struct {
	tick    uint64
	enc     media.Encoder
	n       int    // bytes of payload this tick (0: nothing to send)
	payload []byte // G.711 and G.722: 160 bytes a 20 ms frame; Opus: up to a 1276-byte packet
	// cfg is the Opus configuration of this output; next links the Opus
	// outputs of one receive level with other configurations.
	cfg  opus.Config
	next *sharedOut
}

// mixer is the per-conference state of the mixer goroutine.
type mixer struct {
	loudestN int
	tick     uint64
	// rate is the room's mix rate (8000 Hz unless setRate changed it) and
	// frame the samples of one tick at it; acc, room and out are that long.
	rate, frame int
	acc         []int32
	room        []int16
	out         []int16 // a shared output before its encode
	talkers     []*Member
	// snap is the member snapshot the rate was chosen for.
	snap *[]*Member
	// shared is made on first use: most rooms only ever need one or two
	// of these (codec × receive level), and a room of 5 should not carry
	// KiBs of them.
	shared [media.NumCodecs][numLevels]*sharedOut // by media.Codec, receive level
	// switching marks the tick after a rate change, which is mixed at the
	// old rate (into oldAcc and oldOut, the room's playbacks through
	// their old paths, see Playback.read) as well as at the new, so that
	// every output hands over from one to the other without a click
	// (package resample). The old buffers are dropped after it.
	switching       bool
	oldAcc          []int32
	oldRoom, oldOut []int16
	// silence is a frame of silence per codec, for held and waiting
	// members: G.711's made with the mixer, the others' at first use.
	silence [media.NumCodecs][]byte
	// buf backs acc at 8 kHz, and room and out: a narrowband room costs
	// what it did before rooms had rates.
	buf   [media.FrameSamples]int32
	buf16 [2 * media.FrameSamples]int16
	// callRec is the frame a recording call's tap gets (tapCall), made
	// when a room first has one.
	callRec []int32
}

func newMixer(loudestN int) *mixer {
	x := &mixer{loudestN: loudestN, rate: media.ClockRate, frame: media.FrameSamples}
	x.acc = x.buf[:]
	x.room, x.out = x.buf16[:media.FrameSamples], x.buf16[media.FrameSamples:]
	x.talkers = make([]*Member, 0, loudestN+1)
	for _, c := range []media.Codec{media.PCMU, media.PCMA} {
		x.silence[c] = make([]byte, media.FrameSamples)
		for i := range x.silence[c] {
			x.silence[c][i] = c.Silence()
		}
	}
	return x
}

// setRate makes the room mix at rate (8000, 16000 or 48000 Hz) from the
// next tick on: its members' frames and endpoints follow at their next
// tick. It allocates; only the goroutine that runs the room's ticks calls
// it, between ticks. Rooms mix at 8 kHz until negotiation brings wideband
// codecs (issue 12); tests set other rates.
func (x *mixer) setRate(rate int) error {
	if rate == x.rate {
		return nil
	}
	if rate != 8000 && rate != 16000 && rate != 48000 {
		return fmt.Errorf("mix at %d Hz: %w", rate, resample.ErrRate)
	}
	switch {
	case !x.switching && x.tick > 0:
		// Keep the old rate's buffers and paths for the switching tick
		// (a second change before it keeps the first's old rate).
		x.switching = true
		x.oldAcc, x.oldRoom, x.oldOut = x.acc, x.room, x.out
	case x.switching && rate == 50*len(x.oldAcc):
		// Back to the old rate before any tick mixed at the other: no
		// hand-over (the members never left the old rate).
		x.endSwitch(nil)
	}
	n := rate / 50
	if rate == media.ClockRate {
		x.acc = x.buf[:]
		x.room, x.out = x.buf16[:n], x.buf16[n:]
	} else {
		x.acc, x.room, x.out = make([]int32, n), make([]int16, n), make([]int16, n)
	}
	x.rate, x.frame = rate, n
	// The shared outputs' encoders hand over to the new rate (their
	// listeners' decoders keep one stream); one that cannot is dropped
	// and made afresh at the new rate.
	for c := range x.shared {
		for l, head := range x.shared[c] {
			for sh := head; sh != nil; sh = sh.next {
				if rs, ok := sh.enc.(media.RateSwitcher); !ok || rs.SetRate(rate) != nil {
					x.shared[c][l] = nil
					break
				}
			}
		}
	}
	return nil
}

// endSwitch drops what the switching tick needed.
func (x *mixer) endSwitch(members []*Member) {
	x.switching = false
	x.oldAcc, x.oldRoom, x.oldOut = nil, nil, nil
	for _, m := range members {
		m.mx.sw = nil
	}
}

// followRate sets the room's mix rate to the highest its members can
// hear, up to Config.MaxMixRate: an all-G.711 room stays at 8 kHz. It runs
// when the member snapshot changes, so a room changes rate only when
// someone comes or goes.
func (c *Conference) followRate(members []*Member) {
	x := c.mix
	rate := media.ClockRate
	for _, m := range members {
		rate = max(rate, m.ep.MaxRate())
	}
	rate = min(rate, c.b.cfg.MaxMixRate)
	if rate == x.rate {
		return
	}
	if err := x.setRate(rate); err != nil {
		c.log.Error("room cannot mix at its members' rate", "rate", rate, "err", err)
		return
	}
	c.log.Info("room mixes at a new rate", "rate", rate)
}

// adopt brings a member to the room's rate: its frames and its endpoint.
// The mixer calls it at the first tick a member's frames do not fit: the
// tick after a rate change (which hands over, see mixer.switching), or a
// member's first.
func (c *Conference) adopt(m *Member, rate int) {
	handover := c.mix.switching && len(m.mx.in) == len(c.mix.oldAcc)
	if err := m.mx.setRate(rate, handover); err != nil {
		m.logger().Error("member cannot follow the room's rate", "rate", rate, "err", err)
	}
	if err := m.ep.SetRate(rate); err != nil {
		m.logger().Error("endpoint cannot follow the room's rate", "rate", rate, "err", err)
	}
}

// run is the mixer goroutine of a big conference (see dedicatedMembers):
// one mixOnce per 20 ms tick until ctx ends.
func (c *Conference) run(ctx context.Context) {
	st := c.b.stats
	p := newPacer(ctx, c.b)
	defer p.stop()
	defer func() {
		if c.ended.Load() { // not a parked room, whose next caller mixes on
			c.releaseEnded() // the members and mixer of a finished conference
		}
	}()
	w := newTickWorker()
	for {
		now, ok := p.wait()
		if !ok {
			return
		}
		c.safeMixOnce(now, w)
		w.flush(st)
		st.TickNanos.Add(uint64(time.Since(now)))
		if len(*c.members.Load()) == 0 && c.park() {
			return
		}
	}
}

// park stops mixing a room that nobody ever got into and whose last caller
// waiting for the PIN left: it stays created, and its next caller starts
// its mixer again (AddMember). It reports whether the room was parked; the
// goroutine that ticks it then drops it. (An active room whose last member
// leaves completes instead.)
func (c *Conference) park() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(*c.members.Load()) != 0 || c.state != StateCreated || !c.mixing {
		return false
	}
	c.mixing = false
	return true
}

// safeMixOnce runs a tick; a panic (a bug) is logged and counted and the
// conference goes on with its next tick rather than taking every call of
// the process down.
func (c *Conference) safeMixOnce(now time.Time, w *tickWorker) {
	defer func() {
		if r := recover(); r != nil {
			if c.b.stats.Panics.Add(1) <= 10 {
				c.log.Error("mixer panic", "panic", r, "stack", string(debug.Stack()))
			}
		}
	}()
	c.mixTick(now, w)
}

// mixOnce runs one tick with a receive buffer of its own. Tests call it
// directly to step the mixer without the clock.
func (c *Conference) mixOnce(now time.Time) {
	if c.testWorker == nil {
		c.testWorker = newTickWorker()
	}
	w := c.testWorker // a tick that finds the room ended drops it
	c.mixTick(now, w)
	w.flush(c.b.stats)
}

// tickWorker is what a goroutine running mixer ticks owns: the receive
// memory every socket it drains shares (a clock shard's rooms share one),
// and counters it adds to Stats once per round rather than with five
// contended atomics per room per tick.
type tickWorker struct {
	rx                             *media.RecvBuffer
	ticks, mixed, encodes, in, out uint64
	rtp                            rtpDelta // members' reception figures
}

func newTickWorker() *tickWorker { return &tickWorker{rx: media.NewRecvBuffer()} }

// flush adds the counters to st and zeroes them.
func (w *tickWorker) flush(st *Stats) {
	st.Ticks.Add(w.ticks)
	st.Mixed.Add(w.mixed)
	st.Encodes.Add(w.encodes)
	st.PacketsIn.Add(w.in)
	st.PacketsOut.Add(w.out)
	w.ticks, w.mixed, w.encodes, w.in, w.out = 0, 0, 0, 0, 0
	w.rtp.flush(st)
}

// mixTick runs one tick: pull every member's endpoint, mix, push every
// member's endpoint.
func (c *Conference) mixTick(now time.Time, w *tickWorker) {
	if c.ended.Load() {
		c.releaseEnded() // a room stepped by hand after it completed
		return
	}
	x := c.mix
	x.tick++
	if c.goneCount.Load() > 0 {
		c.releaseGone()
	}
	w.ticks++
	snap := c.members.Load()
	members := *snap
	if snap != x.snap {
		x.snap = snap
		c.followRate(members) // someone came or went
	}

	// 1. Input: each endpoint takes in what arrived, its digits act, and
	// its next frame is pulled and gated.
	var polled uint64
	for _, m := range members {
		ep := m.ep
		if len(m.mx.in) != x.frame {
			c.adopt(m, x.rate) // joined, or the room changed rate
		}
		polled += uint64(ep.Receive(now, w.rx))
		for _, d := range ep.Digits() {
			c.handleDigit(m, d)
		}
		waiting := m.waiting.Load()
		if waiting {
			c.lobbyTick(m, now)
		}
		// A phone that holds the call still sends (hold music), and a
		// caller in the lobby is not in the room yet: the frame is taken
		// from the buffer (nothing old is left to play once it joins) and
		// treated as silence.
		var live bool
		if sw := m.mx.sw; sw != nil {
			live = ep.PullSwitch(sw.in, m.mx.in)
		} else {
			live = ep.Pull(m.mx.in)
		}
		m.gate(live && !m.phoneHold.Load() && !waiting)
	}
	w.in += polled

	// 2. Choose the talkers: open gate, not muted or held (by the room or
	// by the phone), loudest first.
	x.talkers = x.talkers[:0]
	for _, m := range members {
		wasSelected := m.selected
		m.selected = false
		if m.hang == 0 || m.Muted() || m.Held() || m.phoneHold.Load() || m.waiting.Load() {
			continue
		}
		score := m.smooth
		if wasSelected {
			score *= 2 // hysteresis: a current talker keeps its place against a close rival
		}
		x.insertTalker(m, score)
	}

	// 3. Sum the talkers (with talk gain) and the room's playbacks.
	acc := x.acc
	clear(acc)
	for _, m := range x.talkers {
		m.selected = true
		g := gainQ14[m.talk.Load()-MinLevel]
		m.talkGain = g // phase 4 subtracts exactly this, even if the level changes meanwhile
		for i, s := range m.mx.in[:len(acc)] {
			acc[i] += int32(s) * g >> 14
		}
	}
	w.mixed += uint64(len(x.talkers))
	if x.switching {
		x.mixOld(&c.audio, &c.tone)
	} else {
		if c.audio.frame(x.room) {
			for i, s := range x.room[:len(acc)] {
				acc[i] += int32(s)
			}
		}
		if c.tone.frame(x.room) {
			for i, s := range x.room[:len(acc)] {
				acc[i] += int32(s)
			}
		}
	}
	// The room's full mix to its recording, if it records: one copy into
	// the tap's ring (recording.go). A room that does not record pays this
	// load and nil check.
	if r := c.rec.Load(); r != nil {
		r.tap.put(acc, x.rate)
	}

	// 4. Output: each member hears the sum minus itself, limited, and
	// pushed to its endpoint: its own frame (a talker, or a member with
	// audio of its own) or a payload encoded once for everyone who hears
	// the same mix.
	var sent, encodes uint64
	// Calls that record (recording.go) are tapped after their output; a
	// room with none pays this one load.
	tapCalls := c.recCalls.Load() > 0
	for _, m := range members {
		if did, err := m.sendDTMF(); did {
			// A DTMF out packet takes this tick's place (dtmfout.go).
			if err == nil {
				sent++
			}
			if tapCalls {
				c.tapCall(m, nil, false)
			}
			continue
		}
		ep := m.ep
		codec := ep.Codec()
		if codec == media.CodecInvalid || int(codec) >= media.NumCodecs {
			codec = media.PCMU
		}
		var err error
		// heard is what the member hears this tick when it is its own
		// frame (nil: silence, or the shared mix when shared), for its
		// call's recording.
		var heard []int16
		shared := false
		switch {
		case m.waiting.Load():
			// In the lobby: its prompts only, nothing of the room.
			if m.audio.playing() && m.mx.privFrame(&m.audio) {
				mx := m.mx
				g := int64(gainQ14[m.receive.Load()-MinLevel])
				for i, v := range mx.priv {
					mx.priv[i] = limit(int64(v) * g >> 14)
				}
				encodes++
				err = ep.Push(mx.priv)
				heard = mx.priv
				break
			}
			err = x.pushSilence(ep, codec)
		case m.Held():
			err = x.pushSilence(ep, codec)
		default:
			rx := m.receive.Load() - MinLevel
			// A listener hearing the shared mix never touches its mixState
			// here: at 1000 members those cache misses were a third of the
			// tick's own time.
			private := m.audio.playing() && m.mx.privFrame(&m.audio)
			if !m.selected && !private {
				sh := x.shared[codec][rx]
				if codec == media.Opus {
					sh = x.opusShared(sh, ep.OpusConfig(), rx)
				} else if sh == nil {
					sh = x.newShared(codec, opus.Config{})
					x.shared[codec][rx] = sh
				}
				if sh.tick != x.tick && sh.enc != nil {
					sh.tick = x.tick
					g := int64(gainQ14[rx])
					out := x.out[:len(acc)]
					for i, v := range acc {
						out[i] = limit(int64(v) * g >> 14)
					}
					if x.switching {
						sh.n = x.encodeSwitch(sh, out, g)
					} else {
						sh.n = sh.enc.Encode(sh.payload, out)
					}
					encodes++
				}
				if sh.n > 0 {
					err = ep.PushShared(sh.payload[:sh.n])
				}
				shared = true
				break
			}
			mx := m.mx
			g := int64(gainQ14[rx])
			tg := m.talkGain
			in, priv := mx.in[:len(acc)], mx.priv[:len(acc)]
			switch {
			case m.selected && !private: // a talker: everyone but itself
				for i, v := range acc {
					v -= int32(in[i]) * tg >> 14
					priv[i] = limit(int64(v) * g >> 14)
				}
			default:
				for i, v := range acc {
					if m.selected {
						v -= int32(in[i]) * tg >> 14
					}
					if private {
						v += int32(priv[i])
					}
					priv[i] = limit(int64(v) * g >> 14)
				}
			}
			encodes++
			if sw := mx.sw; sw != nil && x.switching {
				err = ep.PushSwitch(x.privOld(m, sw, g), priv)
				break
			}
			err = ep.Push(priv)
			heard = priv
		}
		if err == nil {
			sent++
		}
		if tapCalls {
			c.tapCall(m, heard, shared)
		}
	}
	w.out += sent
	w.encodes += encodes
	if x.switching {
		x.endSwitch(members)
	}

	// 5. RTP timeouts, and the rate again: a re-INVITE may have changed
	// what a member can hear (its codec, its Opus maxplaybackrate).
	if x.tick%timeoutCheckTicks == 0 {
		c.checkTimeouts(now, members)
		c.followRate(members)
	}

	// 6. Live reception figures: each member's once every statsTicks, a
	// share of the members each tick.
	for i := int(x.tick % statsTicks); i < len(members); i += statsTicks {
		members[i].takeStats(&w.rtp, true)
	}
}

// takeStats adds what the member's endpoint counted since the last time
// to d; sample adds its jitter to the histogram if audio arrived
// meanwhile (a silent or held phone's jitter is old news). Members on
// endpoints in memory (tests) have no figures.
func (m *Member) takeStats(d *rtpDelta, sample bool) {
	if m.epv.Session() == nil {
		return
	}
	ls := m.epv.TakeStats()
	d.add(ls, sample && ls.Buffer.Packets > 0)
}

// newShared makes the shared output of codec at the room's rate (cfg
// sets up Opus). The encoder cannot fail for a rate setRate accepted (it
// built resamplers of that rate) unless libopus is missing; then the
// listeners get nothing rather than a panic.
func (x *mixer) newShared(codec media.Codec, cfg opus.Config) *sharedOut {
	size := media.MaxHandoverBytes // G.711: a frame, or the longer one of a rate change
	if codec == media.Opus {
		size = opus.MaxPacketBytes
	}
	sh := &sharedOut{payload: make([]byte, size), cfg: cfg}
	if enc, err := media.NewEncoder(codec, x.rate, cfg); err == nil {
		sh.enc = enc
	} else if codec.Stateless() {
		sh.n = copy(sh.payload, x.silenceOf(codec))
	}
	return sh
}

// opusShared finds the Opus output of receive level rx whose encoder
// configuration is cfg, among those in the list from head, making it if
// there is none. Peers' configurations differ only by their fmtp, which
// OpusConfig normalises, so a room has one or two.
func (x *mixer) opusShared(head *sharedOut, cfg opus.Config, rx int32) *sharedOut {
	for sh := head; sh != nil; sh = sh.next {
		if sh.cfg == cfg {
			return sh
		}
	}
	sh := x.newShared(media.Opus, cfg)
	sh.next = head
	x.shared[media.Opus][rx] = sh
	return sh
}

// pushSilence sends a frame of silence in codec to ep.
func (x *mixer) pushSilence(ep Endpoint, codec media.Codec) error {
	if s := x.silenceOf(codec); len(s) > 0 {
		return ep.PushShared(s)
	}
	return nil
}

// silenceOf returns a frame of silence in codec: for G.722 and Opus the
// encode of a silent frame, made at first use (a listener's decoder takes
// it whatever state it is in).
func (x *mixer) silenceOf(codec media.Codec) []byte {
	if s := x.silence[codec]; s != nil {
		return s
	}
	enc, err := media.NewEncoder(codec, media.ClockRate, opus.Config{})
	if err != nil {
		return nil
	}
	var zero [media.FrameSamples]int16
	buf := make([]byte, opus.MaxPacketBytes)
	n := 0
	for range 10 { // past the encoder's start-up
		n = enc.Encode(buf, zero[:])
	}
	x.silence[codec] = buf[:n:n]
	return x.silence[codec]
}

// releaseGone frees the memory of members that left before this tick: no
// snapshot the mixer will read holds them any more.
func (c *Conference) releaseGone() {
	c.mu.Lock()
	gone := c.gone
	c.gone = nil
	c.goneCount.Store(0)
	c.mu.Unlock()
	for _, m := range gone {
		m.release()
	}
}

// releaseEnded frees what a completed conference no longer needs: its
// members' audio memory and its mixer's. Only the goroutine that ran the
// room's ticks calls it, once no tick of the room can follow.
func (c *Conference) releaseEnded() {
	c.releaseGone()
	c.mix = nil
	c.testWorker = nil
}

// insertTalker keeps x.talkers sorted by score, at most loudestN long.
func (x *mixer) insertTalker(m *Member, score int32) {
	i := len(x.talkers)
	for i > 0 && x.talkers[i-1].score() < score {
		i--
	}
	if i >= x.loudestN {
		return
	}
	m.scoreVal = score
	x.talkers = append(x.talkers, nil)
	copy(x.talkers[i+1:], x.talkers[i:])
	x.talkers[i] = m
	if len(x.talkers) > x.loudestN {
		x.talkers = x.talkers[:x.loudestN]
	}
}

// gate measures this tick's frame and runs the noise gate: it opens at once
// on a frame at or above the threshold, or on a rising onset at half the
// threshold (so the soft start of a word is not cut), and stays open for
// the hangover after the last such frame.
func (m *Member) gate(live bool) {
	var e int32
	if live {
		var sum int32
		for _, s := range m.mx.in {
			if s < 0 {
				sum -= int32(s)
			} else {
				sum += int32(s)
			}
		}
		e = sum / int32(len(m.mx.in))
	}
	th := gateThreshold[m.sens.Load()-MinLevel]
	switch {
	case e >= th, e >= th/2 && e >= 2*m.prevE && m.prevE > 0:
		m.hang = hangoverFrames
	case m.hang > 0:
		m.hang--
	}
	m.prevE = e
	m.smooth += (e - m.smooth) / 4
	if open := m.hang > 0; open != m.talking.Load() {
		m.talking.Store(open)
	}
}

// checkTimeouts hangs up members whose media is gone: after the hold
// timeout a call held since then (its direction not sendrecv: it may send
// nothing at all); after the RTP timeout a call that is not held and whose
// RTP stopped, or any call that never proved its RTP address (a forged or
// dead SDP address, whatever its direction). It runs once every
// timeoutCheckTicks and reads only the sessions' atomics, no lock.
func (c *Conference) checkTimeouts(now time.Time, members []*Member) {
	cfg := &c.b.cfg
	for _, m := range members {
		s := m.ep
		heldSince, held := s.HeldSince()
		if held {
			if d := now.Sub(heldSince); d > cfg.RTPHoldTimeout && m.timingOut.CompareAndSwap(false, true) {
				m.logger().Info("hold timeout", "held_for", d.Round(time.Second))
				go c.removeMember(m, true, CauseHoldTimeout)
				continue
			}
		}
		if proven := s.Proven(); !held || !proven {
			if d := now.Sub(s.LastReceived()); d > cfg.RTPTimeout && m.timingOut.CompareAndSwap(false, true) {
				m.logger().Info("rtp timeout", "silent_for", d.Round(time.Second), "proven", proven)
				go c.removeMember(m, true, CauseRTPTimeout)
			}
		}
	}
}

// Hang-up causes of the media timeouts.
const (
	CauseRTPTimeout  = "rtp-timeout"
	CauseHoldTimeout = "rtp-hold-timeout"
)

// mixOld makes the switching tick's mix at the old rate in x.oldAcc: the
// talkers' frames at that rate (with this tick's talk gains) and the
// room's playbacks through their old paths; the new rate's gets the
// room's playbacks through their new paths here too.
func (x *mixer) mixOld(audio, tone *slot) {
	acc, old := x.acc, x.oldAcc
	clear(old)
	for _, m := range x.talkers {
		sw := m.mx.sw
		if sw == nil || len(sw.in) != len(old) {
			continue
		}
		g := m.talkGain
		for i, s := range sw.in {
			old[i] += int32(s) * g >> 14
		}
	}
	for _, s := range [...]*slot{audio, tone} {
		if !s.frameSwitch(x.oldRoom, x.room) {
			continue
		}
		for i, s := range x.room[:len(acc)] {
			acc[i] += int32(s)
		}
		for i, s := range x.oldRoom[:len(old)] {
			old[i] += int32(s)
		}
	}
}

// encodeSwitch encodes a shared output in the switching tick: out is the
// new rate's frame; the old rate's is made here at receive gain g.
func (x *mixer) encodeSwitch(sh *sharedOut, out []int16, g int64) int {
	rs, ok := sh.enc.(media.RateSwitcher)
	if !ok {
		return sh.enc.Encode(sh.payload, out)
	}
	old := x.oldOut[:len(x.oldAcc)]
	for i, v := range x.oldAcc {
		old[i] = limit(int64(v) * g >> 14)
	}
	return rs.EncodeSwitch(sh.payload, old, out)
}

// privOld makes a member's own output at the old rate in the switching
// tick (the mix minus itself if it talks, at receive gain g) in sw.priv.
// Audio to the member alone is left out of it: the hand-over fades from
// this frame to the new rate's, which has it.
func (x *mixer) privOld(m *Member, sw *mixSwitch, g int64) []int16 {
	old := sw.priv
	if len(old) != len(x.oldAcc) || len(sw.in) != len(old) {
		clear(old)
		return old
	}
	tg := m.talkGain
	for i, v := range x.oldAcc {
		if m.selected {
			v -= int32(sw.in[i]) * tg >> 14
		}
		old[i] = limit(int64(v) * g >> 14)
	}
	return old
}
