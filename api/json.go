package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// isoTime is how resources show times: ISO-8601, UTC, whole seconds.
const isoTime = "2006-01-02T15:04:05Z"

// formatTime renders t for a resource; the zero time is "" (left out).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(isoTime)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		_ = enc.Encode(errInternal())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// body is a request's JSON object, read leniently the way Catapult's
// clients need (spec §1 and §9): every value may be null, meaning absent;
// booleans may be "true"/"false" strings; numbers may be numeric strings;
// unknown properties are ignored. An empty body is {}.
type body struct {
	resource string // names the resource in validation messages
	fields   map[string]json.RawMessage
}

// readBody reads the request body, at most limit bytes, as a JSON object.
// The Content-Type is not checked: a body that parses is accepted.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, resource string) (*body, error) {
	b := &body{resource: resource, fields: map[string]json.RawMessage{}}
	if r.ContentLength > limit {
		return nil, errTooLarge(limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge(limit)
		}
		return nil, newError(http.StatusBadRequest, catBadRequest, "invalid-body", "The request body could not be read")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return b, nil
	}
	if data[0] != '{' {
		if !json.Valid(data) {
			return nil, errBadJSON("malformed")
		}
		return nil, errBadJSON("the body must be a JSON object")
	}
	if err := json.Unmarshal(data, &b.fields); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, errBadJSON(se.Error())
		}
		return nil, errBadJSON("malformed")
	}
	return b, nil
}

// raw returns a property's value; ok is false when it is absent or null.
func (b *body) raw(name string) (json.RawMessage, bool) {
	v, ok := b.fields[name]
	if !ok {
		return nil, false
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return nil, false
	}
	return v, true
}

// str reads a string property. A JSON number is accepted as its literal
// text (a phone number sent as a number).
func (b *body) str(name string) (*string, error) {
	v, ok := b.raw(name)
	if !ok {
		return nil, nil
	}
	switch {
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errInvalid(b.resource, name, "must be a string")
		}
		return &s, nil
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		s := string(v)
		return &s, nil
	}
	return nil, errInvalid(b.resource, name, "must be a string")
}

// boolean reads a boolean property: true, false, "true" or "false" (any
// case, surrounding spaces ignored).
func (b *body) boolean(name string) (*bool, error) {
	v, ok := b.raw(name)
	if !ok {
		return nil, nil
	}
	s := string(v)
	if v[0] == '"' {
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errInvalid(b.resource, name, "must be true or false")
		}
		s = strings.ToLower(strings.TrimSpace(s))
	}
	switch s {
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, errInvalid(b.resource, name, "must be true or false")
}

// integer reads a whole-number property: 2000 or "2000".
func (b *body) integer(name string) (*int64, error) {
	v, ok := b.raw(name)
	if !ok {
		return nil, nil
	}
	s := string(v)
	if v[0] == '"' {
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errInvalid(b.resource, name, "must be a whole number")
		}
		s = strings.TrimSpace(s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// 2000.0 and 2e3 are whole numbers too.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) || f > 1e15 || f < -1e15 {
			return nil, errInvalid(b.resource, name, "must be a whole number")
		}
		n = int64(f)
	}
	return &n, nil
}

// reader collects the first error of a series of property reads, so a
// handler reads every property and checks once.
type reader struct {
	b   *body
	err error
}

func (rd *reader) str(name string) *string {
	v, err := rd.b.str(name)
	rd.keep(err)
	return v
}

func (rd *reader) boolean(name string) *bool {
	v, err := rd.b.boolean(name)
	rd.keep(err)
	return v
}

func (rd *reader) integer(name string) *int64 {
	v, err := rd.b.integer(name)
	rd.keep(err)
	return v
}

func (rd *reader) keep(err error) {
	if rd.err == nil && err != nil {
		rd.err = err
	}
}

// fail records err unless an earlier error is kept.
func (rd *reader) fail(err *apiError) {
	if err != nil {
		rd.keep(err)
	}
}
