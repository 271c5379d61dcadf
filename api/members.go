package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"chorus/bridge"
)

// memberJSON is the ConferenceMember resource (spec §2.8) plus the
// extensions of design.md: talkVolume, receiveVolume, sensitivity, talking.
type memberJSON struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	AddedTime     string `json:"addedTime"`
	RemovedTime   string `json:"removedTime,omitempty"`
	Hold          bool   `json:"hold"`
	Mute          bool   `json:"mute"`
	JoinTone      bool   `json:"joinTone"`
	LeavingTone   bool   `json:"leavingTone"`
	Call          string `json:"call"`
	TalkVolume    int    `json:"talkVolume"`
	ReceiveVolume int    `json:"receiveVolume"`
	Sensitivity   int    `json:"sensitivity"`
	Talking       bool   `json:"talking"`
	PhoneHold     bool   `json:"phoneHold"`       // extension: the phone holds the call (RFC 3264 §8.4)
	Codec         string `json:"codec,omitempty"` // extension: what the member's call sends and hears, while it lasts
	// RTP is an extension: what the member's call has received, while
	// it lasts.
	RTP *memberRTPJSON `json:"rtp,omitempty"`
}

// memberRTPJSON is a call's reception as an RTCP receiver report states it
// (RFC 3550 §6.4.1, media.Reception), over the whole call.
type memberRTPJSON struct {
	PacketsReceived uint64  `json:"packetsReceived"`
	PacketsLost     uint64  `json:"packetsLost"`
	JitterMs        float64 `json:"jitterMs"` // interarrival jitter now, 0.1 ms steps
}

func renderMember(r *http.Request, user string, m *bridge.Member) memberJSON {
	out := renderMemberInfo(r, user, m.Info(), "")
	// An active member's call and its RTP session (none once the call has
	// ended and its media is gone).
	if leg := activeLeg(m); leg != nil {
		if sess := leg.Media(); sess != nil {
			out.Codec = sess.Codec().String()
			rc := sess.Reception()
			out.RTP = &memberRTPJSON{PacketsReceived: rc.Received, PacketsLost: rc.Lost,
				JitterMs: math.Round(float64(rc.Jitter)/float64(100*time.Microsecond)) / 10}
		}
	}
	return out
}

func renderMemberInfo(r *http.Request, user string, in bridge.MemberInfo, codec string) memberJSON {
	return memberJSON{ID: in.ID, State: in.State, AddedTime: formatTime(in.Added), RemovedTime: formatTime(in.Removed),
		Hold: in.Hold, Mute: in.Mute, JoinTone: in.JoinTone, LeavingTone: in.Leaving,
		Call: userURL(r, user, "calls", in.CallID), TalkVolume: in.Talk, ReceiveVolume: in.Receive,
		Sensitivity: in.Sensitivity, Talking: in.Talking, PhoneHold: in.PhoneHold, Codec: codec}
}

// activeLeg returns the signalling of an active member's call, nil once
// it has left.
func activeLeg(m *bridge.Member) bridge.Leg {
	if !m.Active() {
		return nil
	}
	return m.Call().Leg()
}

// Member level limits (design.md: −4..+4 steps).
const (
	minLevel = -4
	maxLevel = 4
)

// readLevel reads talkVolume, receiveVolume or sensitivity.
func readLevel(rd *reader, name string) *int {
	v := rd.integer(name)
	if v == nil {
		return nil
	}
	if *v < minLevel || *v > maxLevel {
		rd.fail(errInvalid("member", name, "must be between %d and %d", minLevel, maxLevel))
		return nil
	}
	n := int(*v)
	return &n
}

// tonesSetter is what a bridge.Member offers, once it does, to change its
// join and leaving tones after it was added.
type tonesSetter interface {
	SetTones(join, leaving bool)
}

// POST /conferences/{id}/members: add a call as a member. 201 with the
// member's Location.
//
// The call must be the user's (else 403 call-id-not-found, the same for a
// call that does not exist). A call still ringing is waited for, up to
// AnswerWait, then 503 call-unavailable; an ended call is 403
// call-invalid-state. A call that is a member elsewhere moves. A call
// dialled with another conferenceId that has not joined it yet is 403
// invalid-call-conference-id.
func (s *server) addMember(w http.ResponseWriter, r *http.Request, user string) error {
	c, err := s.conference(user, r.PathValue("conferenceId"))
	if err != nil {
		return err
	}
	b, err := readBody(w, r, s.maxBody, "member")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	callID := rd.str("callId")
	switch {
	case callID == nil:
		rd.fail(errMissing("member", "callId"))
	case strings.TrimSpace(*callID) == "":
		rd.fail(errBlank("member", "callId"))
	}
	var opts bridge.MemberOptions
	if v := rd.boolean("joinTone"); v != nil {
		opts.JoinTone = *v
	}
	if v := rd.boolean("leavingTone"); v != nil {
		opts.LeavingTone = *v
	}
	opts.Mute = rd.boolean("mute")
	opts.Hold = rd.boolean("hold")
	if rd.err != nil {
		return rd.err
	}
	if c.State() == bridge.StateCompleted {
		return errConferenceState(c.ID(), bridge.StateCompleted)
	}
	call, found := s.call(user, *callID)
	if !found {
		return errCallIDNotFound(*callID)
	}
	// A call dialled with a conferenceId names it on its record until it
	// first joins.
	dialled := ""
	if in := call.Info(); in.Direction == bridge.DirectionOut && in.MemberID == "" {
		dialled = in.ConferenceID
	}
	if dialled != "" && dialled != c.ID() && call.Member() == nil && call.State() != bridge.CallCompleted {
		return errCallConferenceID(c.ID())
	}
	if err := s.waitAnswered(r.Context(), call, dialled == c.ID()); err != nil {
		return err
	}
	m := call.Member()
	if m != nil && m.Conference() == c && m.Active() {
		// Already here (the dial joined it, or a repeated request): apply
		// what can still be applied.
		if opts.Mute != nil {
			m.SetMute(*opts.Mute)
		}
		if opts.Hold != nil {
			m.SetHold(*opts.Hold)
		}
		if ts, ok := any(m).(tonesSetter); ok && (opts.JoinTone || opts.LeavingTone) {
			ts.SetTones(opts.JoinTone, opts.LeavingTone)
		}
	} else {
		m, err = c.AddMember(call, opts)
		switch {
		case errors.Is(err, bridge.ErrMaxMembers):
			return errMaxMembers(c.ID())
		case errors.Is(err, bridge.ErrConferenceComplete):
			return errConferenceState(c.ID(), bridge.StateCompleted)
		case errors.Is(err, bridge.ErrCallNotActive):
			return errCallState(call.ID(), call.State())
		case err != nil:
			return err
		}
	}
	created(w, userURL(r, user, "conferences", c.ID(), "members", m.ID()))
	return nil
}

// answerPoll is how often a waiting members POST looks at its call.
const answerPoll = 10 * time.Millisecond

// joinGrace bounds the wait, after the answer, for a call dialled into
// this conference to be joined by the dial itself.
const joinGrace = 2 * time.Second

// waitAnswered waits while call rings. When joining is set (the call was
// dialled with this conferenceId, so the dial adds it on answer), it also
// waits for that join, so that the request and the dial never add the
// same call twice.
func (s *server) waitAnswered(ctx context.Context, call *bridge.Call, joining bool) error {
	deadline := time.Now().Add(s.answerWait)
	var joinDeadline time.Time
	for {
		switch call.State() {
		case bridge.CallCompleted:
			return errCallState(call.ID(), bridge.CallCompleted)
		case bridge.CallActive:
			if !joining || call.Member() != nil || call.Leg() == nil {
				return nil
			}
			if joinDeadline.IsZero() {
				joinDeadline = time.Now().Add(joinGrace)
			} else if time.Now().After(joinDeadline) {
				return nil
			}
		default:
			if time.Now().After(deadline) {
				return errCallUnavailable(call.ID())
			}
		}
		t := time.NewTimer(answerPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return errCallUnavailable(call.ID())
		case <-t.C:
		}
	}
}

// GET /conferences/{id}/members: every member ever, completed ones too,
// in join order.
func (s *server) listMembers(w http.ResponseWriter, r *http.Request, user string) error {
	confID := r.PathValue("conferenceId")
	c, err := s.conference(user, confID)
	out := []memberJSON{}
	if err != nil {
		if _, ok := s.storedConference(r, user, confID); !ok {
			return err
		}
		for _, in := range s.storedMembers(r, user, confID) {
			out = append(out, renderMemberInfo(r, user, in, ""))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	live := c.Members()
	inMemory := make(map[string]bool, len(live))
	type joined struct {
		at time.Time
		m  memberJSON
	}
	var all []joined
	for _, m := range live {
		inMemory[m.ID()] = true
		all = append(all, joined{m.Info().Added, renderMember(r, user, m)})
	}
	// Members that left longer than the bridge's retention ago (a room
	// that lives for days) are only in the store.
	stored := s.storedMembers(r, user, confID)
	for _, in := range stored {
		if !inMemory[in.ID] {
			all = append(all, joined{in.Added, renderMemberInfo(r, user, in, "")})
		}
	}
	if len(all) > len(live) {
		slices.SortStableFunc(all, func(x, y joined) int { return x.at.Compare(y.at) })
	}
	for _, j := range all {
		out = append(out, j.m)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /conferences/{id}/members/{memberId}.
func (s *server) getMember(w http.ResponseWriter, r *http.Request, user string) error {
	_, m, err := s.member(user, r.PathValue("conferenceId"), r.PathValue("memberId"))
	if err != nil {
		if in, ok := s.storedMember(r, user, r.PathValue("conferenceId"), r.PathValue("memberId")); ok {
			writeJSON(w, http.StatusOK, renderMemberInfo(r, user, in, ""))
			return nil
		}
		return err
	}
	writeJSON(w, http.StatusOK, renderMember(r, user, m))
	return nil
}

// POST /conferences/{id}/members/{memberId}: mute, hold, tones, levels, or
// removal with {"state":"completed"} (which hangs the call up).
//
// Like a conference, a completed member (or any member of a completed
// conference) is final: changes are 403; completing it again and {} are
// 200.
func (s *server) updateMember(w http.ResponseWriter, r *http.Request, user string) error {
	c, m, err := s.member(user, r.PathValue("conferenceId"), r.PathValue("memberId"))
	if err != nil {
		if _, ok := s.storedMember(r, user, r.PathValue("conferenceId"), r.PathValue("memberId")); ok {
			return s.updateStored(w, r, "member", r.PathValue("memberId"))
		}
		return err
	}
	b, err := readBody(w, r, s.maxBody, "member")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	remove := false
	if v := rd.str("state"); v != nil {
		if strings.TrimSpace(*v) != bridge.StateCompleted {
			rd.fail(errOneOf("member", "state", bridge.StateCompleted))
		}
		remove = true
	}
	mute := rd.boolean("mute")
	hold := rd.boolean("hold")
	joinTone := rd.boolean("joinTone")
	leavingTone := rd.boolean("leavingTone")
	talk := readLevel(rd, "talkVolume")
	receive := readLevel(rd, "receiveVolume")
	sens := readLevel(rd, "sensitivity")
	if rd.err != nil {
		return rd.err
	}
	changes := mute != nil || hold != nil || joinTone != nil || leavingTone != nil ||
		talk != nil || receive != nil || sens != nil
	if c.State() == bridge.StateCompleted || !m.Active() {
		if changes {
			if c.State() == bridge.StateCompleted {
				return errConferenceState(c.ID(), bridge.StateCompleted)
			}
			return errMemberState(m.ID(), bridge.StateCompleted)
		}
		ok(w)
		return nil
	}
	if talk != nil || receive != nil || sens != nil {
		t, rv, sv := m.Levels()
		if talk != nil {
			t = *talk
		}
		if receive != nil {
			rv = *receive
		}
		if sens != nil {
			sv = *sens
		}
		m.SetLevels(t, rv, sv)
	}
	if joinTone != nil || leavingTone != nil {
		if ts, ok := any(m).(tonesSetter); ok {
			in := m.Info()
			j, l := in.JoinTone, in.Leaving
			if joinTone != nil {
				j = *joinTone
			}
			if leavingTone != nil {
				l = *leavingTone
			}
			ts.SetTones(j, l)
		}
	}
	if mute != nil {
		m.SetMute(*mute)
	}
	if hold != nil {
		m.SetHold(*hold)
	}
	if remove {
		// A member that left meanwhile is fine: the result is the same.
		_ = c.RemoveMember(m)
	} else if s.outbox != nil {
		s.outbox.SavedMember(user, c.ID(), m.ID())
	}
	ok(w)
	return nil
}
