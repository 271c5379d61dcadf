// Package testphone is a scripted SIP softphone for end-to-end tests of the
// bridge: real SIP (sipgo) over loopback UDP or TCP, real RTP (G.711, G.722
// or Opus), with every received packet decoded and kept so tests can check
// audio by content (see package audiotest).
//
// A Phone is one call: [Dial] sends the INVITE, waits for the 200, sends the
// ACK and starts a paced RTP sender and an RTP receiver. Each Phone has its
// own sipgo user agent, SIP listener on 127.0.0.1:0 and RTP socket on
// 127.0.0.1:0, so many phones can run in one test process.
package testphone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Options configure a [Dial].
type Options struct {
	Target           string            // bridge SIP address "127.0.0.1:port"
	Transport        string            // "udp" (default) or "tcp"
	User             string            // Request-URI user part: "1000" -> sip:1000@Target
	Codecs           []string          // offered codecs in order (PCMU, PCMA, G722, OPUS), default {"PCMU","PCMA"}
	TelephoneEventPT uint8             // telephone-event/8000, default 101; with Opus, telephone-event/48000 is offered too
	Ptime            int               // ms per sent packet, default 20 (10..60; Opus: 20)
	Source           func(dst []int16) // produces each sent packet's audio at the codec's AudioRate; nil = silence
	NoSDPInOffer     bool              // late offer: INVITE without SDP, answer in the ACK
	SRTP             string            // SDES suite to offer (RTP/SAVP), e.g. AES_CM_128_HMAC_SHA1_80; "" plain (srtp.go)
	OnDatagram       func([]byte)      // if set, sees every datagram at the RTP socket before any check (a capture)
	AcceptRefer      bool              // list REFER in Allow and act as a transferee (refer.go)
	Logger           *slog.Logger      // nil = discard
}

// StatusError is a final non-2xx SIP response to one of our requests.
type StatusError struct {
	Method string // "INVITE", "BYE", "INFO", ...
	Code   int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("testphone: %s answered %d %s", e.Method, e.Code, e.Reason)
}

// ErrEnded is returned by operations that need a live call after it ended.
var ErrEnded = errors.New("testphone: call ended")

// ErrNoTelephoneEvent is returned by SendDTMF when the answer did not accept
// telephone-event.
var ErrNoTelephoneEvent = errors.New("testphone: telephone-event not negotiated")

// Stats are counters of one phone's RTP.
type Stats struct {
	PacketsSent          int // RTP packets sent by the phone (audio + DTMF; not SendRaw)
	AudioPacketsSent     int
	EventPacketsSent     int // RFC 4733 packets
	PacketsReceived      int // valid RTP (version 2) packets received
	AudioPacketsReceived int // received packets with PT 0 or 8
	EventPacketsReceived int // received packets with the telephone-event PT
	InvalidReceived      int // datagrams that did not parse as RTP v2
	LastSSRC             uint32
	LastReceived         time.Time     // arrival time of the last valid RTP packet
	PayloadTypes         map[uint8]int // packets received per payload type
}

// Phone is one scripted call. All methods are safe for concurrent use.
type Phone struct {
	opts   Options
	log    *slog.Logger
	ptime  time.Duration
	sessID uint64

	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	client    *sipgo.Client
	dua       *sipgo.DialogUA
	transport string // "UDP" or "TCP"
	laddr     sip.Addr
	sipClose  func()

	rtpConn *net.UDPConn
	rtpAddr netip.AddrPort

	dtmfReq chan *dtmfJob
	ended   chan struct{}
	closed  chan struct{}
	endOnce sync.Once
	clsOnce sync.Once
	wg      sync.WaitGroup

	mu         sync.Mutex
	dlg        *sipgo.DialogClientSession
	codec      string
	pt         uint8
	tePT       int // negotiated telephone-event PT or -1
	remote     netip.AddrPort
	localDir   string
	remoteDir  string
	sdpVersion uint64
	source     func([]int16)
	paused     bool // SetSending(false): no RTP at all, and no signalling
	rec        []int16
	recSSRC    uint32
	recBase    uint32
	recStarted bool
	stats      Stats
	rxTEPT     uint8 // PT counted as telephone-event on receive
	srtp       *phoneSRTP

	referred     chan string // Refer-To of accepted REFERs (refer.go)
	notifyStatus int
}

type dtmfJob struct {
	event uint8
	done  chan struct{}
}

// Dial places a call: INVITE to sip:User@Target, wait for the 200, ACK, and
// start sending (paced every Ptime) and receiving RTP. A non-2xx final
// response gives a *StatusError; a ctx that ends first gives an error
// wrapping ctx.Err() (a CANCEL is sent when the INVITE got a provisional).
func Dial(ctx context.Context, opts Options) (*Phone, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	p := &Phone{
		opts:      opts,
		log:       opts.Logger,
		ptime:     time.Duration(opts.Ptime) * time.Millisecond,
		sessID:    rand.Uint64() >> 2,
		dtmfReq:   make(chan *dtmfJob),
		ended:     make(chan struct{}),
		closed:    make(chan struct{}),
		source:    opts.Source,
		tePT:      -1,
		localDir:  dirSendRecv,
		remoteDir: dirSendRecv,
		rxTEPT:    opts.TelephoneEventPT,
		stats:     Stats{PayloadTypes: map[uint8]int{}},
		referred:  make(chan string, 4),
	}
	if err := p.initSRTP(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.teardown()
		}
	}()

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("testphone: RTP socket: %w", err)
	}
	p.rtpConn = conn
	p.rtpAddr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	p.wg.Add(1)
	go p.recvLoop()

	if err := p.startSIP(ctx); err != nil {
		return nil, err
	}
	if err := p.invite(ctx); err != nil {
		return nil, err
	}
	ok = true

	p.wg.Add(2)
	go p.sendLoop()
	go p.watchDialog()
	return p, nil
}

func (o *Options) defaults() error {
	if o.Target == "" {
		return errors.New("testphone: Options.Target is empty")
	}
	if strings.ContainsAny(o.User+o.Target, "\r\n <>") {
		return errors.New("testphone: User or Target contains forbidden characters")
	}
	switch strings.ToLower(o.Transport) {
	case "", "udp":
		o.Transport = "udp"
	case "tcp":
		o.Transport = "tcp"
	default:
		return fmt.Errorf("testphone: unsupported transport %q", o.Transport)
	}
	if len(o.Codecs) == 0 {
		o.Codecs = []string{"PCMU", "PCMA"}
	}
	for i, c := range o.Codecs {
		if _, ok := codecPT(c); !ok {
			return fmt.Errorf("testphone: unsupported codec %q", c)
		}
		o.Codecs[i] = strings.ToUpper(c)
	}
	if o.TelephoneEventPT == 0 {
		o.TelephoneEventPT = 101
	}
	if o.Ptime == 0 {
		o.Ptime = 20
	}
	if o.Ptime < 10 || o.Ptime > 60 {
		return fmt.Errorf("testphone: Ptime %d out of 10..60", o.Ptime)
	}
	if o.Ptime != 20 && slices.Contains(o.Codecs, "OPUS") {
		return fmt.Errorf("testphone: Opus is sent in 20 ms packets, not %d", o.Ptime)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// startSIP creates the phone's own user agent, listener and client.
func (p *Phone) startSIP(ctx context.Context) error {
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("chorus-testphone"),
		sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(p.log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(p.log)),
	)
	if err != nil {
		return fmt.Errorf("testphone: new UA: %w", err)
	}
	p.ua = ua
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(p.log))
	if err != nil {
		return fmt.Errorf("testphone: new server: %w", err)
	}
	p.srv = srv
	srv.OnBye(p.onBye)
	srv.OnInfo(p.onOK)
	srv.OnOptions(p.onOK)
	srv.OnUpdate(p.onOK)
	srv.OnNotify(p.onOK)
	srv.OnRefer(p.onRefer)
	srv.OnInvite(p.onInvite)
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})

	var listenAddr string
	clientOpts := []sipgo.ClientOption{sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(p.log)}
	contact := sip.Uri{Scheme: "sip", User: "testphone", Host: "127.0.0.1"}
	switch p.opts.Transport {
	case "udp":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("testphone: SIP listen: %w", err)
		}
		p.sipClose = func() { pc.Close() }
		listenAddr = pc.LocalAddr().String()
		go srv.ServeUDP(pc)
		// sipgo pitfall: requests forced onto the listener socket fail
		// with "address already in use" until the listener is in the
		// transport's pool, so wait for it.
		if err := p.waitListener(ctx, listenAddr); err != nil {
			return err
		}
		// Send every request from the listening socket so Via, Contact and
		// the source port agree.
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(listenAddr))
		p.transport = "UDP"
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("testphone: SIP listen: %w", err)
		}
		p.sipClose = func() { ln.Close() }
		listenAddr = ln.Addr().String()
		go srv.ServeTCP(ln)
		// Outgoing TCP connections use an ephemeral port; the Contact
		// names the listener, where in-dialog requests may connect.
		contact.UriParams = sip.NewParams()
		contact.UriParams.Add("transport", "tcp")
		p.transport = "TCP"
	}
	ap := netip.MustParseAddrPort(listenAddr)
	contact.Port = int(ap.Port())
	p.laddr = sip.Addr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port()), Hostname: ap.Addr().String()}

	client, err := sipgo.NewClient(ua, clientOpts...)
	if err != nil {
		return fmt.Errorf("testphone: new client: %w", err)
	}
	p.client = client
	p.dua = &sipgo.DialogUA{Client: client, ContactHDR: sip.ContactHeader{Address: contact}}
	return nil
}

func (p *Phone) waitListener(ctx context.Context, addr string) error {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := p.ua.TransportLayer().GetConnection("udp", addr); err == nil && c != nil {
			c.TryClose()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testphone: waiting for SIP listener: %w", ctx.Err())
		case <-deadline.C:
			return errors.New("testphone: SIP listener did not start")
		case <-tick.C:
		}
	}
}

// newRequest makes an in-dialog request to the remote target, sent from our
// listener (UDP).
func (p *Phone) newRequest(dlg *sipgo.DialogClientSession, method sip.RequestMethod) *sip.Request {
	target := dlg.InviteRequest.Recipient
	if c := dlg.InviteResponse.Contact(); c != nil {
		target = c.Address
	}
	req := sip.NewRequest(method, *target.Clone())
	if p.transport == "UDP" {
		p.laddr.Copy(&req.Laddr)
	}
	return req
}

func (p *Phone) invite(ctx context.Context) error {
	recipient := sip.Uri{}
	uriStr := "sip:" + p.opts.User + "@" + p.opts.Target
	if p.opts.User == "" {
		uriStr = "sip:" + p.opts.Target
	}
	if p.transport == "TCP" {
		uriStr += ";transport=tcp"
	}
	if err := sip.ParseUri(uriStr, &recipient); err != nil {
		return fmt.Errorf("testphone: bad target %q: %w", uriStr, err)
	}
	req := sip.NewRequest(sip.INVITE, recipient)
	req.SetTransport(p.transport)
	if p.transport == "UDP" {
		p.laddr.Copy(&req.Laddr)
	}
	req.AppendHeader(sip.NewHeader("Allow", p.allowHeader()))
	if !p.opts.NoSDPInOffer {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(p.localSDP(p.opts.Codecs, int(p.opts.TelephoneEventPT), dirSendRecv))
	}

	dlg, err := p.dua.WriteInvite(ctx, req)
	if err != nil {
		return fmt.Errorf("testphone: send INVITE: %w", err)
	}
	if err := p.waitAnswer(ctx, dlg); err != nil {
		return err
	}

	res := dlg.InviteResponse
	fail := func(err error) error {
		// The call is up at the far end: confirm and end it properly.
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if dlg.Ack(actx) == nil {
			dlg.WriteBye(actx, p.newRequest(dlg, sip.BYE))
		}
		return err
	}
	body := res.Body()
	if len(body) == 0 {
		return fail(errors.New("testphone: 200 OK has no SDP"))
	}
	rm, err := parseSDP(body)
	if err != nil {
		return fail(err)
	}
	name, pt, ok := rm.pick(p.opts.Codecs)
	if !ok {
		return fail(fmt.Errorf("testphone: no acceptable codec in %v", rm.formats))
	}
	if err := p.startSRTP(rm); err != nil {
		return fail(err)
	}
	p.mu.Lock()
	p.dlg = dlg
	p.codec, p.pt, p.remote, p.remoteDir = name, pt, rm.addr, rm.direction
	if te := rm.teFor(name); te >= 0 {
		p.tePT = te
		p.rxTEPT = uint8(te)
	}
	p.mu.Unlock()

	if !p.opts.NoSDPInOffer {
		if err := dlg.Ack(ctx); err != nil {
			return fmt.Errorf("testphone: ACK: %w", err)
		}
		return nil
	}
	// Late offer: the 200 carried the offer; our answer goes in the ACK.
	p.mu.Lock()
	p.remoteDir = dirSendRecv
	p.localDir = reverseDirection(rm.direction)
	p.mu.Unlock()
	ack := p.newRequest(dlg, sip.ACK)
	ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	ack.SetBody(p.localSDP([]string{name}, rm.teFor(name), reverseDirection(rm.direction)))
	if err := dlg.WriteAck(ctx, ack); err != nil {
		return fmt.Errorf("testphone: ACK: %w", err)
	}
	return nil
}

// waitAnswer waits for the final response to the INVITE. When ctx ends
// before a provisional arrived it gives up at once (no CANCEL is possible);
// after a provisional it sends CANCEL but does not wait long for the 487.
func (p *Phone) waitAnswer(ctx context.Context, dlg *sipgo.DialogClientSession) error {
	waitCtx, cancelWait := context.WithCancelCause(context.Background())
	defer cancelWait(nil)
	provisional := make(chan struct{})
	var provOnce sync.Once
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-provisional:
			cancelWait(context.Cause(ctx))
		default:
			cancelWait(sipgo.WaitAnswerForceCancelErr)
		}
	})
	defer stop()

	errc := make(chan error, 1)
	go func() {
		errc <- dlg.WaitAnswer(waitCtx, sipgo.AnswerOptions{OnResponse: func(r *sip.Response) error {
			if r.IsProvisional() {
				provOnce.Do(func() { close(provisional) })
			}
			return nil
		}})
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		grace := time.NewTimer(2 * time.Second)
		select {
		case err = <-errc:
		case <-grace.C:
			err = ctx.Err()
		}
		grace.Stop()
	}
	if err == nil {
		return nil
	}
	if res := dlg.InviteResponse; res != nil && res.IsSuccess() {
		// Answered while we were giving up: confirm and hang up.
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if dlg.Ack(actx) == nil {
			dlg.WriteBye(actx, p.newRequest(dlg, sip.BYE))
		}
		cancel()
	}
	var dr *sipgo.ErrDialogResponse
	if errors.As(err, &dr) {
		return &StatusError{Method: "INVITE", Code: dr.Res.StatusCode, Reason: dr.Res.Reason}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("testphone: INVITE to %s: %w", p.opts.Target, ctx.Err())
	}
	return fmt.Errorf("testphone: INVITE to %s: %w", p.opts.Target, err)
}

// localSDP is our SDP listing codecs. One codec is an answer or the
// re-offer of the codec in use, and tePT its telephone-event at its clock
// rate; several are an offer, with tePT at 8000 and, when Opus is among
// them, another at 48000.
func (p *Phone) localSDP(codecs []string, tePT int, direction string) []byte {
	p.mu.Lock()
	v := p.sdpVersion
	p.sdpVersion++
	opusPT := ptOpus
	if p.codec == "OPUS" {
		opusPT = p.pt
	}
	p.mu.Unlock()
	te8, te48 := -1, 0
	for _, c := range codecs {
		switch {
		case clockRate(c) != 48000:
			te8 = tePT
		case len(codecs) == 1:
			te48 = max(tePT, 0)
		default:
			te48 = p.te48Offer()
		}
	}
	return buildSDP(offerParams{
		sessID:    p.sessID,
		version:   v,
		port:      int(p.rtpAddr.Port()),
		codecs:    codecs,
		opusPT:    opusPT,
		tePT:      te8,
		te48PT:    te48,
		ptime:     p.opts.Ptime,
		direction: direction,
		crypto:    p.cryptoAttr(),
	})
}

// te48Offer is the payload type of telephone-event/48000 in our offers:
// the first dynamic one not taken by Opus or telephone-event/8000.
func (p *Phone) te48Offer() int {
	for pt := 100; ; pt++ {
		if pt != int(ptOpus) && pt != int(p.opts.TelephoneEventPT) {
			return pt
		}
	}
}

// watchDialog ends the call when sipgo ends the dialog.
func (p *Phone) watchDialog() {
	defer p.wg.Done()
	p.mu.Lock()
	dlg := p.dlg
	p.mu.Unlock()
	select {
	case <-dlg.Context().Done():
		p.endCall()
	case <-p.ended:
	}
}

func (p *Phone) endCall() { p.endOnce.Do(func() { close(p.ended) }) }

func (p *Phone) currentDialog() *sipgo.DialogClientSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dlg
}

// matches reports whether req belongs to our dialog.
func (p *Phone) matches(req *sip.Request) (*sipgo.DialogClientSession, bool) {
	dlg := p.currentDialog()
	if dlg == nil {
		return nil, false
	}
	id, err := sip.DialogIDFromRequestUAC(req)
	return dlg, err == nil && id == dlg.ID
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	dlg, ok := p.matches(req)
	if !ok {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := dlg.ReadBye(req, tx); err != nil {
		p.log.Warn("testphone: answering BYE", "error", err)
	}
	p.endCall()
}

func (p *Phone) onOK(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if req.Method == sip.OPTIONS {
		res.AppendHeader(sip.NewHeader("Allow", p.allowHeader()))
	}
	tx.Respond(res)
}

// onInvite answers a re-INVITE from the far end; new calls are refused.
func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if _, ok := p.matches(req); !ok {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil))
		return
	}
	p.mu.Lock()
	codec, tePT, localDir := p.codec, p.tePT, p.localDir
	p.mu.Unlock()
	dir := localDir
	if len(req.Body()) > 0 {
		rm, err := parseSDP(req.Body())
		if err != nil {
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		name, pt, ok := rm.pick([]string{codec})
		if !ok {
			name, pt, ok = rm.pick(p.opts.Codecs)
		}
		if !ok {
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		dir = reverseDirection(rm.direction)
		if localDir == dirInactive || (localDir == dirSendOnly && dir == dirSendRecv) {
			dir = localDir
		}
		tePT = rm.teFor(name)
		codec = name
		p.mu.Lock()
		p.codec, p.pt, p.remote, p.remoteDir, p.tePT = name, pt, rm.addr, rm.direction, tePT
		if tePT >= 0 {
			p.rxTEPT = uint8(tePT)
		}
		p.mu.Unlock()
	}
	res := sip.NewSDPResponseFromRequest(req, p.localSDP([]string{codec}, tePT, dir))
	res.AppendHeader(sip.HeaderClone(&p.dua.ContactHDR))
	tx.Respond(res)
}

// Codec returns the negotiated codec name: "PCMU", "PCMA", "G722" or "OPUS".
func (p *Phone) Codec() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.codec
}

// PayloadType returns the negotiated audio payload type.
func (p *Phone) PayloadType() uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pt
}

// AudioRate returns the sample rate of the negotiated codec's audio, which
// Source fills and the recording holds: 8000 for G.711, 16000 for G.722,
// 48000 for Opus.
func (p *Phone) AudioRate() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return audioRate(p.codec)
}

// RTPAddr returns the local RTP socket address.
func (p *Phone) RTPAddr() netip.AddrPort { return p.rtpAddr }

// RemoteRTPAddr returns where the phone sends RTP (from the SDP).
func (p *Phone) RemoteRTPAddr() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.remote
}

// SIPAddr returns the phone's SIP listener address.
func (p *Phone) SIPAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(p.laddr.Hostname), uint16(p.laddr.Port))
}

// CallID returns the Call-ID of the call.
func (p *Phone) CallID() string {
	dlg := p.currentDialog()
	if dlg == nil || dlg.InviteRequest.CallID() == nil {
		return ""
	}
	return dlg.InviteRequest.CallID().Value()
}

// SetSource changes what is sent from the next packet on; nil sends silence.
func (p *Phone) SetSource(src func(dst []int16)) {
	p.mu.Lock()
	p.source = src
	p.mu.Unlock()
}

// Ended is closed when the call ended: remote BYE, Hangup or Close.
func (p *Phone) Ended() <-chan struct{} { return p.ended }

// SendInfo sends a SIP INFO with application/dtmf-relay for digit and
// waits for the final response; non-2xx gives a *StatusError.
func (p *Phone) SendInfo(ctx context.Context, digit rune) error {
	if _, ok := dtmfEvent(digit); !ok {
		return fmt.Errorf("testphone: not a DTMF digit: %q", digit)
	}
	dlg := p.currentDialog()
	req := p.newRequest(dlg, sip.INFO)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(fmt.Appendf(nil, "Signal=%c\r\nDuration=160\r\n", digit))
	return p.do(ctx, dlg, req)
}

func (p *Phone) do(ctx context.Context, dlg *sipgo.DialogClientSession, req *sip.Request) error {
	select {
	case <-p.ended:
		return ErrEnded
	default:
	}
	res, err := dlg.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("testphone: %s: %w", req.Method, err)
	}
	if !res.IsSuccess() {
		return &StatusError{Method: req.Method.String(), Code: res.StatusCode, Reason: res.Reason}
	}
	return nil
}

// ReInvite sends a re-INVITE offering the negotiated codec with direction
// ("sendrecv", "sendonly", "recvonly" or "inactive"), ACKs a 2xx and
// applies the answer. Non-2xx gives a *StatusError. While the phone's
// direction (or the answer's) forbids sending, no RTP is sent.
func (p *Phone) ReInvite(ctx context.Context, direction string) error {
	switch direction {
	case dirSendRecv, dirSendOnly, dirRecvOnly, dirInactive:
	default:
		return fmt.Errorf("testphone: bad direction %q", direction)
	}
	dlg := p.currentDialog()
	p.mu.Lock()
	codec, tePT := p.codec, p.tePT
	p.mu.Unlock()
	if tePT < 0 {
		tePT = int(p.opts.TelephoneEventPT)
	}
	req := p.newRequest(dlg, sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(p.localSDP([]string{codec}, tePT, direction))
	select {
	case <-p.ended:
		return ErrEnded
	default:
	}
	res, err := dlg.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("testphone: re-INVITE: %w", err)
	}
	if !res.IsSuccess() {
		return &StatusError{Method: "INVITE", Code: res.StatusCode, Reason: res.Reason}
	}
	// ACK the 2xx (CSeq of the re-INVITE, which the dialog now holds).
	ack := p.newRequest(dlg, sip.ACK)
	if err := dlg.WriteRequest(ack); err != nil {
		return fmt.Errorf("testphone: ACK re-INVITE: %w", err)
	}
	p.mu.Lock()
	p.localDir = direction
	p.mu.Unlock()
	if len(res.Body()) == 0 {
		return nil
	}
	rm, err := parseSDP(res.Body())
	if err != nil {
		return err
	}
	name, pt, ok := rm.pick(p.opts.Codecs)
	if !ok {
		return fmt.Errorf("testphone: re-INVITE answer has no acceptable codec")
	}
	te := rm.teFor(name)
	p.mu.Lock()
	p.codec, p.pt, p.remote, p.remoteDir, p.tePT = name, pt, rm.addr, rm.direction, te
	if te >= 0 {
		p.rxTEPT = uint8(te)
	}
	p.mu.Unlock()
	return nil
}

// Hangup sends BYE and waits for its response. It returns nil when the
// call had already ended.
func (p *Phone) Hangup(ctx context.Context) error {
	select {
	case <-p.ended:
		return nil
	default:
	}
	dlg := p.currentDialog()
	err := dlg.WriteBye(ctx, p.newRequest(dlg, sip.BYE))
	p.endCall()
	if err != nil {
		var dr sipgo.ErrDialogResponse
		if errors.As(err, &dr) {
			return &StatusError{Method: "BYE", Code: dr.Res.StatusCode, Reason: dr.Res.Reason}
		}
		return fmt.Errorf("testphone: BYE: %w", err)
	}
	return nil
}

// Close hangs up (best effort, if the call is still up) and releases every
// socket and goroutine. It is idempotent.
func (p *Phone) Close() {
	p.clsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := p.Hangup(ctx); err != nil {
			p.log.Debug("testphone: hangup on close", "error", err)
		}
		cancel()
		p.teardown()
	})
}

func (p *Phone) teardown() {
	p.endCall()
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	if p.rtpConn != nil {
		p.rtpConn.Close()
	}
	p.wg.Wait()
	if p.dlg != nil {
		p.dlg.Close()
	}
	if p.ua != nil {
		p.ua.Close()
	}
	if p.sipClose != nil {
		p.sipClose()
	}
}
