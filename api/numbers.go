package api

import (
	"errors"
	"net/http"
	"strings"

	"chorus/bridge"
	"chorus/store"
)

// Phone numbers (issue 13): a number is the user part of a dialled SIP
// Request-URI (E.164 or not), allocated to one user and assigned to one of
// its applications (applicationId). Catapult v1's shape
// (node-bandwidth lib/phoneNumber.js): allocate 201 + Location, list, get
// by id or by the number itself, update by POST, DELETE. A number owned by
// another user is not found, like a missing one; a number held by another
// user (or the from of another user's live conference) is 409
// number-in-use, without saying whose.

// numberJSON is the PhoneNumber resource.
type numberJSON struct {
	ID            string `json:"id"`
	Number        string `json:"number"`
	Name          string `json:"name,omitempty"`
	ApplicationID string `json:"applicationId,omitempty"`
	Application   string `json:"application,omitempty"`
	NumberState   string `json:"numberState"`
	CreatedTime   string `json:"createdTime"`
}

func renderNumber(r *http.Request, user string, n *bridge.PhoneNumber) numberJSON {
	in := n.Info()
	out := numberJSON{ID: in.ID, Number: in.Number, Name: in.Name, ApplicationID: in.ApplicationID,
		NumberState: "enabled", CreatedTime: formatTime(in.Created)}
	if in.ApplicationID != "" {
		out.Application = userURL(r, user, "applications", in.ApplicationID)
	}
	return out
}

// maxNumberLen bounds a number, in bytes.
const maxNumberLen = 64

// validNumber accepts what may be the user part of a SIP URI that a phone
// dials (RFC 3261 §25.1 user, without escapes): letters, digits and
// + - . _ * # ! ~. A conference id is not a number: it routes to its
// conference.
func validNumber(v string) bool {
	if v == "" || len(v) > maxNumberLen || strings.HasPrefix(v, bridge.ConferencePrefix) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case strings.IndexByte("+-._*#!~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// readAppID reads applicationId: "" unassigns.
func readAppID(rd *reader) *string {
	v := rd.str("applicationId")
	if v != nil {
		t := strings.TrimSpace(*v)
		v = &t
	}
	return v
}

// numberError maps the bridge's refusals of a number.
func (s *server) numberError(user, number, appID string, err error) error {
	switch {
	case errors.Is(err, bridge.ErrNumberTaken), errors.Is(err, bridge.ErrNumberInUse):
		return errNumberAllocated(number)
	case errors.Is(err, bridge.ErrNotFound):
		return errInvalid("phoneNumber", "applicationId", "is not an application of this user: %s", appID).
			withDetail("code", "application-not-found")
	case errors.Is(err, bridge.ErrLimit):
		return errTooMany(user, "phone numbers", s.b.Config().MaxNumbersPerUser)
	}
	return err
}

// POST /phoneNumbers: allocate number to the user. 201 with its Location.
func (s *server) createNumber(w http.ResponseWriter, r *http.Request, user string) error {
	b, err := readBody(w, r, s.maxBody, "phoneNumber")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	var number string
	switch v := rd.str("number"); {
	case v == nil:
		rd.fail(errMissing("phoneNumber", "number"))
	case strings.TrimSpace(*v) == "":
		rd.fail(errBlank("phoneNumber", "number"))
	case !validNumber(*v):
		rd.fail(errInvalid("phoneNumber", "number",
			"must be the user part of a SIP URI: up to %d letters, digits and + - . _ * # ! ~, not a conference id", maxNumberLen))
	default:
		number = *v
	}
	var opts bridge.NumberOptions
	if v := readName(rd); v != nil {
		opts.Name = *v
	}
	if v := readAppID(rd); v != nil {
		opts.ApplicationID = *v
	}
	if rd.err != nil {
		return rd.err
	}
	n, err := s.b.AllocateNumber(user, number, opts)
	if err != nil {
		return s.numberError(user, number, opts.ApplicationID, err)
	}
	s.saved(store.KindNumber, user, n.ID())
	created(w, userURL(r, user, "phoneNumbers", n.ID()))
	return nil
}

// phoneNumber returns the user's number by id or by the number itself.
func (s *server) phoneNumber(user, idOrNumber string) (*bridge.PhoneNumber, error) {
	n, found := s.b.PhoneNumber(idOrNumber)
	if !found || n.UserID() != user {
		return nil, errNumberNotFound(idOrNumber)
	}
	return n, nil
}

// GET /phoneNumbers: the user's numbers, oldest first, a page at a time;
// applicationId and name filter.
func (s *server) listNumbers(w http.ResponseWriter, r *http.Request, user string) error {
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	app, name := q.Get("applicationId"), q.Get("name")
	var list []numberJSON
	for _, n := range s.b.PhoneNumbers(user) {
		nj := renderNumber(r, user, n)
		if (app == "" || nj.ApplicationID == app) && (name == "" || nj.Name == name) {
			list = append(list, nj)
		}
	}
	lo, hi := pageOf(w, r, p, len(list))
	out := list[lo:hi]
	if out == nil {
		out = []numberJSON{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /phoneNumbers/{numberId}: by id, or by the number (URL-encoded, as
// node-bandwidth's get sends it).
func (s *server) getNumber(w http.ResponseWriter, r *http.Request, user string) error {
	n, err := s.phoneNumber(user, r.PathValue("numberId"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderNumber(r, user, n))
	return nil
}

// POST /phoneNumbers/{numberId}: name and applicationId ("" unassigns).
func (s *server) updateNumber(w http.ResponseWriter, r *http.Request, user string) error {
	n, err := s.phoneNumber(user, r.PathValue("numberId"))
	if err != nil {
		return err
	}
	b, err := readBody(w, r, s.maxBody, "phoneNumber")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	in := n.Info()
	opts := bridge.NumberOptions{Name: in.Name, ApplicationID: in.ApplicationID}
	if v := readName(rd); v != nil {
		opts.Name = *v
	}
	if v := readAppID(rd); v != nil {
		opts.ApplicationID = *v
	}
	if rd.err != nil {
		return rd.err
	}
	if err := s.b.UpdateNumber(n, opts); err != nil {
		return s.numberError(user, in.Number, opts.ApplicationID, err)
	}
	s.saved(store.KindNumber, user, n.ID())
	ok(w)
	return nil
}

// DELETE /phoneNumbers/{numberId}: release the number (200).
func (s *server) deleteNumber(w http.ResponseWriter, r *http.Request, user string) error {
	n, err := s.phoneNumber(user, r.PathValue("numberId"))
	if err != nil {
		return err
	}
	s.b.ReleaseNumber(n)
	s.deleted(store.KindNumber, user, n.ID())
	ok(w)
	return nil
}
