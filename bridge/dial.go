package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"chorus/internal/egress"
)

// ErrNoDialer means outbound calls are not configured.
var ErrNoDialer = errors.New("outbound calling is not available")

// Dialer places outbound calls; package sip implements it.
type Dialer interface {
	// Dial calls to (a SIP URI) on behalf of call. It attaches the call's
	// Leg with SetLeg as soon as signalling starts, marks it Answered on
	// 2xx, and returns when the call is answered or has failed. When it
	// returns an error the call has not been answered.
	Dial(ctx context.Context, call *Call, from, to string) error
}

// SetDialer sets who places outbound calls. Call it before traffic starts.
func (b *Bridge) SetDialer(d Dialer) { b.dialer = d }

// DialOptions describe an outbound call.
type DialOptions struct {
	UserID, From, To string
	Callback         Callback
	// ConferenceID, if set, makes the answered call a member of that
	// conference.
	ConferenceID string
	// Timeout bounds the ringing (default 60 s).
	Timeout time.Duration
	// bridgeTo, if set, is the call being transferred to this one
	// (transfer.go): the answered call is bridged to it.
	bridgeTo *Call
	// appID is the application of the call being transferred: the new
	// call's events go to it too, unless Callback says otherwise.
	appID string
}

// DialOut starts an outbound call and returns it at once, in state started.
// The call becomes active when answered, or completed with a cause when the
// dial fails.
func (b *Bridge) DialOut(opts DialOptions) (*Call, error) {
	if b.dialer == nil {
		return nil, ErrNoDialer
	}
	if b.Draining() {
		return nil, ErrDraining
	}
	var conf *Conference
	if opts.ConferenceID != "" {
		c, ok := b.Conference(opts.ConferenceID)
		if !ok || c.UserID() != opts.UserID {
			return nil, fmt.Errorf("conference %s: %w", opts.ConferenceID, ErrNotFound)
		}
		if c.State() == StateCompleted {
			return nil, fmt.Errorf("conference %s: %w", opts.ConferenceID, ErrConferenceComplete)
		}
		conf = c
	}
	requested := opts.Timeout
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	call := b.NewCall(opts.UserID, opts.From, opts.To, DirectionOut, nil, opts.Callback)
	call.mu.Lock()
	call.dialTimeout = requested
	call.appID = opts.appID
	if conf != nil {
		call.confID = conf.id
	}
	call.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		defer cancel()
		if err := b.dialer.Dial(ctx, call, opts.From, opts.To); err != nil {
			call.log.Info("dial failed", "to", opts.To, "err", err)
			call.Ended(dialCause(err))
			return
		}
		if opts.bridgeTo != nil {
			b.bridgePair(opts.bridgeTo, call)
			return
		}
		if conf != nil {
			if _, err := conf.AddMember(call, MemberOptions{}); err != nil {
				call.log.Info("join after dial failed", "err", err)
				_ = call.Hangup(context.Background(), "join-failed")
			}
		}
	}()
	return call, nil
}

// DialError carries the SIP status of a failed outbound call.
type DialError struct {
	Status int
	Reason string
}

func (e *DialError) Error() string { return fmt.Sprintf("dial: %d %s", e.Status, e.Reason) }

// dialCause names why a dial failed, in Catapult's hangup cause words.
func dialCause(err error) string {
	var de *DialError
	switch {
	case errors.As(err, &de):
		switch de.Status {
		case 486, 600:
			return "USER_BUSY"
		case 480, 408:
			return "NO_ANSWER"
		case 404, 484, 604:
			return "UNALLOCATED_NUMBER"
		case 603:
			return "CALL_REJECTED"
		}
		return "NORMAL_TEMPORARY_FAILURE"
	case errors.Is(err, context.DeadlineExceeded):
		return "NO_ANSWER"
	case errors.Is(err, egress.ErrRefused):
		// The outbound request policy refused the target (Q.850 cause 52).
		return "OUTGOING_CALL_BARRED"
	}
	return "NORMAL_TEMPORARY_FAILURE"
}
