package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/store"
)

// Applications (issue 13): where a user hears about calls to its numbers.
// Catapult v1's shape (methods/applications; node-bandwidth
// lib/application.js): create 201 + Location, list, get, update by POST,
// DELETE. The records live on the bridge.

// applicationJSON is the Application resource.
type applicationJSON struct {
	ID                             string `json:"id"`
	Name                           string `json:"name"`
	IncomingCallURL                string `json:"incomingCallUrl,omitempty"`
	IncomingCallURLCallbackTimeout int64  `json:"incomingCallUrlCallbackTimeout,omitempty"`
	IncomingCallFallbackURL        string `json:"incomingCallFallbackUrl,omitempty"`
	CallbackHTTPMethod             string `json:"callbackHttpMethod"`
	AutoAnswer                     bool   `json:"autoAnswer"`
	CreatedTime                    string `json:"createdTime"` // extension
}

func renderApplication(a *bridge.Application) applicationJSON {
	in := a.Info()
	method := strings.ToLower(in.Callback.Method)
	if method == "" {
		method = "post"
	}
	return applicationJSON{ID: in.ID, Name: in.Name, IncomingCallURL: in.Callback.URL,
		IncomingCallURLCallbackTimeout: in.Callback.Timeout.Milliseconds(), IncomingCallFallbackURL: in.Callback.FallbackURL,
		CallbackHTTPMethod: method, AutoAnswer: in.AutoAnswer, CreatedTime: formatTime(in.Created)}
}

// maxNameLen bounds the name of an application or number, in characters.
const maxNameLen = 256

// readName reads the name property: at most maxNameLen characters, no
// control characters.
func readName(rd *reader) *string {
	v := rd.str("name")
	switch {
	case v == nil:
		return nil
	case utf8.RuneCountInString(*v) > maxNameLen:
		rd.fail(errInvalid(rd.b.resource, "name", "exceeds the limit of %d characters", maxNameLen))
	case strings.ContainsFunc(*v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		rd.fail(errInvalid(rd.b.resource, "name", "must not contain control characters"))
	default:
		return v
	}
	return nil
}

// readApplication reads the properties of an application into opts and
// reports whether any was supplied. Absent properties keep opts' values.
func readApplication(rd *reader, opts *bridge.ApplicationOptions) bool {
	set := false
	if v := readName(rd); v != nil {
		opts.Name, set = *v, true
	}
	if v := rd.str("incomingCallUrl"); v != nil {
		rd.fail(checkCallbackURL("application", "incomingCallUrl", *v))
		opts.Callback.URL, set = *v, true
	}
	if v := rd.str("incomingCallFallbackUrl"); v != nil {
		rd.fail(checkCallbackURL("application", "incomingCallFallbackUrl", *v))
		opts.Callback.FallbackURL, set = *v, true
	}
	if v := rd.integer("incomingCallUrlCallbackTimeout"); v != nil {
		switch {
		case *v <= 0:
			rd.fail(errInvalid("application", "incomingCallUrlCallbackTimeout", "must be greater than 0"))
		case *v > maxCallbackTimeoutMs:
			rd.fail(errInvalid("application", "incomingCallUrlCallbackTimeout", "exceeds the limit of %d", maxCallbackTimeoutMs))
		default:
			opts.Callback.Timeout = time.Duration(*v) * time.Millisecond
		}
		set = true
	}
	if v := rd.str("callbackHttpMethod"); v != nil {
		switch m := strings.ToUpper(strings.TrimSpace(*v)); m {
		case "GET", "POST":
			opts.Callback.Method = m
		default:
			rd.fail(errOneOf("application", "callbackHttpMethod", "GET, POST"))
		}
		set = true
	}
	if v := rd.boolean("autoAnswer"); v != nil {
		opts.AutoAnswer, set = *v, true
	}
	return set
}

// checkAppURLs refuses an incomingCallUrl or incomingCallFallbackUrl that
// the outbound request policy refuses, naming the property.
func (s *server) checkAppURLs(ctx context.Context, cb bridge.Callback) error {
	for _, u := range []struct{ prop, url string }{{"incomingCallUrl", cb.URL}, {"incomingCallFallbackUrl", cb.FallbackURL}} {
		if u.url == "" {
			continue
		}
		if err := s.outbound.CheckURL(ctx, u.url); errors.Is(err, egress.ErrRefused) {
			return errCallbackRefused(u.prop, u.url, err.Error())
		}
	}
	return nil
}

// POST /applications: 201, empty body, Location of the new application.
// name and incomingCallUrl are required; autoAnswer defaults to true, as
// Catapult's did.
func (s *server) createApplication(w http.ResponseWriter, r *http.Request, user string) error {
	b, err := readBody(w, r, s.maxBody, "application")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	opts := bridge.ApplicationOptions{AutoAnswer: true}
	readApplication(rd, &opts)
	if rd.err != nil {
		return rd.err
	}
	switch {
	case strings.TrimSpace(opts.Name) == "" && !b.has("name"):
		return errMissing("application", "name")
	case strings.TrimSpace(opts.Name) == "":
		return errBlank("application", "name")
	case opts.Callback.URL == "" && !b.has("incomingCallUrl"):
		return errMissing("application", "incomingCallUrl")
	case opts.Callback.URL == "":
		return errBlank("application", "incomingCallUrl")
	}
	if err := s.checkAppURLs(r.Context(), opts.Callback); err != nil {
		return err
	}
	a, err := s.b.CreateApplication(user, opts)
	if errors.Is(err, bridge.ErrLimit) {
		return errTooMany(user, "applications", s.b.Config().MaxApplicationsPerUser)
	} else if err != nil {
		return err
	}
	s.saved(store.KindApplication, user, a.ID())
	created(w, userURL(r, user, "applications", a.ID()))
	return nil
}

// application returns the user's application; another user's is not
// found, exactly like a missing one.
func (s *server) application(user, id string) (*bridge.Application, error) {
	a, found := s.b.Application(id)
	if !found || a.UserID() != user {
		return nil, errApplicationNotFound(id)
	}
	return a, nil
}

// GET /applications: the user's applications, oldest first, a page at a
// time (page, size; Link rel="next").
func (s *server) listApplications(w http.ResponseWriter, r *http.Request, user string) error {
	p, err := readPaging(r)
	if err != nil {
		return err
	}
	apps := s.b.Applications(user)
	lo, hi := pageOf(w, r, p, len(apps))
	out := make([]applicationJSON, 0, hi-lo)
	for _, a := range apps[lo:hi] {
		out = append(out, renderApplication(a))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /applications/{applicationId}.
func (s *server) getApplication(w http.ResponseWriter, r *http.Request, user string) error {
	a, err := s.application(user, r.PathValue("applicationId"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderApplication(a))
	return nil
}

// POST /applications/{applicationId}: change the properties given; every
// one is checked before any is applied. {} changes nothing (200).
func (s *server) updateApplication(w http.ResponseWriter, r *http.Request, user string) error {
	a, err := s.application(user, r.PathValue("applicationId"))
	if err != nil {
		return err
	}
	b, err := readBody(w, r, s.maxBody, "application")
	if err != nil {
		return err
	}
	rd := &reader{b: b}
	opts := a.Info().ApplicationOptions
	set := readApplication(rd, &opts)
	if rd.err != nil {
		return rd.err
	}
	if !set {
		ok(w)
		return nil
	}
	switch {
	case strings.TrimSpace(opts.Name) == "":
		return errBlank("application", "name")
	case opts.Callback.URL == "":
		return errBlank("application", "incomingCallUrl")
	}
	if err := s.checkAppURLs(r.Context(), opts.Callback); err != nil {
		return err
	}
	a.Update(opts)
	s.saved(store.KindApplication, user, a.ID())
	ok(w)
	return nil
}

// DELETE /applications/{applicationId}: 200. Its numbers stay the user's,
// unassigned.
func (s *server) deleteApplication(w http.ResponseWriter, r *http.Request, user string) error {
	a, err := s.application(user, r.PathValue("applicationId"))
	if err != nil {
		return err
	}
	if err := s.b.DeleteApplication(a.ID()); err != nil {
		return errApplicationNotFound(a.ID()) // deleted meanwhile
	}
	s.deleted(store.KindApplication, user, a.ID())
	for _, n := range s.b.PhoneNumbers(user) { // those assigned to it are unassigned
		s.saved(store.KindNumber, user, n.ID())
	}
	ok(w)
	return nil
}

// has reports whether the body gives a property a value (not null).
func (b *body) has(name string) bool {
	_, ok := b.raw(name)
	return ok
}
