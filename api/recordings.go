package api

import (
	"errors"
	"net/http"
	"os"

	"chorus/bridge"
	"chorus/media/recfile"
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

func renderRecording(r *http.Request, user string, rec *bridge.Recording) recordingJSON {
	in := rec.Info()
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

// recording returns the user's recording by id; another user's is not
// found, exactly like a missing one.
func (s *server) recording(user, id string) (*bridge.Recording, error) {
	rec, ok := s.b.Recording(id)
	if !ok || rec.UserID() != user {
		return nil, errRecordingNotFound(id)
	}
	return rec, nil
}

// GET /recordings: the user's recordings, newest first, a page at a time.
func (s *server) listRecordings(w http.ResponseWriter, r *http.Request, user string) error {
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	recs := s.b.Recordings(user)
	lo, hi := pageOf(w, r, p, len(recs))
	out := make([]recordingJSON, 0, hi-lo)
	for _, rec := range recs[lo:hi] {
		out = append(out, renderRecording(r, user, rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /calls/{callId}/recordings: the call's recordings, newest first
// (Catapult's call recordings URL), a page at a time.
func (s *server) listCallRecordings(w http.ResponseWriter, r *http.Request, user string) error {
	id := r.PathValue("callId")
	if _, found := s.call(user, id); !found {
		return errCallNotFound(id)
	}
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	var recs []*bridge.Recording
	for _, rec := range s.b.Recordings(user) {
		if rec.Info().CallID == id {
			recs = append(recs, rec)
		}
	}
	lo, hi := pageOf(w, r, p, len(recs))
	out := make([]recordingJSON, 0, hi-lo)
	for _, rec := range recs[lo:hi] {
		out = append(out, renderRecording(r, user, rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /recordings/{recordingId}.
func (s *server) getRecording(w http.ResponseWriter, r *http.Request, user string) error {
	rec, err := s.recording(user, r.PathValue("recordingId"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderRecording(r, user, rec))
	return nil
}

// mediaRecording returns the recording whose file is the user's media
// {mediaName}.
func (s *server) mediaRecording(user, name string) (*bridge.Recording, error) {
	rec, ok := s.b.RecordingByMedia(name)
	if !ok || rec.UserID() != user || rec.Media() == "" {
		return nil, errMediaNotFound(name)
	}
	return rec, nil
}

// GET /media/{mediaName}: the recording's file, with Range requests (RFC
// 9110 §14) so that a player can seek, and conditional requests on its
// modification time. A recording still being written serves what is
// written so far.
func (s *server) getMedia(w http.ResponseWriter, r *http.Request, user string) error {
	name := r.PathValue("mediaName")
	rec, err := s.mediaRecording(user, name)
	if err != nil {
		return err
	}
	f, err := rec.OpenMedia()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, bridge.ErrMediaDeleted) {
			return errMediaNotFound(name)
		}
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", rec.Info().Format.ContentType())
	http.ServeContent(w, r, name, st.ModTime(), f)
	return nil
}

// DELETE /media/{mediaName}: removes the file; the recording stays,
// without media. The file of a recording still being written is 409.
func (s *server) deleteMedia(w http.ResponseWriter, r *http.Request, user string) error {
	name := r.PathValue("mediaName")
	rec, err := s.mediaRecording(user, name)
	if err != nil {
		return err
	}
	if err := rec.DeleteMedia(); err != nil {
		switch {
		case errors.Is(err, bridge.ErrRecordingActive):
			return errRecordingActive(name)
		case errors.Is(err, bridge.ErrMediaDeleted):
			return errMediaNotFound(name)
		}
		return err
	}
	ok(w)
	return nil
}

// readRecording reads recordingEnabled and recordingFileFormat of a
// conference or call.
func readRecording(rd *reader) (enabled *bool, format *recfile.Format) {
	enabled = rd.boolean("recordingEnabled")
	if v := rd.str("recordingFileFormat"); v != nil {
		f, err := recfile.ParseFormat(*v)
		if err != nil || *v == "" {
			rd.fail(errOneOf(rd.b.resource, "recordingFileFormat", "wav, mp3, ogg"))
		} else {
			format = &f
		}
	}
	return enabled, format
}

// startRecording starts c's recording; a server without recordings, or a
// recording that cannot start, is 503 recording-unavailable.
func (s *server) startRecording(c *bridge.Conference) error {
	if _, err := c.StartRecording(c.RecordingFormat()); err != nil {
		switch {
		case errors.Is(err, bridge.ErrConferenceComplete):
			return errConferenceState(c.ID(), bridge.StateCompleted)
		case errors.Is(err, bridge.ErrRecordingDisabled):
			return errRecordingUnavailable("this server keeps no recordings (no recordings directory)")
		}
		s.log.Warn("recording did not start", "conf", c.ID(), "err", err)
		return errRecordingUnavailable("the recording file could not be created")
	}
	return nil
}

// startCallRecording starts call's recording: 403 call-invalid-state on a
// call that has ended, 503 recording-unavailable when the server keeps no
// recordings or the file cannot be made.
func (s *server) startCallRecording(call *bridge.Call) error {
	if _, err := call.StartRecording(call.RecordingFormat()); err != nil {
		switch {
		case errors.Is(err, bridge.ErrCallNotActive):
			return errCallState(call.ID(), bridge.CallCompleted)
		case errors.Is(err, bridge.ErrRecordingDisabled):
			return errRecordingUnavailable("this server keeps no recordings (no recordings directory)")
		}
		s.log.Warn("recording did not start", "call", call.ID(), "err", err)
		return errRecordingUnavailable("the recording file could not be created")
	}
	return nil
}
