package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/store"
)

// callJSON is the Call resource (spec §5), with conferenceId, conference
// and memberId while the call is a member (or dialled to join one).
type callJSON struct {
	ID                 string `json:"id"`
	Direction          string `json:"direction"`
	From               string `json:"from"`
	To                 string `json:"to"`
	State              string `json:"state"`
	StartTime          string `json:"startTime"`
	ActiveTime         string `json:"activeTime,omitempty"`
	EndTime            string `json:"endTime,omitempty"`
	ChargeableDuration *int64 `json:"chargeableDuration,omitempty"`
	CallTimeout        int64  `json:"callTimeout,omitempty"`
	callbackJSON
	ConferenceID string `json:"conferenceId,omitempty"`
	Conference   string `json:"conference,omitempty"`
	MemberID     string `json:"memberId,omitempty"`
	// Catapult's recording fields: whether the call records its leg, in
	// which format, and where its recordings are listed.
	RecordingEnabled    bool   `json:"recordingEnabled"`
	RecordingFileFormat string `json:"recordingFileFormat"`
	// RecordingMaxDuration is Catapult's recordingMaxDuration, seconds.
	RecordingMaxDuration int64  `json:"recordingMaxDuration"`
	Recordings           string `json:"recordings"`
}

func (s *server) renderCall(r *http.Request, user string, c *bridge.Call) callJSON {
	out := renderCallInfo(r, user, c.Info())
	out.RecordingEnabled = c.ActiveRecording() != nil
	return out
}

func renderCallInfo(r *http.Request, user string, in bridge.CallInfo) callJSON {
	out := callJSON{ID: in.ID, Direction: in.Direction, From: in.From, To: in.To, State: in.State,
		StartTime: formatTime(in.Created), ActiveTime: formatTime(in.Answered), EndTime: formatTime(in.Ended),
		CallTimeout: int64(in.DialTimeout / time.Second), callbackJSON: renderCallback(in.Callback), MemberID: in.MemberID,
		RecordingFileFormat:  string(in.RecordingFormat),
		RecordingMaxDuration: recordingMaxSeconds(in.RecordingMaxDuration), Recordings: userURL(r, user, "calls", in.ID, "recordings")}
	if !in.Ended.IsZero() {
		// Whole seconds from answer to end, rounded up; 0 unanswered.
		var secs int64
		if !in.Answered.IsZero() {
			secs = int64((in.Ended.Sub(in.Answered) + time.Second - 1) / time.Second)
		}
		out.ChargeableDuration = &secs
	}
	conf := in.ConferenceID // also the conference a ringing dialled call will join
	if conf != "" {
		out.ConferenceID = conf
		out.Conference = userURL(r, user, "conferences", conf)
	}
	return out
}

// GET /calls: the user's calls, newest first; conferenceId lists the calls
// that have been members of that conference (or are dialled to join it),
// all of them unless page or size is given; state filters.
func (s *server) listCalls(w http.ResponseWriter, r *http.Request, user string) error {
	q := r.URL.Query()
	state := q.Get("state")
	switch state {
	case "", bridge.CallStarted, bridge.CallActive, bridge.CallCompleted:
	default:
		return errOneOf("query", "state", "started, active, completed")
	}
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	var calls []*bridge.Call
	var stored []bridge.CallInfo
	confID := q.Get("conferenceId")
	if confID != "" {
		calls = s.conferenceCalls(user, confID)
		if _, err := s.conference(user, confID); err != nil {
			stored = s.storedConferenceCalls(r, user, confID)
		}
		if !p.explicit {
			// Every call of the conference, up to the page size limit
			// (Link rel="next" names the rest).
			p.size = min(max(len(calls)+len(stored), 1), maxPageSize)
		}
	} else {
		calls = s.b.Calls(user)
	}
	inMemory := make(map[string]bool, len(calls))
	var list []dated[callJSON]
	for _, c := range calls {
		inMemory[c.ID()] = true
		if in := c.Info(); state == "" || in.State == state {
			list = append(list, dated[callJSON]{in.Created, in.ID, renderCallInfo(r, user, in)})
		}
	}
	if confID == "" {
		// The store's newest records down to this page's end.
		need := (p.page+1)*p.size + len(calls) + 1
		for _, rec := range s.storedList(r, store.Query{Kind: store.KindCall, User: user, State: state, Limit: need}) {
			if in, err := decodeRecord[bridge.CallInfo](rec); err == nil {
				stored = append(stored, in)
			}
		}
	}
	for _, in := range stored {
		if !inMemory[in.ID] && (state == "" || in.State == state) {
			inMemory[in.ID] = true
			list = append(list, dated[callJSON]{in.Created, in.ID, renderCallInfo(r, user, in)})
		}
	}
	sortDated(list)
	lo, hi := pageOf(w, r, p, len(list))
	out := make([]callJSON, 0, hi-lo)
	for _, d := range list[lo:hi] {
		out = append(out, d.v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// storedConferenceCalls returns the stored calls of a conference only the
// store holds: those whose record names it, and those of its members.
func (s *server) storedConferenceCalls(r *http.Request, user, confID string) []bridge.CallInfo {
	seen := map[string]bool{}
	var out []bridge.CallInfo
	for _, rec := range s.storedList(r, store.Query{Kind: store.KindCall, User: user, Parent: confID}) {
		if in, err := decodeRecord[bridge.CallInfo](rec); err == nil && !seen[in.ID] {
			seen[in.ID] = true
			out = append(out, in)
		}
	}
	for _, m := range s.storedMembers(r, user, confID) {
		if seen[m.CallID] {
			continue
		}
		if in, ok := s.storedCall(r, user, m.CallID); ok {
			seen[in.ID] = true
			out = append(out, in)
		}
	}
	return out
}

// conferenceCalls returns the user's calls that were ever members of
// confID or are dialled to join it, newest first. A conference that is not
// the user's has none.
func (s *server) conferenceCalls(user, confID string) []*bridge.Call {
	seen := map[string]bool{}
	var out []*bridge.Call
	if c, err := s.conference(user, confID); err == nil {
		for _, m := range c.Members() {
			call := m.Call()
			if !seen[call.ID()] {
				seen[call.ID()] = true
				out = append(out, call)
			}
		}
	}
	// Calls dialled to join it and still ringing (or that failed) are not
	// members: the bridge's call record names the conference.
	for _, call := range s.b.Calls(user) {
		if !seen[call.ID()] && call.Info().ConferenceID == confID {
			out = append(out, call)
		}
	}
	slices.SortStableFunc(out, func(x, y *bridge.Call) int { return y.Info().Created.Compare(x.Info().Created) })
	return out
}

// GET /calls/{callId}.
func (s *server) getCall(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	c, found := s.call(user, id)
	if !found {
		if in, ok := s.storedCall(r, user, id); ok {
			writeJSON(w, http.StatusOK, renderCallInfo(r, user, in))
			return nil
		}
		return errCallNotFound(id)
	}
	writeJSON(w, http.StatusOK, s.renderCall(r, user, c))
	return nil
}

// maxCallTimeout is Catapult's limit of callTimeout, in seconds.
const maxCallTimeout = 300

// POST /calls: dial out to a SIP URI. 201 with the call's Location at
// once; the call rings in state started. With conferenceId (an extension
// of Catapult's meaning) the answered call joins that conference.
func (s *server) createCall(w http.ResponseWriter, r *http.Request, user string) error {
	b, err := readBody(w, r, s.maxBody, "call")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	opts := bridge.DialOptions{UserID: user}
	opts.From = readFrom(rd)
	to := rd.str("to")
	switch {
	case to == nil:
		rd.fail(errMissing("call", "to"))
	case !validSIPURI(*to):
		rd.fail(errInvalid("call", "to", "must be a SIP URI (sip:user@host or sips:user@host)"))
	default:
		opts.To = *to
	}
	if v := rd.integer("callTimeout"); v != nil {
		switch {
		case *v <= 0:
			rd.fail(errInvalid("call", "callTimeout", "must be greater than 0"))
		case *v > maxCallTimeout:
			rd.fail(errInvalid("call", "callTimeout", "exceeds the limit of %d", maxCallTimeout))
		default:
			opts.Timeout = time.Duration(*v) * time.Second
		}
	}
	callbackFields(rd, &opts.Callback)
	confID := rd.str("conferenceId")
	record, format, maxDur := readRecording(rd)
	if rd.err != nil {
		return rd.err
	}
	if record != nil && *record {
		if err := s.canRecord(user); err != nil { // before the call is dialled
			return err
		}
	}
	if err := s.checkDialTarget(r.Context(), opts.To); err != nil {
		return err
	}
	if err := s.checkCallback(r.Context(), opts.Callback); err != nil {
		return err
	}
	if confID != nil && *confID != "" {
		c, err := s.conference(user, *confID)
		if err != nil {
			return errCallConferenceID(*confID)
		}
		if c.State() == bridge.StateCompleted {
			return errConferenceState(c.ID(), bridge.StateCompleted)
		}
		opts.ConferenceID = c.ID()
	}
	call, err := s.b.DialOut(opts)
	switch {
	case errors.Is(err, bridge.ErrNoDialer):
		return errCallCreation(opts.From, opts.To, "outbound calling is not configured")
	case errors.Is(err, bridge.ErrDraining):
		return errCallCreation(opts.From, opts.To, "the server is shutting down")
	case errors.Is(err, bridge.ErrNotFound):
		return errCallConferenceID(opts.ConferenceID)
	case errors.Is(err, bridge.ErrConferenceComplete):
		return errConferenceState(opts.ConferenceID, bridge.StateCompleted)
	case err != nil:
		return err
	}
	if format != nil {
		call.SetRecordingFormat(*format)
	}
	if maxDur != nil {
		call.SetRecordingMaxDuration(*maxDur)
	}
	if record != nil && *record {
		// From the start: its audio is recorded once it runs (answered).
		if err := s.startCallRecording(call); err != nil {
			return err
		}
	}
	s.saved(store.KindCall, user, call.ID())
	created(w, userURL(r, user, "calls", call.ID()))
	return nil
}

// validSIPURI accepts sip: and sips: URIs with a host and nothing that
// could break a SIP header (spaces, control characters, <, >, ").
func validSIPURI(u string) bool {
	if hasControl(u) || strings.ContainsAny(u, `<>"`) {
		return false
	}
	lower := strings.ToLower(u)
	var rest string
	switch {
	case strings.HasPrefix(lower, "sip:"):
		rest = u[4:]
	case strings.HasPrefix(lower, "sips:"):
		rest = u[5:]
	default:
		return false
	}
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		if i == 0 {
			return false
		}
		rest = rest[i+1:]
	}
	return rest != "" && rest[0] != ':'
}

// hangupTimeout bounds the BYE of POST /calls/{id} {"state":"completed"}.
const hangupTimeout = 10 * time.Second

// POST /calls/{callId}: {"state":"completed"} hangs up (200; a call that
// has ended already answers 200 too; a call still ringing for its
// application is turned away). {"state":"active"} answers, and
// {"state":"rejected"} rejects, a call ringing for its application
// (decideCall). {"state":"transferring","transferTo":"sip:…"} transfers an
// active call in no conference (transferCall). Other states are 400; {}
// changes nothing.
func (s *server) updateCall(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	call, found := s.call(user, id)
	if !found {
		if _, ok := s.storedCall(r, user, id); ok {
			return s.updateStoredCall(w, r, id)
		}
		return errCallNotFound(id)
	}
	b, err := readBody(w, r, s.maxBody, "call")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	state := rd.str("state")
	if state != nil {
		switch t := strings.TrimSpace(*state); t {
		case bridge.CallCompleted:
		case bridge.CallActive, callRejected, callTransferring:
			*state = t
		default:
			rd.fail(errOneOf("call", "state", "active, rejected, completed, transferring"))
		}
	}
	if state != nil && *state == callTransferring {
		return s.transferCall(w, r, user, call, rd)
	}
	record, format, maxDur := readRecording(rd)
	if rd.err != nil {
		return rd.err
	}
	if record != nil && *record && call.ActiveRecording() == nil && call.State() != bridge.CallCompleted {
		// Refused before anything of the request is applied.
		if err := s.canRecord(user); err != nil {
			return err
		}
	}
	if format != nil {
		call.SetRecordingFormat(*format)
	}
	if maxDur != nil {
		call.SetRecordingMaxDuration(*maxDur)
	}
	if record != nil && !*record {
		call.StopRecording()
	}
	if record != nil && *record && (state == nil || *state == bridge.CallActive) {
		// Before an answer, so that the call is recorded from its first
		// frame.
		if err := s.startCallRecording(call); err != nil {
			return err
		}
	}
	if state != nil && (*state == bridge.CallActive || *state == callRejected) {
		if err := s.decideCall(r.Context(), call, *state); err != nil {
			return err
		}
		ok(w)
		return nil
	}
	if state != nil && call.State() != bridge.CallCompleted {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), hangupTimeout)
		defer cancel()
		if err := call.Hangup(ctx, "NORMAL_CLEARING"); err != nil {
			s.log.Info("hangup", "call", id, "err", err)
		}
	}
	ok(w)
	return nil
}

// updateStoredCall answers an update of a call only the store holds (it
// ended, maybe in a previous run) as one in memory that has ended: hanging
// up again and {} are 200, answering, rejecting or transferring it is 403.
func (s *server) updateStoredCall(w http.ResponseWriter, r *http.Request, id string) error {
	b, err := readBody(w, r, s.maxBody, "call")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	if state := rd.str("state"); state != nil {
		switch strings.TrimSpace(*state) {
		case bridge.CallCompleted:
		case bridge.CallActive, callRejected, callTransferring:
			return errCallState(id, bridge.CallCompleted)
		default:
			rd.fail(errOneOf("call", "state", "active, rejected, completed, transferring"))
		}
	}
	if rd.err != nil {
		return rd.err
	}
	ok(w)
	return nil
}

// callTransferring is the state an application asks for to transfer a
// call (transferCall); the call itself stays active until it ends.
const callTransferring = "transferring"

// transferCall handles {"state":"transferring"}: transferTo (a SIP URI
// the outbound policy allows) is required; transferCallerId is the new
// leg's from (default the call's), callbackUrl and its fellows the new
// leg's callback (default the call's). The call must be active and in no
// conference (403 otherwise). Where the peer takes REFER it is asked to
// call the target itself: 200, with Location the call itself, as there
// is no new call of ours. Else a new call to the target is bridged to
// this one when it answers: 201, with Location the new call, as
// Catapult (and node-bandwidth's Call.transfer) expect.
func (s *server) transferCall(w http.ResponseWriter, r *http.Request, user string, call *bridge.Call, rd *reader) error {
	var opts bridge.TransferOptions
	switch to := rd.str("transferTo"); {
	case to == nil:
		rd.fail(errMissing("call", "transferTo"))
	case !validSIPURI(*to):
		rd.fail(errInvalid("call", "transferTo", "must be a SIP URI (sip:user@host or sips:user@host)"))
	default:
		opts.To = *to
	}
	if v := rd.str("transferCallerId"); v != nil {
		switch {
		case strings.TrimSpace(*v) == "":
			rd.fail(errBlank("call", "transferCallerId"))
		case strings.ContainsAny(*v, "\r\n<>\" \t"):
			rd.fail(errInvalid("call", "transferCallerId", "must not contain spaces, quotes or angle brackets"))
		default:
			opts.From = *v
		}
	}
	callbackFields(rd, &opts.Callback)
	if rd.err != nil {
		return rd.err
	}
	host, port := sipHostPort(opts.To)
	if _, err := s.outbound.Resolve(r.Context(), host, port); errors.Is(err, egress.ErrRefused) {
		return errTargetRefused("call", "transferTo", err.Error())
	}
	if err := s.checkCallback(r.Context(), opts.Callback); err != nil {
		return err
	}
	out, err := call.Transfer(r.Context(), opts)
	switch {
	case errors.Is(err, bridge.ErrCallNotActive):
		return errCallState(call.ID(), call.State())
	case errors.Is(err, bridge.ErrInConference):
		return newError(http.StatusForbidden, catForbidden, "call-in-conference",
			"Unable to transfer call %s: it is a member of a conference; remove the member first", call.ID())
	case errors.Is(err, bridge.ErrNoDialer):
		return errCallCreation(opts.From, opts.To, "outbound calling is not configured")
	case errors.Is(err, bridge.ErrDraining):
		return errCallCreation(opts.From, opts.To, "the server is shutting down")
	case err != nil:
		return err
	}
	if out == nil {
		w.Header().Set("Location", userURL(r, user, "calls", call.ID()))
		ok(w)
		return nil
	}
	created(w, userURL(r, user, "calls", out.ID()))
	return nil
}

// callRejected is the state an application asks for to reject its ringing
// call; the call itself ends completed, with the cause CALL_REJECTED.
const callRejected = "rejected"

// answerSettle bounds how long answering waits for the call to be active
// (the 200 OK sent and ACKed), so that a GET right after shows it.
const answerSettle = 5 * time.Second

// decideCall answers or rejects a call that rings for its application.
// Answering a call that is active already is 200 (a retried request);
// anything else that does not ring is 403 call-invalid-state.
func (s *server) decideCall(ctx context.Context, call *bridge.Call, state string) error {
	d := bridge.DecisionAnswer
	if state == callRejected {
		d = bridge.DecisionReject
	}
	if err := call.Decide(d); err != nil {
		st := call.State()
		if d == bridge.DecisionAnswer && st == bridge.CallActive {
			return nil
		}
		return errCallState(call.ID(), st)
	}
	if d != bridge.DecisionAnswer {
		return nil
	}
	deadline := time.Now().Add(answerSettle)
	for call.State() == bridge.CallStarted && time.Now().Before(deadline) {
		t := time.NewTimer(answerPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}
