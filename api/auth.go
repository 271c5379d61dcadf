package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// authenticate checks the request's Basic credentials and that they are
// the credentials of the user in the path. It returns the user id.
//
// Every configured user is compared, token and secret both, in constant
// time over SHA-256 digests (equal lengths), so timing tells nothing about
// which part was wrong. A user with an empty token or secret never
// matches.
//
// Wrong credentials count against the request's source address; a source
// that has sent too many in the last minute gets 429 without its
// credentials being looked at (authLimiter). Missing credentials and a
// valid user on another user's path do not count: they guess nothing.
func (s *server) authenticate(r *http.Request) (string, error) {
	src := sourceKey(r.RemoteAddr)
	if wait, blocked := s.authLimit.blocked(src); blocked {
		return "", errTooManyFailures(wait, s.now())
	}
	token, secret, ok := r.BasicAuth()
	if !ok {
		return "", errUnauthorized("Authentication is required: send HTTP Basic credentials (API token and secret)")
	}
	th := sha256.Sum256([]byte(token))
	sh := sha256.Sum256([]byte(secret))
	found := -1
	for i, u := range s.users {
		ut := sha256.Sum256([]byte(u.Token))
		us := sha256.Sum256([]byte(u.Secret))
		match := subtle.ConstantTimeCompare(th[:], ut[:]) & subtle.ConstantTimeCompare(sh[:], us[:])
		if match == 1 && u.Token != "" && u.Secret != "" && found < 0 {
			found = i
		}
	}
	if found < 0 {
		s.authLimit.fail(src)
		return "", errUnauthorized("The API token and secret are not valid")
	}
	u := s.users[found]
	if path := r.PathValue("userId"); path != u.ID {
		return "", errUserAccessDenied(u.ID, path)
	}
	return u.ID, nil
}
