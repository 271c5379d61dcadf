package api

import (
	"errors"
	"net/http"
	"strings"

	"chorus/bridge"
	"chorus/store"
)

// conferenceJSON is the Conference resource (spec §2.2). Optional fields
// that were never set are left out.
type conferenceJSON struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	From          string `json:"from"`
	CreatedTime   string `json:"createdTime"`
	CompletedTime string `json:"completedTime,omitempty"`
	ActiveMembers int    `json:"activeMembers"`
	Hold          bool   `json:"hold"`
	Mute          bool   `json:"mute"`
	Profile       string `json:"profile"`
	// Extensions (issue 11): the PIN itself is never shown, only whether
	// one is set.
	PINSet bool `json:"pinSet"`
	Locked bool `json:"locked"`
	// Extensions (issue 14): whether the room's mix is being recorded, and
	// the format of its recordings.
	RecordingEnabled    bool   `json:"recordingEnabled"`
	RecordingFileFormat string `json:"recordingFileFormat"`
	// RecordingMaxDuration (seconds; Catapult's call field, here on
	// conferences too) bounds each recording of the room.
	RecordingMaxDuration int64 `json:"recordingMaxDuration"`
	callbackJSON
	// Cause (extension, issue 14) says why the bridge completed the
	// conference itself: SERVER_RESTART when a crash had left it live.
	Cause string `json:"cause,omitempty"`
}

func renderConference(c *bridge.Conference) conferenceJSON {
	out := renderConferenceInfo(c.Info(), "")
	out.RecordingEnabled = c.ActiveRecording() != nil
	return out
}

func renderConferenceInfo(in bridge.ConferenceInfo, cause string) conferenceJSON {
	return conferenceJSON{ID: in.ID, State: in.State, From: in.From, CreatedTime: formatTime(in.Created),
		CompletedTime: formatTime(in.Completed), ActiveMembers: in.ActiveMembers, Hold: in.Hold, Mute: in.Mute,
		Profile: in.Profile, PINSet: in.PINSet, Locked: in.Locked, RecordingFileFormat: string(in.RecordingFormat),
		RecordingMaxDuration: recordingMaxSeconds(in.RecordingMaxDuration), callbackJSON: renderCallback(in.Callback), Cause: cause}
}

// readPIN reads the pin extension: 1 to 12 digits, or "" for none. A JSON
// number is read as its digits, as phone numbers are. The value is never
// echoed in the error.
func readPIN(rd *reader) *string {
	v := rd.str("pin")
	if v == nil {
		return nil
	}
	if err := bridge.ValidPIN(*v); err != nil {
		rd.fail(errInvalid(rd.b.resource, "pin", "must be 1 to %d digits 0-9, or empty for none", bridge.MaxPINLength))
		return nil
	}
	return v
}

// maxFromLen bounds the from of a conference or call.
const maxFromLen = 128

// readFrom reads the required from property.
func readFrom(rd *reader) string {
	v := rd.str("from")
	switch {
	case v == nil:
		rd.fail(errMissing(rd.b.resource, "from"))
	case strings.TrimSpace(*v) == "":
		rd.fail(errBlank(rd.b.resource, "from"))
	case len(*v) > maxFromLen:
		rd.fail(errInvalid(rd.b.resource, "from", "exceeds the limit of %d", maxFromLen))
	case hasControl(*v):
		rd.fail(errInvalid(rd.b.resource, "from", "must not contain spaces or control characters"))
	default:
		return *v
	}
	return ""
}

// POST /conferences: 201, empty body, Location of the new conference.
func (s *server) createConference(w http.ResponseWriter, r *http.Request, user string) error {
	b, err := readBody(w, r, s.maxBody, "conference")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	opts := bridge.ConferenceOptions{UserID: user}
	opts.From = readFrom(rd)
	if v := rd.str("profile"); v != nil {
		switch p := strings.ToLower(strings.TrimSpace(*v)); p {
		case "":
		case bridge.ProfileInterpretDigits, bridge.ProfilePassthruDigits:
			opts.Profile = p
		default:
			rd.fail(errOneOf("conference", "profile", bridge.ProfileInterpretDigits+", "+bridge.ProfilePassthruDigits))
		}
	}
	callbackFields(rd, &opts.Callback)
	// mute and hold at creation are an extension (Catapult has them only
	// on update).
	if v := rd.boolean("mute"); v != nil {
		opts.Mute = *v
	}
	if v := rd.boolean("hold"); v != nil {
		opts.Hold = *v
	}
	if v := readPIN(rd); v != nil {
		opts.PIN = *v
	}
	if v := rd.boolean("locked"); v != nil {
		opts.Locked = *v
	}
	record, format, maxDur := readRecording(rd)
	if rd.err != nil {
		return rd.err
	}
	if record != nil && *record {
		// Refused whole, before the conference exists: a conference
		// asked for with a recording is created with one or not at all.
		if err := s.canRecord(user); err != nil {
			return err
		}
	}
	if err := s.checkCallback(r.Context(), opts.Callback); err != nil {
		return err
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if err := s.checkLiveConferences(user); err != nil {
		return err
	}
	c, err := s.b.CreateConference(opts)
	if err != nil {
		switch {
		case errors.Is(err, bridge.ErrDraining):
			return errUnavailable("The server is shutting down and accepts no new conferences")
		case errors.Is(err, bridge.ErrNumberInUse):
			return errNumberInUse(opts.From)
		}
		return err
	}
	if format != nil {
		c.SetRecordingFormat(*format)
	}
	if maxDur != nil {
		c.SetRecordingMaxDuration(*maxDur)
	}
	if record != nil && *record {
		if err := s.startRecording(c); err != nil {
			c.Complete() // created with a recording or not at all
			return err
		}
	}
	created(w, userURL(r, user, "conferences", c.ID()))
	return nil
}

// checkLiveConferences refuses a new conference to a user who has
// maxLive conferences that are not completed. Dial-in auto-create is
// not limited here: who may call in is the SIP side's to decide.
func (s *server) checkLiveConferences(user string) error {
	live := 0
	for _, c := range s.b.Conferences(user) {
		if c.State() != bridge.StateCompleted {
			live++
		}
	}
	if live >= s.maxLive {
		return errLiveConferences(user, s.maxLive)
	}
	return nil
}

// GET /conferences/{conferenceId}.
func (s *server) getConference(w http.ResponseWriter, r *http.Request, user string) error {
	c, err := s.conference(user, r.PathValue("conferenceId"))
	if err != nil {
		if cr, ok := s.storedConference(r, user, r.PathValue("conferenceId")); ok {
			writeJSON(w, http.StatusOK, renderConferenceInfo(cr.ConferenceInfo, cr.Cause))
			return nil
		}
		return err
	}
	writeJSON(w, http.StatusOK, renderConference(c))
	return nil
}

// GET /conferences (extension): the user's conferences, newest first,
// optionally of one state, a page at a time.
func (s *server) listConferences(w http.ResponseWriter, r *http.Request, user string) error {
	state := r.URL.Query().Get("state")
	switch state {
	case "", bridge.StateCreated, bridge.StateActive, bridge.StateCompleted:
	default:
		return errOneOf("query", "state", "created, active, completed")
	}
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	var list []dated[conferenceJSON]
	live := s.b.Conferences(user)
	inMemory := make(map[string]bool, len(live))
	for _, c := range live {
		inMemory[c.ID()] = true
		cj := renderConference(c)
		if state == "" || cj.State == state {
			list = append(list, dated[conferenceJSON]{c.Created(), c.ID(), cj})
		}
	}
	// The store's newest records down to this page's end: any the bridge
	// also holds are rendered from the bridge.
	need := (p.page+1)*p.size + len(live) + 1
	for _, rec := range s.storedList(r, store.Query{Kind: store.KindConference, User: user, State: state, Limit: need}) {
		if inMemory[rec.ID] {
			continue
		}
		if cr, err := decodeRecord[confRecord](rec); err == nil {
			list = append(list, dated[conferenceJSON]{cr.Created, cr.ID, renderConferenceInfo(cr.ConferenceInfo, cr.Cause)})
		}
	}
	sortDated(list)
	lo, hi := pageOf(w, r, p, len(list))
	out := make([]conferenceJSON, 0, hi-lo)
	for _, d := range list[lo:hi] {
		out = append(out, d.v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// POST /conferences/{conferenceId}: change properties, or terminate with
// {"state":"completed"}. Every property is checked before any is applied.
//
// A completed conference is final: any change is 403 conference-error.
// Asking a completed conference to complete again changes nothing, so it
// answers 200 (SDK "remove" calls are safe to retry); so does {}.
func (s *server) updateConference(w http.ResponseWriter, r *http.Request, user string) error {
	c, err := s.conference(user, r.PathValue("conferenceId"))
	if err != nil {
		if _, ok := s.storedConference(r, user, r.PathValue("conferenceId")); ok {
			return s.updateStored(w, r, "conference", r.PathValue("conferenceId"))
		}
		return err
	}
	b, err := readBody(w, r, s.maxBody, "conference")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	complete := false
	if v := rd.str("state"); v != nil {
		if strings.TrimSpace(*v) != bridge.StateCompleted {
			rd.fail(errOneOf("conference", "state", bridge.StateCompleted))
		}
		complete = true
	}
	mute := rd.boolean("mute")
	hold := rd.boolean("hold")
	pin := readPIN(rd)
	locked := rd.boolean("locked")
	record, format, maxDur := readRecording(rd)
	cb := c.Callback()
	cbSet := callbackFields(rd, &cb)
	if rd.err != nil {
		return rd.err
	}
	if cbSet {
		if err := s.checkCallback(r.Context(), cb); err != nil {
			return err
		}
	}
	changes := mute != nil || hold != nil || cbSet || pin != nil || locked != nil || format != nil || maxDur != nil || (record != nil && *record)
	if c.State() == bridge.StateCompleted {
		if changes {
			return errConferenceState(c.ID(), bridge.StateCompleted)
		}
		ok(w)
		return nil
	}
	if record != nil && *record && c.ActiveRecording() == nil {
		// Refused before anything of the request is applied.
		if err := s.canRecord(user); err != nil {
			return err
		}
	}
	if cbSet {
		c.SetCallback(cb)
	}
	if mute != nil {
		c.SetMute(*mute)
	}
	if hold != nil {
		c.SetHold(*hold)
	}
	if pin != nil {
		if err := c.SetPIN(*pin); err != nil {
			return err // checked by readPIN: not reached
		}
	}
	if locked != nil {
		c.SetLocked(*locked)
	}
	if format != nil {
		c.SetRecordingFormat(*format)
	}
	if maxDur != nil {
		c.SetRecordingMaxDuration(*maxDur)
	}
	if record != nil {
		if *record {
			if err := s.startRecording(c); err != nil {
				return err
			}
		} else {
			c.StopRecording()
		}
	}
	if complete {
		c.Complete()
	} else {
		s.saved(store.KindConference, user, c.ID())
	}
	ok(w)
	return nil
}

// updateStored answers an update of a completed record that only the
// store holds: completing it again, or {}, changes nothing (200); any
// other property is a change of a final record (403).
func (s *server) updateStored(w http.ResponseWriter, r *http.Request, resource, id string) error {
	b, err := readBody(w, r, s.maxBody, resource)
	if err != nil {
		return err
	}
	for name := range b.fields {
		if _, set := b.raw(name); !set {
			continue
		}
		if v, _ := b.str(name); name == "state" && v != nil && strings.TrimSpace(*v) == bridge.StateCompleted {
			continue
		}
		if resource == "member" {
			return errMemberState(id, bridge.StateCompleted)
		}
		return errConferenceState(id, bridge.StateCompleted)
	}
	ok(w)
	return nil
}
