package sip

import (
	"bytes"
	"encoding/hex"
	"hash/fnv"
	"net"

	"github.com/emiago/sipgo/sip"
)

// maxMethodLen bounds the start-line token the screen looks at; longer
// tokens are left to sipgo's parser.
const maxMethodLen = 16

// screenedConn is the UDP socket as sipgo's transport reads it. Requests
// that need no state of ours are answered here, statelessly (RFC 3261
// §8.2.7), and never reach sipgo: there each would become a server
// transaction held for Timer J, 32 s (RFC 3261 §17.2.2), about 3 kB
// apiece, so a flood of them costs heap by the hundred megabytes. Those
// are requests for methods we do not serve (a registrar scan sends
// REGISTER by the thousand), in-dialog requests whose Call-ID is none of
// ours (callIDSet: a stray BYE is answered 481, a stray ACK dropped), and
// OPTIONS outside our dialogs. Everything else passes through untouched
// after a glance at its first bytes and, for the methods that may belong
// to a dialog, its Call-ID.
type screenedConn struct {
	net.PacketConn
	served  map[string]bool // methods with a handler
	allow   string          // the Allow header's value
	server  string          // the Server header's value
	parser  *sip.Parser     // only the read loop uses it
	traffic *trafficSummary
	callIDs *callIDSet
	// options is the answer to OPTIONS (Server.optionsAnswer).
	options func() (int, string, []sip.Header)
	out     bytes.Buffer // the response being written; only the read loop uses it
}

func newScreenedConn(pc net.PacketConn, served []string, allow, server string, traffic *trafficSummary,
	callIDs *callIDSet, options func() (int, string, []sip.Header)) *screenedConn {
	c := &screenedConn{PacketConn: pc, served: map[string]bool{}, allow: allow, server: server,
		parser: sip.NewParser(), traffic: traffic, callIDs: callIDs, options: options}
	for _, m := range served {
		c.served[m] = true
	}
	return c
}

// verdict is what the screen makes of a datagram at a glance.
type verdict uint8

const (
	// verdictPass: for sipgo.
	verdictPass verdict = iota
	// verdictUnwanted: a request for a method we do not serve.
	verdictUnwanted
	// verdictMaybeStray: a request that may be outside our dialogs;
	// parsed to decide (answerStray).
	verdictMaybeStray
)

// ReadFrom returns the next datagram that the screen does not answer.
func (c *screenedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		switch c.screen(b[:n]) {
		case verdictPass:
			return n, addr, nil
		case verdictUnwanted:
			c.answer(b[:n], addr)
		case verdictMaybeStray:
			if !c.answerStray(b[:n], addr) {
				return n, addr, nil
			}
		}
	}
}

// screen looks at the start line and, for a request that may belong to a
// dialog, at its Call-ID and To header, without allocating. Responses,
// keep-alives, requests of our calls and anything that does not start with
// a token and a space pass; so does an INVITE that starts a call, whose
// Call-ID is noted so that its CANCEL and ACK will pass too.
func (c *screenedConn) screen(data []byte) verdict {
	head := data[:min(len(data), maxMethodLen+1)]
	i := bytes.IndexByte(head, ' ')
	if i <= 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return verdictPass
	}
	for _, ch := range head[:i] {
		if ch <= ' ' || ch >= 0x7f {
			return verdictPass
		}
	}
	method := head[:i]
	if !c.served[string(method)] {
		return verdictUnwanted
	}
	switch string(method) {
	case "INVITE":
		id, ok := headerIn(data, "call-id", 'i')
		if !ok {
			return verdictMaybeStray
		}
		h := c.callIDs.hash(id)
		// A To without a tag is a new call (RFC 3261 §12.1); "tag"
		// anywhere in it may be a re-INVITE, for the parser to tell.
		if to, ok := headerIn(data, "to", 't'); ok && !containsFold(to, "tag") {
			c.callIDs.seen(h)
			return verdictPass
		}
		if c.callIDs.known(h) {
			return verdictPass
		}
		return verdictMaybeStray
	case "BYE", "INFO", "UPDATE", "CANCEL", "ACK", "OPTIONS":
		if id, ok := headerIn(data, "call-id", 'i'); ok && c.callIDs.known(c.callIDs.hash(id)) {
			return verdictPass
		}
		return verdictMaybeStray
	}
	return verdictPass
}

// answerStray answers a request the screen found may be outside our
// dialogs, once parsed, and reports whether it did. Out-of-dialog OPTIONS
// get what onOptions would send (RFC 3261 §11.2); in-dialog requests whose
// Call-ID is none of ours get 481 (§12.2.2; a CANCEL §9.2), and such an
// ACK is dropped (§17.2.1). Anything else goes on to sipgo as it came: a
// request that does not parse, is of ours after all, starts a call, or
// fails validation (which safe refuses with the reason).
func (c *screenedConn) answerStray(data []byte, addr net.Addr) bool {
	msg, err := c.parser.ParseSIP(data)
	req, ok := msg.(*sip.Request)
	if err != nil || !ok || req.Via() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil {
		return false
	}
	h := c.callIDs.hashString(req.CallID().Value())
	if c.callIDs.known(h) {
		return false
	}
	if req.IsInvite() && !req.To().Params.Has("tag") {
		c.callIDs.seen(h)
		return false
	}
	if validateRequest(req) != nil {
		return false
	}
	switch {
	case req.IsAck():
		c.traffic.note(TrafficOutOfDialog, func() string { return "ACK from " + addr.String() })
	case req.Method == sip.OPTIONS:
		c.traffic.note(TrafficOptions, func() string { return "OPTIONS from " + addr.String() })
		code, reason, hdrs := c.options()
		c.respond(req, addr, code, reason, hdrs...)
	default:
		c.traffic.note(TrafficOutOfDialog, func() string { return string(req.Method) + " from " + addr.String() })
		c.respond(req, addr, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	}
	return true
}

// answer sends 405 to a request for a SIP method we do not serve and 501
// to one for a method we do not know (RFC 3261 §8.2.1), both with Allow
// (§20.5). A datagram that does not parse is counted and dropped, as
// sipgo would.
func (c *screenedConn) answer(data []byte, addr net.Addr) {
	msg, err := c.parser.ParseSIP(data)
	req, ok := msg.(*sip.Request)
	if err != nil || !ok || req.Via() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil {
		c.traffic.note(TrafficMalformed, func() string {
			return "unanswerable request from " + addr.String()
		})
		return
	}
	c.traffic.note(TrafficUnwantedMethod, func() string { return string(req.Method) + " from " + addr.String() })
	if req.IsAck() {
		return // never answered (RFC 3261 §17.2.1); ACK is served anyway
	}
	code, reason := unwantedStatus(req.Method)
	c.respond(req, addr, code, reason, sip.NewHeader("Allow", c.allow))
}

// respond answers req statelessly (RFC 3261 §8.2.7), to where it came from,
// as rport asks and as sipgo answers its own UDP requests.
func (c *screenedConn) respond(req *sip.Request, addr net.Addr, code int, reason string, hdrs ...sip.Header) {
	// A stateless UAS makes the same To tag for the same request
	// (RFC 3261 §8.2.7): a hash of what identifies it.
	if to := req.To(); !to.Params.Has("tag") {
		h := fnv.New64a()
		h.Write([]byte(req.CallID().Value()))
		h.Write([]byte(req.CSeq().Value()))
		if tag, ok := req.From().Params.Get("tag"); ok {
			h.Write([]byte(tag))
		}
		if br, ok := req.Via().Params.Get("branch"); ok {
			h.Write([]byte(br))
		}
		to.Params.Add("tag", hex.EncodeToString(h.Sum(nil)))
	}
	req.SetSource(addr.String()) // for rport and received (RFC 3581 §4)
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", c.server))
	c.out.Reset()
	res.StringWrite(&c.out)
	_, _ = c.PacketConn.WriteTo(c.out.Bytes(), addr)
}

// headerIn returns the value of the first header of msg called name (in
// lower case) or by its compact form, trimmed, as the parser would read
// it; ok is false when there is none or it is folded over lines (RFC 3261
// §7.3.1), which the parser is left to read. It does not allocate.
func headerIn(msg []byte, name string, compact byte) (value []byte, ok bool) {
	i := bytes.IndexByte(msg, '\n')
	if i < 0 {
		return nil, false
	}
	rest := msg[i+1:] // past the start line
	for len(rest) > 0 {
		line, next := rest, []byte(nil)
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			line, next = rest[:j], rest[j+1:]
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			return nil, false // the end of the headers
		}
		if colon := bytes.IndexByte(line, ':'); colon > 0 && line[0] != ' ' && line[0] != '\t' {
			n := bytes.TrimSpace(line[:colon])
			if (len(n) == 1 && n[0]|0x20 == compact) || equalFoldLower(n, name) {
				if len(next) > 0 && (next[0] == ' ' || next[0] == '\t') {
					return nil, false
				}
				return bytes.TrimSpace(line[colon+1:]), true
			}
		}
		rest = next
	}
	return nil, false
}

// equalFoldLower tells whether b is lower, ignoring ASCII case; lower is
// in lower case.
func equalFoldLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// containsFold tells whether b contains lower, ignoring ASCII case; lower
// is in lower case.
func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		if equalFoldLower(b[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

// unwantedStatus is the answer to a request for a method we do not serve:
// 405 for a SIP method, 501 for one we do not know (RFC 3261 §8.2.1).
func unwantedStatus(m sip.RequestMethod) (int, string) {
	switch m {
	case sip.REGISTER, sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.MESSAGE, sip.PRACK, sip.PUBLISH:
		return sip.StatusMethodNotAllowed, "Method Not Allowed"
	}
	return sip.StatusNotImplemented, "Not Implemented"
}

// onUnwanted answers a request for a method without a handler that got
// past the UDP screen (over TCP): counted, not logged one by one, as
// sipgo's own no-route handler would.
func (s *Server) onUnwanted(req *sip.Request, tx sip.ServerTransaction) {
	s.traffic.note(TrafficUnwantedMethod, func() string { return string(req.Method) + " from " + req.Source() })
	code, reason := unwantedStatus(req.Method)
	s.respond(req, tx, code, reason, sip.NewHeader("Allow", allowMethods))
}

// TrafficCount returns how many messages or connections of kind k the
// server has counted as unwanted.
func (s *Server) TrafficCount(k TrafficKind) uint64 { return s.traffic.count(k) }

// TCPConns returns how many accepted SIP/TCP connections are open.
func (s *Server) TCPConns() int {
	s.mu.Lock()
	guards := s.tcpGuards
	s.mu.Unlock()
	n := 0
	for _, g := range guards {
		n += g.open()
	}
	return n
}
