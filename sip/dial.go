package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
	"chorus/media"
)

// outCall is a call we dialled. It implements bridge.Leg.
type outCall struct {
	*leg
	cancel context.CancelFunc // abandons the dial while it rings

	dmu sync.Mutex
	dlg *sipgo.DialogClientSession
	// natTarget, when set, is where in-dialog requests to the callee go
	// instead of its private Contact (see natTargetOfAnswer).
	natTarget string
}

// Hangup implements bridge.Leg: BYE once answered, else CANCEL.
func (c *outCall) Hangup(ctx context.Context, cause string) error {
	c.dmu.Lock()
	dlg := c.dlg
	c.dmu.Unlock()
	c.log.Info("hanging up", "cause", cause)
	if dlg == nil || dlg.LoadState() < sip.DialogStateConfirmed {
		c.cancel() // WaitAnswer sends CANCEL
		return nil
	}
	if err := c.bye(ctx, dlg); err != nil {
		return fmt.Errorf("bye: %w", err)
	}
	return nil
}

// bye sends BYE to the callee: to its remote target, or, behind a NAT, to
// where its answer came from.
func (c *outCall) bye(ctx context.Context, dlg *sipgo.DialogClientSession) error {
	c.dmu.Lock()
	target := c.natTarget
	c.dmu.Unlock()
	if target == "" {
		return dlg.Bye(ctx)
	}
	ct := dlg.InviteResponse.Contact()
	bye := sip.NewRequest(sip.BYE, *ct.Address.Clone())
	bye.SetDestination(target)
	return dlg.WriteBye(ctx, bye)
}

// Dial implements bridge.Dialer: an INVITE to a SIP URI with our offer. A
// target the outbound request policy refuses fails before the INVITE is
// sent, with an error wrapping egress.ErrRefused (see dialDestination).
func (s *Server) Dial(ctx context.Context, call *bridge.Call, from, to string) error {
	var uri sip.Uri
	if err := sip.ParseUri(to, &uri); err != nil || uri.Host == "" {
		return fmt.Errorf("dial %q: bad SIP URI", to)
	}
	if strings.ContainsAny(from, "\r\n<>\" ") {
		return fmt.Errorf("dial: bad from %q", from)
	}
	transport := "udp"
	if t, ok := uri.UriParams.Get("transport"); ok {
		transport = strings.ToLower(t)
	}
	dest, err := s.dialDestination(ctx, uri, transport)
	if err != nil {
		return fmt.Errorf("dial %s: %w", to, err)
	}
	conn, err := s.ports.Listen()
	if err != nil {
		return err
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	sess, err := media.NewSession(conn, func() { s.ports.Release(port) })
	if err != nil {
		_ = conn.Close()
		return err
	}
	s.media.track(sess)
	ctx, cancel := context.WithCancel(ctx)
	c := &outCall{leg: &leg{s: s, sess: sess, call: call, sessionID: randUint64(), done: ctx.Done(),
		log: s.log.With("call", call.ID(), "to", to)}, cancel: cancel}
	call.SetLeg(c)
	// The Call-ID is ours, known before the INVITE leaves: to the UDP
	// screen, which lets the callee's requests through to sipgo, and to
	// awaitDial, which holds them until the answer is taken (callids.go).
	id := sip.CallIDHeader(sip.GenerateTagN(24))
	taken := make(chan struct{})
	s.mu.Lock()
	s.dialling[string(id)] = taken
	s.mu.Unlock()
	s.callIDs.add(string(id))
	defer func() {
		s.mu.Lock()
		delete(s.dialling, string(id))
		s.mu.Unlock()
		close(taken)
	}()
	fail := func(err error) error {
		cancel()
		_ = s.media.close(sess)
		s.callIDs.remove(string(id))
		return err
	}

	if s.requiresSRTP(transport) {
		if err := c.offerSRTP(); err != nil {
			return fail(err)
		}
	}
	offer, err := c.offer()
	if err != nil {
		return fail(err)
	}
	req := sip.NewRequest(sip.INVITE, uri)
	req.SetTransport(strings.ToUpper(transport))
	req.SetDestination(dest.String())
	req.SetBody(offer)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	fromHdr := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: s.cfg.PublicIP.String()}, Params: sip.NewParams()}
	fromHdr.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fromHdr)
	req.AppendHeader(&id)
	ct := s.contact(transport)
	req.AppendHeader(&ct)
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))

	dlg, err := s.outDialogs.WriteInvite(ctx, req)
	if err != nil {
		return fail(fmt.Errorf("invite %s: %w", to, err))
	}
	c.dmu.Lock()
	c.dlg = dlg
	c.dmu.Unlock()
	if err := dlg.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		_ = dlg.Close()
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return fail(&bridge.DialError{Status: de.Res.StatusCode, Reason: de.Res.Reason})
		}
		return fail(fmt.Errorf("invite %s: %w", to, err))
	}
	ans, err := ParseSDP(dlg.InviteResponse.Body())
	if err == nil && !ans.Remote().IsValid() {
		err = fmt.Errorf("%w: answer has no address", ErrBadSDP)
	}
	if err == nil {
		err = c.applyAnswerSRTP(ans)
	}
	var format Format
	var te uint8
	if err == nil {
		format, te, err = c.chooseAnswer(ans)
	}
	ack := dlg.Ack
	if t := natTargetOfAnswer(dlg.InviteResponse); t != "" {
		c.log.Info("callee behind NAT; in-dialog requests go to its source", "source", t)
		c.dmu.Lock()
		c.natTarget = t
		c.dmu.Unlock()
		ack = func(ctx context.Context) error {
			// sipgo fills in the dialog's headers; only the target moves.
			req := sip.NewRequest(sip.ACK, *dlg.InviteResponse.Contact().Address.Clone())
			req.SetDestination(t)
			return dlg.WriteAck(ctx, req)
		}
	}
	if err := ack(ctx); err != nil {
		_ = dlg.Close()
		return fail(fmt.Errorf("ack: %w", err))
	}
	if err != nil {
		c.log.Info("bad answer", "err", err)
		_ = c.bye(context.WithoutCancel(ctx), dlg)
		_ = dlg.Close()
		return fail(err)
	}
	sess.SetParams(params(ans.Remote(), format, te, answerDirection(ans)))
	s.mu.Lock()
	s.outCalls[dlg.ID] = c
	s.mu.Unlock()
	call.Answered()
	c.log.Info("call answered", "remote", ans.Remote(), "codec", format.Codec, "pt", format.PT, "rtp", sess.LocalAddr())
	context.AfterFunc(dlg.Context(), func() {
		s.mu.Lock()
		delete(s.outCalls, dlg.ID)
		s.mu.Unlock()
		s.callIDs.remove(string(id))
		call.Ended("hangup")
		_ = dlg.Close()
		_ = s.media.close(sess)
		cancel()
		c.log.Info("call ended", statsAttr(sess))
	})
	return nil
}

// dialDestination resolves the host of a dial-out target with the outbound
// request policy (cfg.Targets) and returns the checked address the INVITE
// goes to, for UDP, TCP and TLS alike: sipgo is given this address, never
// the name, so it cannot resolve the name again to somewhere the policy
// refuses (DNS rebinding). The Request-URI keeps the name. A target that
// is a refused address, or a name that resolves only to refused addresses,
// fails with an error wrapping egress.ErrRefused before any packet is sent.
// Names are looked up as A/AAAA records (RFC 3263 §4.2 with a port or a
// literal); SRV records are not consulted.
func (s *Server) dialDestination(ctx context.Context, uri sip.Uri, transport string) (netip.AddrPort, error) {
	port := uri.Port
	if port <= 0 || port > 65535 {
		port = sip.DefaultPort(transport)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(uri.Host, "["), "]")
	addrs, err := s.cfg.Targets.Resolve(ctx, host, uint16(port))
	if err != nil {
		return netip.AddrPort{}, err
	}
	// IPv4 first, as sipgo prefers it and the RTP socket is IPv4 by default.
	for _, a := range addrs {
		if a.Is4() {
			return netip.AddrPortFrom(a, uint16(port)), nil
		}
	}
	return netip.AddrPortFrom(addrs[0], uint16(port)), nil
}
