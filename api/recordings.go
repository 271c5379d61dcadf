package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"chorus/bridge"
	"chorus/media/recfile"
	"chorus/store"
)

// recordingJSON is Catapult's Recording resource: id, call (or, for a
// conference recording, conference: an extension), startTime, endTime,
// state and media (the URL of the file, served by GET /media/{name}).
// Extensions: conferenceId, callId, fileFormat and error.
type recordingJSON struct {
	ID           string `json:"id"`
	Conference   string `json:"conference,omitempty"`
	ConferenceID string `json:"conferenceId,omitempty"`
	Call         string `json:"call,omitempty"`
	CallID       string `json:"callId,omitempty"`
	StartTime    string `json:"startTime"`
	EndTime      string `json:"endTime,omitempty"`
	State        string `json:"state"`
	Media        string `json:"media,omitempty"`
	FileFormat   string `json:"fileFormat"`
	Error        string `json:"error,omitempty"`
}

func renderRecording(r *http.Request, user string, in bridge.RecordingInfo) recordingJSON {
	out := recordingJSON{ID: in.ID, ConferenceID: in.ConferenceID, CallID: in.CallID, StartTime: formatTime(in.Start),
		EndTime: formatTime(in.End), State: string(in.State), FileFormat: string(in.Format), Error: in.Error}
	if in.ConferenceID != "" {
		out.Conference = userURL(r, user, "conferences", in.ConferenceID)
	}
	if in.CallID != "" {
		out.Call = userURL(r, user, "calls", in.CallID)
	}
	if in.Media != "" {
		out.Media = userURL(r, user, "media", in.Media)
	}
	return out
}

// Recordings outlive the bridge's memory and the process (issue 14): the
// bridge holds a recording while it is written and for its retention; the
// store holds its record (bridge.RecordingInfo) for the store's, and the
// file stays in the recordings directory as long as the record. A GET asks
// the bridge first, then the store, and renders either the same way.

// recording returns the user's recording by id, from the bridge or the
// store; another user's is not found, exactly like a missing one. rec is
// nil for a recording only the store holds.
func (s *server) recording(r *http.Request, user, id string) (bridge.RecordingInfo, *bridge.Recording, error) {
	if rec, ok := s.b.Recording(id); ok && rec.UserID() == user {
		return rec.Info(), rec, nil
	}
	if st, ok := s.stored(r, store.KindRecording, user, id); ok {
		if in, err := decodeRecord[bridge.RecordingInfo](st); err == nil {
			return in, nil, nil
		}
	}
	return bridge.RecordingInfo{}, nil, errRecordingNotFound(id)
}

// recordings lists the user's recordings (of one call or conference when
// parent is set), newest first: the bridge's, and the store's down to the
// end of page p that the bridge does not hold.
func (s *server) recordings(r *http.Request, user, parent string, p paging) []bridge.RecordingInfo {
	var list []dated[bridge.RecordingInfo]
	live := s.b.Recordings(user)
	inMemory := make(map[string]bool, len(live))
	for _, rec := range live {
		inMemory[rec.ID()] = true
		in := rec.Info()
		if parent == "" || in.CallID == parent || in.ConferenceID == parent {
			list = append(list, dated[bridge.RecordingInfo]{in.Start, in.ID, in})
		}
	}
	need := (p.page+1)*p.size + len(live) + 1
	for _, st := range s.storedList(r, store.Query{Kind: store.KindRecording, User: user, Parent: parent, Limit: need}) {
		if inMemory[st.ID] {
			continue
		}
		if in, err := decodeRecord[bridge.RecordingInfo](st); err == nil {
			list = append(list, dated[bridge.RecordingInfo]{in.Start, in.ID, in})
		}
	}
	sortDated(list)
	out := make([]bridge.RecordingInfo, len(list))
	for i, d := range list {
		out[i] = d.v
	}
	return out
}

// writeRecordings writes a page of recordings.
func writeRecordings(w http.ResponseWriter, r *http.Request, user string, p paging, recs []bridge.RecordingInfo) {
	lo, hi := pageOf(w, r, p, len(recs))
	out := make([]recordingJSON, 0, hi-lo)
	for _, in := range recs[lo:hi] {
		out = append(out, renderRecording(r, user, in))
	}
	writeJSON(w, http.StatusOK, out)
}

// GET /recordings: the user's recordings, newest first, a page at a time.
func (s *server) listRecordings(w http.ResponseWriter, r *http.Request, user string) error {
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	writeRecordings(w, r, user, p, s.recordings(r, user, "", p))
	return nil
}

// GET /calls/{callId}/recordings: the call's recordings, newest first
// (Catapult's call recordings URL), a page at a time.
func (s *server) listCallRecordings(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	if _, found := s.call(user, id); !found {
		if _, stored := s.storedCall(r, user, id); !stored {
			return errCallNotFound(id)
		}
	}
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	var recs []bridge.RecordingInfo
	for _, in := range s.recordings(r, user, id, p) {
		if in.CallID == id {
			recs = append(recs, in)
		}
	}
	writeRecordings(w, r, user, p, recs)
	return nil
}

// GET /recordings/{recordingId}.
func (s *server) getRecording(w http.ResponseWriter, r *http.Request, user string) error {
	in, _, err := s.recording(r, user, r.PathValue("recordingId"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderRecording(r, user, in))
	return nil
}

// mediaRecording returns the recording whose file is the user's media
// {mediaName}: from the bridge, or from the store (its id is the name
// before the extension). rec is nil for a recording only the store holds.
func (s *server) mediaRecording(r *http.Request, user, name string) (bridge.RecordingInfo, *bridge.Recording, error) {
	if rec, ok := s.b.RecordingByMedia(name); ok {
		if rec.UserID() != user || rec.Media() == "" {
			return bridge.RecordingInfo{}, nil, errMediaNotFound(name)
		}
		return rec.Info(), rec, nil
	}
	id, _, _ := strings.Cut(name, ".")
	if st, ok := s.stored(r, store.KindRecording, user, id); ok {
		if in, err := decodeRecord[bridge.RecordingInfo](st); err == nil && in.Media == name {
			return in, nil, nil
		}
	}
	return bridge.RecordingInfo{}, nil, errMediaNotFound(name)
}

// GET /media/{mediaName}: the recording's file, with Range requests (RFC
// 9110 §14) so that a player can seek, and conditional requests on its
// modification time. A recording still being written serves what is
// written so far.
func (s *server) getMedia(w http.ResponseWriter, r *http.Request, user string) error {
	name := r.PathValue("mediaName")
	in, rec, err := s.mediaRecording(r, user, name)
	if err != nil {
		return err
	}
	var f *os.File
	if rec != nil {
		f, err = rec.OpenMedia()
	} else {
		var path string
		if path, err = s.b.MediaPath(name); err == nil {
			f, err = os.Open(path)
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, bridge.ErrMediaDeleted) || errors.Is(err, bridge.ErrRecordingDisabled) {
			return errMediaNotFound(name)
		}
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", in.Format.ContentType())
	http.ServeContent(w, r, name, st.ModTime(), f)
	return nil
}

// DELETE /media/{mediaName}: removes the file; the recording stays,
// without media (and so it is stored). The file of a recording still
// being written is 409.
func (s *server) deleteMedia(w http.ResponseWriter, r *http.Request, user string) error {
	name := r.PathValue("mediaName")
	in, rec, err := s.mediaRecording(r, user, name)
	if err != nil {
		return err
	}
	if rec != nil {
		err = rec.DeleteMedia()
	} else if in.State == bridge.RecordingActive {
		// A recording being written by no bridge: another process's.
		err = fmt.Errorf("delete %s: %w", name, bridge.ErrRecordingActive)
	} else {
		err = s.b.RemoveMedia(name)
	}
	if err != nil {
		switch {
		case errors.Is(err, bridge.ErrRecordingActive):
			return errRecordingActive(name)
		case errors.Is(err, bridge.ErrMediaDeleted):
			return errMediaNotFound(name)
		}
		return err
	}
	if rec != nil {
		s.saved(store.KindRecording, user, in.ID)
	} else if s.outbox != nil {
		in.Media = ""
		s.outbox.SavedRecord(recordingRecord(in))
		// Written before the answer: a GET that follows reads the store.
		ctx, cancel := s.storeCtx(r)
		defer cancel()
		if err := s.outbox.Flush(ctx); err != nil {
			s.log.Warn("deleted media's record not written yet", "recording", in.ID, "err", err)
		}
	}
	ok(w)
	return nil
}

// readRecording reads recordingEnabled, recordingFileFormat and
// recordingMaxDuration (whole seconds, 1 to 14400) of a conference or
// call.
func readRecording(rd *reader) (enabled *bool, format *recfile.Format, maxDur *time.Duration) {
	enabled = rd.boolean("recordingEnabled")
	if v := rd.str("recordingFileFormat"); v != nil {
		f, err := recfile.ParseFormat(*v)
		if err != nil || *v == "" {
			rd.fail(errOneOf(rd.b.resource, "recordingFileFormat", "wav, mp3, ogg"))
		} else {
			format = &f
		}
	}
	if v := rd.integer("recordingMaxDuration"); v != nil {
		maxSecs := int64(bridge.MaxRecordingMaxDuration / time.Second)
		if *v < 1 || *v > maxSecs {
			rd.fail(errInvalid(rd.b.resource, "recordingMaxDuration", "must be a whole number of seconds from 1 to %d (%s)",
				maxSecs, bridge.MaxRecordingMaxDuration))
		} else {
			d := time.Duration(*v) * time.Second
			maxDur = &d
		}
	}
	return enabled, format, maxDur
}

// recordingMaxSeconds renders a recordingMaxDuration; a record stored
// before the field existed has the default.
func recordingMaxSeconds(d time.Duration) int64 {
	if d <= 0 {
		d = bridge.DefaultRecordingMaxDuration
	}
	return int64(d / time.Second)
}

// canRecord answers whether user may start a recording now, before a
// request creates what it asks to record: 503 recording-unavailable
// without a recordings directory or on a nearly full disk, 403
// recording-quota-exceeded for a user whose files fill the quota.
func (s *server) canRecord(user string) error {
	return recordingError(s.b.CanRecord(user))
}

// recordingError maps why a recording cannot start to the API's error;
// nil for nil, and nil for an error it does not know (the caller's).
func recordingError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bridge.ErrRecordingDisabled):
		return errRecordingUnavailable("this server keeps no recordings (no recordings directory)")
	case errors.Is(err, bridge.ErrRecordingDiskFull):
		return errRecordingUnavailable("the recordings disk is nearly full")
	case errors.Is(err, bridge.ErrRecordingQuota):
		return errRecordingQuota(err)
	}
	return nil
}

// startRecording starts c's recording; a server without recordings, or a
// recording that cannot start, is 503 recording-unavailable.
func (s *server) startRecording(c *bridge.Conference) error {
	rec, err := c.StartRecording(c.RecordingFormat())
	if err != nil {
		if errors.Is(err, bridge.ErrConferenceComplete) {
			return errConferenceState(c.ID(), bridge.StateCompleted)
		}
		if ae := recordingError(err); ae != nil {
			return ae
		}
		s.log.Warn("recording did not start", "conf", c.ID(), "err", err)
		return errRecordingUnavailable("the recording file could not be created")
	}
	// A recording's start raises no event: stored now, so that a crash
	// while it records leaves a record to close at the next start.
	s.saved(store.KindRecording, rec.UserID(), rec.ID())
	return nil
}

// startCallRecording starts call's recording: 403 call-invalid-state on a
// call that has ended, 503 recording-unavailable when the server keeps no
// recordings or the file cannot be made.
func (s *server) startCallRecording(call *bridge.Call) error {
	rec, err := call.StartRecording(call.RecordingFormat())
	if err != nil {
		if errors.Is(err, bridge.ErrCallNotActive) {
			return errCallState(call.ID(), bridge.CallCompleted)
		}
		if ae := recordingError(err); ae != nil {
			return ae
		}
		s.log.Warn("recording did not start", "call", call.ID(), "err", err)
		return errRecordingUnavailable("the recording file could not be created")
	}
	s.saved(store.KindRecording, rec.UserID(), rec.ID())
	return nil
}
