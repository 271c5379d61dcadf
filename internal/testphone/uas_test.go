package testphone

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

// testUAS is a minimal sipgo UAS for the phone's tests: it answers INVITEs
// (early or late offer), echoes received audio RTP back to its source,
// counts telephone-event packets, records INFO bodies and re-INVITE
// directions, and can hang up.
type testUAS struct {
	t       testing.TB
	ua      *sipgo.UserAgent
	dsc     *sipgo.DialogServerCache
	udpAddr string
	tcpAddr string

	// behaviour, set before dialing
	rejectCode atomic.Int32 // answer the INVITE with this final code
	noAnswer   atomic.Bool  // send 180 and never answer

	calls chan *uasCall
	mu    sync.Mutex
	byID  map[string]*uasCall
}

type uasCall struct {
	dlg       *sipgo.DialogServerSession
	rtp       *net.UDPConn
	tePT      uint8
	late      bool
	confirmed chan struct{}
	canceled  chan struct{} // closed when the INVITE was cancelled

	mu           sync.Mutex
	audioPackets int
	eventPackets []rtp.Packet
	infos        []string
	infoTypes    []string
	directions   []string
	ackSDP       []byte
}

func (c *uasCall) snapshot() (audio int, events []rtp.Packet, infos, infoTypes, dirs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.audioPackets, append([]rtp.Packet(nil), c.eventPackets...),
		append([]string(nil), c.infos...), append([]string(nil), c.infoTypes...),
		append([]string(nil), c.directions...)
}

func newTestUAS(t testing.TB) *testUAS {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("uas"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUAS{t: t, ua: ua, udpAddr: pc.LocalAddr().String(), tcpAddr: ln.Addr().String(),
		calls: make(chan *uasCall, 16), byID: map[string]*uasCall{}}
	ap := netip.MustParseAddrPort(u.udpAddr)
	u.dsc = sipgo.NewDialogServerCache(client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "uas", Host: "127.0.0.1", Port: int(ap.Port())}})
	srv.OnInvite(u.onInvite)
	srv.OnAck(u.onAck)
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := u.dsc.ReadBye(req, tx); err != nil {
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
	})
	srv.OnInfo(u.onInfo)
	go srv.ServeUDP(pc)
	go srv.ServeTCP(ln)
	t.Cleanup(func() {
		ua.Close()
		pc.Close()
		ln.Close()
	})
	return u
}

func (u *testUAS) contactFor(req *sip.Request) *sip.ContactHeader {
	if req.Transport() != "TCP" {
		return nil
	}
	ap := netip.MustParseAddrPort(u.tcpAddr)
	uri := sip.Uri{Scheme: "sip", User: "uas", Host: "127.0.0.1", Port: int(ap.Port()), UriParams: sip.NewParams()}
	uri.UriParams.Add("transport", "tcp")
	return &sip.ContactHeader{Address: uri}
}

func (u *testUAS) call(id string) *uasCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byID[id]
}

func (u *testUAS) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		u.onReInvite(req, tx)
		return
	}
	dlg, err := u.dsc.ReadInvite(req, tx)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer dlg.Close()
	if tag, ok := dlg.InviteRequest.To().Params.Get("tag"); ok {
		req.To().Params.Add("tag", tag)
	}
	c := &uasCall{dlg: dlg, confirmed: make(chan struct{}), canceled: make(chan struct{})}
	u.mu.Lock()
	u.byID[req.CallID().Value()] = c
	u.mu.Unlock()
	u.calls <- c

	if code := u.rejectCode.Load(); code != 0 {
		dlg.Respond(int(code), "Rejected", nil)
		return
	}
	if u.noAnswer.Load() {
		dlg.Respond(sip.StatusRinging, "Ringing", nil)
		<-dlg.Context().Done()
		if errors.Is(context.Cause(dlg.Context()), sip.ErrTransactionCanceled) {
			close(c.canceled)
		}
		return
	}

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		dlg.Respond(500, "No RTP", nil)
		return
	}
	defer conn.Close()
	c.rtp = conn
	port := conn.LocalAddr().(*net.UDPAddr).Port

	var answer []byte
	if len(req.Body()) == 0 {
		c.late = true
		c.tePT = 101
		answer = buildSDP(offerParams{sessID: 1, port: port, codecs: []string{"PCMU", "PCMA"}, tePT: 101, ptime: 20, direction: dirSendRecv})
	} else {
		rm, err := parseSDP(req.Body())
		if err != nil {
			dlg.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
			return
		}
		name, pt, ok := rm.pick([]string{"PCMU", "PCMA", "G722", "OPUS"})
		if !ok {
			dlg.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
			return
		}
		te, te48 := -1, 0
		if t := rm.teFor(name); t >= 0 {
			c.tePT = uint8(t)
			if clockRate(name) == 48000 {
				te48 = t
			} else {
				te = t
			}
		}
		answer = buildSDP(offerParams{sessID: 1, port: port, codecs: []string{name}, opusPT: pt, tePT: te, te48PT: te48, ptime: 20,
			direction: reverseDirection(rm.direction)})
	}
	res := sip.NewSDPResponseFromRequest(dlg.InviteRequest, answer)
	if ch := u.contactFor(req); ch != nil {
		res.AppendHeader(ch)
	}
	if err := dlg.WriteResponse(res); err != nil {
		return
	}
	close(c.confirmed)
	go c.echo()
	<-dlg.Context().Done()
}

func (c *uasCall) echo() {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		c.mu.Lock()
		switch pkt.PayloadType {
		case 0, 8, 9, ptOpus:
			c.audioPackets++
			c.mu.Unlock()
			c.rtp.WriteToUDPAddrPort(buf[:n], from)
			continue
		case c.tePT:
			c.eventPackets = append(c.eventPackets, *pkt.Clone())
		}
		c.mu.Unlock()
	}
}

func (u *testUAS) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if c := u.call(req.CallID().Value()); c != nil && len(req.Body()) > 0 {
		c.mu.Lock()
		c.ackSDP = append([]byte(nil), req.Body()...)
		c.mu.Unlock()
	}
	u.dsc.ReadAck(req, tx)
}

func (u *testUAS) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	dlg, err := u.dsc.MatchDialogRequest(req)
	c := u.call(req.CallID().Value())
	if err != nil || c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := dlg.ReadRequest(req, tx); err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 500, "Bad CSeq", nil))
		return
	}
	rm, err := parseSDP(req.Body())
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
		return
	}
	c.mu.Lock()
	c.directions = append(c.directions, rm.direction)
	c.mu.Unlock()
	name, _, _ := rm.pick([]string{"PCMU", "PCMA"})
	port := c.rtp.LocalAddr().(*net.UDPAddr).Port
	answer := buildSDP(offerParams{sessID: 1, version: 1, port: port, codecs: []string{name}, tePT: rm.tePT, ptime: 20, direction: reverseDirection(rm.direction)})
	res := sip.NewSDPResponseFromRequest(req, answer)
	ch := u.contactFor(req)
	if ch == nil {
		ch = &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "uas", Host: "127.0.0.1", Port: int(netip.MustParseAddrPort(u.udpAddr).Port())}}
	}
	res.AppendHeader(ch)
	tx.Respond(res)
}

func (u *testUAS) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := u.call(req.CallID().Value())
	if _, err := u.dsc.MatchDialogRequest(req); err != nil || c == nil {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	c.mu.Lock()
	c.infos = append(c.infos, string(req.Body()))
	if ct := req.ContentType(); ct != nil {
		c.infoTypes = append(c.infoTypes, ct.Value())
	}
	c.mu.Unlock()
	tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

func (u *testUAS) target(transport string) string {
	if transport == "tcp" {
		return u.tcpAddr
	}
	return u.udpAddr
}

// nextCall returns the next call the UAS received.
func (u *testUAS) nextCall(t testing.TB) *uasCall {
	t.Helper()
	select {
	case c := <-u.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("UAS received no INVITE")
		return nil
	}
}

// eventDigits decodes RFC 4733 packets into digits, one per timestamp.
func eventDigits(pkts []rtp.Packet) string {
	const digits = "0123456789*#ABCD"
	var out []byte
	seen := map[uint32]bool{}
	for _, p := range pkts {
		if len(p.Payload) < 4 || seen[p.Timestamp] {
			continue
		}
		seen[p.Timestamp] = true
		if int(p.Payload[0]) < len(digits) {
			out = append(out, digits[p.Payload[0]])
		} else {
			out = append(out, '?')
		}
	}
	return string(out)
}

func describe(p rtp.Packet) string {
	return fmt.Sprintf("m=%v ts=%d ev=%d end=%v dur=%d", p.Marker, p.Timestamp, p.Payload[0],
		p.Payload[1]&0x80 != 0, binary.BigEndian.Uint16(p.Payload[2:]))
}
