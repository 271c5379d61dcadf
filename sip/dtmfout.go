package sip

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
)

// DTMF out by SIP INFO, for calls that negotiated no telephone-event: the
// body is application/dtmf-relay, the de-facto format (Cisco's, which
// Asterisk, FreeSWITCH and phones read; RFC 6086 leaves INFO packages'
// bodies to their definitions), with the duration in milliseconds.

var (
	_ bridge.InfoDigitSender = (*inCall)(nil)
	_ bridge.InfoDigitSender = (*outCall)(nil)
)

// dtmfRelay is the application/dtmf-relay body of one digit.
func dtmfRelay(digit rune, d time.Duration) []byte {
	return fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", digit, d.Milliseconds())
}

// infoFailed turns a non-2xx answer into an error.
func infoFailed(res *sip.Response, err error) error {
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("info: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// SendInfoDigit implements bridge.InfoDigitSender: an INFO in the dialog
// to the caller, sent where its BYE would go.
func (c *inCall) SendInfoDigit(ctx context.Context, digit rune, d time.Duration) error {
	bye := c.newBye() // the caller's target, transport and NAT destination
	req := sip.NewRequest(sip.INFO, bye.Recipient)
	req.SetTransport(bye.Transport())
	if dst := bye.Destination(); dst != "" {
		req.SetDestination(dst)
	}
	if ct := bye.Contact(); ct != nil {
		req.AppendHeader(ct)
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(dtmfRelay(digit, d))
	return infoFailed(c.dlg.Do(ctx, req))
}

// SendInfoDigit implements bridge.InfoDigitSender: an INFO in the dialog
// to the callee (to where its answer came from, behind a NAT).
func (c *outCall) SendInfoDigit(ctx context.Context, digit rune, d time.Duration) error {
	c.dmu.Lock()
	dlg, target := c.dlg, c.natTarget
	c.dmu.Unlock()
	if dlg == nil || dlg.LoadState() < sip.DialogStateConfirmed {
		return fmt.Errorf("info: %w", sipgo.ErrDialogDoesNotExists)
	}
	req := sip.NewRequest(sip.INFO, *dlg.InviteResponse.Contact().Address.Clone())
	if target != "" {
		req.SetDestination(target)
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(dtmfRelay(digit, d))
	return infoFailed(dlg.Do(ctx, req))
}
