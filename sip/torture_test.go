package sip

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"chorus/bridge"
)

// tortureCase is one RFC 4475 message (testdata/rfc4475, copied from
// sipgo's sip/testdata/torture) and the answer Chorus owes it.
type tortureCase struct {
	file    string // under testdata/rfc4475
	section string // RFC 4475 section
	// want is the final status over UDP; 0 means no answer at all (the
	// datagram does not parse, or is a stray response, and is dropped).
	want int
	// reason, if set, must appear in the reason phrase (the defect named).
	reason string
	// call: the request becomes a call (and the test hangs it up again).
	call bool
	// tcp is the outcome over TCP when it differs from want: a status,
	// tcpClosed (sipgo closes the connection on a framing error) or
	// tcpSilent (sipgo waits for the rest of a message that never comes).
	tcp int
	// minLen, if set, is a length the response must exceed (it does not fit
	// sipgo's default UDP limit of 1300 bytes).
	minLen int
}

const (
	tcpClosed = -1
	tcpSilent = -2
	// tcpFraming: more bytes follow a complete message and do not parse,
	// so sipgo closes the connection, which may or may not beat the 4xx
	// that answers the first message.
	tcpFraming = -3
)

// tortureCases are every message in testdata/rfc4475. Chorus is a UAS that
// is not a registrar and supports INVITE, ACK, BYE, CANCEL, OPTIONS, INFO
// and UPDATE; an INVITE to any user is a call to that conference number
// (auto-create on).
var tortureCases = []tortureCase{
	// 3.1.1 Valid messages.
	{file: "valid/wsinv.dat", section: "3.1.1.1", want: 481},                   // To has a tag: no such dialog
	{file: "valid/intmeth.dat", section: "3.1.1.2", want: 501},                 // unknown method
	{file: "valid/esc01.dat", section: "3.1.1.3", want: 200, call: true},       // escaped user part
	{file: "valid/escnull.dat", section: "3.1.1.4", want: 405},                 // REGISTER: not a registrar
	{file: "valid/esc02.dat", section: "3.1.1.5", want: 501},                   // RE%47IST%45R is not REGISTER
	{file: "valid/lwsdisp.dat", section: "3.1.1.6", want: 200},                 // OPTIONS
	{file: "valid/longreq.dat", section: "3.1.1.7", want: 200, call: true},     // its 200 is ~3.9 kB
	{file: "valid/dblreq.dat", section: "3.1.1.8", want: 405, tcp: tcpFraming}, // the trailing INVITE is ignored
	{file: "valid/semiuri.dat", section: "3.1.1.9", want: 200},                 // OPTIONS
	{file: "valid/transports.dat", section: "3.1.1.10", want: 200},             // OPTIONS
	{file: "valid/mpart01.dat", section: "3.1.1.11", want: 405},                // MESSAGE: not supported
	{file: "valid/unreason.dat", section: "3.1.1.12", want: 0, tcp: tcpSilent}, // a stray response
	{file: "valid/noreason.dat", section: "3.1.1.13", want: 0, tcp: tcpSilent}, // a stray response

	// 3.1.2 Invalid messages.
	{file: "invalid/badinv01.dat", section: "3.1.2.1", want: 0, tcp: tcpClosed},                         // sipgo: malformed Via
	{file: "invalid/clerr.dat", section: "3.1.2.2", want: 0, tcp: tcpSilent},                            // sipgo: body incomplete
	{file: "invalid/ncl.dat", section: "3.1.2.3", want: 0, tcp: tcpClosed},                              // sipgo: negative Content-Length
	{file: "invalid/scalar02.dat", section: "3.1.2.4", want: 0, tcp: tcpClosed},                         // sipgo: CSeq overflows
	{file: "invalid/scalarlg.dat", section: "3.1.2.5", want: 0, tcp: tcpClosed},                         // a response, CSeq overflows
	{file: "invalid/quotbal.dat", section: "3.1.2.6", want: 0, tcp: tcpClosed},                          // sipgo: unterminated quote
	{file: "invalid/ltgtruri.dat", section: "3.1.2.7", want: 0, tcp: tcpClosed},                         // sipgo: <> around the URI
	{file: "invalid/lwsruri.dat", section: "3.1.2.8", want: 0, tcp: tcpClosed},                          // sipgo: LWS in the URI
	{file: "invalid/lwsstart.dat", section: "3.1.2.9", want: 0, tcp: tcpClosed},                         // sipgo: double SP
	{file: "invalid/trws.dat", section: "3.1.2.10", want: 0, tcp: tcpClosed},                            // sipgo: trailing SP
	{file: "invalid/escruri.dat", section: "3.1.2.11", want: 400, reason: "Request-URI"},                // headers in the Request-URI
	{file: "invalid/baddate.dat", section: "3.1.2.12", want: 400, reason: "Date"},                       // EST, not GMT
	{file: "invalid/regbadct.dat", section: "3.1.2.13", want: 405},                                      // REGISTER: not a registrar
	{file: "invalid/badaspec.dat", section: "3.1.2.14", want: 0, tcp: tcpClosed},                        // sipgo: spaces in addr-spec
	{file: "invalid/baddn.dat", section: "3.1.2.15", want: 0, tcp: tcpSilent},                           // sipgo: no end of headers
	{file: "invalid/badvers.dat", section: "3.1.2.16", want: 505},                                       // SIP/7.0
	{file: "invalid/mismatch01.dat", section: "3.1.2.17", want: 400, reason: "CSeq"},                    // OPTIONS, CSeq INVITE
	{file: "invalid/mismatch02.dat", section: "3.1.2.18", want: 501},                                    // unknown method first
	{file: "invalid/bigcode.dat", section: "3.1.2.19", want: 0, tcp: tcpClosed},                         // a response, code overflows
	{file: "invalid/badbranch.dat", section: "3.2.1", want: 400, reason: "branch"},                      // z9hG4bK and nothing else
	{file: "invalid/insuf.dat", section: "3.3.1", want: 400, reason: "Missing"},                         // no Call-ID, From, To
	{file: "invalid/unkscm.dat", section: "3.3.2", want: 416},                                           // unknown scheme
	{file: "invalid/novelsc.dat", section: "3.3.3", want: 0, tcp: tcpClosed},                            // sipgo: soap.beep scheme
	{file: "invalid/unksm2.dat", section: "3.3.4", want: 405},                                           // REGISTER: not a registrar
	{file: "invalid/bext01.dat", section: "3.3.5", want: 420},                                           // Require: unknown options
	{file: "invalid/invut.dat", section: "3.3.6", want: 415},                                            // body not SDP
	{file: "invalid/regaut01.dat", section: "3.3.7", want: 405},                                         // REGISTER: not a registrar
	{file: "invalid/multi01.dat", section: "3.3.8", want: 400, reason: "Multiple"},                      // several To, From, Call-ID, CSeq
	{file: "invalid/mcl01.dat", section: "3.3.9", want: 400, reason: "Content-Length", tcp: tcpFraming}, // two values
	{file: "invalid/bcast.dat", section: "3.3.10", want: 0, tcp: tcpSilent},                             // a stray response
	{file: "invalid/zeromf.dat", section: "3.3.11", want: 200},                                          // an endpoint answers Max-Forwards 0
	{file: "invalid/cparam01.dat", section: "3.3.12", want: 405},                                        // REGISTER: not a registrar
	{file: "invalid/cparam02.dat", section: "3.3.13", want: 405},                                        // REGISTER: not a registrar
	{file: "invalid/regescrt.dat", section: "3.3.14", want: 405},                                        // REGISTER: not a registrar
	{file: "invalid/sdp01.dat", section: "3.3.15", want: 406},                                           // Accept excludes SDP
	{file: "invalid/inv2543.dat", section: "3.4.1", want: 400, tcp: tcpClosed},                          // sipgo: no branch, no From tag
	{file: "invalid/test.dat", section: "(sipgo's own)", want: 0, tcp: tcpClosed},                       // sipgo: no SIP version
}

// readTorture returns a message of testdata/rfc4475 with the TEST-NET
// addresses of its SDP moved to loopback (same length, so Content-Length
// still holds): the bridge's RTP for the calls it answers stays on this
// machine.
func readTorture(t testing.TB, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "rfc4475", file))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(data, []byte("c=IN IP4 192.0.2."), []byte("c=IN IP4 127.0.0."))
}

// topViaSentBy finds the host (and port) of the first Via's sent-by, even
// folded over lines as in wsinv.
var topViaSentBy = regexp.MustCompile(`(?i)(?:^|\r\n)(?:via|v)\s*:\s*SIP\s*/\s*\d\.\d\s*/\s*[a-z]+\s+([^;,:\s]+)(:\d+)?`)

// withViaPort gives the top Via of msg the port a UDP response must go to:
// the messages name no port (5060 by RFC 3261 §18.2.2) or a port that is
// not the test's socket. Nothing else of the message changes.
func withViaPort(msg []byte, port int) []byte {
	m := topViaSentBy.FindSubmatchIndex(msg)
	if m == nil {
		return msg
	}
	end := m[3]
	if m[4] >= 0 {
		end = m[5]
	}
	out := append([]byte{}, msg[:m[3]]...)
	out = append(out, ":"+strconv.Itoa(port)...)
	return append(out, msg[end:]...)
}

// TestTortureCasesCoverTestdata: the table names every message copied.
func TestTortureCasesCoverTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "rfc4475", "*", "*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, c := range tortureCases {
		inTable[c.file] = true
	}
	for _, f := range files {
		rel := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		if !inTable[rel] {
			t.Errorf("%s has no row in tortureCases", rel)
		}
	}
	if len(files) != len(tortureCases) {
		t.Errorf("%d files, %d cases", len(files), len(tortureCases))
	}
}

// TestTortureUDP sends each RFC 4475 message in one datagram from its own
// socket to a bridge and checks the status line that comes back, or that
// nothing does; no invalid message may leave a call or a conference.
func TestTortureUDP(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 31000, 31199)
	for _, c := range tortureCases {
		t.Run(strings.TrimSuffix(c.file, ".dat"), func(t *testing.T) {
			calls, confs := len(tb.b.Calls("u-test")), len(tb.b.Conferences("u-test"))
			raw := newRawSIP(t, tb.udp)
			msg := withViaPort(readTorture(t, c.file), raw.conn.LocalAddr().(*net.UDPAddr).Port)
			code, resp := raw.tortureFinal(msg, c.want != 0)
			if code != c.want {
				t.Fatalf("RFC 4475 §%s: got %d, want %d\n%s", c.section, code, c.want, resp)
			}
			status, _, _ := strings.Cut(resp, "\r\n")
			if c.minLen > 0 && len(resp) <= c.minLen {
				t.Errorf("response of %d bytes, want more than %d", len(resp), c.minLen)
			}
			if c.reason != "" && !strings.Contains(status, c.reason) {
				t.Errorf("status line %q does not name %q", status, c.reason)
			}
			if code != 0 && !strings.HasPrefix(status, "SIP/2.0 ") {
				t.Errorf("status line %q is not SIP/2.0", status)
			}
			if code >= 300 && strings.HasPrefix(resp, "SIP/2.0") && headerLine(resp, "CSeq", "INVITE") {
				raw.send(ackFor(resp, false, raw.conn.LocalAddr().String()))
			}
			gotCalls := len(tb.b.Calls("u-test")) - calls
			if !c.call {
				if gotCalls != 0 {
					t.Errorf("RFC 4475 §%s made %d calls", c.section, gotCalls)
				}
				if n := len(tb.b.Conferences("u-test")) - confs; n != 0 && c.want != 200 {
					t.Errorf("RFC 4475 §%s made %d conferences", c.section, n)
				}
				return
			}
			if gotCalls != 1 {
				t.Fatalf("RFC 4475 §%s: %d calls, want 1", c.section, gotCalls)
			}
			// Confirm the call and hang it up, as the caller would.
			local := raw.conn.LocalAddr().String()
			raw.send(ackFor(resp, true, local))
			if code, bye := raw.final(byeFor(resp, local), 5*time.Second); code != 200 {
				t.Errorf("BYE: %d\n%s", code, bye)
			}
			call := tb.b.Calls("u-test")[0]
			waitFor(t, "call ended", func() bool { return call.State() == bridge.CallCompleted })
		})
	}
}

// tortureFinal sends msg and returns the first final response to it. When
// an answer is expected it waits for it; otherwise it sends an OPTIONS
// probe behind msg and, once the probe is answered, waits a little longer
// for anything about msg.
func (r *rawSIP) tortureFinal(msg []byte, expectAnswer bool) (int, string) {
	if _, err := r.conn.WriteToUDPAddrPort(msg, r.to); err != nil {
		r.t.Fatal(err)
	}
	probeID := "probe-" + randHex(6)
	deadline := time.Now().Add(10 * time.Second)
	if !expectAnswer {
		probe := strings.Replace(r.request("OPTIONS", "probe", "", ""), "Call-ID: ", "Call-ID: "+probeID, 1)
		r.send(probe)
	}
	buf := make([]byte, 65535)
	for {
		_ = r.conn.SetReadDeadline(deadline)
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, ""
		}
		resp := string(buf[:n])
		code := statusCode(resp)
		switch {
		case code < 200:
			continue
		case strings.Contains(resp, probeID):
			deadline = time.Now().Add(300 * time.Millisecond)
			continue
		}
		return code, resp
	}
}

// statusCode is the status of a response, 0 for anything else.
func statusCode(msg string) int {
	line, _, _ := strings.Cut(msg, "\r\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// header returns the first header line of msg named name (canonical form,
// as sipgo writes them), without the name.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return v
		}
	}
	return ""
}

func headerLine(msg, name, contains string) bool {
	return strings.Contains(header(msg, name), contains)
}

// ackFor builds the ACK for a final response to an INVITE: for a 2xx a new
// transaction to the Contact, otherwise the INVITE's own branch.
func ackFor(resp string, ok bool, local string) string {
	seq, _, _ := strings.Cut(header(resp, "CSeq"), " ")
	via, target := header(resp, "Via"), "sip:chorus@127.0.0.1"
	if ok {
		via = fmt.Sprintf("SIP/2.0/UDP %s;branch=z9hG4bK%s", local, randHex(8))
		target = strings.Trim(header(resp, "Contact"), "<>")
	}
	return fmt.Sprintf("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s ACK\r\nContent-Length: 0\r\n\r\n",
		target, via, header(resp, "From"), header(resp, "To"), header(resp, "Call-ID"), seq)
}

// byeFor builds the caller's BYE in the dialog a 200 to an INVITE made.
func byeFor(resp string, local string) string {
	seq, _, _ := strings.Cut(header(resp, "CSeq"), " ")
	n, _ := strconv.Atoi(seq)
	return fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d BYE\r\nContent-Length: 0\r\n\r\n",
		strings.Trim(header(resp, "Contact"), "<>"), local, randHex(8), header(resp, "From"), header(resp, "To"), header(resp, "Call-ID"), n+1)
}

// TestTortureTCP sends each message on its own TCP connection: what parses
// gets the same answer as over UDP, what does not closes the connection
// (sipgo cannot find the next message's start) or, when the message only
// looks incomplete, gets nothing; no invalid message leaves a call.
func TestTortureTCP(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 31200, 31399)
	for _, c := range tortureCases {
		if c.call {
			continue // the calls are the UDP test's; TCP answers them the same
		}
		want := c.want
		if c.tcp != 0 {
			want = c.tcp
		}
		t.Run(strings.TrimSuffix(c.file, ".dat"), func(t *testing.T) {
			calls := len(tb.b.Calls("u-test"))
			conn, err := net.Dial("tcp", tb.tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(readTorture(t, c.file)); err != nil {
				t.Fatal(err)
			}
			got := tcpOutcome(conn, want == tcpSilent)
			if want == tcpFraming && (got == tcpClosed || got >= 400 && got < 500) {
				got = tcpFraming
			}
			if got != want {
				t.Errorf("RFC 4475 §%s over TCP: got %d, want %d", c.section, got, want)
			}
			if n := len(tb.b.Calls("u-test")) - calls; n != 0 {
				t.Errorf("RFC 4475 §%s over TCP made %d calls", c.section, n)
			}
		})
	}
}

// tcpOutcome reads the first final response on conn, or reports the
// connection closed, or silent when nothing came (waiting only briefly if
// silence is what is expected).
func tcpOutcome(conn net.Conn, expectSilence bool) int {
	wait := 10 * time.Second
	if expectSilence {
		wait = 500 * time.Millisecond
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF || !isTimeout(err) {
				return tcpClosed
			}
			return tcpSilent
		}
		if code := statusCode(line); code >= 200 {
			return code
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestValidateRequestAllocs: validating a well-formed INVITE costs no
// allocation (it runs on every request, 600 INVITEs/s included).
func TestValidateRequestAllocs(t *testing.T) {
	msg, err := newParser().ParseSIP(readTorture(t, "valid/esc01.dat"))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp, application/dtmf-relay"))
	req.AppendHeader(sip.NewHeader("Date", "Sat, 13 Nov 2010 23:29:00 GMT"))
	if e := validateRequest(req); e != nil {
		t.Fatal(e)
	}
	if n := testing.AllocsPerRun(100, func() { _ = validateRequest(req) }); n != 0 {
		t.Errorf("%.0f allocations per request", n)
	}
}

func BenchmarkValidateRequest(b *testing.B) {
	msg, err := newParser().ParseSIP(readTorture(b, "valid/esc01.dat"))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	b.ReportAllocs()
	for b.Loop() {
		_ = validateRequest(req)
	}
}
