package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/media/audiofile"
	"chorus/store"
)

// User is an API account: its id (the {userId} of every path) and the
// token and secret of its HTTP Basic credentials.
type User struct{ ID, Token, Secret string }

// AudioSources turn an audio request into mono samples at a mix rate (8,
// 16 or 48 kHz: a file keeps its band, speech is 16 kHz). Speaker and
// fetcher are plugged by the binary (media/audiofile.Fetcher and a
// media/tts engine) and by tests.
type AudioSources interface {
	// Fetch downloads and decodes an audio file (media/audiofile.Fetcher).
	Fetch(ctx context.Context, url string) (audiofile.Audio, error)
	// Speak renders text to speech (media/tts.Engine).
	Speak(ctx context.Context, text, gender, locale, voice string) (audiofile.Audio, error)
}

// Config configures the API handler.
type Config struct {
	Users  []User
	Bridge *bridge.Bridge
	// Audio plays files and speech; nil makes the audio endpoints answer
	// 503 media-unavailable (stopping still answers 200).
	Audio AudioSources
	Log   *slog.Logger
	// MaxBody bounds a request body (default 64 KiB); larger bodies get 413.
	MaxBody int64
	// AnswerWait bounds how long adding a still-ringing call as a member
	// waits for the answer before 503 call-unavailable (default 60 s).
	AnswerWait time.Duration
	// AudioTimeout bounds fetching a file or rendering a sentence
	// (default 30 s); on expiry the done event carries status "error".
	AudioTimeout time.Duration
	// Targets is the outbound request policy: a fileUrl, callbackUrl,
	// fallbackUrl or dial-out target that it refuses when the request is
	// made (a refused address, a name that resolves only to refused
	// addresses, a scheme other than http(s)) gets a 400 with the reason.
	// Nil is the safe default, which refuses internal addresses. The
	// fetcher, the dispatcher and the dialer check again at connect time.
	Targets *egress.Policy
	// AuthFailures is how many wrong credentials one source address may
	// send a minute; beyond, its requests get 429 until it may try again
	// (default DefaultAuthFailures).
	AuthFailures int
	// AuthSources bounds how many source addresses the failure limit
	// remembers (default DefaultAuthSources).
	AuthSources int
	// MaxLiveConferences bounds the conferences of one user that are not
	// completed, counted when the API creates one (default
	// DefaultMaxLiveConferences); beyond, 403 max-live-conferences.
	MaxLiveConferences int
	// Now is the clock of the failure limit (default time.Now).
	Now func() time.Time
	// Events serves GET /v1/users/{userId}/events; nil answers 503.
	Events *EventStream
	// Store, if set, serves the records no longer in memory (completed
	// ones past the bridge's retention, and every record of a previous
	// run) and the undelivered events.
	Store store.Store
	// Outbox is told of record changes that raise no event (updates
	// through the API, new calls, applications, numbers).
	Outbox *Outbox
}

// Defaults of Config.
const (
	DefaultMaxBody      = 64 << 10
	DefaultAnswerWait   = 60 * time.Second
	DefaultAudioTimeout = 30 * time.Second
	// DefaultMaxLiveConferences: enough for any one application, small
	// enough that one user's rooms cannot crowd out the others'.
	DefaultMaxLiveConferences = 100
)

// server is the API's state: its configuration only. What it knows per
// resource lives on the bridge's records (audio requests as attachments),
// so that nothing here outlives the bridge's retention.
type server struct {
	users        []User
	b            *bridge.Bridge
	audio        AudioSources
	log          *slog.Logger
	maxBody      int64
	answerWait   time.Duration
	audioTimeout time.Duration
	outbound     *egress.Policy
	mux          *http.ServeMux
	now          func() time.Time
	authLimit    *authLimiter
	maxLive      int
	events       *EventStream
	store        store.Store
	outbox       *Outbox

	// createMu makes counting a user's live conferences and creating one a
	// single step, so that concurrent creates cannot pass the limit.
	createMu sync.Mutex
}

// route is one endpoint; the table is also what the OpenAPI test checks.
type route struct {
	method, path string
	auth         bool
	handle       func(s *server, w http.ResponseWriter, r *http.Request, user string) error
}

const userBase = "/v1/users/{userId}"

// routes lists every endpoint the handler serves.
var routes = []route{
	{"POST", userBase + "/conferences", true, (*server).createConference},
	{"GET", userBase + "/conferences", true, (*server).listConferences},
	{"GET", userBase + "/conferences/{conferenceId}", true, (*server).getConference},
	{"POST", userBase + "/conferences/{conferenceId}", true, (*server).updateConference},
	{"POST", userBase + "/conferences/{conferenceId}/audio", true, (*server).conferenceAudio},
	{"POST", userBase + "/conferences/{conferenceId}/members", true, (*server).addMember},
	{"GET", userBase + "/conferences/{conferenceId}/members", true, (*server).listMembers},
	{"GET", userBase + "/conferences/{conferenceId}/members/{memberId}", true, (*server).getMember},
	{"POST", userBase + "/conferences/{conferenceId}/members/{memberId}", true, (*server).updateMember},
	{"POST", userBase + "/conferences/{conferenceId}/members/{memberId}/audio", true, (*server).memberAudio},
	{"GET", userBase + "/calls", true, (*server).listCalls},
	{"POST", userBase + "/calls", true, (*server).createCall},
	{"GET", userBase + "/calls/{callId}", true, (*server).getCall},
	{"POST", userBase + "/calls/{callId}", true, (*server).updateCall},
	{"GET", userBase + "/events", true, (*server).streamEvents},
	{"POST", userBase + "/calls/{callId}/audio", true, (*server).callAudio},
	{"POST", userBase + "/calls/{callId}/dtmf", true, (*server).callDTMF},
	{"POST", userBase + "/calls/{callId}/gather", true, (*server).createGather},
	{"GET", userBase + "/calls/{callId}/gather/{gatherId}", true, (*server).getGather},
	{"POST", userBase + "/calls/{callId}/gather/{gatherId}", true, (*server).updateGather},
	{"POST", userBase + "/applications", true, (*server).createApplication},
	{"GET", userBase + "/applications", true, (*server).listApplications},
	{"GET", userBase + "/applications/{applicationId}", true, (*server).getApplication},
	{"POST", userBase + "/applications/{applicationId}", true, (*server).updateApplication},
	{"DELETE", userBase + "/applications/{applicationId}", true, (*server).deleteApplication},
	{"POST", userBase + "/phoneNumbers", true, (*server).createNumber},
	{"GET", userBase + "/phoneNumbers", true, (*server).listNumbers},
	{"GET", userBase + "/phoneNumbers/{numberId}", true, (*server).getNumber},
	{"POST", userBase + "/phoneNumbers/{numberId}", true, (*server).updateNumber},
	{"DELETE", userBase + "/phoneNumbers/{numberId}", true, (*server).deleteNumber},
	{"GET", userBase + "/undeliveredEvents", true, (*server).listUndelivered},
	{"GET", userBase + "/calls/{callId}/recordings", true, (*server).listCallRecordings},
	{"GET", userBase + "/recordings", true, (*server).listRecordings},
	{"GET", userBase + "/recordings/{recordingId}", true, (*server).getRecording},
	{"GET", userBase + "/media/{mediaName}", true, (*server).getMedia},
	{"DELETE", userBase + "/media/{mediaName}", true, (*server).deleteMedia},
	{"GET", "/openapi.json", false, (*server).openAPI},
}

// New returns the API handler: every route of routes, and JSON errors for
// anything else.
func New(cfg Config) http.Handler {
	s := &server{users: cfg.Users, b: cfg.Bridge, audio: cfg.Audio, log: cfg.Log, maxBody: cfg.MaxBody,
		answerWait: cfg.AnswerWait, audioTimeout: cfg.AudioTimeout, outbound: cfg.Targets, mux: http.NewServeMux(),
		events: cfg.Events, store: cfg.Store, outbox: cfg.Outbox}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.answerWait <= 0 {
		s.answerWait = DefaultAnswerWait
	}
	if s.audioTimeout <= 0 {
		s.audioTimeout = DefaultAudioTimeout
	}
	s.now = cfg.Now
	if s.now == nil {
		s.now = time.Now
	}
	s.maxLive = cfg.MaxLiveConferences
	if s.maxLive <= 0 {
		s.maxLive = DefaultMaxLiveConferences
	}
	failures, sources := cfg.AuthFailures, cfg.AuthSources
	if failures <= 0 {
		failures = DefaultAuthFailures
	}
	if sources <= 0 {
		sources = DefaultAuthSources
	}
	s.authLimit = newAuthLimiter(failures, sources, s.now, s.log)
	for _, rt := range routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	return s
}

// ServeHTTP answers what the mux does not know with a JSON 404 or 405.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	rec := &headerRecorder{h: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.h.Get("Allow"))
		s.writeError(w, r, errMethodNotAllowed(r.Method))
		return
	}
	s.writeError(w, r, errResourceNotFound())
}

// headerRecorder captures the status and headers of the mux's own 404 and
// 405 answers.
type headerRecorder struct {
	h      http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.h }
func (h *headerRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

// wrap authenticates (when the route needs it) and turns a handler's error
// into its JSON body.
func (s *server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := ""
		if rt.auth {
			u, err := s.authenticate(r)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			user = u
		}
		if s.outbox != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			dw := &durableWriter{ResponseWriter: w, o: s.outbox, ctx: r.Context()}
			w = dw
		}
		if err := rt.handle(s, w, r, user); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// durableWait bounds how long a change's answer waits for the store.
const durableWait = time.Second

// durableWriter holds a change's success answer until what the change
// published (its events and records) is written (issue 14): an app that
// got 201 for a conference finds it after a crash. The wait is bounded so
// that a slow disk delays the API by at most durableWait, never stalls it;
// an answer sent unwritten is counted.
type durableWriter struct {
	http.ResponseWriter
	o    *Outbox
	ctx  context.Context
	done bool
}

func (d *durableWriter) WriteHeader(status int) {
	if !d.done && status < http.StatusMultipleChoices {
		d.wait()
	}
	d.done = true
	d.ResponseWriter.WriteHeader(status)
}

func (d *durableWriter) Write(p []byte) (int, error) {
	if !d.done {
		d.wait()
		d.done = true
	}
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (d *durableWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func (d *durableWriter) wait() {
	ctx, cancel := context.WithTimeout(d.ctx, durableWait)
	defer cancel()
	if err := d.o.Flush(ctx); err != nil {
		d.o.unwrittenAnswers.Add(1)
	}
}

// writeError answers err as Catapult's error body.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := asAPIError(err)
	if ae.Status >= 500 {
		s.log.Warn("api error", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "code", ae.Code, "err", err)
	} else {
		s.log.Debug("api error", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "code", ae.Code)
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="chorus"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.FormatInt(ae.retryAfter, 10))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(ae.reset.UnixMilli(), 10))
	}
	if ae.Category == catAuthentication || ae.Status == http.StatusTooManyRequests {
		// A refused caller's body is not read: close rather than drain
		// it (a slow body would hold the connection), and make a guesser
		// pay a new connection per try.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, ae.Status, ae)
}

// baseURL is the scheme and host the client used: Locations and resource
// URLs are built on it so that clients which cut their own endpoint off a
// Location (Java) find the id.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// userURL is the absolute URL of a path under the user.
func userURL(r *http.Request, user string, parts ...string) string {
	var sb strings.Builder
	sb.WriteString(baseURL(r))
	sb.WriteString("/v1/users/")
	sb.WriteString(url.PathEscape(user))
	for _, p := range parts {
		sb.WriteByte('/')
		sb.WriteString(url.PathEscape(p))
	}
	return sb.String()
}

// created answers 201 with an empty body and the new resource's Location.
func created(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusCreated)
}

// ok answers 200 with an empty body (updates and audio: never 204).
func ok(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

// conference returns the user's conference by id; another user's
// conference is not found, exactly like a missing one.
func (s *server) conference(user, id string) (*bridge.Conference, error) {
	c, found := s.b.Conference(id)
	if !found || c.UserID() != user {
		return nil, errConferenceNotFound(id)
	}
	return c, nil
}

// member returns a member of the user's conference.
func (s *server) member(user, confID, memberID string) (*bridge.Conference, *bridge.Member, error) {
	c, err := s.conference(user, confID)
	if err != nil {
		return nil, nil, err
	}
	m, found := c.Member(memberID)
	if !found {
		return nil, nil, errMemberNotFound(memberID)
	}
	return c, m, nil
}

// call returns the user's call by id.
func (s *server) call(user, id string) (*bridge.Call, bool) {
	c, found := s.b.Call(id)
	if !found || c.UserID() != user {
		return nil, false
	}
	return c, true
}

// Paging of list endpoints, as Catapult's calls list. maxPage bounds the
// page number so that page×size never overflows and a page past any real
// list is refused rather than computed: 100,000 pages of 1,000 are more
// items than a user can hold within the retention.
const (
	defaultPageSize = 25
	maxPageSize     = 1000
	maxPage         = 100000
)

// paging reads page (0-based) and size from the query.
type paging struct {
	page, size int
	explicit   bool // page or size was given
}

// readPaging reads page and size: whole decimal numbers within their
// limits, else 400 validation-error naming the parameter (never a crash on
// a huge value). An empty value is absent.
func readPaging(r *http.Request) (paging, error) {
	p := paging{size: defaultPageSize}
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange), err == nil && n < 0:
			return p, errInvalid("query", "page", "must be a whole number not less than 0")
		case err != nil, n > maxPage:
			return p, errInvalid("query", "page", "exceeds the limit of %d", maxPage)
		}
		p.page, p.explicit = int(n), true
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange), err == nil && n < 1:
			return p, errInvalid("query", "size", "must be a whole number greater than 0")
		case err != nil, n > maxPageSize:
			return p, errInvalid("query", "size", "exceeds the limit of %d", maxPageSize)
		}
		p.size, p.explicit = int(n), true
	}
	return p, nil
}

// pageOf cuts one page out of n items and sets a Link rel="next" header
// (RFC 8288, followed by the Python and C# SDKs) when more follow. page and
// size are within their limits (readPaging), so page×size cannot overflow.
func pageOf(w http.ResponseWriter, r *http.Request, p paging, n int) (lo, hi int) {
	lo = min(p.page*p.size, n)
	hi = min(lo+p.size, n)
	if hi < n {
		u := *r.URL
		q := u.Query()
		q.Set("page", strconv.Itoa(p.page+1))
		q.Set("size", strconv.Itoa(p.size))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", "<"+baseURL(r)+u.RequestURI()+`>; rel="next"`)
	}
	return lo, hi
}

// callbackFields reads callbackUrl, callbackHttpMethod, callbackTimeout,
// fallbackUrl and tag into cb, and reports whether any was supplied. An
// empty callbackUrl or fallbackUrl clears it.
func callbackFields(rd *reader, cb *bridge.Callback) bool {
	set := false
	if v := rd.str("callbackUrl"); v != nil {
		rd.fail(checkCallbackURL(rd.b.resource, "callbackUrl", *v))
		cb.URL, set = *v, true
	}
	if v := rd.str("fallbackUrl"); v != nil {
		rd.fail(checkCallbackURL(rd.b.resource, "fallbackUrl", *v))
		cb.FallbackURL, set = *v, true
	}
	if v := rd.str("callbackHttpMethod"); v != nil {
		switch m := strings.ToUpper(strings.TrimSpace(*v)); m {
		case "GET", "POST":
			cb.Method = m
		default:
			rd.fail(errOneOf(rd.b.resource, "callbackHttpMethod", "GET, POST"))
		}
		set = true
	}
	if v := rd.integer("callbackTimeout"); v != nil {
		switch {
		case *v <= 0:
			rd.fail(errInvalid(rd.b.resource, "callbackTimeout", "must be greater than 0"))
		case *v > maxCallbackTimeoutMs:
			rd.fail(errInvalid(rd.b.resource, "callbackTimeout", "exceeds the limit of %d", maxCallbackTimeoutMs))
		default:
			cb.Timeout = time.Duration(*v) * time.Millisecond
		}
		set = true
	}
	if v := readTag(rd); v != nil {
		cb.Tag, set = *v, true
	}
	return set
}

// Per-value caps on what a user can make the bridge keep: every stored
// string is bounded, so memory per resource is bounded too.
const (
	// maxTagLen bounds a tag, in characters (Bandwidth's limit).
	maxTagLen = 256
	// maxURLLen bounds callbackUrl, fallbackUrl and fileUrl, in bytes.
	maxURLLen = 2048
)

// readTag reads the tag property: at most maxTagLen characters.
func readTag(rd *reader) *string {
	v := rd.str("tag")
	if v != nil && utf8.RuneCountInString(*v) > maxTagLen {
		rd.fail(errInvalid(rd.b.resource, "tag", "exceeds the limit of %d characters", maxTagLen))
		return nil
	}
	return v
}

// maxCallbackTimeoutMs is Catapult's default and limit of callbackTimeout.
const maxCallbackTimeoutMs = 10000

// checkCallbackURL accepts "" (no URL) and absolute http(s) URLs of at
// most maxURLLen bytes.
func checkCallbackURL(resource, prop, raw string) *apiError {
	if raw == "" {
		return nil
	}
	if len(raw) > maxURLLen {
		return errInvalid(resource, prop, "exceeds the limit of %d characters", maxURLLen)
	}
	if !isHTTPURL(raw) {
		return errCallbackURL(raw)
	}
	return nil
}

// isHTTPURL reports whether raw is an absolute http or https URL with a host.
func isHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "http" || u.Scheme == "https"
}

// callbackJSON is the callback part of a conference or call resource.
type callbackJSON struct {
	CallbackURL        string `json:"callbackUrl,omitempty"`
	CallbackHTTPMethod string `json:"callbackHttpMethod,omitempty"`
	CallbackTimeout    int64  `json:"callbackTimeout,omitempty"`
	FallbackURL        string `json:"fallbackUrl,omitempty"`
	Tag                string `json:"tag,omitempty"`
}

// renderCallback shows the effective method (lower case, as Catapult
// echoed it) and timeout once a callbackUrl is set, and the values that
// were set explicitly otherwise.
func renderCallback(cb bridge.Callback) callbackJSON {
	out := callbackJSON{CallbackURL: cb.URL, FallbackURL: cb.FallbackURL, Tag: cb.Tag,
		CallbackHTTPMethod: strings.ToLower(cb.Method), CallbackTimeout: cb.Timeout.Milliseconds()}
	if cb.URL != "" {
		if out.CallbackHTTPMethod == "" {
			out.CallbackHTTPMethod = "post"
		}
		if out.CallbackTimeout == 0 {
			out.CallbackTimeout = maxCallbackTimeoutMs
		}
	}
	return out
}

// hasControl reports whether s holds a control character, a space or
// other characters that must not reach a SIP header.
func hasControl(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return true
		}
	}
	return false
}
