package bridge

import "errors"

// Errors returned by the package. The edges (sip, api) map them to their
// protocol's status codes.
var (
	ErrNotFound           = errors.New("not found")
	ErrConferenceComplete = errors.New("conference is completed")
	ErrMaxMembers         = errors.New("conference has the maximum number of members")
	ErrCallNotActive      = errors.New("call is not active")
	ErrNoRoute            = errors.New("no conference for this number")
	ErrDraining           = errors.New("bridge is draining")
	ErrMemberRemoved      = errors.New("member is removed")
	ErrNumberInUse        = errors.New("number is held by another live conference")
	ErrConferenceLocked   = errors.New("conference is locked")
	ErrBadPIN             = errors.New("a PIN is 1 to 12 digits 0-9")
	ErrLimit              = errors.New("per-user limit reached")
	ErrNumberTaken        = errors.New("number is allocated to a user already")
	ErrCallNotRinging     = errors.New("call is not ringing for its application")
)
