package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/media/audiofile"
)

// Kinds of audio; a stop request stops only its own kind.
const (
	kindFile   = "file"
	kindSpeech = "speech"
)

// maxSentence is Catapult's limit on a sentence, in characters.
const maxSentence = 1000

// audioRequest is a parsed body of an audio endpoint (spec §2.4).
type audioRequest struct {
	kind                  string // kindFile or kindSpeech
	stop                  bool   // "" was sent: stop that kind
	fileURL, sentence     string
	gender, locale, voice string
	loop                  bool
	tag                   string
}

// readAudio validates an audio body: exactly one of fileUrl and sentence
// (null counts as absent; "" means stop); a sentence of at most 1000
// characters; an http(s) fileUrl; gender male or female.
func readAudio(b *body) (audioRequest, error) {
	rd := &reader{b: b}
	req := audioRequest{gender: "female", locale: "en_US"}
	file := rd.str("fileUrl")
	sentence := rd.str("sentence")
	if v := rd.str("gender"); v != nil && *v != "" {
		switch g := strings.ToLower(strings.TrimSpace(*v)); g {
		case "male", "female":
			req.gender = g
		default:
			rd.fail(errOneOf("audio", "gender", "male, female"))
		}
	}
	if v := rd.str("locale"); v != nil && *v != "" {
		req.locale = strings.TrimSpace(*v)
	}
	if v := rd.str("voice"); v != nil {
		req.voice = strings.TrimSpace(*v)
	}
	if v := rd.boolean("loopEnabled"); v != nil {
		req.loop = *v
	}
	if v := readTag(rd); v != nil {
		req.tag = *v
	}
	if rd.err != nil {
		return req, rd.err
	}
	switch {
	case file != nil && sentence != nil:
		return req, errInvalid("audio", "fileUrl", "must not be combined with 'sentence': send exactly one of them")
	case file == nil && sentence == nil:
		return req, errMissing("audio", "fileUrl' or 'sentence")
	case file != nil:
		req.kind, req.fileURL, req.stop = kindFile, *file, *file == ""
		if len(*file) > maxURLLen {
			return req, errInvalid("audio", "fileUrl", "exceeds the limit of %d characters", maxURLLen)
		}
		if !req.stop && !isHTTPURL(*file) {
			return req, errInvalid("audio", "fileUrl", "is not a valid http or https URL")
		}
	default:
		req.kind, req.sentence, req.stop = kindSpeech, *sentence, *sentence == ""
		switch {
		case req.stop:
		case strings.TrimSpace(*sentence) == "":
			return req, errBlank("audio", "sentence")
		case utf8.RuneCountInString(*sentence) > maxSentence:
			return req, errInvalid("audio", "sentence", "exceeds the limit of %d", maxSentence)
		}
	}
	return req, nil
}

// audioTarget is what the API knows of one room's or one member's audio:
// the request in flight (its kind and fetch) and the playback now playing
// (its kind), which may be of different kinds: a stop acts on each only if
// it is of the stop's kind. Requests are numbered: a fetch whose request was
// superseded (by a newer request or a stop of its kind) is dropped.
type audioTarget struct {
	mu          sync.Mutex
	seq         uint64
	pendingKind string // kind of the request being fetched or rendered, "" if none
	cancel      context.CancelFunc
	playing     *bridge.Playback
	playingKind string
}

// attachedTarget is the audio state of a conference or member, kept on
// its bridge record (made on first use) so that it goes when the record is
// pruned: the API keeps no map of its own.
func attachedTarget(r interface{ Attachment(func() any) any }) *audioTarget {
	return r.Attachment(func() any { return &audioTarget{} }).(*audioTarget)
}

// player is where a request's audio goes.
type player struct {
	key   string // names the target in logs
	t     *audioTarget
	alive func() bool
	play  func(*bridge.Playback)
	stop  func()
	event bridge.Event // Type and ids; State, Status and Tag are set per event
}

// readAudioBody reads and validates an audio request body.
func (s *server) readAudioBody(w http.ResponseWriter, r *http.Request) (audioRequest, error) {
	b, err := readBody(w, r, s.maxBody, "audio")
	if err != nil {
		return audioRequest{}, err
	}
	req, err := readAudio(b)
	if err == nil && req.kind == kindFile && !req.stop {
		err = s.checkFileURL(r.Context(), req.fileURL)
	}
	return req, err
}

// event returns the event type of the request's kind and its tag, the
// request's own or else the target's.
func (req audioRequest) event(fileType, speechType, targetTag string) (typ, tag string) {
	typ, tag = fileType, req.tag
	if req.kind == kindSpeech {
		typ = speechType
	}
	if tag == "" {
		tag = targetTag
	}
	return typ, tag
}

// POST /conferences/{id}/audio: file or speech into the whole room.
func (s *server) conferenceAudio(w http.ResponseWriter, r *http.Request, user string) error {
	c, err := s.conference(user, r.PathValue("conferenceId"))
	if err != nil {
		return err
	}
	req, err := s.readAudioBody(w, r)
	if err != nil {
		return err
	}
	typ, tag := req.event(bridge.EventConferencePlayback, bridge.EventConferenceSpeak, c.Callback().Tag)
	p := player{key: "conf/" + c.ID(), t: attachedTarget(c),
		alive: func() bool { return c.State() != bridge.StateCompleted },
		play:  c.Play, stop: c.StopAudio,
		event: bridge.Event{Type: typ, UserID: user, ConferenceID: c.ID(), Tag: tag}}
	if !req.stop && c.State() == bridge.StateCompleted {
		return errConferenceState(c.ID(), bridge.StateCompleted)
	}
	return s.audioRequest(w, req, p)
}

// POST /conferences/{id}/members/{memberId}/audio: file or speech to one
// member only; the events are the call's playback and speak.
func (s *server) memberAudio(w http.ResponseWriter, r *http.Request, user string) error {
	c, m, err := s.member(user, r.PathValue("conferenceId"), r.PathValue("memberId"))
	if err != nil {
		return err
	}
	req, err := s.readAudioBody(w, r)
	if err != nil {
		return err
	}
	typ, tag := req.event(bridge.EventPlayback, bridge.EventSpeak, m.Call().Info().Callback.Tag)
	p := player{key: m.ID(), t: attachedTarget(m), alive: m.Active, play: m.Play, stop: m.StopAudio,
		event: bridge.Event{Type: typ, UserID: user, ConferenceID: c.ID(), MemberID: m.ID(), CallID: m.Call().ID(), Tag: tag}}
	if !req.stop {
		if c.State() == bridge.StateCompleted {
			return errConferenceState(c.ID(), bridge.StateCompleted)
		}
		if !m.Active() {
			return errMemberState(m.ID(), bridge.StateCompleted)
		}
	}
	return s.audioRequest(w, req, p)
}

// audioRequest stops, or starts fetching or rendering off the request
// goroutine, and answers 200 at once.
func (s *server) audioRequest(w http.ResponseWriter, req audioRequest, p player) error {
	t := p.t
	if req.stop {
		t.mu.Lock()
		if t.pendingKind == req.kind {
			t.seq++ // the fetch in flight will be dropped
			t.pendingKind = ""
			if t.cancel != nil {
				t.cancel()
				t.cancel = nil
			}
		}
		if t.playing != nil && t.playingKind == req.kind {
			p.stop()
		}
		t.mu.Unlock()
		ok(w)
		return nil
	}
	if s.audio == nil {
		return errMediaUnavailable()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.audioTimeout)
	t.mu.Lock()
	t.seq++
	seq := t.seq
	if t.cancel != nil {
		t.cancel()
	}
	t.cancel = cancel
	t.pendingKind = req.kind
	t.mu.Unlock()
	go s.render(ctx, cancel, t, seq, req, p)
	ok(w)
	return nil
}

// render fetches or speaks, then plays, unless the request was superseded
// meanwhile. Events: started when the playback is handed to the mixer,
// done when it ends (status done, stopped, replaced or removed), or done
// with status error when the audio could not be had. A request superseded
// before it played raises no event.
func (s *server) render(ctx context.Context, cancel context.CancelFunc, t *audioTarget, seq uint64, req audioRequest, p player) {
	defer cancel()
	var pcm audiofile.Audio
	var err error
	if req.kind == kindFile {
		pcm, err = s.audio.Fetch(ctx, req.fileURL)
	} else {
		pcm, err = s.audio.Speak(ctx, req.sentence, req.gender, req.locale, req.voice)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seq != seq {
		return
	}
	t.cancel = nil
	t.pendingKind = ""
	if err == nil && len(pcm.Samples) == 0 {
		err = errEmptyAudio
	}
	var pb *bridge.Playback
	if err == nil {
		pb, err = bridge.NewPlaybackAt(pcm.Samples, pcm.Rate, req.loop, func(status string) {
			t.mu.Lock()
			if t.playing == pb {
				t.playing, t.playingKind = nil, ""
			}
			t.mu.Unlock()
			s.publishAudio(p, "done", status)
		})
	}
	if err != nil {
		s.log.Info("audio failed", "kind", req.kind, "target", p.key, "err", err)
		status := "error"
		if errors.Is(err, egress.ErrRefused) {
			status = "refused" // the outbound request policy, at connect time or on a redirect
		}
		s.publishAudio(p, "done", status)
		return
	}
	if !p.alive() {
		s.publishAudio(p, "done", bridge.PlaybackHeld)
		return
	}
	t.playing, t.playingKind = pb, req.kind
	// started goes out under t.mu, before the replaced playback's done
	// (its callback waits for t.mu): the order is new started, old done.
	s.publishAudio(p, "started", "started")
	p.play(pb)
}

// errEmptyAudio is a file or sentence that gave no samples.
var errEmptyAudio = &apiError{Status: http.StatusServiceUnavailable, Category: catUnavailable,
	Code: "media-unavailable", Message: "the audio has no samples", Details: []detail{}}

// publishAudio sends a playback or speak event: State is started or done,
// Status says how a playback ended (done, stopped, replaced, removed,
// error).
func (s *server) publishAudio(p player, state, status string) {
	ev := p.event
	ev.State = state
	ev.Status = status
	s.b.Publish(ev)
}
