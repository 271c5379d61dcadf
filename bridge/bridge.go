package bridge

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chorus/dtmf"
	"chorus/media"
	"chorus/media/opus"
	"chorus/media/recfile"
)

// Config holds the bridge's tunables. Zero fields take the defaults.
type Config struct {
	// DefaultUser owns conferences created by dial-in auto-create.
	DefaultUser string
	// AutoCreate creates a conference for an unknown dialled number.
	AutoCreate bool
	// MaxMembers bounds the active members of a conference (default 20).
	MaxMembers int
	// LoudestN bounds how many talkers are mixed at once (default 8).
	LoudestN int
	// RTPTimeout hangs up a call whose RTP stopped for this long, and one
	// that has not proved its RTP address this long after it started,
	// whatever its direction (default 30 s).
	RTPTimeout time.Duration
	// RTPHoldTimeout hangs up a call held this long: its direction is not
	// sendrecv (inactive, c=0.0.0.0, or either side on hold), counted from
	// when the hold began (default 10 min). A held call may send no RTP at
	// all, so the RTP timeout does not apply to it; this bounds how long it
	// keeps its port and how long a drain waits for it.
	RTPHoldTimeout time.Duration
	// Retention is how long completed conferences and calls stay visible
	// to the API before Prune forgets them (default 1 h).
	Retention time.Duration
	// MixerPriority is how mixer threads are scheduled (zero: normal; the
	// binary defaults to PriorityRealtime).
	MixerPriority Priority
	// PINTimeout is how long a caller who dialled in to a room with a PIN
	// has to enter it before the goodbye and BYE (default 30 s).
	PINTimeout time.Duration
	// Prompts returns what a caller waiting for a room's PIN hears. It is
	// called when such a caller arrives, on the SIP handler's goroutine,
	// and may render speech then (default TonePrompts).
	Prompts func() Prompts
	// MaxApplicationsPerUser caps the applications of one user (default
	// DefaultMaxApplicationsPerUser); beyond, ErrLimit.
	MaxApplicationsPerUser int
	// MaxNumbersPerUser caps the phone numbers one user holds (default
	// DefaultMaxNumbersPerUser); beyond, ErrLimit.
	MaxNumbersPerUser int
	// IncomingCallTimeout is how long a call to an application's number
	// rings for the application to answer or reject it before it is
	// turned away with 480 and the cause NO_ANSWER (default 60 s).
	IncomingCallTimeout time.Duration
	// MaxMixRate caps the rate a room mixes at: a room mixes at the
	// highest rate its members can hear (Endpoint.MaxRate), at most this;
	// 8000, 16000 or 48000 Hz (default 48000; another value is rounded
	// down to one of those, and to 8000 below it).
	MaxMixRate int
	// OpusBitrate is the bitrate (bit/s, 6000 to 510000) the Opus
	// encoders aim at, before a peer's maxaveragebitrate lowers it
	// (default 32000, opus.DefaultBitrate: the lowest at which libopus
	// keeps fullband voice with in-band FEC; RFC 7587 §3.1.1 gives 28–40
	// kbit/s for fullband speech).
	OpusBitrate int
	// RecordingsDir is where recording files are written; "" refuses
	// recordings (ErrRecordingDisabled).
	RecordingsDir string
	// RecordingBuffer is how much of a room's mix a recording holds for its
	// writer before a writer that cannot keep up ends the recording with
	// an error (default 2 s).
	RecordingBuffer time.Duration
	// OpenRecordingFile creates a recording's file at a path under
	// RecordingsDir (default: the directory is made and the file created
	// exclusively, mode 0640). Tests put a slow disk here.
	OpenRecordingFile RecordingFile
	// KeepRecordingFiles makes Prune forget ended recordings without
	// removing their files: set when a store keeps the records longer than
	// the bridge's Retention, so that the store's pruning, which forgets
	// the record, is the one owner that removes the file.
	KeepRecordingFiles bool
	// RecordingQuota is how many bytes of recording files each user may
	// have on disk; 0 is no limit. A recording does not start once its
	// user is at the quota (ErrRecordingQuota), and one that crosses it
	// ends with state error (reclimits.go).
	RecordingQuota int64
	// RecordingMinFree is the free space (bytes) the recordings
	// directory's filesystem must have for a recording to start
	// (ErrRecordingDiskFull); 0 checks nothing.
	RecordingMinFree int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterFunc runs f after d, as time.AfterFunc (the default) does: the
	// timers of gathers (their inter-digit timeout). Tests fire them.
	AfterFunc func(d time.Duration, f func()) Timer
}

// Timer is a timer of Config.AfterFunc.
type Timer interface {
	// Stop prevents the timer from firing; false if it fired or was stopped.
	Stop() bool
}

func (c *Config) setDefaults() {
	switch {
	case c.MaxMixRate <= 0 || c.MaxMixRate >= 48000:
		c.MaxMixRate = 48000
	case c.MaxMixRate >= 16000:
		c.MaxMixRate = 16000
	default:
		c.MaxMixRate = 8000
	}
	if c.OpusBitrate <= 0 {
		c.OpusBitrate = opus.DefaultBitrate
	}
	c.OpusBitrate = min(max(c.OpusBitrate, 6000), 510000)
	if c.MaxMembers <= 0 {
		c.MaxMembers = 20
	}
	if c.LoudestN <= 0 {
		c.LoudestN = 8
	}
	if c.RTPTimeout <= 0 {
		c.RTPTimeout = 30 * time.Second
	}
	if c.RTPHoldTimeout <= 0 {
		c.RTPHoldTimeout = 10 * time.Minute
	}
	if c.Retention <= 0 {
		c.Retention = time.Hour
	}
	if c.PINTimeout <= 0 {
		c.PINTimeout = 30 * time.Second
	}
	if c.Prompts == nil {
		tones := TonePrompts()
		c.Prompts = func() Prompts { return tones }
	}
	if c.MaxApplicationsPerUser <= 0 {
		c.MaxApplicationsPerUser = DefaultMaxApplicationsPerUser
	}
	if c.MaxNumbersPerUser <= 0 {
		c.MaxNumbersPerUser = DefaultMaxNumbersPerUser
	}
	if c.IncomingCallTimeout <= 0 {
		c.IncomingCallTimeout = DefaultIncomingCallTimeout
	}
	if c.RecordingBuffer <= 0 {
		c.RecordingBuffer = defaultRecordingBuffer
	}
	if c.OpenRecordingFile == nil {
		c.OpenRecordingFile = createRecordingFile
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AfterFunc == nil {
		c.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
}

// Leg is what the bridge needs of a call's signalling; package sip
// implements it.
type Leg interface {
	// Media returns the call's RTP session.
	Media() *media.Session
	// Hangup ends the call (BYE, or CANCEL/error response before answer).
	Hangup(ctx context.Context, cause string) error
}

// Bridge holds every conference and call.
type Bridge struct {
	cfg    Config
	log    *slog.Logger
	events EventSink
	stats  *Stats

	mu    sync.Mutex
	confs map[string]*Conference
	calls map[string]*Call
	// numbers is the routing index: each dial-in number (a conference's
	// from) to the one live conference holding it. A conference enters it
	// when created and leaves it when completed, both under mu, so a
	// lookup-or-create in Route is one atomic step.
	numbers map[string]*Conference
	// unjoined counts, for each conference Route created, the calls it
	// routed there that have not joined or given up yet (Routed): a room
	// whose every such call failed, none having joined, is completed
	// instead of holding its number empty forever.
	unjoined map[*Conference]int
	// recordings holds every recording (recording.go) until it is pruned.
	recordings map[string]*Recording
	// recUse counts each user's recording bytes on disk (reclimits.go).
	recUse   recUsage
	draining bool
	loops    loopGroup // mixer goroutines

	dialer Dialer
	clock  *clock
	// reg holds the applications and the allocated phone numbers
	// (apps.go), guarded by mu.
	reg registry

	// manualClock leaves mixers unstarted so tests step them with mixOnce.
	manualClock bool
	// priorityRefused is set once the first mixer thread was refused its
	// configured priority (logged once, not per room).
	priorityRefused atomic.Bool
}

// New returns a bridge. events may be nil.
func New(cfg Config, log *slog.Logger, events EventSink) *Bridge {
	cfg.setDefaults()
	if events == nil {
		events = discardSink{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{cfg: cfg, log: log, events: events, stats: &Stats{},
		confs: map[string]*Conference{}, calls: map[string]*Call{}, numbers: map[string]*Conference{},
		unjoined: map[*Conference]int{}, recordings: map[string]*Recording{}, recUse: newRecUsage()}
	b.clock = newClock(b)
	b.reg = newRegistry()
	return b
}

// Config returns the effective configuration.
func (b *Bridge) Config() Config { return b.cfg }

// Stats returns the bridge's counters, shared by every conference.
func (b *Bridge) Stats() *Stats { return b.stats }

// SetEventSink replaces where events go. Call it before traffic starts.
func (b *Bridge) SetEventSink(s EventSink) {
	if s == nil {
		s = discardSink{}
	}
	b.events = s
}

func (b *Bridge) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = b.cfg.Now()
	}
	b.events.Publish(ev)
}

// ConferenceOptions are the properties of a new conference.
type ConferenceOptions struct {
	UserID   string
	From     string
	Profile  string // "interpret_digits" (default) or "passthru_digits"
	Callback Callback
	Mute     bool
	Hold     bool
	// PIN, if set (ValidPIN), is asked of callers who dial in.
	PIN string
	// Locked refuses callers who dial in.
	Locked bool
}

// CreateConference makes an empty conference in state created. Its from
// number, if any, must not be held by another live conference of any user
// (ErrNumberInUse): a number routes to exactly one room.
func (b *Bridge) CreateConference(opts ConferenceOptions) (*Conference, error) {
	b.mu.Lock()
	c, err := b.createLocked(opts)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	b.created(c)
	return c, nil
}

// createLocked registers a new conference and its number. b.mu is held;
// the caller announces the conference with created once it is released.
func (b *Bridge) createLocked(opts ConferenceOptions) (*Conference, error) {
	if b.draining {
		return nil, ErrDraining
	}
	if err := ValidPIN(opts.PIN); err != nil {
		return nil, fmt.Errorf("create conference: %w", err)
	}
	if b.holder(opts.From) != nil {
		return nil, fmt.Errorf("create conference from %q: %w", opts.From, ErrNumberInUse)
	}
	// Another user's phone number is not this user's to host a room on
	// (its own numbers are: see apps.go).
	if n, ok := b.reg.numByNum[opts.From]; ok && opts.From != "" && n.userID != opts.UserID {
		return nil, fmt.Errorf("create conference from %q: %w", opts.From, ErrNumberInUse)
	}
	if opts.Profile == "" {
		opts.Profile = ProfileInterpretDigits
	}
	c := newConference(b, opts)
	b.confs[c.id] = c
	if c.from != "" {
		b.numbers[c.from] = c
	}
	return c, nil
}

// holder returns the live conference holding number, or nil. A conference
// that is completing (its index entry not yet removed) holds it no more.
// b.mu is held.
func (b *Bridge) holder(number string) *Conference {
	if number == "" {
		return nil
	}
	c, ok := b.numbers[number]
	if !ok {
		return nil
	}
	if c.ended.Load() {
		delete(b.numbers, number)
		return nil
	}
	return c
}

// created counts and announces a new conference.
func (b *Bridge) created(c *Conference) {
	b.stats.Conferences.Add(1)
	b.publish(Event{Type: EventConference, UserID: c.userID, ConferenceID: c.id, State: StateCreated, Tag: c.Callback().Tag})
}

// releaseNumber takes a completed conference out of the routing index.
func (b *Bridge) releaseNumber(c *Conference) {
	if c.from == "" {
		return
	}
	b.mu.Lock()
	if b.numbers[c.from] == c {
		delete(b.numbers, c.from)
	}
	b.mu.Unlock()
}

// Conference returns a conference by id.
func (b *Bridge) Conference(id string) (*Conference, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.confs[id]
	return c, ok
}

// Conferences returns the conferences of a user, newest first.
func (b *Bridge) Conferences(userID string) []*Conference {
	b.mu.Lock()
	out := make([]*Conference, 0, len(b.confs))
	for _, c := range b.confs {
		if c.userID == userID {
			out = append(out, c)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y *Conference) int { return y.created.Compare(x.created) })
	return out
}

// Route finds the conference a dial-in to number (the Request-URI user part)
// belongs in, as design.md decides: a conference id, the from number of a
// live conference (held by one conference across all users, found in the
// index), or a new conference when auto-create is on. A conference it
// creates belongs to owner, the API user of the caller's SIP account, or to
// the default user when owner is "" (a caller from a trusted network).
// Finding and creating are one step under the bridge's lock, so callers
// dialling a new number at once all land in the same room. Each call
// routed must report with Routed once it has joined or given up.
func (b *Bridge) Route(number, owner string) (*Conference, error) {
	b.mu.Lock()
	if strings.HasPrefix(number, ConferencePrefix) {
		c, ok := b.confs[number]
		if ok {
			b.routedLocked(c)
		}
		b.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("route %q: %w", number, ErrNoRoute)
		}
		if c.State() == StateCompleted {
			return nil, fmt.Errorf("route %q: %w", number, ErrConferenceComplete)
		}
		return c, nil
	}
	if c := b.holder(number); c != nil {
		b.routedLocked(c)
		b.mu.Unlock()
		return c, nil
	}
	if !b.cfg.AutoCreate || number == "" {
		b.mu.Unlock()
		return nil, fmt.Errorf("route %q: %w", number, ErrNoRoute)
	}
	if n, ok := b.reg.numByNum[number]; ok {
		owner = n.userID // a number's room is its owner's
	}
	if owner == "" {
		owner = b.cfg.DefaultUser
	}
	c, err := b.createLocked(ConferenceOptions{UserID: owner, From: number})
	if err == nil {
		b.unjoined[c] = 1
	}
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", number, err)
	}
	b.created(c)
	return c, nil
}

// routedLocked counts one more call on its way into c, if Route created c
// and c still waits for calls it routed. b.mu is held.
func (b *Bridge) routedLocked(c *Conference) {
	if n, ok := b.unjoined[c]; ok {
		b.unjoined[c] = n + 1
	}
}

// Routed reports that a call Route sent to c has joined it or given up (a
// failed answer, no RTP port, a cancel). When c is a room Route created
// and this was the last call on its way in, and none ever joined it, it is
// completed: an empty room would otherwise hold the number for good. Its
// number is released first, under the bridge's lock, so that a caller
// routed meanwhile makes a new room rather than finding this one.
func (b *Bridge) Routed(c *Conference) {
	b.mu.Lock()
	n, ok := b.unjoined[c]
	if !ok {
		b.mu.Unlock()
		return
	}
	if n > 1 {
		b.unjoined[c] = n - 1
		b.mu.Unlock()
		return
	}
	delete(b.unjoined, c)
	abandoned := c.State() == StateCreated // no member ever joined
	if abandoned && c.from != "" && b.numbers[c.from] == c {
		delete(b.numbers, c.from)
	}
	b.mu.Unlock()
	if abandoned {
		c.log.Info("conference abandoned: every call routed to it failed before joining")
		c.Complete()
	}
}

// Call states.
const (
	CallStarted   = "started" // ringing, not answered yet
	CallActive    = "active"
	CallCompleted = "completed"
)

// Call directions.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Call is one SIP call, inbound or dialled out. A member is always a call
// in a conference.
type Call struct {
	id        string
	userID    string
	from, to  string
	direction string
	leg       Leg
	b         *Bridge
	log       *slog.Logger

	joinMu sync.Mutex // serialises AddMember for this call

	// det turns the call's telephone-events into digits. It lives on the
	// call, not the member, so that it outlasts a move: the end packets
	// an RFC 4733 sender repeats (§2.5.1.4) after the key that moved the
	// call (a gather's #) must not fire that key again in the new room,
	// where # leaves. detMu: the old and the new room's mixers may both
	// poll the stream around the move. Only DTMF packets take it. Made at
	// the first telephone-event: most calls never send one.
	detMu sync.Mutex
	det   *dtmf.Detector

	mu       sync.Mutex
	state    string
	created  time.Time
	answered time.Time
	ended    time.Time
	cause    string
	member   *Member
	callback Callback
	confID   string // the conference a dialled call will join, or last joined
	memberID string // the member it last was
	// phoneHold: the phone holds the call (its last offer or answer left us
	// no sendrecv). It lives on the call so that it survives a move between
	// conferences; the member mirrors it for the mixer.
	phoneHold bool
	// dialTimeout is the ringing bound DialOut was asked for (zero: the
	// default), kept for the API's callTimeout.
	dialTimeout time.Duration
	// hangupCause is why we hung up, kept from before the BYE: the dialog
	// ending on its answer may report the end first, as a plain hangup.
	hangupCause string
	// gather is the running gather, gathers every gather of the call
	// (gather.go).
	gather  *Gather
	gathers []*Gather
	infoMu  sync.Mutex // one DTMF out by INFO at a time (dtmfout.go)
	attach  attachment
	// appID is the application a call to its number came in for.
	appID string
	// decide carries the application's decision while its call rings
	// (appcall.go); decided is set once one was taken or the wait ended.
	decide  chan Decision
	decided bool
	// rec is the call's running recording (recording.go), set and
	// cleared under mu, with the count of recording calls of the room its
	// member is in; recFormat is what the next one takes.
	rec       atomic.Pointer[Recording]
	recFormat recfile.Format
	recMax    time.Duration // recordingMaxDuration of the next one; 0: the default
}

// CallInfo is a snapshot of a call.
type CallInfo struct {
	ID, UserID, From, To, Direction, State string
	Created, Answered, Ended               time.Time
	Cause                                  string
	ConferenceID, MemberID                 string
	Callback                               Callback
	// DialTimeout is the ringing bound an outbound call was placed with,
	// zero if none was asked for.
	DialTimeout time.Duration
	// ApplicationID is the application an incoming call came in for.
	ApplicationID string
	// RecordingFormat is the format of the call's recordings.
	RecordingFormat recfile.Format
	// RecordingMaxDuration bounds the length of each of its recordings.
	RecordingMaxDuration time.Duration `json:",omitzero"`
}

// NewCall registers a call. leg may be nil until the call is set up.
func (b *Bridge) NewCall(userID, from, to, direction string, leg Leg, cb Callback) *Call {
	c := &Call{id: newID(CallPrefix), userID: userID, from: from, to: to, direction: direction,
		leg: leg, b: b, state: CallStarted, created: b.cfg.Now(), callback: cb}
	c.log = b.log.With("call", c.id)
	b.mu.Lock()
	b.calls[c.id] = c
	b.mu.Unlock()
	b.stats.Calls.Add(1)
	return c
}

// Call returns a call by id.
func (b *Bridge) Call(id string) (*Call, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.calls[id]
	return c, ok
}

// Calls returns the calls of a user, newest first.
func (b *Bridge) Calls(userID string) []*Call {
	b.mu.Lock()
	out := make([]*Call, 0, len(b.calls))
	for _, c := range b.calls {
		if c.userID == userID {
			out = append(out, c)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y *Call) int { return y.created.Compare(x.created) })
	return out
}

// ID returns the call id.
func (c *Call) ID() string { return c.id }

// UserID returns the owning user.
func (c *Call) UserID() string { return c.userID }

// Leg returns the call's signalling.
func (c *Call) Leg() Leg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leg
}

// SetLeg attaches the signalling once it exists.
func (c *Call) SetLeg(l Leg) {
	c.mu.Lock()
	c.leg = l
	c.mu.Unlock()
}

// Info returns a snapshot.
func (c *Call) Info() CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := CallInfo{ID: c.id, UserID: c.userID, From: c.from, To: c.to, Direction: c.direction,
		State: c.state, Created: c.created, Answered: c.answered, Ended: c.ended, Cause: c.cause,
		Callback: c.callback, DialTimeout: c.dialTimeout, ApplicationID: c.appID, RecordingFormat: c.recFormat,
		RecordingMaxDuration: cmp.Or(c.recMax, DefaultRecordingMaxDuration)}
	if ci.RecordingFormat == "" {
		ci.RecordingFormat = recfile.WAV
	}
	ci.ConferenceID, ci.MemberID = c.confID, c.memberID // also after leaving: call history
	if c.member != nil && !c.member.conf.internal {     // a parked call is in no conference
		ci.ConferenceID = c.member.conf.id
		if !c.member.waiting.Load() { // a caller in the lobby is no member yet
			ci.MemberID = c.member.id
		}
	}
	return ci
}

// State returns the call state.
func (c *Call) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Member returns the member the call is now, if any.
func (c *Call) Member() *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member
}

// SetPhoneHold records that the phone put the call on hold, or took it off
// hold: its SDP offer was sendonly, inactive or had c=0.0.0.0 (RFC 3264
// §8.4; RFC 2543's hold), so that our direction is not sendrecv. A held
// call's member is not mixed, so the phone's hold music never reaches the
// room, and a conference-member event reports the change.
func (c *Call) SetPhoneHold(v bool) {
	c.mu.Lock()
	changed := c.phoneHold != v
	c.phoneHold = v
	m := c.member
	if m != nil {
		m.phoneHold.Store(v)
	}
	c.mu.Unlock()
	if changed {
		c.log.Info("phone hold", "held", v)
		if m != nil {
			m.changed()
		}
	}
}

// feedDTMF gives one telephone-event packet of the call to its detector
// and returns the digit when the packet starts a new key press.
func (c *Call) feedDTMF(ssrc, ts uint32, payload []byte) (rune, bool) {
	c.detMu.Lock()
	defer c.detMu.Unlock()
	if c.det == nil {
		c.det = &dtmf.Detector{}
	}
	return c.det.Feed(ssrc, ts, payload)
}

// PhoneHold reports whether the phone holds the call.
func (c *Call) PhoneHold() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phoneHold
}

// Answered marks the call active (the 200 OK was sent or received).
func (c *Call) Answered() {
	c.mu.Lock()
	if c.state != CallStarted {
		c.mu.Unlock()
		return
	}
	c.state = CallActive
	c.answered = c.b.cfg.Now()
	cb := c.callback
	confID := c.confID
	c.mu.Unlock()
	c.b.publish(Event{Type: EventAnswer, UserID: c.userID, CallID: c.id, ConferenceID: confID, From: c.from, To: c.to, Tag: cb.Tag})
}

// Ended records that the call is over (BYE either way, CANCEL, failure):
// the member leaves its conference without another hangup.
func (c *Call) Ended(cause string) {
	c.mu.Lock()
	if c.state == CallCompleted {
		c.mu.Unlock()
		return
	}
	c.state = CallCompleted
	c.ended = c.b.cfg.Now()
	if c.hangupCause != "" {
		cause = c.hangupCause
	}
	c.cause = cause
	c.leg = nil // the record stays for the API; its signalling and media go
	m := c.member
	cb := c.callback
	confID := c.confID
	g := c.gather
	c.mu.Unlock()
	if g != nil {
		g.complete(GatherHungUp) // its event before the hangup's
	}
	defer c.StopRecording() // its file is finished after the hangup event
	ev := Event{Type: EventHangup, UserID: c.userID, CallID: c.id, ConferenceID: confID, Cause: cause, From: c.from, To: c.to, Tag: cb.Tag}
	if m != nil && m.conf.internal {
		m.conf.removeMember(m, false, cause)
	} else if m != nil {
		ev.ConferenceID = m.conf.id
		if !m.waiting.Load() {
			ev.MemberID = m.id
		}
		m.conf.removeMember(m, false, cause)
	}
	c.b.publish(ev)
}

// Hangup ends the call from our side.
func (c *Call) Hangup(ctx context.Context, cause string) error {
	c.mu.Lock()
	if c.hangupCause == "" && c.state != CallCompleted {
		c.hangupCause = cause
	}
	if c.ringingForApp() {
		// Still ringing for its application: the SIP side turns it away
		// (480) and ends it.
		c.decided = true
		c.decide <- DecisionHangup
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	leg := c.Leg()
	if leg == nil {
		c.Ended(cause)
		return nil
	}
	err := leg.Hangup(ctx, cause)
	c.Ended(cause)
	return err
}

// Digit delivers a DTMF digit that arrived by signalling (SIP INFO).
func (c *Call) Digit(d rune) {
	c.mu.Lock()
	m := c.member
	c.mu.Unlock()
	switch {
	case m != nil:
		m.conf.handleDigit(m, d)
	case c.gatherDigit(d):
	default: // a call in no conference, its media not parked: the application hears of it
		c.b.publish(Event{Type: EventDTMF, UserID: c.userID, CallID: c.id, Digit: string(d), Tag: c.Info().Callback.Tag})
	}
}

// Drain makes the bridge refuse new conferences and calls (SIGTERM).
func (b *Bridge) Drain() {
	b.mu.Lock()
	b.draining = true
	b.mu.Unlock()
}

// Draining reports whether Drain was called.
func (b *Bridge) Draining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.draining
}

// ActiveCalls counts calls not completed.
func (b *Bridge) ActiveCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.calls {
		if c.State() != CallCompleted {
			n++
		}
	}
	return n
}

// HangupAll ends every call, in parallel, waits for the mixers to stop,
// and finishes every recording's file (until ctx ends).
func (b *Bridge) HangupAll(ctx context.Context, cause string) {
	b.mu.Lock()
	calls := make([]*Call, 0, len(b.calls))
	for _, c := range b.calls {
		calls = append(calls, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range calls {
		if c.State() == CallCompleted {
			continue
		}
		wg.Go(func() { _ = c.Hangup(ctx, cause) })
	}
	wg.Wait()
	b.loops.wait()
	b.stopRecordings(ctx)
}

// Publish sends an event that the bridge did not raise itself (playback
// and speech events of the API layer) through the same sink, so that
// applications receive every event in one order.
func (b *Bridge) Publish(ev Event) { b.publish(ev) }

// Prune forgets conferences and calls completed longer than the retention
// ago (and recordings ended that long ago, with their files unless
// Config.KeepRecordingFiles), so that a long-running bridge does not grow without bound; members
// that left a live conference that long ago go too (a room that lives for
// days would otherwise keep every short call it ever had). It returns how
// many conferences and calls it dropped.
func (b *Bridge) Prune() (confs, calls int) {
	cutoff := b.cfg.Now().Add(-b.cfg.Retention)
	b.mu.Lock()
	var live []*Conference
	for id, c := range b.confs {
		info := c.Info()
		switch {
		case info.State == StateCompleted && info.Completed.Before(cutoff):
			delete(b.confs, id)
			delete(b.unjoined, c) // a Route without its Routed
			confs++
		case info.State != StateCompleted:
			live = append(live, c)
		}
	}
	for id, c := range b.calls {
		if info := c.Info(); info.State == CallCompleted && info.Ended.Before(cutoff) {
			delete(b.calls, id)
			calls++
		}
	}
	b.mu.Unlock()
	for _, c := range live {
		c.pruneMembers(cutoff)
	}
	if n := b.pruneRecordings(cutoff); n > 0 {
		b.log.Debug("pruned recordings", "recordings", n)
	}
	return confs, calls
}

// RunJanitor calls Prune every interval until ctx ends.
func (b *Bridge) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if confs, calls := b.Prune(); confs+calls > 0 {
				b.log.Debug("pruned completed records", "conferences", confs, "calls", calls)
			}
		}
	}
}
