package api

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"chorus/bridge"
)

// cbField is one field of an event, in the order it is sent. val is a
// string, an int or a bool.
type cbField struct {
	key string
	val any
}

func (f cbField) text() string {
	switch v := f.val.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// cbPayload is an event's fields: a JSON object for POST, query
// parameters for GET.
type cbPayload []cbField

func (p cbPayload) json() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range p {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, _ := json.Marshal(f.val)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// CallbackTimeFormat is the time format of events: ISO-8601 UTC with
// milliseconds, as in Catapult's examples ("2013-07-12T20:53:11.646Z").
const CallbackTimeFormat = "2006-01-02T15:04:05.000Z"

func cbTime(t time.Time) string { return t.UTC().Format(CallbackTimeFormat) }

// eventPayload builds the fields Catapult sends for ev (its
// apiCallbacks pages), to the callback cb.
func (d *Dispatcher) eventPayload(ev bridge.Event, cb bridge.Callback) cbPayload {
	return d.payloadWith(ev, cb, nil, nil)
}

// payloadWith is eventPayload with the conference's record given (conf,
// when not nil) rather than looked up, and the recording's (rec): a
// conference a restart completed, or a recording it closed, is in no
// bridge.
func (d *Dispatcher) payloadWith(ev bridge.Event, cb bridge.Callback, conf *bridge.ConferenceInfo, rec *bridge.RecordingInfo) cbPayload {
	tag := ev.Tag
	if tag == "" {
		tag = cb.Tag
	}
	p := cbPayload{{"eventType", ev.Type}}
	add := func(k string, v any) { p = append(p, cbField{k, v}) }
	addStr := func(k, v string) {
		if v != "" {
			add(k, v)
		}
	}
	confURI := d.cbConferenceURI(ev.UserID, ev.ConferenceID)
	callURI := ""
	if ev.CallID != "" {
		callURI = d.cbURI(ev.UserID, "calls", ev.CallID)
	}

	switch ev.Type {
	case bridge.EventConference:
		addStr("conferenceId", ev.ConferenceID)
		addStr("conferenceUri", confURI)
		// Catapult names it status; state too, for applications written
		// against the resource's field name.
		add("status", ev.State)
		add("state", ev.State)
		created, completed := ev.Time, time.Time{}
		if conf == nil {
			if b := d.cfg.Bridge; b != nil {
				if c, ok := b.Conference(ev.ConferenceID); ok {
					info := c.Info()
					conf = &info
				}
			}
		}
		if conf == nil && d.storedConf != nil {
			if info, ok := d.storedConf(ev.UserID, ev.ConferenceID); ok {
				conf = &info
			}
		}
		if conf != nil {
			created, completed = conf.Created, conf.Completed
		}
		add("createdTime", cbTime(created))
		if ev.State == bridge.StateCompleted {
			if completed.IsZero() {
				completed = ev.Time
			}
			add("completedTime", cbTime(completed))
		}

	case bridge.EventConferenceMember:
		addStr("conferenceId", ev.ConferenceID)
		addStr("conferenceUri", confURI)
		addStr("memberId", ev.MemberID)
		if confURI != "" && ev.MemberID != "" {
			add("memberUri", confURI+"/members/"+url.PathEscape(ev.MemberID))
		}
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		add("state", ev.State)
		add("activeMembers", ev.ActiveMembers)
		add("hold", ev.Hold)
		add("mute", ev.Mute)
		add("phoneHold", ev.PhoneHold) // extension

	case bridge.EventConferencePlayback, bridge.EventConferenceSpeak:
		addStr("conferenceId", ev.ConferenceID)
		addStr("conferenceUri", confURI)
		add("status", cbAudioStatus(ev))
		cbAudioEnd(addStr, ev)

	case bridge.EventAnswer:
		addStr("from", ev.From)
		addStr("to", ev.To)
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		add("callState", "active")

	case bridge.EventIncomingCall:
		// Catapult's incomingcall: the call rings for the application.
		addStr("from", ev.From)
		addStr("to", ev.To)
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		// Catapult documents the value active, for a call that rings
		// until the application answers it too.
		add("callState", "active")
		addStr("applicationId", ev.ApplicationID)

	case bridge.EventHangup:
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		addStr("from", ev.From)
		addStr("to", ev.To)
		add("cause", cbHangupCause(ev.Cause))

	case bridge.EventDTMF:
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		add("dtmfDigit", ev.Digit)
		addStr("conferenceId", ev.ConferenceID)
		addStr("memberId", ev.MemberID)

	case bridge.EventSpeak, bridge.EventPlayback:
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		st := cbAudioStatus(ev)
		add("status", st)
		cbAudioEnd(addStr, ev)
		if ev.Type == bridge.EventSpeak {
			if st == "started" {
				add("state", "PLAYBACK_START")
			} else {
				add("state", "PLAYBACK_STOP")
			}
		}

	case bridge.EventGather:
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		addStr("gatherId", ev.GatherID)
		if callURI != "" && ev.GatherID != "" {
			add("gatherUri", callURI+"/gather/"+url.PathEscape(ev.GatherID)) // extension
		}
		add("state", ev.State)
		add("digits", ev.Digits)
		add("reason", string(ev.Reason))

	case bridge.EventRecording:
		// Catapult's recording event (a call's), with the conference
		// fields of a conference recording.
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		addStr("conferenceId", ev.ConferenceID)
		addStr("conferenceUri", confURI)
		addStr("recordingId", ev.RecordingID)
		addStr("recordingUri", d.cbURI(ev.UserID, "recordings", ev.RecordingID))
		add("state", ev.State)
		add("status", ev.State)
		if b := d.cfg.Bridge; rec == nil && b != nil {
			if r, ok := b.Recording(ev.RecordingID); ok {
				in := r.Info()
				rec = &in
			}
		}
		if rec != nil {
			add("startTime", cbTime(rec.Start))
			if !rec.End.IsZero() {
				add("endTime", cbTime(rec.End))
			}
			if rec.Media != "" {
				addStr("media", d.cbURI(ev.UserID, "media", rec.Media))
			}
		}
		addStr("error", ev.Cause) // extension: why a recording ended in error

	default: // an event type this code does not know: every field set
		addStr("conferenceId", ev.ConferenceID)
		addStr("conferenceUri", confURI)
		addStr("memberId", ev.MemberID)
		addStr("callId", ev.CallID)
		addStr("callUri", callURI)
		addStr("state", ev.State)
		addStr("status", ev.Status)
		addStr("cause", ev.Cause)
		addStr("from", ev.From)
		addStr("to", ev.To)
	}
	add("time", cbTime(ev.Time))
	addStr("tag", tag)
	// Extension: the event's stable id (the outbox's), the same on every
	// redelivery, so that an application drops duplicates.
	addStr("eventId", ev.ID)
	return p
}

// cbURI is {BaseURL}/v1/users/{user}/{kind}/{id}, or "" without a base URL.
func (d *Dispatcher) cbURI(user, kind, id string) string {
	if d.cfg.BaseURL == "" || user == "" || id == "" {
		return ""
	}
	return d.cfg.BaseURL + "/v1/users/" + url.PathEscape(user) + "/" + kind + "/" + url.PathEscape(id)
}

func (d *Dispatcher) cbConferenceURI(user, conf string) string {
	return d.cbURI(user, "conferences", conf)
}

// cbAudioStatus is the Catapult status of a playback or speak event:
// "started" or "done" (also for stopped, replaced or failed audio).
func cbAudioStatus(ev bridge.Event) string {
	s := strings.ToLower(ev.State)
	if s == "" {
		s = strings.ToLower(ev.Status)
	}
	switch s {
	case "start", "started", "playback_start", "playing":
		return "started"
	}
	return "done"
}

// cbHangupCause turns the bridge's hangup cause into a Catapult one
// (NORMAL_CLEARING, ORIGINATOR_CANCEL, USER_BUSY, ...). Causes already in
// that form pass through.
func cbHangupCause(c string) string {
	if c != "" && strings.Trim(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == "" {
		return c
	}
	switch strings.ToLower(c) {
	case "cancel", "cancelled", "canceled":
		return "ORIGINATOR_CANCEL"
	case "busy":
		return "USER_BUSY"
	case "no-answer", "timeout":
		return "NO_ANSWER"
	case "rejected", "declined":
		return "CALL_REJECTED"
	case "error", "bad-answer", "join-failed":
		return "NORMAL_TEMPORARY_FAILURE"
	}
	return "NORMAL_CLEARING"
}

// cbAudioEnd adds, to a done playback or speak event, how it ended
// ("done", "stopped", "replaced", "removed", "error" or "refused") as the extension
// field endReason: Catapult's status says only done, and an application may
// want to tell a failed fetch from a finished file.
func cbAudioEnd(addStr func(k, v string), ev bridge.Event) {
	if cbAudioStatus(ev) == "done" && ev.Status != "" && ev.Status != "started" {
		addStr("endReason", ev.Status)
	}
}
