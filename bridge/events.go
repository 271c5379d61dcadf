package bridge

import "time"

// Event types, named as the Catapult callbacks are.
const (
	EventConference         = "conference"          // State: created, completed
	EventConferenceMember   = "conference-member"   // State: active, completed; Mute/Hold/PhoneHold changes
	EventConferencePlayback = "conference-playback" // State: start, done
	EventConferenceSpeak    = "conference-speak"    // State: started, done
	EventAnswer             = "answer"              // a call was answered
	EventHangup             = "hangup"              // a call ended
	EventDTMF               = "dtmf"                // a digit in passthru_digits
	EventPlayback           = "playback"            // audio file to one member: start, done
	EventSpeak              = "speak"               // sentence to one member: started, done
	EventGather             = "gather"              // a gather on a call completed (gather.go)
	EventTransferring       = "transferring"        // a call's transfer began (transfer.go)
	// EventRecording (recording.go): a recording's file is complete, or it ended with an error.
)

// Event is something an application may want to hear about. Zero fields
// do not apply to the event's type.
type Event struct {
	// ID is the event's stable id, given by the outbox that persists it
	// ("" until then): the same on every delivery of the event.
	ID     string
	Type   string
	Time   time.Time
	UserID string
	// ConferenceID is set on every event of a call that has joined a
	// conference (the one it last joined, or is dialled to join), so that
	// an event consumer keeps a member call's events, its hangup included,
	// in its conference's order without a call → conference map.
	ConferenceID  string
	MemberID      string
	CallID        string
	State         string
	ActiveMembers int
	Mute          bool
	Hold          bool
	PhoneHold     bool // conference-member: the phone holds the call
	Digit         string
	Cause         string
	Status        string // "done", "error", "stopped", "replaced" for playback ends
	Tag           string
	From, To      string
	// GatherID, Digits and Reason are a completed gather's (EventGather).
	GatherID string
	Digits   string
	Reason   GatherReason
	// ApplicationID is the application of an incomingcall event.
	ApplicationID string
	// RecordingID is the recording of a recording event.
	RecordingID string
}

// EventSink receives events. Publish must not block: it is called from the
// mixer goroutine and from SIP handlers.
type EventSink interface {
	Publish(Event)
}

// Callback is where an application wants a resource's events sent. The
// bridge only carries it; package api delivers.
type Callback struct {
	URL         string
	Method      string // "POST" or "GET"
	Timeout     time.Duration
	FallbackURL string
	Tag         string
}

type discardSink struct{}

func (discardSink) Publish(Event) {}

// ChangeSink is an EventSink that also keeps records (the API's outbox):
// it hears of a member's change that raises no event — talk and receive
// volume and mic sensitivity keyed on the phone — so that it can save the
// member before the member's next event. MemberChanged is called from the
// mixer's tick and must not block; the sink reads the member back (Info)
// when it saves it, so it may wait a little and save many changes at once.
type ChangeSink interface {
	EventSink
	MemberChanged(userID, confID, memberID string)
}
