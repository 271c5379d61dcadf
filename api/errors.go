package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error categories, as Catapult names them (lower-case section names of
// its error table).
const (
	catAuthentication = "authentication"
	catAuthorization  = "authorization"
	catBadRequest     = "bad-request"
	catForbidden      = "forbidden"
	catLimit          = "limit"
	catNotFound       = "not-found"
	catConflict       = "conflict"
	catUnavailable    = "unavailable"
	catBackend        = "backend"
	catTooMany        = "too-many-requests"
)

// detail is one {name, value} pair of an error body's details.
type detail struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// apiError is an error answered as Catapult's error body.
type apiError struct {
	Status   int      `json:"-"`
	Category string   `json:"category"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Details  []detail `json:"details"`

	// Of a 429: seconds for Retry-After (RFC 9110 §10.2.3) and the time
	// for Catapult's X-RateLimit-Reset (epoch milliseconds).
	retryAfter int64
	reset      time.Time
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func newError(status int, category, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Category: category, Code: code,
		Message: fmt.Sprintf(format, args...), Details: []detail{}}
}

// withDetail adds a {name, value} pair to the error's details.
func (e *apiError) withDetail(name, value string) *apiError {
	e.Details = append(e.Details, detail{Name: name, Value: value})
	return e
}

// The errors of the API, by the code Catapult gives them.

func errUnauthorized(msg string) *apiError {
	return newError(http.StatusUnauthorized, catAuthentication, "unauthorized", "%s", msg)
}

// errTooManyFailures is the 429 of a source that sent too many wrong
// credentials; it may try again after wait. Status and code are
// Catapult's rate-limit answer; the headers are set by writeError.
func errTooManyFailures(wait time.Duration, now time.Time) *apiError {
	secs := int64((wait + time.Second - 1) / time.Second)
	e := newError(http.StatusTooManyRequests, catTooMany, "rate-limit-reached",
		"Too many failed authentication attempts from this address: retry after %d seconds", secs)
	e.retryAfter = secs
	e.reset = now.Add(wait)
	return e.withDetail("retryAfter", strconv.FormatInt(secs, 10))
}

func errLiveConferences(user string, limit int) *apiError {
	return newError(http.StatusForbidden, catLimit, "max-live-conferences",
		"User %s reached the limit of %d live conferences: complete one to create another", user, limit).
		withDetail("limit", strconv.Itoa(limit))
}

func errUserAccessDenied(caller, userID string) *apiError {
	return newError(http.StatusUnauthorized, catAuthorization, "user-access-denied",
		"User %s does not have permission to access user %s", caller, userID)
}

func errConferenceNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "conference-not-found",
		"The conference %s could not be found", id)
}

// errNumberInUse: the from of a new conference is the dial-in number of
// another live conference (of any user: a number routes to one room). The
// other conference is not named, since it may be another user's.
func errNumberInUse(number string) *apiError {
	return newError(http.StatusConflict, catConflict, "number-in-use",
		"The number %s is the from of another live conference; complete that conference or choose another number", number).
		withDetail("property", "from")
}

// errNumberAllocated: the number is held by another user, or is the from
// of another user's live conference. Whose is not said.
func errNumberAllocated(number string) *apiError {
	return newError(http.StatusConflict, catConflict, "number-in-use",
		"The number %s is allocated to another user or in use by another user's conference", number).
		withDetail("property", "number")
}

func errApplicationNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "application-not-found",
		"The application %s could not be found", id)
}

func errNumberNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "number-not-found",
		"The phone number %s could not be found", id)
}

// errTooMany: a per-user cap on applications or numbers.
func errTooMany(user, what string, limit int) *apiError {
	return newError(http.StatusForbidden, catLimit, "max-"+strings.ReplaceAll(what, " ", "-"),
		"User %s reached the limit of %d %s: delete one to create another", user, limit, what).
		withDetail("limit", strconv.Itoa(limit))
}

func errMemberNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "conference-member-not-found",
		"The conference member %s could not be found", id)
}

func errCallNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "call-not-found", "The call %s could not be found", id)
}

func errResourceNotFound() *apiError {
	return newError(http.StatusNotFound, catNotFound, "resource-not-found", "The requested resource could not be found.")
}

func errMethodNotAllowed(method string) *apiError {
	return newError(http.StatusMethodNotAllowed, catBadRequest, "method-not-allowed",
		"The method %s is not allowed on this resource", method)
}

func errConferenceState(id, state string) *apiError {
	return newError(http.StatusForbidden, catForbidden, "conference-error",
		"Unable to update conference %s. Invalid conference state %s", id, state)
}

func errMemberState(id, state string) *apiError {
	return newError(http.StatusForbidden, catForbidden, "member-invalid-state",
		"Unable to update conference member %s. Invalid member state %s", id, state)
}

func errMaxMembers(id string) *apiError {
	return newError(http.StatusForbidden, catLimit, "conference-max-members",
		"The conference %s reached the max number of members", id)
}

func errCallIDNotFound(id string) *apiError {
	return newError(http.StatusForbidden, catForbidden, "call-id-not-found", "Call Id not found. callId %s", id)
}

func errCallConferenceID(id string) *apiError {
	return newError(http.StatusForbidden, catForbidden, "invalid-call-conference-id",
		"Invalid conference Id in call. conferenceId %s", id)
}

func errCallState(id, state string) *apiError {
	return newError(http.StatusForbidden, catForbidden, "call-invalid-state",
		"Unable to update call %s. Invalid call state %s", id, state)
}

func errCallUnavailable(id string) *apiError {
	return newError(http.StatusServiceUnavailable, catUnavailable, "call-unavailable",
		"The call %s is being initialized and cannot be modified now retry your operation later", id)
}

func errCallCreation(from, to, why string) *apiError {
	return newError(http.StatusServiceUnavailable, catUnavailable, "call-creation-failure",
		"A call from %s to %s could not be created: %s", from, to, why)
}

func errMediaUnavailable() *apiError {
	return newError(http.StatusServiceUnavailable, catUnavailable, "media-unavailable",
		"Audio playback is not available on this server")
}

func errUnavailable(msg string) *apiError {
	return newError(http.StatusServiceUnavailable, catUnavailable, "service-unavailable", "%s", msg)
}

func errInternal() *apiError {
	return newError(http.StatusInternalServerError, catBackend, "internal-error", "An internal error occurred")
}

func errTooLarge(limit int64) *apiError {
	return newError(http.StatusRequestEntityTooLarge, catBadRequest, "request-too-large",
		"The request body exceeds the limit of %d bytes", limit)
}

func errBadJSON(why string) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "invalid-json", "The request body is not valid JSON: %s", why)
}

// The 400 validation errors name the resource and the property, in the
// words of Catapult's templates.

func errMissing(resource, prop string) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "missing-property",
		"The '%s' resource property '%s' is required but was not specified", resource, prop).withDetail("property", prop)
}

func errBlank(resource, prop string) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "blank-property",
		"The '%s' resource property '%s' must contain at least one non-whitespace character", resource, prop).withDetail("property", prop)
}

func errInvalid(resource, prop, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "validation-error",
		"The '%s' resource property '%s' %s", resource, prop, fmt.Sprintf(format, args...)).withDetail("property", prop)
}

func errOneOf(resource, prop, values string) *apiError {
	return errInvalid(resource, prop, "must be one of the following values: %s", values)
}

func errCallbackURL(u string) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "callback-invalid-url",
		"The URL %s is not a valid callbackUrl/fallbackUrl", u)
}

// errCallbackRefused is a callbackUrl or fallbackUrl that the outbound
// request policy refuses, with the reason.
func errCallbackRefused(prop, u, reason string) *apiError {
	return newError(http.StatusBadRequest, catBadRequest, "callback-invalid-url",
		"The URL %s is not a valid callbackUrl/fallbackUrl: %s", u, reason).
		withDetail("property", prop).withDetail("reason", reason)
}

// errTargetRefused is a fileUrl or dial-out target that the outbound
// request policy refuses, with the reason.
func errTargetRefused(resource, prop, reason string) *apiError {
	return errInvalid(resource, prop, "is refused: %s", reason).withDetail("reason", reason)
}

// asAPIError turns any error into the body to answer with: an *apiError as
// it is, anything else as a 500.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errInternal()
}

func errRecordingNotFound(id string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "recording-not-found", "The recording %s could not be found", id)
}

func errMediaNotFound(name string) *apiError {
	return newError(http.StatusNotFound, catNotFound, "media-not-found", "The media %s could not be found", name)
}

// errRecordingUnavailable: the server keeps no recordings (no recordings
// directory) or could not start one.
func errRecordingUnavailable(why string) *apiError {
	return newError(http.StatusServiceUnavailable, catUnavailable, "recording-unavailable",
		"Recording is not available: %s", why)
}

// errRecordingQuota: the user's recording files on disk fill the
// --recording-quota; deleting media (DELETE /media/{name}) gives bytes
// back. A limit, like the live conference cap: 403.
func errRecordingQuota(why error) *apiError {
	return newError(http.StatusForbidden, catLimit, "recording-quota-exceeded",
		"Recording is not allowed: %v; delete recordings' media to record again", why)
}

// errRecordingActive: the media of a recording still being written cannot
// be deleted; stop the recording first.
func errRecordingActive(name string) *apiError {
	return newError(http.StatusConflict, catConflict, "recording-in-progress",
		"The media %s is still being recorded: stop the recording (recordingEnabled false) first", name)
}
