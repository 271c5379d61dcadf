package sip

import (
	"context"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
)

// Transfer by REFER (RFC 3515): the peer is asked, in the call's dialog,
// to call the target itself. It answers 202 and reports the new call's
// progress in NOTIFYs with a message/sipfrag body (§2.4.4), which we
// acknowledge and log; when it has been transferred it hangs up on us
// with a BYE, which ends the call as any BYE does.

var (
	_ bridge.Referrer = (*inCall)(nil)
	_ bridge.Referrer = (*outCall)(nil)
)

// allowsRefer reports whether an Allow header lists REFER (RFC 3261
// §20.5: method names, comma-separated, case-sensitive).
func allowsRefer(m sip.Message) bool {
	for _, h := range m.GetHeaders("Allow") {
		for _, method := range strings.Split(h.Value(), ",") {
			if strings.TrimSpace(method) == string(sip.REFER) {
				return true
			}
		}
	}
	return false
}

// newRefer builds a REFER to recipient with Refer-To target, refusing a
// target that would break the header.
func newRefer(recipient sip.Uri, target string) (*sip.Request, error) {
	var uri sip.Uri
	if err := sip.ParseUri(target, &uri); err != nil || uri.Host == "" || strings.ContainsAny(target, "\r\n<>\" ") {
		return nil, fmt.Errorf("refer: bad SIP URI %q", target)
	}
	req := sip.NewRequest(sip.REFER, recipient)
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+target+">"))
	return req, nil
}

// referFailed turns a non-2xx answer into an error.
func referFailed(res *sip.Response, err error) error {
	if err != nil {
		return fmt.Errorf("refer: %w", err)
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("refer: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// CanRefer implements bridge.Referrer: the caller's INVITE allows REFER.
func (c *inCall) CanRefer() bool { return allowsRefer(c.dlg.InviteRequest) }

// Refer implements bridge.Referrer: a REFER in the dialog to the caller,
// sent where its BYE would go.
func (c *inCall) Refer(ctx context.Context, target string) error {
	bye := c.newBye() // the caller's target, transport and NAT destination
	req, err := newRefer(bye.Recipient, target)
	if err != nil {
		return err
	}
	req.SetTransport(bye.Transport())
	if dst := bye.Destination(); dst != "" {
		req.SetDestination(dst)
	}
	if ct := bye.Contact(); ct != nil {
		req.AppendHeader(ct)
	}
	return referFailed(c.dlg.Do(ctx, req))
}

// CanRefer implements bridge.Referrer: the callee's 200 allows REFER.
func (c *outCall) CanRefer() bool {
	c.dmu.Lock()
	dlg := c.dlg
	c.dmu.Unlock()
	return dlg != nil && dlg.InviteResponse != nil && allowsRefer(dlg.InviteResponse)
}

// Refer implements bridge.Referrer: a REFER in the dialog to the callee
// (to where its answer came from, behind a NAT).
func (c *outCall) Refer(ctx context.Context, target string) error {
	c.dmu.Lock()
	dlg, dst := c.dlg, c.natTarget
	c.dmu.Unlock()
	if dlg == nil || dlg.LoadState() < sip.DialogStateConfirmed {
		return fmt.Errorf("refer: %w", sipgo.ErrDialogDoesNotExists)
	}
	req, err := newRefer(*dlg.InviteResponse.Contact().Address.Clone(), target)
	if err != nil {
		return err
	}
	if dst != "" {
		req.SetDestination(dst)
	}
	return referFailed(dlg.Do(ctx, req))
}

// onNotify answers the NOTIFYs of a REFER's implicit subscription (RFC
// 3515 §2.4.4) in a call's dialog; their sipfrag status line is logged
// (a few per transfer). A NOTIFY outside any dialog gets 481.
func (s *Server) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	l, _ := s.findLeg(req)
	if l == nil {
		s.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	s.respond(req, tx, sip.StatusOK, "OK")
	status, _, _ := strings.Cut(string(req.Body()), "\n")
	l.log.Info("transfer progress", "sipfrag", strings.TrimSpace(status))
}
