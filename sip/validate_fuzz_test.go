package sip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzValidateRequest feeds datagrams to our parser (sipgo's, with tidied
// To and From) and what parses as a request to validateRequest, seeded
// with the RFC 4475 messages: nothing panics; a request let through has
// what every handler relies on; a refusal is a 4xx to 5xx whose response
// has a well-formed SIP/2.0 status line with that status.
func FuzzValidateRequest(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "rfc4475", "*", "*.dat"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed corpus: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	parser := newParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return // dropped before validation, as the UDP transport does
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		e := validateRequest(req)
		if e == nil {
			checkAccepted(t, req)
			return
		}
		if e.status < 400 || e.status > 599 || e.reason == "" {
			t.Fatalf("refusal %d %q", e.status, e.reason)
		}
		if strings.ContainsFunc(e.reason, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("reason %q has control characters", e.reason)
		}
		// The response echoes the request's headers, which sipgo accepted
		// as they were; what we add is the status line.
		res := sip.NewResponseFromRequest(req, e.status, e.reason, nil)
		res.SipVersion = sipVersion
		for _, h := range e.hdrs {
			res.AppendHeader(h)
		}
		_ = res.String()
		back, err := sip.NewParser().ParseSIP([]byte(res.StartLine() + "\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatalf("status line %q does not parse: %v", res.StartLine(), err)
		}
		if r, ok := back.(*sip.Response); !ok || r.StatusCode != e.status {
			t.Fatalf("status line %q reads back as %.40q", res.StartLine(), back.String())
		}
	})
}

// checkAccepted: what validation lets through has the headers and values
// the handlers take for granted.
func checkAccepted(t *testing.T, req *sip.Request) {
	t.Helper()
	if req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		t.Fatalf("accepted without To, From, Call-ID, CSeq or Via:\n%s", req)
	}
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		t.Fatalf("accepted with CSeq %s on %s", req.CSeq().MethodName, req.Method)
	}
	if s := req.Recipient.Scheme; s != "sip" && s != "sips" || len(req.Recipient.Headers) > 0 {
		t.Fatalf("accepted Request-URI %s", req.Recipient.String())
	}
	if req.Method == sip.INVITE && len(req.Body()) > 0 && !isMediaType(req.ContentType().Value(), "application/sdp") {
		t.Fatalf("accepted an INVITE whose body is %s", req.ContentType().Value())
	}
}
