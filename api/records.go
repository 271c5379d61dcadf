package api

import (
	"encoding/json"

	"chorus/bridge"
	"chorus/store"
)

// The records the store keeps are the bridge's snapshots (ConferenceInfo,
// MemberInfo, CallInfo, ApplicationInfo, NumberInfo) as JSON: the domain's
// values, not the API's JSON, which names URLs of the request that reads
// it. A record read back is rendered by the same functions as a live one,
// so a GET answers the same JSON before and after a restart.

// CauseServerRestart is why the bridge ended, at start, a conference,
// member or call that a crash left live (the process cannot have kept its
// calls). It is the hangup event's cause and the conference's cause.
const CauseServerRestart = "SERVER_RESTART"

// confRecord is a stored conference: its snapshot and, when the bridge
// itself ended it at a restart, why (shown as the extension cause).
type confRecord struct {
	bridge.ConferenceInfo
	Cause string `json:",omitempty"`
}

// memberRecord is a stored member; UserID is its conference's owner.
type memberRecord struct {
	bridge.MemberInfo
	UserID string
}

func conferenceRecord(in bridge.ConferenceInfo, cause string) store.Record {
	data, _ := json.Marshal(confRecord{ConferenceInfo: in, Cause: cause})
	r := store.Record{Key: store.Key{Kind: store.KindConference, User: in.UserID, ID: in.ID}, State: in.State,
		Created: in.Created, Data: data}
	if in.State == bridge.StateCompleted {
		r.Ended = in.Completed
	}
	return r
}

func memberRecordOf(user string, in bridge.MemberInfo) store.Record {
	in.Talking = false // a moment's state, not a record's
	data, _ := json.Marshal(memberRecord{MemberInfo: in, UserID: user})
	r := store.Record{Key: store.Key{Kind: store.KindMember, User: user, ID: in.ID}, Parent: in.ConferenceID,
		State: in.State, Created: in.Added, Data: data}
	if in.State == bridge.StateCompleted {
		r.Ended = in.Removed
	}
	return r
}

func callRecord(in bridge.CallInfo) store.Record {
	data, _ := json.Marshal(in)
	r := store.Record{Key: store.Key{Kind: store.KindCall, User: in.UserID, ID: in.ID}, Parent: in.ConferenceID,
		State: in.State, Created: in.Created, Data: data}
	if in.State == bridge.CallCompleted {
		r.Ended = in.Ended
	}
	return r
}

func applicationRecord(in bridge.ApplicationInfo) store.Record {
	data, _ := json.Marshal(in)
	return store.Record{Key: store.Key{Kind: store.KindApplication, User: in.UserID, ID: in.ID}, Created: in.Created, Data: data}
}

func numberRecord(in bridge.NumberInfo) store.Record {
	data, _ := json.Marshal(in)
	return store.Record{Key: store.Key{Kind: store.KindNumber, User: in.UserID, ID: in.ID}, Created: in.Created, Data: data}
}

// recordingRecord stores a recording: its parent is the recorded call
// (for GET /calls/{id}/recordings), else its conference. It ends when
// its file is finished (complete or error), from which the retention
// counts; the store's pruning removes the file with the record.
func recordingRecord(in bridge.RecordingInfo) store.Record {
	data, _ := json.Marshal(in)
	parent := in.CallID
	if parent == "" {
		parent = in.ConferenceID
	}
	r := store.Record{Key: store.Key{Kind: store.KindRecording, User: in.UserID, ID: in.ID}, Parent: parent,
		State: string(in.State), Created: in.Start, Data: data}
	if in.State != bridge.RecordingActive {
		r.Ended = in.End
	}
	return r
}

// gatherRecordData is a stored gather; UserID is its call's owner.
type gatherRecordData struct {
	bridge.GatherInfo
	UserID string
}

// gatherRecord stores a gather under its call (the parent): GET
// /calls/{callId}/gather/{gatherId} reads it by id and checks the call.
// It ends when it completes; one still collecting at a crash is completed
// at the next start (Outbox.Recover).
func gatherRecord(user string, in bridge.GatherInfo) store.Record {
	data, _ := json.Marshal(gatherRecordData{GatherInfo: in, UserID: user})
	r := store.Record{Key: store.Key{Kind: store.KindGather, User: user, ID: in.ID}, Parent: in.CallID,
		State: string(in.State), Created: in.Created, Data: data}
	if in.State == bridge.GatherCompleted {
		r.Ended = in.Completed
	}
	return r
}

// decodeRecord reads a record's JSON into v.
func decodeRecord[T any](r store.Record) (T, error) {
	var v T
	err := json.Unmarshal(r.Data, &v)
	return v, err
}
