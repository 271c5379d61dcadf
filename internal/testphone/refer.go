package testphone

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A phone dialled with Options.AcceptRefer lists REFER in its Allow
// header and takes a REFER in its dialog as a transferee does (RFC 3515
// §2.4): 202 Accepted, the Refer-To target reported on Referred, a NOTIFY
// with a message/sipfrag body "SIP/2.0 200 OK" that ends the implicit
// subscription (§2.4.4, §2.4.7), then a BYE on the transferor. It does
// not call the target itself: the test does that if it wants to.

// allowHeader is the phone's Allow value.
func (p *Phone) allowHeader() string {
	const base = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, NOTIFY"
	if p.opts.AcceptRefer {
		return base + ", REFER"
	}
	return base
}

// Referred delivers the Refer-To value of each REFER the phone accepted.
func (p *Phone) Referred() <-chan string { return p.referred }

// NotifyStatus is the status code of the answer to the phone's NOTIFY
// after a REFER (0 before it came).
func (p *Phone) NotifyStatus() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notifyStatus
}

func (p *Phone) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	dlg, ok := p.matches(req)
	switch {
	case !ok:
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	case !p.opts.AcceptRefer:
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", p.allowHeader()))
		tx.Respond(res)
		return
	}
	to := req.GetHeader("Refer-To")
	if to == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Missing Refer-To", nil))
		return
	}
	tx.Respond(sip.NewResponseFromRequest(req, sip.StatusAccepted, "Accepted", nil))
	select {
	case p.referred <- to.Value():
	default:
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n := p.newRequest(dlg, sip.NOTIFY)
		n.AppendHeader(sip.NewHeader("Event", "refer"))
		n.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
		n.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
		n.SetBody([]byte("SIP/2.0 200 OK\r\n"))
		if res, err := dlg.Do(ctx, n); err == nil {
			p.mu.Lock()
			p.notifyStatus = res.StatusCode
			p.mu.Unlock()
		} else {
			p.log.Warn("testphone: NOTIFY after REFER", "error", err)
		}
		_ = p.Hangup(ctx)
	}()
}
