package sip

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/dtmf"
	"chorus/internal/egress"
	"chorus/media"
)

// allowMethods is what we answer to OPTIONS and put in Allow headers.
const allowMethods = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"

// Config configures a Server.
type Config struct {
	// PublicIP is the address written into SDP and Contact headers.
	PublicIP netip.Addr
	// UserAgent names us in User-Agent and Server headers.
	UserAgent string
	// Ports hands out RTP sockets.
	Ports *media.PortPool
	// Bridge receives the calls.
	Bridge *bridge.Bridge
	// Log is the logger; each call gets a child scoped with its ids.
	Log *slog.Logger
	// AnswerDelay, if set, makes an incoming call ring (180) this long
	// before it is answered, as a PBX's ringing phase would; 0 answers at
	// once.
	AnswerDelay time.Duration
	// Targets is the outbound request policy of dial-out (see Dial). Nil is
	// the safe default, which refuses loopback, private and other internal
	// addresses.
	Targets *egress.Policy
	// TCP bounds the connections of SIP over TCP.
	TCP TCPLimits
	// Limits bounds what one source address may cost (INVITE rate, calls
	// awaiting their ACK); the zero value limits nothing.
	Limits Limits
	// AckWindow is how long an answered call waits for its ACK before it
	// is ended and its port freed; 0 means 64×T1 (32 s), the 2xx
	// retransmission window of RFC 3261 §13.3.1.4.
	AckWindow time.Duration
	// Now is the clock of the source limiter; nil means time.Now.
	Now func() time.Time
	// Auth says who may call in without credentials and which digest
	// accounts the others use (see AuthConfig).
	Auth AuthConfig
	// SRTP says when calls use SRTP (SDES); calls over TLS always do.
	SRTP SRTPPolicy
	// Codecs are the codecs calls may use; their order is that of our
	// own offers (dial-out, an INVITE without SDP), while an answer takes
	// the offerer's order (RFC 3264 §6.1). Nil means DefaultCodecs. Duplicates
	// and invalid values are dropped.
	Codecs []media.Codec
	// Completed reports whether a conference id the bridge does not hold
	// names a conference that existed and completed (one the store keeps
	// from before a restart, or after the bridge let it go), so that its
	// callers hear it is over (410) rather than unknown (404). Nil: every
	// id the bridge does not hold is unknown. It may block briefly (a
	// store read) and is asked only for conf-… ids the bridge lacks.
	Completed func(ctx context.Context, confID string) bool
}

// Server is the SIP side of Chorus.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	client  *sipgo.Client
	dialogs *sipgo.DialogServerCache
	// outDialogs are the calls we dialled.
	outDialogs *sipgo.DialogClientCache
	bridge     *bridge.Bridge
	ports      *media.PortPool
	limits     *sourceLimiter
	ackWindow  time.Duration
	// Counters of what the per-source limits and the 2xx window did.
	limitedRate, limitedUnconfirmed, noAck atomic.Uint64
	auth                                   *authGate

	mu       sync.Mutex
	calls    map[string]*inCall  // by dialog id
	outCalls map[string]*outCall // by dialog id
	contacts map[string]sip.ContactHeader
	closers  []func() error
	// traffic counts and summarises unwanted traffic.
	traffic *trafficSummary
	// tcpGuards are the TCP listeners' guards, for their counts.
	tcpGuards []*tcpGuard
	// dialling holds, by Call-ID, the calls we dial until Dial has taken
	// their answer (or failed): closed then (see awaitDial).
	dialling map[string]chan struct{}
	// callIDs are the Call-IDs of our calls and recent INVITEs, which the
	// UDP screen lets through to sipgo (callids.go).
	callIDs *callIDSet
	// media sums the RTP sessions' counters (mediastats.go).
	media *mediaTally
	// sig counts requests and responses (sigstats.go).
	sig sigStats
}

// New returns a server; call ListenUDP and ListenTCP to start it.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "chorus"
	}
	if !cfg.PublicIP.IsValid() {
		return nil, errors.New("sip: no public IP configured")
	}
	// sipgo's transport and transaction layers log through a logger of
	// this server that counts unwanted traffic instead of logging each.
	traffic := newTrafficSummary(cfg.Log, realClock{}, summaryPeriod)
	libLog := slog.New(quietHandler{cfg.Log.Handler(), traffic})
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(cfg.UserAgent), sipgo.WithUserAgentHostname(cfg.PublicIP.String()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(libLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(libLog),
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				traffic.note(TrafficStrayResponse, func() string { return r.Short() })
			})),
		sipgo.WithUserAgentParser(newParser()))
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(cfg.PublicIP.String()), sipgo.WithClientLogger(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	if cfg.AckWindow <= 0 {
		cfg.AckWindow = 64 * sip.T1
	}
	cfg.Codecs = cleanCodecs(cfg.Codecs)
	auth, err := newAuthGate(cfg.Auth, cfg.Log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, auth: auth, log: cfg.Log, ua: ua, srv: srv, client: client, bridge: cfg.Bridge, ports: cfg.Ports,
		limits: newSourceLimiter(cfg.Limits, cfg.Now), ackWindow: cfg.AckWindow,
		calls: map[string]*inCall{}, outCalls: map[string]*outCall{}, contacts: map[string]sip.ContactHeader{},
		traffic: traffic, dialling: map[string]chan struct{}{}, callIDs: newCallIDSet(cfg.Now, callIDPeriod),
		media: newMediaTally()}
	s.dialogs = sipgo.NewDialogServerCache(client, s.contact("udp"))
	s.outDialogs = sipgo.NewDialogClientCache(client, s.contact("udp"))
	srv.OnInvite(s.safe(s.onInvite))
	srv.OnAck(s.safe(s.onAck))
	srv.OnBye(s.safe(s.onBye))
	srv.OnCancel(s.safe(s.onCancel))
	srv.OnOptions(s.safe(s.onOptions))
	srv.OnInfo(s.safe(s.onInfo))
	srv.OnUpdate(s.safe(s.onUpdate))
	srv.OnNotify(s.safe(s.onNotify)) // a REFER's progress (refer.go)
	srv.OnNoRoute(s.safe(s.onUnwanted))
	return s, nil
}

// ListenUDP binds addr ("host:port", port 0 for any) and serves SIP on it.
func (s *Server) ListenUDP(addr string) (netip.AddrPort, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sip: listen udp %s: %w", addr, err)
	}
	return s.serveUDP(pc), nil
}

func (s *Server) serveUDP(pc net.PacketConn) netip.AddrPort {
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s.setContact("udp", int(ap.Port()))
	s.mu.Lock()
	s.closers = append(s.closers, pc.Close)
	s.mu.Unlock()
	// Unwanted methods, requests outside our dialogs and OPTIONS are
	// answered before sipgo sees them (unwanted.go).
	sc := newScreenedConn(pc, s.srv.RegisteredMethods(), allowMethods, s.cfg.UserAgent, s.traffic, s.callIDs, s.optionsAnswer)
	go func() { _ = s.srv.ServeUDP(sc) }()
	return ap
}

// ListenTCP binds addr and serves SIP over TCP on it.
func (s *Server) ListenTCP(addr string) (netip.AddrPort, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sip: listen tcp %s: %w", addr, err)
	}
	return s.serveTCP(l), nil
}

func (s *Server) serveTCP(l net.Listener) netip.AddrPort {
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	s.setContact("tcp", int(ap.Port()))
	s.serveGuarded(l, "tcp", func(g net.Listener) error { return s.srv.ServeTCP(g) })
	return ap
}

// pairAttempts bounds the tries ListenUDPAndTCP makes for port 0: a port
// free for UDP is taken for TCP only when another program holds it, so a
// few tries find a pair.
const pairAttempts = 20

// ListenUDPAndTCP serves SIP over UDP and TCP on one port (the usual
// 5060 for both, RFC 3261 §18). With port 0 it looks for a port free on
// both, rather than failing when the one UDP got is held for TCP.
func (s *Server) ListenUDPAndTCP(addr string) (udp, tcp netip.AddrPort, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return udp, tcp, fmt.Errorf("sip: listen %s: %w", addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = pairAttempts
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return udp, tcp, fmt.Errorf("sip: listen udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			_ = pc.Close()
			if i+1 < attempts && errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return udp, tcp, fmt.Errorf("sip: listen tcp on the UDP port %d: %w", p, err)
		}
		return s.serveUDP(pc), s.serveTCP(l), nil
	}
}

// serveGuarded serves a stream listener (TCP, or TLS above it) through
// the guard: caps, idle timeout, and an accept loop that outlives EMFILE
// (tcpguard.go). serve gets the guarded listener.
func (s *Server) serveGuarded(l net.Listener, transport string, serve func(net.Listener) error) {
	g := newTCPGuard(l, s.cfg.TCP, s.traffic, time.Now, s.liveTCPSources)
	s.mu.Lock()
	s.closers = append(s.closers, g.Close)
	s.tcpGuards = append(s.tcpGuards, g)
	s.mu.Unlock()
	go g.run()
	go func() {
		if err := serve(g); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("SIP stream listener stopped", "transport", transport, "addr", l.Addr(), "err", err)
		}
	}()
}

// Close stops listening. Calls should be hung up before (bridge.HangupAll).
func (s *Server) Close() error {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range closers {
		_ = c()
	}
	s.traffic.close()
	return s.ua.Close()
}

func (s *Server) setContact(transport string, port int) {
	u := sip.Uri{Scheme: "sip", User: "chorus", Host: s.cfg.PublicIP.String(), Port: port}
	if transport != "udp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", transport)
	}
	s.mu.Lock()
	s.contacts[transport] = sip.ContactHeader{Address: u}
	s.mu.Unlock()
}

func (s *Server) contact(transport string) sip.ContactHeader {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.contacts[strings.ToLower(transport)]; ok {
		return c
	}
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "chorus", Host: s.cfg.PublicIP.String()}}
}

// safe wraps a handler so that a request that is not well formed is
// refused before it reaches the handler (validate.go), and a bug triggered
// by one request answers 500 and is logged, instead of taking the whole
// process and every call down (sipgo runs handlers on their own
// goroutines, without a recover).
func (s *Server) safe(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		tx = s.sig.count(req, tx)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("sip handler panic", "method", req.Method, "sip_call_id", callID(req), "panic", r,
					"stack", string(debug.Stack()))
				s.respond(req, tx, sip.StatusInternalServerError, "Server Error")
			}
		}()
		if err := validateRequest(req); err != nil {
			s.refuse(req, tx, err)
			return
		}
		h(req, tx)
	}
}

// respond sends a final or provisional response built from req.
func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	if code == sip.StatusCallTransactionDoesNotExists {
		s.traffic.note(TrafficOutOfDialog, func() string { return string(req.Method) + " from " + req.Source() })
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// completedStoreWait bounds the store read of a conf-… id the bridge does
// not hold: past it the caller gets the 404 of an unknown id.
const completedStoreWait = 2 * time.Second

// completedRoute turns a dial-in to a conf-… id the bridge does not hold
// into ErrConferenceComplete when Config.Completed knows it completed,
// so that a conference read back from the store after a restart answers
// its callers as one still in memory does.
func (s *Server) completedRoute(number string, err error) error {
	if s.cfg.Completed == nil || !errors.Is(err, bridge.ErrNoRoute) || !strings.HasPrefix(number, bridge.ConferencePrefix) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), completedStoreWait)
	defer cancel()
	if s.cfg.Completed(ctx, number) {
		return fmt.Errorf("route %q: stored: %w", number, bridge.ErrConferenceComplete)
	}
	return err
}

// statusFor maps an error of the domain or of SDP handling to a SIP status.
func statusFor(err error) (int, string) {
	switch {
	case errors.Is(err, ErrNoCommonCodec), errors.Is(err, ErrNoAudio), errors.Is(err, ErrSRTPPolicy):
		return sip.StatusNotAcceptableHere, "Not Acceptable Here"
	case errors.Is(err, ErrBadSDP):
		return sip.StatusBadRequest, "Malformed SDP"
	case errors.Is(err, bridge.ErrNoRoute):
		return sip.StatusNotFound, "No Such Conference"
	case errors.Is(err, bridge.ErrConferenceComplete):
		// It existed and is over for good: 410 (RFC 3261 §21.4.6, "no
		// longer available ... considered permanent"), not 404, which
		// says the id was never known, nor 480, which invites a retry.
		return sip.StatusGone, "Conference Completed"
	case errors.Is(err, bridge.ErrMaxMembers):
		return sip.StatusBusyHere, "Conference Full"
	case errors.Is(err, bridge.ErrConferenceLocked):
		// The room exists and the caller may not enter it: 403 (RFC 3261
		// §21.4.4), not a 4xx that invites a retry elsewhere.
		return sip.StatusForbidden, "Conference Locked"
	case errors.Is(err, bridge.ErrDraining):
		return sip.StatusServiceUnavailable, "Draining"
	case errors.Is(err, media.ErrNoPorts):
		return sip.StatusServiceUnavailable, "No Media Ports"
	}
	return sip.StatusInternalServerError, "Server Error"
}

func (s *Server) reject(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger, err error) {
	code, reason := statusFor(err)
	log.Info("invite rejected", "status", code, "err", err)
	var hdrs []sip.Header
	if code == sip.StatusServiceUnavailable {
		hdrs = append(hdrs, sip.NewHeader("Retry-After", "5"))
	}
	s.respond(req, tx, code, reason, hdrs...)
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 2 // SDP session ids stay positive in any parser
}

// onInvite answers a new call, or hands a re-INVITE on.
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onReInvite(req, tx)
		return
	}
	log := s.log.With("sip_call_id", callID(req), "transport", req.Transport())
	if s.bridge.Draining() {
		s.reject(req, tx, log, bridge.ErrDraining)
		return
	}
	// Per-source limits first, before any work or port is spent on the
	// call. The call counts as unconfirmed until its ACK (or its end).
	confirm, why, wait := s.limits.admit(sourceIP(req))
	if why != admitted {
		s.rejectLimited(req, tx, why, wait)
		return
	}
	defer confirm()
	owner, ok := s.authorize(req, tx, log)
	if !ok {
		return
	}
	// The offer is checked before routing, so that a call refused for its
	// SDP never auto-creates a room.
	var offer Description
	var err error
	hasOffer := len(req.Body()) > 0
	if hasOffer {
		if offer, err = ParseSDP(req.Body()); err != nil {
			s.reject(req, tx, log, err)
			return
		}
		if _, ok := offer.Choose(s.cfg.Codecs); !ok {
			s.reject(req, tx, log, ErrNoCommonCodec)
			return
		}
		if err = s.checkOffer(offer, req.Transport()); err != nil {
			s.reject(req, tx, log, err)
			return
		}
	}
	// A number assigned to an application is the application's (design.md
	// routing (b)); every other number routes to a room.
	number := unescapeUser(req.Recipient.User)
	app, isApp := s.bridge.RouteApplication(number)
	var conf *bridge.Conference
	if !isApp {
		if conf, err = s.bridge.Route(number, owner); err != nil {
			s.reject(req, tx, log, s.completedRoute(number, err))
			return
		}
		// However the call ends up, the bridge hears when it has joined or
		// given up, so a room created for it alone does not stay behind empty.
		defer func() { s.bridge.Routed(conf) }()
		info := conf.Info()
		if info.Locked {
			// Refused before answering; a lock set after this point is caught
			// by AddMember, which hangs the answered call up.
			s.reject(req, tx, log, fmt.Errorf("dial-in to %s: %w", conf.ID(), bridge.ErrConferenceLocked))
			return
		}
		if info.ActiveMembers+info.Waiting >= s.bridge.Config().MaxMembers {
			s.reject(req, tx, log, bridge.ErrMaxMembers)
			return
		}
	}
	// An application's call rings until the application decides, unless
	// it answers at once.
	appRings := isApp && !app.App.Info().AutoAnswer
	conn, err := s.ports.Listen()
	if err != nil {
		s.reject(req, tx, log, err)
		return
	}
	port := int(conn.LocalAddr().(*net.UDPAddr).Port)
	sess, err := media.NewSession(conn, func() { s.ports.Release(port) })
	if err != nil {
		_ = conn.Close()
		s.reject(req, tx, log, err)
		return
	}
	s.media.track(sess)
	// Until the call is established and handed to context.AfterFunc below,
	// this handler owns the clean-up.
	handedOff := false
	defer func() {
		if !handedOff {
			_ = s.media.close(sess)
		}
	}()

	dlg, err := s.dialogs.ReadInvite(req, tx)
	if err != nil {
		log.Info("invite rejected", "status", 400, "err", err)
		s.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	defer func() {
		if !handedOff {
			_ = dlg.Close()
		}
	}()
	// Our 100 first: it stops the transaction's own 100 timer, which
	// reads req from another goroutine.
	_ = dlg.Respond(sip.StatusTrying, "Trying", nil)
	// A CANCEL is answered with 487 built from req by the transaction
	// layer: while we ring, give req the dialog's To-tag so the 487
	// matches our 180. (Answering at once, there is no 1xx with a tag to
	// match, and req is left alone.)
	if s.cfg.AnswerDelay > 0 || appRings {
		if tag, ok := dlg.InviteRequest.To().Params.Get("tag"); ok {
			req.To().Params.Add("tag", tag)
		}
	}

	c := &inCall{leg: &leg{s: s, sess: sess, sessionID: randUint64(), done: dlg.Context().Done()},
		dlg: dlg, transport: req.Transport(), natTarget: natTarget(req)}
	from := ""
	if f := req.From(); f != nil {
		from = f.Address.User
	}
	if isApp {
		c.call = s.bridge.NewAppCall(app, from, number, c)
		c.log = log.With("call", c.call.ID(), "app", app.App.ID())
	} else {
		c.call = s.bridge.NewCall(conf.UserID(), from, number, bridge.DirectionIn, c, bridge.Callback{})
		c.log = log.With("call", c.call.ID(), "conf", conf.ID())
	}
	if c.natTarget != "" {
		c.log.Info("caller behind NAT; in-dialog requests go to its source", "source", c.natTarget)
	}
	s.mu.Lock()
	s.calls[dlg.ID] = c
	s.mu.Unlock()
	s.callIDs.add(callID(req))
	forget := func() {
		s.mu.Lock()
		delete(s.calls, dlg.ID)
		s.mu.Unlock()
		s.callIDs.remove(callID(req))
	}
	defer func() {
		if !handedOff {
			forget()
		}
	}()

	if isApp {
		if !s.awaitApplication(c, req, appRings) {
			return
		}
	} else if d := s.cfg.AnswerDelay; d > 0 {
		// Ring first. A CANCEL meanwhile is answered by the transaction
		// layer (200, then 487 carrying this 180's To-tag) and ends the
		// dialog's context.
		ct := s.contact(req.Transport())
		_ = dlg.Respond(sip.StatusRinging, "Ringing", nil, &ct)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-dlg.Context().Done():
			t.Stop()
			c.log.Info("cancelled while ringing")
			c.call.Ended("cancel")
			return
		}
	}

	var body []byte
	if hasOffer {
		body, err = c.answer(offer)
	} else {
		body, err = c.offer()
	}
	if err != nil {
		c.log.Warn("invite failed", "err", err)
		_ = dlg.Respond(sip.StatusInternalServerError, "Server Error", nil)
		c.call.Ended("error")
		return
	}
	res := sip.NewSDPResponseFromRequest(dlg.InviteRequest, body)
	ct := s.contact(req.Transport())
	res.AppendHeader(&ct)
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if err := s.answerAndAwaitAck(dlg, tx, res); err != nil {
		if errors.Is(err, errNoAck) {
			// RFC 3261 §13.3.1.4: the session SHOULD be ended with a BYE.
			// The port is freed now, by this handler's deferred clean-up;
			// the BYE, which may never be answered, goes on its own.
			s.noAck.Add(1)
			c.log.Info("no ACK within the 2xx window; call ended", "window", s.ackWindow)
			c.call.Ended("no-ack")
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
				defer cancel()
				_ = dlg.WriteBye(ctx, c.newBye())
			}()
			return
		}
		c.log.Info("call not established", "err", err)
		c.call.Ended("cancel")
		return
	}
	confirm()
	if !hasOffer {
		if err := c.applyAckAnswer(); err != nil {
			c.log.Info("late offer failed", "err", err)
			_ = c.Hangup(context.Background(), "bad-answer")
			c.call.Ended("bad-answer")
			return
		}
	}
	c.call.Answered()
	c.log.Info("call answered", "remote", sess.Params().Remote, "codec", sess.Params().Codec, "rtp", sess.LocalAddr())
	if isApp {
		// The application's call waits, answered, in no conference until
		// the application adds it to one (or ends it).
		if err := c.call.Park(); err != nil {
			c.log.Info("park failed", "err", err)
		}
	} else {
		// A dial-in: the room's lock and PIN apply (an API add skips them).
		_, err = conf.AddMember(c.call, bridge.MemberOptions{DialIn: true})
		if errors.Is(err, bridge.ErrConferenceComplete) {
			// The room completed between Route and now, its last member gone:
			// the number is routed afresh, once, to a room of the same user.
			if next, rerr := s.bridge.Route(number, owner); rerr == nil {
				s.bridge.Routed(conf)
				conf = next
				if next.UserID() == c.call.UserID() {
					c.log.Info("room completed before the join; routed afresh", "new_conf", next.ID())
					_, err = next.AddMember(c.call, bridge.MemberOptions{DialIn: true})
				}
			}
		}
		if err != nil {
			c.log.Info("join failed", "err", err)
			_ = c.Hangup(context.Background(), "join-failed")
		}
	}
	// The call lives on without a goroutine of its own: when the dialog
	// ends (BYE either way), the call ends and its resources go.
	handedOff = true
	context.AfterFunc(dlg.Context(), func() {
		c.call.Ended("hangup")
		c.log.Info("call ended", statsAttr(sess))
		forget()
		_ = dlg.Close()
		_ = s.media.close(sess)
	})
}

// unescapeUser is the user part of a Request-URI as the number it names:
// %HEX HEX escapes (RFC 3261 §19.1.2) stand for the characters they
// escape (§19.1.4), so "sips%3Auser%40example.com" is
// "sips:user@example.com" (RFC 4475 §3.1.1.3). Validation has refused
// bad escapes already (checkRequestURI); a user part that still fails to
// unescape is taken as it is.
func unescapeUser(user string) string {
	if !strings.Contains(user, "%") {
		return user
	}
	u, err := url.PathUnescape(user)
	if err != nil {
		return user
	}
	return u
}

// errNoAck is the end of an answered call whose ACK never came.
var errNoAck = errors.New("no ACK within the 2xx retransmission window")

// answerAndAwaitAck sends the 2xx and waits for the ACK. sipgo retransmits
// the 2xx over UDP until the ACK comes or the INVITE transaction ends
// (Timer L, 64×T1 after the 2xx). That wait alone is not enough: its own
// 64×T1 timer is re-armed on every retransmission and so never fires, and
// after Timer L it only notices at its next retransmission (up to T2
// later). Here the window is enforced: when it closes without an ACK the
// transaction is terminated, which stops the retransmissions, and
// errNoAck returns at once so the caller frees the call's resources.
func (s *Server) answerAndAwaitAck(dlg *sipgo.DialogServerSession, tx sip.ServerTransaction, res *sip.Response) error {
	done := make(chan error, 1)
	go func() { done <- dlg.WriteResponse(res) }()
	t := time.NewTimer(s.ackWindow)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	// An ACK may have landed just now; it wins.
	if dlg.LoadState() == sip.DialogStateConfirmed {
		return <-done
	}
	tx.Terminate()
	return errNoAck
}

// rejectLimited answers an INVITE that a per-source limit turned away:
// 503 with Retry-After (RFC 3261 §21.5.4), logged at Debug since a flood
// would otherwise write a line per INVITE.
func (s *Server) rejectLimited(req *sip.Request, tx sip.ServerTransaction, why rejectReason, wait time.Duration) {
	reason := "Too Many Calls From Your Address"
	if why == rejectUnconfirmed {
		reason = "Too Many Unconfirmed Calls From Your Address"
		s.limitedUnconfirmed.Add(1)
	} else {
		s.limitedRate.Add(1)
	}
	s.log.Debug("invite limited", "source", req.Source(), "reason", reason)
	s.respond(req, tx, sip.StatusServiceUnavailable, reason,
		sip.NewHeader("Retry-After", strconv.Itoa(retryAfterSeconds(wait))))
}

// LimitStats counts what the per-source limits turned away and the
// answered calls ended for want of an ACK, for metrics.
type LimitStats struct {
	LimitedRate, LimitedUnconfirmed, NoAck uint64
}

// LimitStats returns the counts since the server started.
func (s *Server) LimitStats() LimitStats {
	return LimitStats{LimitedRate: s.limitedRate.Load(), LimitedUnconfirmed: s.limitedUnconfirmed.Load(), NoAck: s.noAck.Load()}
}

// sourceIP is the address a request came from (not what its headers say).
func sourceIP(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func (s *Server) lookup(req *sip.Request) (*inCall, *sipgo.DialogServerSession, error) {
	dlg, err := s.dialogs.MatchDialogRequest(req)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	c := s.calls[dlg.ID]
	s.mu.Unlock()
	if c == nil {
		return nil, nil, sipgo.ErrDialogDoesNotExists
	}
	return c, dlg, nil
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if l, _ := s.findLeg(req); l != nil {
		l.gotAck(req)
	}
	_ = s.dialogs.ReadAck(req, tx)
}

// waitConfirmed waits, briefly, until the dialog's 2xx has been ACKed. A
// request that overtakes the ACK (UDP reorders; phones send INFO or UPDATE
// right after it) would otherwise advance the dialog's CSeq first, and
// sipgo would then reject the ACK and end the call.
func waitConfirmed(dlg *sipgo.Dialog) {
	if dlg == nil || dlg.LoadState() != sip.DialogStateEstablished {
		return
	}
	ch := dlg.StateRead()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for dlg.LoadState() == sip.DialogStateEstablished {
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// awaitDialBound is how long an in-dialog request waits for Dial to take
// the answer of its call (awaitDial): far longer than the moment that
// takes, far shorter than the request's transaction (64×T1).
const awaitDialBound = 4 * time.Second

// awaitDial makes an in-dialog request of a call we are dialling wait,
// briefly, until Dial has taken the call's answer. sipgo stores the dialog
// only once it has processed the 200, so a BYE (or INFO, UPDATE,
// re-INVITE) right behind that 200 would otherwise find no dialog and be
// answered 481, and the call would never end.
func (s *Server) awaitDial(req *sip.Request) {
	s.mu.Lock()
	ch := s.dialling[callID(req)]
	s.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(awaitDialBound)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// findLeg finds the call of an in-dialog request, inbound or dialled, and
// the dialog that checks the request's CSeq.
func (s *Server) findLeg(req *sip.Request) (*leg, *sipgo.Dialog) {
	s.awaitDial(req)
	if c, dlg, err := s.lookup(req); err == nil {
		return c.leg, &dlg.Dialog
	}
	dlg, err := s.outDialogs.MatchRequestDialog(req)
	if err != nil {
		return nil, nil
	}
	s.mu.Lock()
	c := s.outCalls[dlg.ID]
	s.mu.Unlock()
	if c == nil {
		return nil, nil
	}
	return c.leg, &dlg.Dialog
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	s.awaitDial(req)
	if err := s.dialogs.ReadBye(req, tx); err == nil {
		return
	}
	if err := s.outDialogs.ReadBye(req, tx); err != nil {
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	}
}

func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	// A CANCEL matching a pending INVITE never gets here: the transaction
	// layer answers it.
	s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

// onOptions answers an OPTIONS that reached sipgo: over TCP, or in one of
// our dialogs. Over UDP the screen answers the others the same way.
func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	code, reason, hdrs := s.optionsAnswer()
	s.respond(req, tx, code, reason, hdrs...)
}

// optionsAnswer is the answer to OPTIONS (RFC 3261 §11.2): 200 with what
// we allow and accept, or 503 while draining.
func (s *Server) optionsAnswer() (int, string, []sip.Header) {
	code, reason := sip.StatusOK, "OK"
	if s.bridge.Draining() {
		code, reason = sip.StatusServiceUnavailable, "Draining"
	}
	return code, reason, []sip.Header{sip.NewHeader("Allow", allowMethods),
		sip.NewHeader("Accept", "application/sdp, application/dtmf-relay, application/dtmf")}
}

// onInfo takes DTMF by SIP INFO (application/dtmf-relay, application/dtmf).
func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	l, _ := s.findLeg(req)
	if l == nil {
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if len(req.Body()) == 0 {
		s.respond(req, tx, sip.StatusOK, "OK") // keep-alive INFO
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	d, err := dtmf.ParseInfo(ct, req.Body())
	if err != nil {
		l.log.Info("bad INFO", "err", err)
		s.respond(req, tx, sip.StatusUnsupportedMediaType, "Unsupported Media Type",
			sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
		return
	}
	s.respond(req, tx, sip.StatusOK, "OK")
	l.call.Digit(d)
}

// onReInvite handles a re-INVITE: hold and resume, a new remote address,
// a session refresh.
func (s *Server) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	c, dlg := s.findLeg(req)
	if c == nil {
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	waitConfirmed(dlg)
	if err := dlg.ReadRequest(req, tx); err != nil {
		s.respond(req, tx, sip.StatusInternalServerError, "Server Error", sip.NewHeader("Retry-After", "1"))
		return
	}
	body, err := c.update(req.Body())
	if err != nil {
		code, reason := statusFor(err)
		s.respond(req, tx, code, reason)
		return
	}
	res := sip.NewSDPResponseFromRequest(req, body)
	ct := s.contact(req.Transport())
	res.AppendHeader(&ct)
	c.respondReliably(req, tx, res)
}

// onUpdate handles UPDATE (RFC 3311), mostly session-timer refreshes.
func (s *Server) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	c, dlg := s.findLeg(req)
	if c == nil {
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	waitConfirmed(dlg)
	if err := dlg.ReadRequest(req, tx); err != nil {
		s.respond(req, tx, sip.StatusInternalServerError, "Server Error", sip.NewHeader("Retry-After", "1"))
		return
	}
	if len(req.Body()) == 0 {
		s.respond(req, tx, sip.StatusOK, "OK")
		return
	}
	body, err := c.update(req.Body())
	if err != nil {
		code, reason := statusFor(err)
		s.respond(req, tx, code, reason)
		return
	}
	_ = tx.Respond(sip.NewSDPResponseFromRequest(req, body))
}

// awaitApplication tells the application of an incoming call that it
// arrived (the incomingcall event) and, when it rings (no autoAnswer),
// rings (180) until the application answers, rejects or hangs up, the
// caller cancels, or Config.IncomingCallTimeout passes. It reports whether
// to answer; otherwise the call was turned away and ended:
//   - rejected: 603 Decline (RFC 3261 §21.6.2: the callee does not wish
//     to take the call), cause CALL_REJECTED;
//   - hung up by the application before answering: 480 Temporarily
//     Unavailable, cause NORMAL_CLEARING;
//   - no decision in time: 480 Temporarily Unavailable (RFC 3261
//     §21.4.18), cause NO_ANSWER.
func (s *Server) awaitApplication(c *inCall, req *sip.Request, rings bool) bool {
	if rings {
		ct := s.contact(req.Transport())
		_ = c.dlg.Respond(sip.StatusRinging, "Ringing", nil, &ct)
	}
	c.call.Offer()
	if !rings {
		return true
	}
	timeout := s.bridge.Config().IncomingCallTimeout
	d := c.call.AwaitDecision(c.dlg.Context(), timeout)
	var code int
	var reason, cause string
	switch d {
	case bridge.DecisionAnswer:
		return true
	case bridge.DecisionReject:
		code, reason, cause = statusDecline, "Decline", bridge.CauseRejected
	case bridge.DecisionHangup:
		code, reason, cause = sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", bridge.CauseNormalClearing
	default:
		if c.dlg.Context().Err() != nil {
			c.log.Info("cancelled while ringing for the application")
			c.call.Ended(bridge.CauseOriginatorCancel)
			return false
		}
		code, reason, cause = sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", bridge.CauseNoAnswer
	}
	c.log.Info("incoming call turned away", "status", code, "cause", cause, "timeout", timeout)
	_ = c.dlg.Respond(code, reason, nil)
	c.call.Ended(cause)
	return false
}

// statusDecline is 603 Decline (RFC 3261 §21.6.2), which sipgo does not
// name.
const statusDecline = 603
