package sip

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/egress"
)

// heapAfterGC is the live heap once garbage is collected.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// floodCase is one kind of request sent by the thousand at the UDP port.
type floodCase struct {
	method string
	want   int         // the status every answer must have
	kind   TrafficKind // where the bridge counts them
	// request builds the i-th request from local, the flooding socket.
	request func(i int, local string) string
}

// strayRequest builds an in-dialog request for a dialog that does not
// exist, or an out-of-dialog one when toTag is empty.
func strayRequest(method string, i int, local, bridgeAddr, toTag string) string {
	to := fmt.Sprintf("<sip:1000@%s>", bridgeAddr)
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:1000@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfl%08d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:flood@%s>;tag=f%d\r\nTo: %s\r\nCall-ID: flood%d@test\r\nCSeq: 2 %s\r\nContent-Length: 0\r\n\r\n",
		method, bridgeAddr, local, i, local, i, to, i, method)
}

// TestStrayFloodsCostNoHeap: 20,000 BYEs for dialogs that do not exist,
// then 20,000 out-of-dialog OPTIONS, each in about 2 s, are answered
// statelessly by the UDP screen (481; 200 with Allow and Accept), counted,
// and leave the heap as it was: sipgo would keep a server transaction of a
// few kB for each for 32 s (Timer J, RFC 3261 §17.2.2).
func TestStrayFloodsCostNoHeap(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 33200, 33299)
	addr := tb.udp.String()
	cases := []floodCase{
		{method: "BYE", want: 481, kind: TrafficOutOfDialog, request: func(i int, local string) string {
			return strayRequest("BYE", i, local, addr, fmt.Sprintf("t%d", i))
		}},
		{method: "OPTIONS", want: 200, kind: TrafficOptions, request: func(i int, local string) string {
			return strayRequest("OPTIONS", i, local, addr, "")
		}},
	}
	for _, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			raw := newRawSIP(t, tb.udp)
			local := raw.conn.LocalAddr().String()
			// One first, checked in full; sent again if lost, as a phone
			// would (a loaded machine may drop a datagram).
			code, res := 0, ""
			for try := 0; try < 5 && code == 0; try++ {
				code, res = raw.final(c.request(0, local), 2*time.Second)
			}
			if code != c.want || toTag(res) == "" || headerValue(res, "Call-ID", "i") != "flood0@test" {
				t.Fatalf("%s: %d\n%s", c.method, code, res)
			}
			if c.method == "OPTIONS" && (!strings.Contains(headerValue(res, "Allow", ""), "INVITE") || !strings.Contains(headerValue(res, "Accept", ""), "application/sdp")) {
				t.Errorf("OPTIONS answer lacks Allow or Accept:\n%s", res)
			}
			var answered, wrong atomic.Int64
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				buf := make([]byte, 65535)
				for {
					_ = raw.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, _, err := raw.conn.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					if strings.HasPrefix(string(buf[:n]), fmt.Sprintf("SIP/2.0 %d ", c.want)) {
						answered.Add(1)
					} else {
						wrong.Add(1)
					}
				}
			}()
			before := heapAfterGC()
			counted := tb.srv.TrafficCount(c.kind)
			const total = 20000
			start := time.Now()
			for i := 1; i <= total; i++ {
				raw.send(c.request(i, local))
				if i%100 == 0 { // about 10k a second
					time.Sleep(time.Until(start.Add(time.Duration(i) * 100 * time.Microsecond)))
				}
			}
			<-readerDone // 2 s without an answer: the bridge has answered what it read
			after := heapAfterGC()
			got := tb.srv.TrafficCount(c.kind) - counted
			growth := (int64(after) - int64(before)) / (1 << 20)
			t.Logf("%d %s in %v: %d answered %d, %d counted; heap %.1f MB -> %.1f MB",
				total, c.method, time.Since(start).Round(time.Millisecond), answered.Load(), c.want, got,
				float64(before)/(1<<20), float64(after)/(1<<20))
			// A loaded machine drops some from the socket buffer; the test
			// wants the answers and the bound, not the machine's speed.
			if answered.Load() < total/10 || got < uint64(answered.Load()) {
				t.Errorf("%d answered, %d counted, of %d", answered.Load(), got, total)
			}
			if wrong.Load() != 0 {
				t.Errorf("%d answers were not %d", wrong.Load(), c.want)
			}
			if growth >= 20 {
				t.Errorf("heap grew %d MB under the flood, want < 20 MB", growth)
			}
		})
	}
}

// TestCalleeByeRightAfterAnswer: a callee we dialled sends its BYE right
// behind its 200, before the bridge has taken the answer. The BYE is not
// refused as outside any dialog (sipgo knows the dialog only once the 200
// is processed, but its Call-ID is known from before the INVITE left): it
// gets 200 and the call ends as a hang-up, its port freed.
func TestCalleeByeRightAfterAnswer(t *testing.T) {
	loopback := egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 33300, 33399, func(c *Config) { c.Targets = loopback })
	tb.b.SetDialer(tb.srv)
	for round := range 5 {
		callee := newRawSIP(t, tb.udp)
		calleeAddr := callee.conn.LocalAddr().String()
		call, err := tb.b.DialOut(bridge.DialOptions{UserID: "u-test", From: "chorus", To: "sip:callee@" + calleeAddr})
		if err != nil {
			t.Fatal(err)
		}
		inv := callee.read(5 * time.Second)
		if !strings.HasPrefix(inv, "INVITE ") {
			t.Fatalf("round %d: callee got %q, want the INVITE", round, inv)
		}
		ok := strings.TrimSuffix(okFor(inv), "\r\nContent-Length: 0\r\n\r\n")
		var b strings.Builder
		for _, line := range strings.Split(ok, "\r\n") {
			if n, _, _ := strings.Cut(line, ":"); strings.EqualFold(n, "To") {
				line += ";tag=callee1"
			}
			b.WriteString(line + "\r\n")
		}
		port := callee.conn.LocalAddr().(*net.UDPAddr).Port
		sdp := offerSDP(port, "0", "0 PCMU/8000")
		fmt.Fprintf(&b, "Contact: <sip:callee@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", calleeAddr, len(sdp), sdp)
		// The BYE: the dialog's From and To swapped, the callee's CSeq.
		bye := fmt.Sprintf("BYE sip:chorus@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: %s;tag=callee1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
			tb.udp, calleeAddr, randHex(8), headerValue(inv, "To", "t"), headerValue(inv, "From", "f"), headerValue(inv, "Call-ID", "i"))
		callee.send(b.String())
		callee.send(bye)
		byeStatus := 0
		for deadline := time.Now().Add(10 * time.Second); byeStatus == 0 && time.Now().Before(deadline); {
			msg := callee.read(time.Until(deadline))
			if msg == "" || (msg[0] >= 0x80) {
				continue // RTP
			}
			if line, _, _ := strings.Cut(msg, "\r\n"); strings.HasPrefix(line, "SIP/2.0 ") && strings.Contains(msg, " BYE\r\n") {
				fmt.Sscanf(line, "SIP/2.0 %d", &byeStatus)
			}
		}
		if byeStatus != 200 {
			t.Fatalf("round %d: the callee's BYE right after its 200 got %d", round, byeStatus)
		}
		waitFor(t, "call completed", func() bool { return call.State() == bridge.CallCompleted })
		if info := call.Info(); info.Answered.IsZero() || info.Cause != "hangup" {
			t.Errorf("round %d: call ended answered at %v with cause %q, want answered, hangup", round, info.Answered, info.Cause)
		}
	}
	waitFor(t, "ports freed", func() bool { return tb.srv.ports.InUse() == 0 })
}
