package sip

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Request validation: what a UAS checks before acting on a request (RFC
// 3261 §8.2), tried against the torture messages of RFC 4475. sipgo's
// parser already refuses much of what is malformed (the datagram is
// dropped, a TCP connection closed); what it accepts is checked here, so a
// request that is not well formed never becomes a call.

// ErrInvalidRequest is what every request refused by validation wraps.
var ErrInvalidRequest = errors.New("sip: invalid request")

// requestError is a request refused by validation, with the final
// response that says why.
type requestError struct {
	status int
	reason string // the reason phrase, naming the defect
	hdrs   []sip.Header
}

func (e *requestError) Error() string {
	return fmt.Sprintf("%v: %d %s", ErrInvalidRequest, e.status, e.reason)
}

func (e *requestError) Unwrap() error { return ErrInvalidRequest }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: sip.StatusBadRequest, reason: "Bad Request: " + fmt.Sprintf(format, args...)}
}

// sipVersion is the only version we speak (RFC 3261 §7.1).
const sipVersion = "SIP/2.0"

// statusUnsupportedURIScheme is 416 (RFC 3261 §21.4.14); sipgo names the
// code after HTTP's meaning.
const statusUnsupportedURIScheme = 416

// sipDate is the only form of a Date header (RFC 3261 §20.17: an RFC 1123
// date in GMT).
const sipDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// headerCount counts the headers of a request that validation cares about.
type headerCount struct {
	to, from, callID, cseq, via, maxForwards int
	contentLength, contentType, contact      int
	date                                     sip.Header // the first Date
}

func countHeaders(req *sip.Request) headerCount {
	var n headerCount
	for _, h := range req.Headers() {
		switch name := h.Name(); {
		case strings.EqualFold(name, "To"):
			n.to++
		case strings.EqualFold(name, "From"):
			n.from++
		case strings.EqualFold(name, "Call-ID"):
			n.callID++
		case strings.EqualFold(name, "CSeq"):
			n.cseq++
		case strings.EqualFold(name, "Via"):
			n.via++
		case strings.EqualFold(name, "Max-Forwards"):
			n.maxForwards++
		case strings.EqualFold(name, "Content-Length"):
			n.contentLength++
		case strings.EqualFold(name, "Content-Type"):
			n.contentType++
		case strings.EqualFold(name, "Contact"):
			n.contact++
		case strings.EqualFold(name, "Date"):
			if n.date == nil {
				n.date = h
			}
		}
	}
	return n
}

// validateRequest checks a request that sipgo parsed, before any handler
// sees it, in the order of RFC 3261 §8.2 (version, method, headers, the
// Request-URI, extensions, content), and returns the error that answers
// it, or nil. It allocates only when it refuses.
func validateRequest(req *sip.Request) *requestError {
	// Another version is answered 505 (RFC 3261 §21.5.6, RFC 4475 §3.1.2.16).
	if !strings.EqualFold(req.SipVersion, sipVersion) {
		return &requestError{status: sip.StatusVersionNotSupported, reason: "Version Not Supported"}
	}
	// RFC 3261 §8.2.1: method inspection comes first.
	if !knownMethod(req.Method) {
		return &requestError{status: sip.StatusNotImplemented, reason: "Not Implemented",
			hdrs: []sip.Header{sip.NewHeader("Allow", allowMethods)}}
	}
	n := countHeaders(req) // sipgo's GetHeader allocates for names it does not know
	if err := checkHeaders(req, n); err != nil {
		return err
	}
	if err := checkRequestURI(&req.Recipient); err != nil {
		return err
	}
	// The top Via is where the response goes (RFC 3261 §18.2.2): it must
	// say SIP/2.0, a transport and a host. A branch that claims RFC 3261
	// (the magic cookie) but carries no id cannot identify a transaction
	// (§8.1.1.7, RFC 4475 §3.2.1).
	via := req.Via()
	if via == nil || !strings.EqualFold(via.ProtocolName, "SIP") || via.ProtocolVersion != "2.0" || via.Transport == "" || via.Host == "" {
		return badRequest("Malformed Via")
	}
	if b, ok := via.Params.Get("branch"); ok && b == sip.RFC3261BranchMagicCookie {
		return badRequest("Via branch has no transaction id")
	}
	if h := req.ContentLength(); h != nil && int(*h) != len(req.Body()) {
		return badRequest("Content-Length %d does not match a body of %d bytes", *h, len(req.Body()))
	}
	if n.date != nil {
		if _, err := time.Parse(sipDate, n.date.Value()); err != nil {
			return badRequest("Date is not an RFC 1123 date in GMT")
		}
	}
	if req.IsAck() || req.IsCancel() {
		// RFC 3261 §8.2.2.3: Require is ignored in these; they carry no offer.
		return nil
	}
	if err := checkRequire(req); err != nil {
		return err
	}
	if req.Method == sip.INVITE || req.Method == sip.UPDATE {
		return checkSDPExchange(req)
	}
	return nil
}

// checkHeaders: the headers every request needs, once each (RFC 3261
// §8.1.1, §8.2.2; RFC 4475 §3.3.1, §3.3.8, §3.3.9), and the CSeq that
// belongs to this request (§8.1.1.5, RFC 4475 §3.1.2.17).
func checkHeaders(req *sip.Request, n headerCount) *requestError {
	var missing, multiple []string
	for _, c := range []struct {
		name             string
		count            int
		required, single bool
	}{
		{"To", n.to, true, true}, {"From", n.from, true, true}, {"Call-ID", n.callID, true, true},
		{"CSeq", n.cseq, true, true}, {"Via", n.via, true, false}, {"Max-Forwards", n.maxForwards, false, true},
		{"Content-Length", n.contentLength, false, true}, {"Content-Type", n.contentType, false, true},
	} {
		switch {
		case c.count == 0 && c.required:
			missing = append(missing, c.name)
		case c.count > 1 && c.single:
			multiple = append(multiple, c.name)
		}
	}
	// A request that can make a dialog has exactly one Contact (§8.1.1.8).
	if req.Method == sip.INVITE && !hasToTag(req) {
		switch {
		case n.contact == 0:
			missing = append(missing, "Contact")
		case n.contact > 1:
			multiple = append(multiple, "Contact")
		}
	}
	switch {
	case len(missing) > 0:
		return badRequest("Missing %s", strings.Join(missing, ", "))
	case len(multiple) > 0:
		return badRequest("Multiple %s", strings.Join(multiple, ", "))
	}
	// (A CSeq number of 2**31 or more, §8.1.1.5, never parses.)
	cseq := req.CSeq()
	// sipgo upper-cases the request line's method but not CSeq's, so the
	// two compare without case.
	if cseq == nil || !strings.EqualFold(string(cseq.MethodName), string(req.Method)) {
		return badRequest("CSeq method does not match the request's") // not echoed: remote text
	}
	return nil
}

// checkRequestURI: a SIP or SIPS URI (RFC 3261 §8.2.2.1: 416 otherwise)
// with a host, valid escapes and no headers (§19.1.1: headers are not
// allowed in a Request-URI; RFC 4475 §3.1.2.11).
func checkRequestURI(u *sip.Uri) *requestError {
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return &requestError{status: statusUnsupportedURIScheme, reason: "Unsupported URI Scheme"}
	}
	if u.Host == "" {
		return badRequest("Request-URI has no host")
	}
	if len(u.Headers) > 0 {
		return badRequest("Request-URI must not carry headers")
	}
	if !validEscapes(u.User) {
		return badRequest("Request-URI user part has a bad escape")
	}
	return nil
}

// validEscapes reports whether every % in s starts a %HEX HEX escape
// (RFC 3261 §25.1 "escaped").
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkRequire: we support no extension, so any option tag a request
// requires of us is answered 420 with Unsupported listing it (RFC 3261
// §8.2.2.3, RFC 4475 §3.3.5). Proxy-Require is for proxies; a UAS ignores it.
func checkRequire(req *sip.Request) *requestError {
	var tags []string
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Require") {
			continue
		}
		for t := range strings.SplitSeq(h.Value(), ",") {
			t = strings.TrimSpace(t)
			if !isToken(t) {
				// Echoed into Unsupported, so only a token will do.
				return badRequest("Malformed Require")
			}
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return &requestError{status: sip.StatusBadExtension, reason: "Bad Extension",
		hdrs: []sip.Header{sip.NewHeader("Unsupported", strings.Join(tags, ", "))}}
}

// isToken reports whether s is a non-empty RFC 3261 §25.1 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// checkSDPExchange: an INVITE or UPDATE carries SDP if it carries a body
// (RFC 3261 §8.2.3: 415 with Accept otherwise; RFC 4475 §3.3.6), and
// accepts SDP in our answer, which carries it but to an UPDATE without an
// offer (§21.4.7: 406 otherwise; RFC 4475 §3.3.15).
func checkSDPExchange(req *sip.Request) *requestError {
	if len(req.Body()) > 0 {
		ct := req.ContentType()
		if ct == nil {
			return badRequest("Missing Content-Type for the body")
		}
		if !isMediaType(ct.Value(), "application/sdp") {
			return &requestError{status: sip.StatusUnsupportedMediaType, reason: "Unsupported Media Type",
				hdrs: []sip.Header{sip.NewHeader("Accept", "application/sdp")}}
		}
	}
	if req.Method == sip.UPDATE && len(req.Body()) == 0 {
		return nil // answered without a body (a session refresh)
	}
	accepts, sdp := false, false
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Accept") {
			continue
		}
		accepts = true
		for t := range strings.SplitSeq(h.Value(), ",") {
			if isMediaType(t, "application/sdp") || isMediaType(t, "application/*") || isMediaType(t, "*/*") {
				sdp = true
			}
		}
	}
	if accepts && !sdp {
		return &requestError{status: sip.StatusNotAcceptable, reason: "Not Acceptable",
			hdrs: []sip.Header{sip.NewHeader("Warning", `399 chorus "Only application/sdp bodies are offered"`)}}
	}
	return nil
}

// isMediaType reports whether a Content-Type or Accept value (parameters
// and spaces allowed) names the media type want.
func isMediaType(v, want string) bool {
	v, _, _ = strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(v), want)
}

// hasToTag reports whether a request is inside a dialog (RFC 3261 §12.2.2).
func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// newParser is sipgo's parser, but its To and From headers lose the
// whitespace that sipgo leaves around parameter names and tag values (RFC
// 3261 §25.1 allows it around ";" and "="; RFC 4475 §3.1.1.1), so that a
// tag written "tag = x" is the tag x to the transaction layer (RFC 2543
// transaction keys), to dialog matching and to our in-dialog check.
func newParser() *sip.Parser {
	m := maps.Clone(sip.DefaultHeadersParser()) // sipgo's own map is shared
	for _, name := range []string{"to", "t", "from", "f"} {
		parse := m[name]
		m[name] = func(name []byte, text string) (sip.Header, error) {
			h, err := parse(name, text)
			if err != nil {
				return h, err
			}
			switch h := h.(type) {
			case *sip.ToHeader:
				tidyParams(h.Params)
			case *sip.FromHeader:
				tidyParams(h.Params)
			}
			return h, nil
		}
	}
	return sip.NewParser(sip.WithHeadersParsers(m))
}

func tidyParams(ps sip.HeaderParams) {
	for i := range ps {
		ps[i].K = strings.TrimSpace(ps[i].K)
		if ps[i].K == "tag" {
			ps[i].V = strings.TrimSpace(ps[i].V)
		}
	}
}

// knownMethod reports whether m is a method of RFC 3261 or its extensions
// that sipgo names: we answer those we do not handle 405, the others 501
// (RFC 3261 §8.2.1, §21.5.2; RFC 4475 §3.1.1.2, §3.1.1.5, §3.1.2.18).
func knownMethod(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.REGISTER, sip.OPTIONS, sip.SUBSCRIBE,
		sip.NOTIFY, sip.REFER, sip.INFO, sip.MESSAGE, sip.PRACK, sip.UPDATE, sip.PUBLISH:
		return true
	}
	return false
}

// refuse answers a request that will not be processed. The response says
// SIP/2.0 whatever version the request claimed (RFC 3261 §7.1). An ACK
// gets no response (§17.1.1.3); it is dropped.
func (s *Server) refuse(req *sip.Request, tx sip.ServerTransaction, e *requestError) {
	kind := TrafficMalformed
	if e.status == sip.StatusMethodNotAllowed || e.status == sip.StatusNotImplemented {
		kind = TrafficUnwantedMethod
	}
	s.traffic.note(kind, func() string { return fmt.Sprintf("%s refused %d %s", req.Method, e.status, e.reason) })
	if req.IsAck() {
		return
	}
	res := sip.NewResponseFromRequest(req, e.status, e.reason, nil)
	res.SipVersion = sipVersion
	for _, h := range e.hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("refusal not sent", "sip_call_id", callID(req), "status", e.status, "err", err)
	}
}
