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
// for methods we do not serve (a registrar scan sends REGISTER by the
// thousand) are answered here, statelessly (RFC 3261 §8.2.7), and never
// reach sipgo: there each would become a server transaction held for
// Timer J, 32 s (RFC 3261 §17.2.2), about 4 kB apiece. Everything else
// passes through untouched after a glance at its first bytes.
type screenedConn struct {
	net.PacketConn
	served  map[string]bool // methods with a handler
	allow   string          // the Allow header's value
	server  string          // the Server header's value
	parser  *sip.Parser     // only the read loop uses it
	traffic *trafficSummary
	out     bytes.Buffer // the response being written; only the read loop uses it
}

func newScreenedConn(pc net.PacketConn, served []string, allow, server string, traffic *trafficSummary) *screenedConn {
	c := &screenedConn{PacketConn: pc, served: map[string]bool{}, allow: allow, server: server,
		parser: sip.NewParser(), traffic: traffic}
	for _, m := range served {
		c.served[m] = true
	}
	return c
}

// ReadFrom returns the next datagram that is not an unwanted request.
func (c *screenedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.unwanted(b[:n]) {
			return n, addr, err
		}
		c.answer(b[:n], addr)
	}
}

// unwanted tells whether data starts like a request for a method we do not
// serve. Responses, keep-alives, served methods and anything that does
// not start with a token and a space go on to sipgo.
func (c *screenedConn) unwanted(data []byte) bool {
	head := data[:min(len(data), maxMethodLen+1)]
	i := bytes.IndexByte(head, ' ')
	if i <= 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return false
	}
	for _, ch := range head[:i] {
		if ch <= ' ' || ch >= 0x7f {
			return false
		}
	}
	return !c.served[string(head[:i])]
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
	res.AppendHeader(sip.NewHeader("Allow", c.allow))
	res.AppendHeader(sip.NewHeader("Server", c.server))
	c.out.Reset()
	res.StringWrite(&c.out)
	// Sent to where the request came from, as rport asks and as sipgo
	// answers its own UDP requests.
	_, _ = c.PacketConn.WriteTo(c.out.Bytes(), addr)
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
