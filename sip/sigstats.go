package sip

import (
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// countedMethods are the methods the server has handlers for; requests
// are counted by method among these (anything else reaches onUnwanted and
// is counted as "other"). A fixed set keeps the metrics' labels bounded
// whatever a peer sends.
var countedMethods = [...]sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.INFO, sip.UPDATE}

// SetupBuckets are the upper bounds of the call set-up histogram: from a
// new INVITE's arrival to its 2xx (including any --answer-delay ringing).
var SetupBuckets = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// sigStats counts the signalling the handlers saw and answered. Each
// request costs an atomic add or two; nothing here is on the media path.
type sigStats struct {
	requests [len(countedMethods) + 1]atomic.Uint64 // the last: other
	// responses by status code less 100: every code a response can carry
	// (RFC 3261 §7.2: 100-699).
	responses [600]atomic.Uint64
	// inviteRejects counts the final non-2xx answers to INVITEs, by code
	// less 300: 486 full, 488 no common codec, 503 draining or limited,
	// 403 locked or refused, 401 challenged, and the rest.
	inviteRejects [400]atomic.Uint64
	setup         [len(SetupBuckets) + 1]atomic.Uint64
	setupNanos    atomic.Uint64
}

func methodIndex(m sip.RequestMethod) int {
	for i, c := range countedMethods {
		if c == m {
			return i
		}
	}
	return len(countedMethods)
}

// countingTx is a server transaction whose responses are counted; the
// handlers (through safe) see it in place of sipgo's, so every response
// they send, directly or through a dialog, passes here.
type countingTx struct {
	sip.ServerTransaction
	stats *sigStats
	req   *sip.Request
	// start is when a new INVITE arrived (zero for any other request);
	// its first 2xx observes the set-up time.
	start    time.Time
	answered atomic.Bool
}

// Respond counts res and sends it.
func (t *countingTx) Respond(res *sip.Response) error {
	code := res.StatusCode
	if code >= 100 && code <= 699 {
		t.stats.responses[code-100].Add(1)
		if t.req.Method == sip.INVITE && code >= 300 && !hasToTag(t.req) {
			t.stats.inviteRejects[code-300].Add(1)
		}
	}
	if code >= 200 && code < 300 && !t.start.IsZero() && t.answered.CompareAndSwap(false, true) {
		d := time.Since(t.start)
		i := 0
		for i < len(SetupBuckets) && d > SetupBuckets[i] {
			i++
		}
		t.stats.setup[i].Add(1)
		t.stats.setupNanos.Add(uint64(max(d, 0)))
	}
	return t.ServerTransaction.Respond(res)
}

// count notes req and returns the transaction to hand to its handler.
func (st *sigStats) count(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	st.requests[methodIndex(req.Method)].Add(1)
	if tx == nil { // ACK has no transaction of its own
		return tx
	}
	ct := &countingTx{ServerTransaction: tx, stats: st, req: req}
	if req.Method == sip.INVITE && !hasToTag(req) {
		ct.start = time.Now()
	}
	return ct
}

// SignallingStats is a snapshot of the SIP requests the server handled
// and the responses it sent through its handlers. Requests the UDP screen
// answers statelessly (unwanted methods, strays, OPTIONS outside dialogs)
// are counted by TrafficCount instead, and responses sipgo's transaction
// layer sends on its own (100 Trying by timer, 487 after CANCEL) are not
// counted.
type SignallingStats struct {
	// Requests by method: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE
	// and "other".
	Requests map[string]uint64
	// Responses by status code; codes never sent are absent.
	Responses map[int]uint64
	// InviteRejects counts final non-2xx answers to new INVITEs by code.
	InviteRejects map[int]uint64
	// Setup counts answered INVITEs by set-up time: Setup[i] those within
	// SetupBuckets[i], the last the rest (not cumulative).
	Setup [len(SetupBuckets) + 1]uint64
	// SetupSum is the total set-up time of the answered INVITEs.
	SetupSum time.Duration
}

// SignallingStats returns the signalling counters.
func (s *Server) SignallingStats() SignallingStats {
	st := &s.sig
	out := SignallingStats{Requests: map[string]uint64{}, Responses: map[int]uint64{}, InviteRejects: map[int]uint64{},
		SetupSum: time.Duration(st.setupNanos.Load())}
	for i, m := range countedMethods {
		out.Requests[string(m)] = st.requests[i].Load()
	}
	out.Requests["other"] = st.requests[len(countedMethods)].Load()
	for i := range st.responses {
		if n := st.responses[i].Load(); n > 0 {
			out.Responses[i+100] = n
		}
	}
	for i := range st.inviteRejects {
		if n := st.inviteRejects[i].Load(); n > 0 {
			out.InviteRejects[i+300] = n
		}
	}
	for i := range st.setup {
		out.Setup[i] = st.setup[i].Load()
	}
	return out
}
