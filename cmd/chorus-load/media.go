package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"

	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/emiago/sipgo"
	"github.com/pion/rtp"

	"chorus/internal/audiotest"
	"chorus/media"
	"chorus/media/g722"
	"chorus/media/opus"
)

const (
	frameDur   = 20 * time.Millisecond
	maxPayload = 1400 // bytes of one sent RTP payload at most (Opus at 510 kbit/s is 1275)
	noiseLoop  = 50   // frames of pre-encoded noise (1 s)
	readBatch  = 8    // datagrams per recvmmsg
	maxCatchUp = 5    // ticks a sender may run behind before it skips ahead
)

// caller is one simulated phone: a SIP dialog on the shared user agent and
// its own RTP socket, driven by the shared sender and reader goroutines.
type caller struct {
	idx     int
	room    int // 0-based room index
	talker  int // tone slot, or −1 for a silent caller
	sampled bool
	sock    *udpSocket
	local   netip.AddrPort

	// signalling: written by the call goroutine, read after it ends
	attempted  bool
	dlg        *sipgo.DialogClientSession
	setup      time.Duration
	answeredAt time.Time
	setupErr   error
	byeErr     error

	byeFromBridge atomic.Bool

	// media
	remote      netip.AddrPort // set before active
	remoteSA    syscall.RawSockaddrAny
	remoteSALen uint32
	active      atomic.Bool // answered: the reader drains the socket
	started     atomic.Bool // the bridge's first packet arrived: the sender sends

	// sender state (one sender goroutine)
	ssrc     uint32
	seq      uint16
	ts0      uint32
	startF   int64
	sending  bool
	sent     atomic.Uint64
	sendErrs atomic.Uint64

	// reader state (one reader goroutine)
	recvCount      atomic.Uint64
	haveSeq        bool
	baseSeq, maxSq int64   // extended sequence numbers
	rec            []int16 // at the codec's audio rate (sampled callers only)
	dec            *decoder
}

// decoder is a sampled caller's G.722 or Opus decoder state (G.711 needs
// none): these codecs carry state from packet to packet.
type decoder struct {
	g722 *g722.Decoder
	opus *opus.Decoder
}

// newDecoder returns the decoder of codec, nil for G.711.
func newDecoder(codec media.Codec) (*decoder, error) {
	switch codec {
	case media.G722:
		return &decoder{g722: g722.NewDecoder()}, nil
	case media.Opus:
		d, err := opus.NewDecoder()
		if err != nil {
			return nil, fmt.Errorf("opus decoder: %w", err)
		}
		return &decoder{opus: d}, nil
	}
	return nil, nil
}

// lost returns how many packets from the bridge never arrived, from the
// span of sequence numbers seen.
func (c *caller) lost() uint64 {
	if !c.haveSeq {
		return 0
	}
	exp := uint64(c.maxSq - c.baseSeq + 1)
	if got := c.recvCount.Load(); got < exp {
		return exp - got
	}
	return 0
}

func (c *caller) gotSeq(seq uint16) {
	if !c.haveSeq {
		c.haveSeq = true
		c.baseSeq, c.maxSq = int64(seq), int64(seq)
		return
	}
	e := c.maxSq + int64(int16(seq-uint16(c.maxSq)))
	if e > c.maxSq {
		c.maxSq = e
	}
}

func makeCallers(cfg Config) ([]*caller, error) {
	ip, err := netip.ParseAddr(cfg.LocalIP)
	if err != nil {
		return nil, fmt.Errorf("--local-ip: %w", err)
	}
	sampled := map[int]bool{}
	if cfg.Sample > 0 {
		for k := range cfg.Sample {
			sampled[k*cfg.Callers/cfg.Sample] = true
		}
		for i := range min(cfg.TalkersPerRoom*cfg.Rooms, cfg.Callers) {
			if i/cfg.Rooms < cfg.TalkersPerRoom && i%cfg.Rooms == 0 {
				sampled[i] = true // the talkers of the first room
			}
		}
	}
	cs := make([]*caller, 0, cfg.Callers)
	for i := range cfg.Callers {
		sock, err := listenUDP(netip.AddrPortFrom(ip, 0))
		if err != nil {
			for _, c := range cs {
				c.sock.Close()
			}
			return nil, fmt.Errorf("RTP socket %d: %w (raise ulimit -n?)", i, err)
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		c := &caller{idx: i, room: i % cfg.Rooms, talker: -1, sock: sock, local: sock.local,
			ssrc: binary.BigEndian.Uint32(b[:4]), seq: binary.BigEndian.Uint16(b[4:6]),
			ts0: uint32(binary.BigEndian.Uint16(b[6:8])) << 8}
		if slot := i / cfg.Rooms; slot < cfg.TalkersPerRoom {
			c.talker = slot
		}
		if sampled[i] {
			c.sampled = true
			c.rec = make([]int16, 0, (recordFrames+4)*cfg.Codec.AudioRate()/50)
			if c.dec, err = newDecoder(cfg.Codec); err != nil {
				sock.Close()
				for _, c := range cs {
					c.sock.Close()
				}
				return nil, err
			}
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// audioSrc holds the pre-encoded payloads every caller loops over, one
// per 20 ms frame.
type audioSrc struct {
	tones [][][]byte // per talker slot: tonePeriods[k] frames
	noise [][]byte   // noiseLoop frames
}

// frameEncoder codes one 20 ms frame of PCM at the codec's audio rate.
type frameEncoder func(dst []byte, pcm []int16) (int, error)

// newEncoder returns a fresh encoder of codec. G.722 and Opus keep state
// from frame to frame, so each loop is encoded by its own.
func newEncoder(codec media.Codec) (frameEncoder, error) {
	switch codec {
	case media.G722:
		e := g722.NewEncoder()
		return func(dst []byte, pcm []int16) (int, error) { return e.Encode(dst, pcm), nil }, nil
	case media.Opus:
		e, err := opus.NewEncoder(opus.DefaultConfig())
		if err != nil {
			return nil, fmt.Errorf("opus encoder: %w", err)
		}
		return e.Encode, nil
	}
	return func(dst []byte, pcm []int16) (int, error) { return codec.Encode(dst, pcm), nil }, nil
}

// encodeLoop encodes pcm, a whole number of frames that loops seamlessly,
// into one payload per frame. A stateful codec encodes the loop twice and
// keeps the second pass, so that its encoder state at the loop's end
// matches that at its start, as the receiving decoder will see it.
func encodeLoop(codec media.Codec, pcm []int16) ([][]byte, error) {
	enc, err := newEncoder(codec)
	if err != nil {
		return nil, err
	}
	fs := codec.AudioRate() / 50
	frames := len(pcm) / fs
	passes := 1
	if !codec.Stateless() {
		passes = 2
	}
	var out [][]byte
	buf := make([]byte, maxPayload)
	for range passes {
		out = out[:0]
		for f := range frames {
			n, err := enc(buf, pcm[f*fs:(f+1)*fs])
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", codec, err)
			}
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
	return out, nil
}

// newAudio encodes the talkers' tones (8000/period Hz: a whole number of
// cycles in period frames at any rate) and the noise at the codec's audio
// rate.
func newAudio(codec media.Codec) (*audioSrc, error) {
	a := &audioSrc{}
	rate := codec.AudioRate()
	for _, p := range tonePeriods {
		pcm := make([]int16, p*rate/50)
		audiotest.Tone(pcm, 8000/float64(p), talkDBFS, rate, nil)
		frames, err := encodeLoop(codec, pcm)
		if err != nil {
			return nil, err
		}
		a.tones = append(a.tones, frames)
	}
	pcm := make([]int16, noiseLoop*rate/50)
	audiotest.Noise(pcm, noiseDBFS, mrand.New(mrand.NewPCG(1, 2)))
	noise, err := encodeLoop(codec, pcm)
	if err != nil {
		return nil, err
	}
	a.noise = noise
	return a, nil
}

// frame returns caller c's payload for frame number f.
func (a *audioSrc) frame(c *caller, f int64) []byte {
	if c.talker >= 0 {
		t := a.tones[c.talker]
		return t[f%int64(len(t))]
	}
	return a.noise[(f+int64(c.idx))%noiseLoop]
}

// sendLoop sends one 20 ms frame for every started caller of cs per tick,
// on a clock that does not drift: a late tick is caught up (up to
// maxCatchUp ticks, then the clock skips ahead and timestamps jump as a
// phone's would after a stall).
func sendLoop(ctx context.Context, cs []*caller, audio *audioSrc, codec media.Codec, late *lateness) {
	var buf [12 + maxPayload]byte
	hdr := rtp.Header{Version: 2, PayloadType: codec.PayloadType()}
	step := uint32(codec.RTPClockRate() / 50) // timestamp ticks a frame: 160, or 960 for Opus
	t0 := time.Now()
	var tick int64
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		tick++
		next := t0.Add(time.Duration(tick) * frameDur)
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		} else if behind := int64(-d / frameDur); behind > maxCatchUp {
			tick += behind
		}
		if late != nil && started(cs) {
			late.observe(time.Since(next))
		}
		for _, c := range cs {
			if !c.started.Load() {
				continue
			}
			if !c.sending {
				c.sending, c.startF = true, tick
			}
			f := tick - c.startF
			hdr.SSRC, hdr.SequenceNumber, hdr.Timestamp, hdr.Marker = c.ssrc, c.seq, c.ts0+uint32(f)*step, f == 0
			n, err := hdr.MarshalTo(buf[:])
			if err != nil {
				continue
			}
			n += copy(buf[n:], audio.frame(c, f))
			c.seq++
			if err := c.sock.sendTo(buf[:n], &c.remoteSA, c.remoteSALen); err != nil {
				c.sendErrs.Add(1)
				continue
			}
			c.sent.Add(1)
		}
	}
}

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
	_   [4]byte
}

// reader drains callers' sockets with non-blocking recvmmsg, once per
// 20 ms: no goroutine wakes per packet, one system call per socket and
// tick in the steady state.
type reader struct {
	codec     media.Codec
	pcm       []int16 // a decoded Opus or G.722 packet
	recording *atomic.Bool
	msgs      [readBatch]mmsghdr
	iovs      [readBatch]syscall.Iovec
	bufs      [readBatch][1500]byte
	n         int
	errno     syscall.Errno
	pkt       rtp.Header
}

func newReader(codec media.Codec, recording *atomic.Bool) *reader {
	r := &reader{codec: codec, recording: recording, pcm: make([]int16, opus.MaxFrameSamples)}
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(len(r.bufs[i]))
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.Iovlen = 1
	}
	return r
}

func readLoop(ctx context.Context, cs []*caller, codec media.Codec, recording *atomic.Bool) {
	r := newReader(codec, recording)
	t := time.NewTicker(frameDur)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, c := range cs { // a last drain, so counts are complete
				if c.active.Load() {
					r.drain(c)
				}
			}
			return
		case <-t.C:
		}
		for _, c := range cs {
			if c.active.Load() {
				r.drain(c)
			}
		}
	}
}

func (r *reader) drain(c *caller) {
	for {
		if r.n, r.errno = c.sock.recvmmsg(&r.msgs); r.errno != 0 || r.n <= 0 {
			return
		}
		for i := range r.n {
			r.handle(c, r.bufs[i][:r.msgs[i].len])
		}
		if r.n < readBatch {
			return
		}
	}
}

func (r *reader) handle(c *caller, b []byte) {
	n, err := r.pkt.Unmarshal(b)
	if err != nil {
		return
	}
	if !c.started.Load() {
		c.started.Store(true)
	}
	c.gotSeq(r.pkt.SequenceNumber)
	c.recvCount.Add(1)
	if c.sampled && r.recording.Load() {
		payload := b[n:]
		if c.dec != nil {
			r.record(c, payload)
			return
		}
		codec, ok := media.CodecByPayloadType(r.pkt.PayloadType)
		if !ok || !codec.Stateless() {
			return
		}
		if l := len(c.rec); cap(c.rec)-l >= len(payload) {
			c.rec = c.rec[:l+len(payload)]
			codec.Decode(c.rec[l:], payload)
		}
	}
}

// record decodes a G.722 or Opus packet of the negotiated payload type
// into a sampled caller's recording.
func (r *reader) record(c *caller, payload []byte) {
	if r.pkt.PayloadType != r.codec.PayloadType() {
		return
	}
	var n int
	if c.dec.g722 != nil {
		n = c.dec.g722.Decode(r.pcm, payload)
	} else {
		var err error
		if n, err = c.dec.opus.Decode(r.pcm, payload); err != nil {
			return
		}
	}
	if l := len(c.rec); cap(c.rec)-l >= n {
		c.rec = append(c.rec, r.pcm[:n]...)
	}
}

// started reports whether any caller of cs streams yet.
func started(cs []*caller) bool {
	for _, c := range cs {
		if c.sending {
			return true
		}
	}
	return false
}

// lateness is a histogram of how late the harness's sender ticks ran,
// in 100 µs steps up to 100 ms: the harness's own share of any jitter.
type lateness struct {
	mu     sync.Mutex
	counts [1001]uint64
	max    time.Duration
}

func (l *lateness) observe(d time.Duration) {
	i := min(max(0, int(d/(100*time.Microsecond))), len(l.counts)-1)
	l.mu.Lock()
	l.counts[i]++
	l.max = max(l.max, d)
	l.mu.Unlock()
}

// quantiles returns the p99 and the maximum in milliseconds.
func (l *lateness) quantiles() (p99, maxMs float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var total, cum uint64
	for _, c := range l.counts {
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	for i, c := range l.counts {
		cum += c
		if float64(cum) >= 0.99*float64(total) {
			p99 = float64(i+1) / 10
			break
		}
	}
	return p99, float64(l.max.Microseconds()) / 1000
}

// udpSocket is a non-blocking UDP socket made with socket(2) and never
// handed to the Go runtime's netpoller: the harness polls it, so a packet
// arriving wakes no thread (a net.UDPConn would make every arrival an
// epoll event for the runtime).
type udpSocket struct {
	fd    int
	local netip.AddrPort
}

func listenUDP(ap netip.AddrPort) (*udpSocket, error) {
	family := syscall.AF_INET
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if ap.Addr().Is6() {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	s := &udpSocket{fd: fd}
	switch g := got.(type) {
	case *syscall.SockaddrInet4:
		s.local = netip.AddrPortFrom(netip.AddrFrom4(g.Addr), uint16(g.Port))
	case *syscall.SockaddrInet6:
		s.local = netip.AddrPortFrom(netip.AddrFrom16(g.Addr), uint16(g.Port))
	}
	return s, nil
}

// Close closes the socket; only after the sender and reader stopped.
func (s *udpSocket) Close() { _ = syscall.Close(s.fd) }

// sendTo is sendto(2) to a prepared address, allocation-free.
func (s *udpSocket) sendTo(b []byte, sa *syscall.RawSockaddrAny, saLen uint32) error {
	_, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(sa)), uintptr(saLen))
	if e != 0 {
		return e
	}
	return nil
}

// recvmmsg reads up to readBatch datagrams without blocking.
func (s *udpSocket) recvmmsg(msgs *[readBatch]mmsghdr) (int, syscall.Errno) {
	n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[0])),
		readBatch, syscall.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// rawSockaddr converts ap for sendto(2).
func rawSockaddr(ap netip.AddrPort) (syscall.RawSockaddrAny, uint32) {
	var sa syscall.RawSockaddrAny
	port := ap.Port()
	if ap.Addr().Is4() {
		s4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&sa))
		s4.Family = syscall.AF_INET
		s4.Addr = ap.Addr().As4()
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return sa, syscall.SizeofSockaddrInet4
	}
	s6 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&sa))
	s6.Family = syscall.AF_INET6
	s6.Addr = ap.Addr().As16()
	p := (*[2]byte)(unsafe.Pointer(&s6.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return sa, syscall.SizeofSockaddrInet6
}
