package sip

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxLoggedData bounds how much of a datagram a log line may carry.
const maxLoggedData = 200

// summaryPeriod is the shortest time between two log lines about one kind
// of unwanted traffic.
const summaryPeriod = 10 * time.Second

// TrafficKind is a sort of unwanted SIP traffic: counted in the metrics and
// summarised in the log, never logged once per message.
type TrafficKind uint8

// The kinds of unwanted traffic.
const (
	// TrafficMalformed is a datagram or stream that does not parse as SIP,
	// or a request too broken to make a transaction of.
	TrafficMalformed TrafficKind = iota
	// TrafficStrayResponse is a response that matches no client
	// transaction (RFC 3261 §17.1.3): a late retransmission or a scan.
	TrafficStrayResponse
	// TrafficUnwantedMethod is a request for a method we do not serve
	// (REGISTER, SUBSCRIBE, MESSAGE, ...), answered 405 or 501
	// (RFC 3261 §8.2.1).
	TrafficUnwantedMethod
	// TrafficOutOfDialog is a request meant for a dialog that does not
	// exist, answered 481 (RFC 3261 §12.2.2).
	TrafficOutOfDialog
	// TrafficOptions is an OPTIONS outside our dialogs, answered by the UDP
	// screen without a transaction (RFC 3261 §11.2): a keep-alive of a
	// trunk or a monitor as well as a scan, so it is summarised in the log
	// at Debug only, but counted, so that a flood shows.
	TrafficOptions
	// TrafficTCPOverCap is a TCP connection closed as it was accepted
	// because the total connection cap was reached.
	TrafficTCPOverCap
	// TrafficTCPOverSourceCap is a TCP connection closed as it was
	// accepted because its source IP already held its cap.
	TrafficTCPOverSourceCap
	// TrafficTCPIdle is a TCP connection closed after the idle timeout
	// without traffic and without a live call.
	TrafficTCPIdle
	// TrafficTCPAcceptError is a failed accept (EMFILE, ENFILE, ...),
	// after which the listener backs off and goes on.
	TrafficTCPAcceptError

	numTrafficKinds
)

// TrafficKinds lists every kind, for metrics.
func TrafficKinds() []TrafficKind {
	ks := make([]TrafficKind, numTrafficKinds)
	for i := range ks {
		ks[i] = TrafficKind(i)
	}
	return ks
}

// String is the kind's name in metrics labels and logs.
func (k TrafficKind) String() string {
	switch k {
	case TrafficMalformed:
		return "malformed"
	case TrafficStrayResponse:
		return "stray_response"
	case TrafficUnwantedMethod:
		return "unwanted_method"
	case TrafficOutOfDialog:
		return "out_of_dialog"
	case TrafficOptions:
		return "options"
	case TrafficTCPOverCap:
		return "tcp_over_total_cap"
	case TrafficTCPOverSourceCap:
		return "tcp_over_source_cap"
	case TrafficTCPIdle:
		return "tcp_idle_closed"
	case TrafficTCPAcceptError:
		return "tcp_accept_error"
	}
	return "unknown"
}

// level is the level of the kind's summary lines.
func (k TrafficKind) level() slog.Level {
	if k == TrafficOptions {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// clock is what the traffic summary needs of time; tests inject a fake.
type clock interface {
	Now() time.Time
	// AfterFunc runs f after d, unless the returned stop is called first.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// trafficSummary counts unwanted traffic by kind and logs it at most once
// per kind per period: the first message of a quiet spell at once, then
// one line per period with the count of what came meanwhile, until a
// period passes with nothing. Counting is two atomic operations; only the
// first message of a period takes the lock.
type trafficSummary struct {
	log    *slog.Logger
	clk    clock
	period time.Duration
	kinds  [numTrafficKinds]kindSummary
}

type kindSummary struct {
	total atomic.Uint64
	open  atomic.Bool // a period is running: messages are only counted

	mu      sync.Mutex
	logged  uint64    // total at the last line
	started time.Time // when the running period began
	stop    func() bool
	closed  bool
}

func newTrafficSummary(log *slog.Logger, clk clock, period time.Duration) *trafficSummary {
	return &trafficSummary{log: log, clk: clk, period: period}
}

// note counts one message of kind k. sample describes it for the log; it
// is called only when a line is written.
func (t *trafficSummary) note(k TrafficKind, sample func() string) {
	ks := &t.kinds[k]
	ks.total.Add(1)
	if ks.open.Load() {
		return
	}
	ks.mu.Lock()
	if ks.open.Load() || ks.closed {
		ks.mu.Unlock()
		return
	}
	n := ks.total.Load() - ks.logged
	if n == 0 { // a flush took it meanwhile
		ks.mu.Unlock()
		return
	}
	ks.logged += n
	ks.open.Store(true)
	ks.started = t.clk.Now()
	ks.stop = t.clk.AfterFunc(t.period, func() { t.flush(k) })
	ks.mu.Unlock()
	s := ""
	if sample != nil {
		s = truncate(sample())
	}
	t.log.Log(context.Background(), k.level(), "unwanted SIP traffic", "kind", k.String(), "count", n, "sample", s)
}

// flush ends a period of kind k: it logs what the period counted and, if
// anything came, starts the next one.
func (t *trafficSummary) flush(k TrafficKind) {
	ks := &t.kinds[k]
	ks.mu.Lock()
	if ks.closed {
		ks.mu.Unlock()
		return
	}
	// Close the period before reading the count: a message counted after
	// this load sees open false and logs itself, so none is left unlogged.
	ks.open.Store(false)
	n := ks.total.Load() - ks.logged
	if n == 0 {
		ks.mu.Unlock()
		return
	}
	now := t.clk.Now()
	since := now.Sub(ks.started)
	ks.logged += n
	ks.open.Store(true)
	ks.started = now
	ks.stop = t.clk.AfterFunc(t.period, func() { t.flush(k) })
	ks.mu.Unlock()
	t.log.Log(context.Background(), k.level(), "unwanted SIP traffic", "kind", k.String(), "count", n, "period", since.Round(time.Millisecond))
}

// count returns how many messages of kind k were noted.
func (t *trafficSummary) count(k TrafficKind) uint64 { return t.kinds[k].total.Load() }

// close stops the timers and logs what is still unlogged; later messages
// are only counted.
func (t *trafficSummary) close() {
	for k := range t.kinds {
		ks := &t.kinds[k]
		ks.mu.Lock()
		if ks.stop != nil {
			ks.stop()
		}
		ks.closed = true
		ks.open.Store(true)
		n := ks.total.Load() - ks.logged
		ks.logged += n
		ks.mu.Unlock()
		if n > 0 {
			t.log.Log(context.Background(), TrafficKind(k).level(), "unwanted SIP traffic", "kind", TrafficKind(k).String(), "count", n)
		}
	}
}

func truncate(s string) string {
	if len(s) > maxLoggedData {
		return s[:maxLoggedData] + "…"
	}
	return s
}

// quietHandler tames sipgo's transport and transaction logging: a
// malformed datagram from the network is routine, not an error, so such
// records go to Debug, and any raw message data in them is cut short.
// With a summary (a Server's own handler), records that report unwanted
// traffic are counted there instead of logged, so a flood costs a line per
// period, not per message, and sipgo's own Debug records are dropped.
type quietHandler struct {
	slog.Handler
	traffic *trafficSummary // nil: nothing is classified
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.traffic != nil {
		switch {
		case l < slog.LevelInfo:
			return false // sipgo's debug lines come per message, even with --log-level debug
		case l >= slog.LevelWarn:
			return true // classified whatever the level
		}
	}
	return h.Handler.Enabled(ctx, slog.LevelDebug) || h.Handler.Enabled(ctx, l)
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if level >= slog.LevelWarn {
		if h.traffic != nil {
			if k, ok := classify(r); ok {
				h.traffic.note(k, func() string { return recordSample(r) })
				return nil
			}
		}
		level = slog.LevelDebug // parse failures, resets: remote input
	}
	if !h.Handler.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			a.Value = slog.StringValue(truncate(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as), h.traffic}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.traffic}
}

// classify recognises sipgo's log records about remote input that is
// unwanted traffic (sipgo v1.7: the UDP and TCP transports log "failed to
// parse"; the transaction layer logs "make key failed" for a request or
// response without the Via or CSeq a transaction needs).
func classify(r slog.Record) (TrafficKind, bool) {
	switch {
	case r.Message == "failed to parse":
		return TrafficMalformed, true
	case r.Message == "Server tx failed to handle request", r.Message == "Client tx failed to handle response":
		malformed := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && strings.Contains(a.Value.String(), "make key failed") {
				malformed = true
				return false
			}
			return true
		})
		if malformed {
			return TrafficMalformed, true
		}
	}
	return 0, false
}

// recordSample is a one-line description of a classified record.
func recordSample(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" || a.Key == "raddr" {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
		}
		return true
	})
	return b.String()
}

// SetLibraryLogger routes sipgo's process-wide logger (which the few parts
// of sipgo not given a Server's own logger still use) through log, with
// errors about remote input demoted to Debug and raw data truncated. Call
// it once at start-up, before New.
func SetLibraryLogger(log *slog.Logger) {
	sip.SetDefaultLogger(slog.New(quietHandler{Handler: log.Handler()}))
}
