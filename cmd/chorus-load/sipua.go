package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"

	"chorus/media"
)

// agent is the one SIP user agent every caller shares: one UDP socket, one
// sipgo client and a dialog cache holding all the dialogs.
type agent struct {
	log      *slog.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	cache    *sipgo.DialogClientCache
	pc       net.PacketConn
	localIP  string
	byDialog sync.Map // dialog id -> *caller
}

func newAgent(ctx context.Context, localIP string, log *slog.Logger) (*agent, error) {
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("chorus-load"), sipgo.WithUserAgentHostname(localIP))
	if err != nil {
		return nil, err
	}
	a := &agent{log: log, ua: ua, localIP: localIP}
	a.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, err
	}
	a.srv.OnBye(a.onBye)
	ok := func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}
	a.srv.OnOptions(ok)
	a.srv.OnInfo(ok)
	a.srv.OnUpdate(ok)
	a.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	a.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		// re-INVITEs are not part of the load: refuse them
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Here", nil))
	})

	a.pc, err = net.ListenPacket("udp", net.JoinHostPort(localIP, "0"))
	if err != nil {
		return nil, fmt.Errorf("SIP listen: %w", err)
	}
	go func() { _ = a.srv.ServeUDP(a.pc) }()
	listen := a.pc.LocalAddr().String()
	// sipgo: a request forced onto the listener socket fails until the
	// listener is in the transport's pool.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if c, err := ua.TransportLayer().GetConnection("udp", listen); err == nil && c != nil {
			c.TryClose()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.Close()
			return nil, errors.New("SIP listener did not start")
		}
		time.Sleep(time.Millisecond)
	}
	a.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(localIP), sipgo.WithClientLogger(log),
		sipgo.WithClientConnectionAddr(listen))
	if err != nil {
		a.Close()
		return nil, err
	}
	port := a.pc.LocalAddr().(*net.UDPAddr).Port
	a.cache = sipgo.NewDialogClientCache(a.client, sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: "load", Host: localIP, Port: port}})
	return a, nil
}

func (a *agent) Close() {
	if a.pc != nil {
		_ = a.pc.Close()
	}
	_ = a.ua.Close()
}

func (a *agent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	dlg, err := a.cache.MatchRequestDialog(req)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if v, ok := a.byDialog.Load(dlg.ID); ok {
		c := v.(*caller)
		c.byeFromBridge.Store(true)
		a.log.Warn("bridge hung up", "caller", c.idx, "room", c.room)
	}
	_ = dlg.ReadBye(req, tx)
}

// call places caller c's call into its room and, once answered, starts
// its media.
func (a *agent) call(ctx context.Context, c *caller, target netip.AddrPort, cfg Config) error {
	c.attempted = true
	room := strconv.Itoa(cfg.FirstRoom + c.room)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: room, Host: target.Addr().String(), Port: int(target.Port())})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "load" + strconv.Itoa(c.idx), Host: a.localIP}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	offer, err := buildOffer(c.local, cfg.Codec)
	if err != nil {
		return err
	}
	req.SetBody(offer)

	t0 := time.Now()
	dlg, err := a.cache.WriteInvite(ctx, req)
	if err != nil {
		return fmt.Errorf("INVITE: %w", err)
	}
	if err := dlg.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return fmt.Errorf("%d %s", de.Res.StatusCode, de.Res.Reason)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no answer in %s", cfg.SetupTimeout)
		}
		return err
	}
	c.setup = time.Since(t0)
	c.answeredAt = time.Now()
	a.byDialog.Store(dlg.ID, c)
	remote, err := parseAnswer(dlg.InviteResponse.Body(), cfg.Codec)
	if err != nil {
		_ = dlg.Ack(ctx)
		bctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = dlg.Bye(bctx)
		return err
	}
	if err := dlg.Ack(ctx); err != nil {
		return fmt.Errorf("ACK: %w", err)
	}
	c.remote = remote
	c.remoteSA, c.remoteSALen = rawSockaddr(remote)
	c.dlg = dlg
	c.active.Store(true)
	return nil
}

func (a *agent) hangup(ctx context.Context, c *caller) error {
	defer a.byDialog.Delete(c.dlg.ID)
	err := c.dlg.Bye(ctx)
	if err != nil && c.byeFromBridge.Load() {
		return nil // crossed with the bridge's BYE
	}
	return err
}

// buildOffer returns an SDP offer for one codec and telephone-event.
func buildOffer(local netip.AddrPort, codec media.Codec) ([]byte, error) {
	ip := local.Addr().String()
	id := uint64(time.Now().UnixNano()) >> 2
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: int(local.Port())},
			Protos: []string{"RTP", "AVP"}},
	}
	// Opus is opus/48000/2 (RFC 7587 §7) with telephone-event at its
	// 48 kHz clock; the others are at 8000 (G.722 too, RFC 3551 §4.5.2).
	clock := uint32(codec.RTPClockRate())
	switch codec {
	case media.Opus:
		md.WithCodec(codec.PayloadType(), codec.String(), clock, 2, "useinbandfec=1")
	default:
		md.WithCodec(codec.PayloadType(), codec.String(), clock, 0, "")
	}
	md.WithCodec(101, "telephone-event", clock, 0, "0-16")
	md.WithValueAttribute("ptime", "20")
	md.WithPropertyAttribute("sendrecv")
	s := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "-", SessionID: id, SessionVersion: id, NetworkType: "IN",
			AddressType: "IP4", UnicastAddress: ip},
		SessionName:           "chorus-load",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: "IP4", Address: &sdp.Address{Address: ip}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
		MediaDescriptions:     []*sdp.MediaDescription{md},
	}
	if local.Addr().Is6() {
		s.Origin.AddressType, s.ConnectionInformation.AddressType = "IP6", "IP6"
	}
	return s.Marshal()
}

// parseAnswer returns where to send RTP, checking the answer kept our codec.
func parseAnswer(body []byte, codec media.Codec) (netip.AddrPort, error) {
	var s sdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return netip.AddrPort{}, fmt.Errorf("answer SDP: %w", err)
	}
	for _, md := range s.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		ci := s.ConnectionInformation
		if md.ConnectionInformation != nil {
			ci = md.ConnectionInformation
		}
		if ci == nil || ci.Address == nil {
			return netip.AddrPort{}, errors.New("answer SDP: no c= line")
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(ci.Address.Address))
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("answer SDP: c= %q: %w", ci.Address.Address, err)
		}
		if len(md.MediaName.Formats) == 0 || md.MediaName.Formats[0] != strconv.Itoa(int(codec.PayloadType())) {
			return netip.AddrPort{}, fmt.Errorf("answer SDP: formats %v, want %s first", md.MediaName.Formats, codec)
		}
		return netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value)), nil
	}
	return netip.AddrPort{}, errors.New("answer SDP: no audio stream")
}

// waitReady sends OPTIONS to target until it answers 200.
func waitReady(ctx context.Context, target, localIP string) error {
	conn, err := net.ListenPacket("udp", net.JoinHostPort(localIP, "0"))
	if err != nil {
		return err
	}
	defer conn.Close()
	dst, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return err
	}
	la := conn.LocalAddr().String()
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ready-%d-%d\r\n"+
			"From: <sip:load@%s>;tag=ready%d\r\nTo: <sip:%s>\r\nCall-ID: ready-%d@%s\r\nCSeq: %d OPTIONS\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", target, la, time.Now().UnixNano(), i, localIP, i, target, time.Now().UnixNano(), la, i+1)
		if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := conn.ReadFrom(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no 200 to OPTIONS from %s", target)
		}
	}
}
