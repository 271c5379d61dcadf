package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"chorus/bridge"
	"chorus/media/audiofile"
	"chorus/store"
)

// Call-level media (issue 13, spec §5): audio to one call, gathering its
// digits, and sending it DTMF. A call in a conference gets these as its
// member; a call in no conference (a dialled call not yet added, an
// incoming application call) has its media parked by the bridge
// (bridge/callmedia.go) and hears them alone.

// activeCall returns the user's call, which must be active for a media
// request: 404 for an unknown call or another user's, 403 call-invalid-state
// for one ringing or ended.
func (s *server) activeCall(user, id string) (*bridge.Call, error) {
	c, found := s.call(user, id)
	if !found {
		return nil, errCallNotFound(id)
	}
	if st := c.State(); st != bridge.CallActive {
		return nil, errCallState(id, st)
	}
	return c, nil
}

// callError maps a bridge error of a call media request.
func callError(id string, err error) error {
	switch {
	case errors.Is(err, bridge.ErrCallNotActive):
		return errCallState(id, bridge.CallCompleted)
	case errors.Is(err, bridge.ErrNoDTMFPath):
		return errUnavailable("the call can carry DTMF neither as telephone-events nor by SIP INFO")
	}
	return err
}

// POST /calls/{callId}/audio: file or speech to this call only (the
// member's private audio when it is in a conference); playback and speak
// events to the call's callback. {"fileUrl":""} and {"sentence":""} stop.
func (s *server) callAudio(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	call, found := s.call(user, id)
	if !found {
		return errCallNotFound(id)
	}
	req, err := s.readAudioBody(w, r)
	if err != nil {
		return err
	}
	info := call.Info()
	if !req.stop && info.State != bridge.CallActive {
		return errCallState(id, info.State)
	}
	typ, tag := req.event(bridge.EventPlayback, bridge.EventSpeak, info.Callback.Tag)
	p := player{key: call.ID(), t: attachedTarget(call),
		alive: func() bool { return call.State() == bridge.CallActive },
		play:  func(pb *bridge.Playback) { _ = call.Play(pb) }, // a call gone meanwhile ends pb as removed
		stop:  call.StopAudio,
		event: bridge.Event{Type: typ, UserID: user, CallID: call.ID(), ConferenceID: info.ConferenceID, MemberID: info.MemberID, Tag: tag}}
	return s.audioRequest(w, req, p)
}

// POST /calls/{callId}/dtmf {"dtmfOut":"12#"}: digits to the far end.
func (s *server) callDTMF(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	call, found := s.call(user, id)
	if !found {
		return errCallNotFound(id)
	}
	b, err := readBody(w, r, s.maxBody, "dtmf")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	v := rd.str("dtmfOut")
	if rd.err != nil {
		return rd.err
	}
	digits, err := readDigits("dtmf", "dtmfOut", v, bridge.MaxDTMFOut)
	if err != nil {
		return err
	}
	if digits == "" {
		return errBlank("dtmf", "dtmfOut")
	}
	if st := call.State(); st != bridge.CallActive {
		return errCallState(id, st)
	}
	if err := call.SendDTMF(digits); err != nil {
		return callError(id, err)
	}
	ok(w)
	return nil
}

// readDigits validates a string of DTMF keys (0-9, *, #, A-D; a-d are
// taken as A-D) of at most limit keys; absent is "".
func readDigits(resource, prop string, v *string, limit int) (string, error) {
	if v == nil {
		if prop == "dtmfOut" {
			return "", errMissing(resource, prop)
		}
		return "", nil
	}
	d := strings.ToUpper(strings.TrimSpace(*v))
	switch {
	case len(d) > limit:
		return "", errInvalid(resource, prop, "exceeds the limit of %d digits", limit)
	case !bridge.ValidDigits(d):
		return "", errInvalid(resource, prop, "must contain only the digits 0-9, *, # and A-D")
	}
	return d, nil
}

// gatherRequest is a parsed gather body.
type gatherRequest struct {
	opts   bridge.GatherOptions
	prompt *audioRequest
}

// readGather validates a gather body: maxDigits 1-30, interDigitTimeout
// in seconds (0-30, decimals allowed; default 5), terminatingDigits
// (default "#"; "" for none), tag, and a prompt with exactly one of
// sentence or fileUrl (plus gender, locale, voice, loopEnabled) and
// bargeable (default true).
func readGather(b *body) (gatherRequest, error) {
	rd := &reader{b: b}
	req := gatherRequest{opts: bridge.GatherOptions{TerminatingDigits: "#", Bargeable: true}}
	if v := rd.integer("maxDigits"); v != nil {
		if *v < 1 || *v > bridge.MaxGatherDigits {
			rd.fail(errInvalid("gather", "maxDigits", "must be from 1 to %d", bridge.MaxGatherDigits))
		} else {
			req.opts.MaxDigits = int(*v)
		}
	}
	if v := rd.str("interDigitTimeout"); v != nil {
		secs, err := strconv.ParseFloat(strings.TrimSpace(*v), 64)
		max := bridge.MaxInterDigitTimeout.Seconds()
		if err != nil || !(secs > 0 && secs <= max) {
			rd.fail(errInvalid("gather", "interDigitTimeout", "must be a number of seconds greater than 0 and at most %g", max))
		} else {
			req.opts.InterDigitTimeout = time.Duration(secs * float64(time.Second))
		}
	}
	if v := rd.str("terminatingDigits"); v != nil {
		d, err := readDigits("gather", "terminatingDigits", v, bridge.MaxTerminatingDigits)
		if err != nil {
			rd.keep(err)
		}
		req.opts.TerminatingDigits = d
	}
	if v := readTag(rd); v != nil {
		req.opts.Tag = *v
	}
	if rd.err != nil {
		return req, rd.err
	}
	raw, ok := b.raw("prompt")
	if !ok {
		return req, nil
	}
	sub := &body{resource: "prompt", fields: map[string]json.RawMessage{}}
	if raw[0] != '{' || json.Unmarshal(raw, &sub.fields) != nil {
		return req, errInvalid("gather", "prompt", "must be an object with 'sentence' or 'fileUrl'")
	}
	prd := &reader{b: sub}
	if v := prd.boolean("bargeable"); v != nil {
		req.opts.Bargeable = *v
	}
	if prd.err != nil {
		return req, prd.err
	}
	p, err := readAudio(sub)
	if err != nil {
		return req, err
	}
	if p.stop {
		return req, errBlank("prompt", "sentence' or 'fileUrl")
	}
	req.prompt = &p
	req.opts.Prompt = true
	return req, nil
}

// gatherJSON is a gather resource.
type gatherJSON struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	Reason        string `json:"reason,omitempty"`
	Digits        string `json:"digits,omitempty"`
	CreatedTime   string `json:"createdTime"`
	CompletedTime string `json:"completedTime,omitempty"`
	Call          string `json:"call"`
	Tag           string `json:"tag,omitempty"`
}

// POST /calls/{callId}/gather: collect the call's digits; 201 with the
// gather's Location. A running gather of the call ends (reason replaced).
func (s *server) createGather(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	call, err := s.activeCall(user, id)
	if err != nil {
		return err
	}
	b, err := readBody(w, r, s.maxBody, "gather")
	if err != nil {
		return err
	}
	req, err := readGather(b)
	if err != nil {
		return err
	}
	if p := req.prompt; p != nil {
		if s.audio == nil {
			return errMediaUnavailable()
		}
		if p.kind == kindFile {
			if err := s.checkFileURL(r.Context(), p.fileURL); err != nil {
				return err
			}
		}
	}
	g, err := call.StartGather(req.opts)
	if err != nil {
		return callError(id, err)
	}
	if p := req.prompt; p != nil {
		go s.renderPrompt(g, *p)
	}
	if s.outbox != nil {
		s.outbox.SavedGather(user, call.ID(), g.ID())
	}
	created(w, userURL(r, user, "calls", call.ID(), "gather", g.ID()))
	return nil
}

// renderPrompt fetches or speaks a gather's prompt, off the request
// goroutine, and plays it; a prompt that cannot be had leaves the gather
// collecting without it.
func (s *server) renderPrompt(g *bridge.Gather, p audioRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), s.audioTimeout)
	defer cancel()
	var pcm audiofile.Audio
	var err error
	if p.kind == kindFile {
		pcm, err = s.audio.Fetch(ctx, p.fileURL)
	} else {
		pcm, err = s.audio.Speak(ctx, p.sentence, p.gender, p.locale, p.voice)
	}
	if err != nil || len(pcm.Samples) == 0 {
		s.log.Info("gather prompt failed", "gather", g.ID(), "kind", p.kind, "err", err)
		g.PromptFailed()
		return
	}
	g.PlayPrompt(pcm.Samples, pcm.Rate, p.loop)
}

// gatherOf returns a gather of the user's call, from the bridge or else
// from the store (a previous run's, or one whose call the bridge no longer
// keeps): 404 for another user's call or an unknown gather. g is nil when
// the gather came from the store.
func (s *server) gatherOf(user string, r *http.Request) (g *bridge.Gather, in bridge.GatherInfo, err error) {
	id := r.PathValue("callId")
	gid := r.PathValue("gatherId")
	notFound := newError(http.StatusNotFound, catNotFound, "gather-not-found", "The gather %s could not be found", gid)
	if call, found := s.call(user, id); found {
		if g, found := call.Gather(gid); found {
			return g, g.Info(), nil
		}
		if in, found := s.storedGather(r, user, id, gid); found {
			return nil, in, nil
		}
		return nil, in, notFound
	}
	if in, found := s.storedGather(r, user, id, gid); found {
		return nil, in, nil
	}
	if _, found := s.storedCall(r, user, id); found {
		return nil, in, notFound
	}
	return nil, in, errCallNotFound(id)
}

// storedGather reads a gather of the user's call from the store.
func (s *server) storedGather(r *http.Request, user, callID, id string) (bridge.GatherInfo, bool) {
	rec, ok := s.stored(r, store.KindGather, user, id)
	if !ok || rec.Parent != callID {
		return bridge.GatherInfo{}, false
	}
	gr, err := decodeRecord[gatherRecordData](rec)
	return gr.GatherInfo, err == nil
}

// GET /calls/{callId}/gather/{gatherId}.
func (s *server) getGather(w http.ResponseWriter, r *http.Request, user string) error {
	_, in, err := s.gatherOf(user, r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, gatherJSON{ID: in.ID, State: string(in.State), Reason: string(in.Reason),
		Digits: in.Digits, CreatedTime: formatTime(in.Created), CompletedTime: formatTime(in.Completed),
		Call: userURL(r, user, "calls", in.CallID), Tag: in.Tag})
	return nil
}

// POST /calls/{callId}/gather/{gatherId} {"state":"completed"}: stop it
// (reason stopped); a completed gather stays as it was. {} changes nothing.
func (s *server) updateGather(w http.ResponseWriter, r *http.Request, user string) error {
	g, _, err := s.gatherOf(user, r)
	if err != nil {
		return err
	}
	b, err := readBody(w, r, s.maxBody, "gather")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	state := rd.str("state")
	if state != nil && strings.TrimSpace(*state) != string(bridge.GatherCompleted) {
		rd.fail(errOneOf("gather", "state", string(bridge.GatherCompleted)))
	}
	if rd.err != nil {
		return rd.err
	}
	if state != nil && g != nil { // a stored gather has completed: it stays as it was
		g.Stop()
	}
	ok(w)
	return nil
}
