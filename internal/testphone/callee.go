package testphone

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/zaf/g711"
)

// Callee is the far end of a call the bridge dials: a UAS on 127.0.0.1 that
// answers the first INVITE (PCMU or PCMA, and telephone-event unless
// CalleeOptions.NoTelephoneEvent), sends RTP every 20 ms (silence, or RFC
// 4733 digits queued by SendDTMF), records the audio it hears, and records
// every DTMF digit it receives, by RFC 4733 (one per event, keyed on SSRC
// and timestamp as a receiver must) and by SIP INFO.
type Callee struct {
	opts    CalleeOptions
	ua      *sipgo.UserAgent
	dsc     *sipgo.DialogServerCache
	sipAddr netip.AddrPort
	pc      net.PacketConn
	rtp     *net.UDPConn

	answered chan struct{}
	ended    chan struct{}
	endOnce  sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	remote   netip.AddrPort
	codec    uint8
	tePT     int // negotiated, -1 for none
	rec      []int16
	events   []CalleeEvent
	infos    []rune
	sendQ    []rune
	started  bool
	closed   bool
	dlg      *sipgo.DialogServerSession
	lastSeen map[[2]uint32]int // (ssrc, timestamp) → index in events
}

// CalleeOptions configure a Callee.
type CalleeOptions struct {
	// NoTelephoneEvent answers without telephone-event, so that the
	// caller has to send digits by SIP INFO.
	NoTelephoneEvent bool
	Logger           *slog.Logger
}

// CalleeEvent is one RFC 4733 event the callee received.
type CalleeEvent struct {
	Digit     rune
	Timestamp uint32
	Packets   int // packets of the event
	Ends      int // of which end packets
}

// NewCallee starts a callee; Close stops it.
func NewCallee(opts CalleeOptions) (*Callee, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("chorus-testcallee"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		return nil, fmt.Errorf("testphone: callee UA: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("testphone: callee server: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("testphone: callee client: %w", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("testphone: callee SIP socket: %w", err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		ua.Close()
		pc.Close()
		return nil, fmt.Errorf("testphone: callee RTP socket: %w", err)
	}
	c := &Callee{opts: opts, ua: ua, pc: pc, rtp: conn, sipAddr: netip.MustParseAddrPort(pc.LocalAddr().String()),
		answered: make(chan struct{}), ended: make(chan struct{}), tePT: -1, lastSeen: map[[2]uint32]int{}}
	c.dsc = sipgo.NewDialogServerCache(client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callee",
		Host: "127.0.0.1", Port: int(c.sipAddr.Port())}})
	srv.OnInvite(c.onInvite)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = c.dsc.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dsc.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
		c.end()
	})
	srv.OnInfo(c.onInfo)
	go func() { _ = srv.ServeUDP(pc) }()
	c.wg.Add(1)
	go c.recvLoop()
	return c, nil
}

// URI is a SIP URI that reaches the callee, with user as its user part.
func (c *Callee) URI(user string) string {
	return fmt.Sprintf("sip:%s@%s", user, c.sipAddr)
}

// Answered is closed once the callee answered a call.
func (c *Callee) Answered() <-chan struct{} { return c.answered }

// Ended is closed when the call got a BYE.
func (c *Callee) Ended() <-chan struct{} { return c.ended }

func (c *Callee) end() { c.endOnce.Do(func() { close(c.ended) }) }

func (c *Callee) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		// A re-INVITE: keep what we have.
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		return
	}
	c.mu.Lock()
	busy := c.started
	c.started = true
	c.mu.Unlock()
	if busy {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil))
		return
	}
	dlg, err := c.dsc.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil))
		return
	}
	rm, err := parseSDP(req.Body())
	if err != nil {
		_ = dlg.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		return
	}
	name, pt, ok := rm.pick([]string{"PCMU", "PCMA"})
	if !ok {
		_ = dlg.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		return
	}
	te := rm.tePT
	if c.opts.NoTelephoneEvent {
		te = -1
	}
	port := c.rtp.LocalAddr().(*net.UDPAddr).Port
	answer := buildSDP(offerParams{sessID: 1, port: port, codecs: []string{name}, tePT: te, ptime: 20,
		direction: reverseDirection(rm.direction)})
	c.mu.Lock()
	c.remote, c.codec, c.tePT, c.dlg = rm.addr, pt, te, dlg
	c.mu.Unlock()
	if err := dlg.RespondSDP(answer); err != nil {
		return
	}
	close(c.answered)
	c.wg.Add(1)
	go c.sendLoop()
	<-dlg.Context().Done()
	c.end()
}

func (c *Callee) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if strings.HasPrefix(ct, "application/dtmf-relay") {
		for _, line := range strings.Split(string(req.Body()), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "Signal") && len(strings.TrimSpace(v)) == 1 {
				c.mu.Lock()
				c.infos = append(c.infos, rune(strings.TrimSpace(v)[0]))
				c.mu.Unlock()
			}
		}
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

// sendLoop sends a packet every 20 ms: silence, or the packets of queued
// digits (100 ms each, then three end packets, then 60 ms of silence).
func (c *Callee) sendLoop() {
	defer c.wg.Done()
	ssrc, seq, ts := rand.Uint32(), uint16(rand.Uint32()), rand.Uint32()
	silence := make([]byte, 160)
	buf := make([]byte, 1500)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	type slot struct {
		payload []byte
		event   bool
		marker  bool
		advance uint32
	}
	var queue []slot
	for {
		select {
		case <-c.ended:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		remote, codec, te := c.remote, c.codec, c.tePT
		for _, d := range c.sendQ {
			code, _ := dtmfEvent(d)
			for i := range 4 {
				d := 160 * (i + 1)
				queue = append(queue, slot{payload: []byte{code, 10, byte(d >> 8), byte(d)}, event: true, marker: i == 0})
			}
			for i := range 3 {
				s := slot{payload: []byte{code, 0x80 | 10, 0x03, 0x20}, event: true}
				if i == 2 {
					s.advance = 7 * 160
				}
				queue = append(queue, s)
			}
			for range 3 {
				queue = append(queue, slot{})
			}
		}
		c.sendQ = c.sendQ[:0]
		c.mu.Unlock()
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts, PayloadType: codec}}
		advance := uint32(160)
		if silence[0] == 0 {
			fill := byte(0xFF) // PCMU silence
			if codec == ptPCMA {
				fill = 0xD5
			}
			for i := range silence {
				silence[i] = fill
			}
		}
		pkt.Payload = silence
		if len(queue) > 0 {
			s := queue[0]
			queue = queue[1:]
			if s.event && te >= 0 {
				pkt.PayloadType, pkt.Payload, pkt.Marker = uint8(te), s.payload, s.marker
				advance = s.advance
			}
		}
		n, err := pkt.MarshalTo(buf)
		if err == nil {
			_, _ = c.rtp.WriteToUDPAddrPort(buf[:n], remote)
		}
		seq++
		ts += advance
	}
}

func (c *Callee) recvLoop() {
	defer c.wg.Done()
	buf := make([]byte, 2048)
	var pkt rtp.Packet
	for {
		n, _, err := c.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		c.mu.Lock()
		switch {
		case pkt.PayloadType == ptPCMU:
			for _, b := range pkt.Payload {
				c.rec = append(c.rec, g711.DecodeUlawFrame(b))
			}
		case pkt.PayloadType == ptPCMA:
			for _, b := range pkt.Payload {
				c.rec = append(c.rec, g711.DecodeAlawFrame(b))
			}
		case c.tePT >= 0 && int(pkt.PayloadType) == c.tePT && len(pkt.Payload) >= 4:
			key := [2]uint32{pkt.SSRC, pkt.Timestamp}
			i, seen := c.lastSeen[key]
			if !seen {
				i = len(c.events)
				c.lastSeen[key] = i
				c.events = append(c.events, CalleeEvent{Digit: eventDigit(pkt.Payload[0]), Timestamp: pkt.Timestamp})
			}
			c.events[i].Packets++
			if pkt.Payload[1]&0x80 != 0 {
				c.events[i].Ends++
			}
		}
		c.mu.Unlock()
	}
}

// eventDigit is the digit of an RFC 4733 event code, '?' for others.
func eventDigit(code uint8) rune {
	switch {
	case code <= 9:
		return rune('0' + code)
	case code == 10:
		return '*'
	case code == 11:
		return '#'
	case code <= 15:
		return rune('A' + code - 12)
	}
	return '?'
}

// SendDTMF queues digits to send as RFC 4733 events (nothing is sent when
// no telephone-event was negotiated).
func (c *Callee) SendDTMF(digits string) {
	c.mu.Lock()
	c.sendQ = append(c.sendQ, []rune(digits)...)
	c.mu.Unlock()
}

// Mark returns the current length of the recording, for RecordingSince.
func (c *Callee) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rec)
}

// RecordingSince returns the audio heard since mark, in arrival order.
func (c *Callee) RecordingSince(mark int) []int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mark > len(c.rec) {
		return nil
	}
	return append([]int16(nil), c.rec[mark:]...)
}

// Events returns the RFC 4733 events received, in order.
func (c *Callee) Events() []CalleeEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CalleeEvent(nil), c.events...)
}

// InfoDigits returns the digits received by SIP INFO, in order.
func (c *Callee) InfoDigits() []rune {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rune(nil), c.infos...)
}

// Close hangs nothing up; it stops the callee's sockets and goroutines.
func (c *Callee) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.end()
	_ = c.rtp.Close()
	c.ua.Close()
	_ = c.pc.Close()
	c.wg.Wait()
}
