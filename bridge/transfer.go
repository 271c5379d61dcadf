package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Transfer of a call that is in no conference (issue 13; Catapult's
// POST /calls/{id} {"state":"transferring","transferTo"}). Where the peer
// says it takes REFER (RFC 3515), it is asked to call the target itself
// and the bridge leaves the path once it hangs up. Otherwise the bridge
// dials the target (DialOut, so the outbound policy applies) and, when it
// answers, bridges the two calls in an internal room of two: the room of
// a parked call (callmedia.go), mixed like any room but invisible to the
// API and raising no conference events. When either call of the pair
// ends, the other is hung up.

// Referrer is implemented by a Leg whose peer can be asked to call
// someone else (SIP REFER, RFC 3515 §2.4.1).
type Referrer interface {
	// CanRefer reports whether the peer listed REFER in the Allow header
	// of its INVITE or its 200 (RFC 3261 §20.5).
	CanRefer() bool
	// Refer sends a REFER with Refer-To target in the call's dialog and
	// returns once the peer accepted it (2xx) or refused.
	Refer(ctx context.Context, target string) error
}

// ErrInConference means the call is a member of a conference; only a
// call in no conference is transferred.
var ErrInConference = errors.New("call is in a conference")

// How a transfer is carried out: Event.Status of EventTransferring, whose
// State is "transferring" and To the target.
const (
	TransferRefer = "refer" // the peer was sent a REFER
	TransferDial  = "dial"  // a new call to the target, bridged to this one
)

// TransferOptions describe a transfer.
type TransferOptions struct {
	To   string // the target, a SIP URI
	From string // caller id of a new leg; "" for the call's own from
	// Callback receives the new leg's events; zero: the call's.
	Callback Callback
	// Timeout bounds the new leg's ringing (default 60 s).
	Timeout time.Duration
}

// referTimeout bounds the wait for the peer's answer to a REFER.
const referTimeout = 5 * time.Second

// Transfer moves the call, which must be active and in no conference, to
// opts.To: by REFER where the peer supports it and accepts (it returns
// nil then), else by a new outbound call it returns at once, in state
// started, that is bridged to this call when it answers. A REFER the peer
// refuses falls back to the new call.
func (c *Call) Transfer(ctx context.Context, opts TransferOptions) (*Call, error) {
	c.joinMu.Lock()
	defer c.joinMu.Unlock()
	leg := c.Leg()
	if leg == nil || c.State() != CallActive {
		return nil, fmt.Errorf("transfer %s: %w", c.id, ErrCallNotActive)
	}
	if m := c.Member(); m != nil && (!m.conf.internal || m.conf.pair) {
		return nil, fmt.Errorf("transfer %s: %w", c.id, ErrInConference)
	}
	info := c.Info()
	if r, ok := leg.(Referrer); ok && r.CanRefer() {
		rctx, cancel := context.WithTimeout(ctx, referTimeout)
		err := r.Refer(rctx, opts.To)
		cancel()
		if err == nil {
			c.log.Info("transfer by REFER", "to", opts.To)
			c.b.publish(Event{Type: EventTransferring, UserID: c.userID, CallID: c.id, State: EventTransferring,
				Status: TransferRefer, From: info.From, To: opts.To, Tag: info.Callback.Tag})
			return nil, nil
		}
		c.log.Info("REFER refused: dialling the target instead", "to", opts.To, "err", err)
	}
	from := opts.From
	if from == "" {
		from = info.From
	}
	cb := opts.Callback
	if cb.URL == "" {
		cb = info.Callback
	}
	out, err := c.b.DialOut(DialOptions{UserID: c.userID, From: from, To: opts.To, Callback: cb, Timeout: opts.Timeout,
		bridgeTo: c, appID: info.ApplicationID})
	if err != nil {
		return nil, fmt.Errorf("transfer %s: %w", c.id, err)
	}
	c.log.Info("transfer by a new call", "to", opts.To, "new_call", out.id)
	c.b.publish(Event{Type: EventTransferring, UserID: c.userID, CallID: c.id, State: EventTransferring,
		Status: TransferDial, From: info.From, To: opts.To, Tag: info.Callback.Tag})
	return out, nil
}

// bridgePair puts two answered calls in an internal room of their own,
// where each hears the other. If a cannot join (it ended while b rang),
// b is hung up.
func (b *Bridge) bridgePair(a, c *Call) {
	room := newConference(b, ConferenceOptions{UserID: a.userID, Profile: ProfilePassthruDigits})
	room.internal = true
	room.pair = true
	for _, call := range []*Call{a, c} {
		if _, err := room.AddMember(call, MemberOptions{}); err != nil {
			call.log.Info("transfer: bridging failed", "err", err)
			room.Complete()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = a.Hangup(ctx, "join-failed")
			_ = c.Hangup(ctx, "join-failed")
			cancel()
			return
		}
	}
	a.log.Info("transfer: bridged", "new_call", c.id)
}
