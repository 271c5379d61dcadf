package sip

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told; timers fire in Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock by d, running each timer due on the way in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		next.stopped = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// logLines is a log sink that keeps its lines.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (l *logLines) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func newSummaryForTest(t *testing.T) (*trafficSummary, *fakeClock, *logLines) {
	t.Helper()
	out := &logLines{}
	clk := newFakeClock()
	return newTrafficSummary(slog.New(slog.NewTextHandler(out, nil)), clk, 10*time.Second), clk, out
}

// TestTrafficSummaryOneLinePerPeriod: a flood of one kind costs one line at
// its start and one per 10 s with the count; a quiet period ends it, and
// the next message starts a new one. No count is lost.
func TestTrafficSummaryOneLinePerPeriod(t *testing.T) {
	sum, clk, out := newSummaryForTest(t)
	samples := 0
	sample := func() string { samples++; return "REGISTER from 192.0.2.1:5060" }

	sum.note(TrafficUnwantedMethod, sample)
	if l := out.lines(); len(l) != 1 || !strings.Contains(l[0], "kind=unwanted_method count=1 ") || !strings.Contains(l[0], "REGISTER from 192.0.2.1") {
		t.Fatalf("first message: %q", l)
	}
	for range 9999 {
		sum.note(TrafficUnwantedMethod, sample)
	}
	clk.Advance(9 * time.Second)
	if l := out.lines(); len(l) != 1 {
		t.Fatalf("lines within the first period: %q", l)
	}
	clk.Advance(time.Second)
	l := out.lines()
	if len(l) != 2 || !strings.Contains(l[1], "count=9999") || !strings.Contains(l[1], "period=10s") {
		t.Fatalf("after one period: %q", l)
	}
	for range 5 {
		sum.note(TrafficUnwantedMethod, sample)
	}
	clk.Advance(10 * time.Second)
	if l = out.lines(); len(l) != 3 || !strings.Contains(l[2], "count=5") {
		t.Fatalf("after the second period: %q", l)
	}
	clk.Advance(time.Minute) // a quiet period closes the summary
	if l = out.lines(); len(l) != 3 {
		t.Fatalf("quiet periods logged: %q", l)
	}
	sum.note(TrafficUnwantedMethod, sample)
	if l = out.lines(); len(l) != 4 || !strings.Contains(l[3], "count=1 ") {
		t.Fatalf("a new spell: %q", l)
	}
	if samples != 2 {
		t.Errorf("sample built %d times, want once per opening line (2)", samples)
	}
	if got := sum.count(TrafficUnwantedMethod); got != 10006 {
		t.Errorf("count %d, want 10006", got)
	}
}

// TestTrafficSummaryKindsApart: each kind has its own period.
func TestTrafficSummaryKindsApart(t *testing.T) {
	sum, clk, out := newSummaryForTest(t)
	for range 100 {
		sum.note(TrafficStrayResponse, nil)
		sum.note(TrafficMalformed, nil)
	}
	if l := out.lines(); len(l) != 2 {
		t.Fatalf("two kinds, first messages: %q", l)
	}
	clk.Advance(10 * time.Second)
	l := out.lines()
	if len(l) != 4 {
		t.Fatalf("two kinds after a period: %q", l)
	}
	for _, want := range []string{"kind=stray_response count=99", "kind=malformed count=99"} {
		if !strings.Contains(strings.Join(l[2:], "\n"), want) {
			t.Errorf("no %q in %q", want, l[2:])
		}
	}
}

// TestTrafficSummaryClose: closing logs what is pending and stops the timers.
func TestTrafficSummaryClose(t *testing.T) {
	sum, clk, out := newSummaryForTest(t)
	for range 7 {
		sum.note(TrafficOutOfDialog, nil)
	}
	sum.close()
	l := out.lines()
	if len(l) != 2 || !strings.Contains(l[1], "kind=out_of_dialog count=6") {
		t.Fatalf("close: %q", l)
	}
	sum.note(TrafficOutOfDialog, nil)
	clk.Advance(time.Minute)
	if l := out.lines(); len(l) != 2 {
		t.Errorf("lines after close: %q", l)
	}
	if got := sum.count(TrafficOutOfDialog); got != 8 {
		t.Errorf("count after close %d, want 8", got)
	}
}

// TestTrafficSummaryConcurrent: counts from many goroutines add up, and
// the lines' counts add up to them.
func TestTrafficSummaryConcurrent(t *testing.T) {
	sum, clk, out := newSummaryForTest(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				sum.note(TrafficMalformed, nil)
				if i%1000 == 0 {
					clk.Advance(3 * time.Second)
				}
			}
		}()
	}
	wg.Wait()
	clk.Advance(time.Minute)
	total := 0
	for _, l := range out.lines() {
		_, c, _ := strings.Cut(l, "count=")
		c, _, _ = strings.Cut(c, " ")
		var n int
		for _, ch := range c {
			n = n*10 + int(ch-'0')
		}
		total += n
	}
	if total != 40000 || sum.count(TrafficMalformed) != 40000 {
		t.Errorf("logged %d, counted %d, want 40000", total, sum.count(TrafficMalformed))
	}
}

// TestTrafficNoteAllocs: counting within a period allocates nothing.
func TestTrafficNoteAllocs(t *testing.T) {
	sum, _, _ := newSummaryForTest(t)
	sum.note(TrafficStrayResponse, nil)
	src := "127.0.0.1:5060"
	if a := testing.AllocsPerRun(1000, func() {
		sum.note(TrafficStrayResponse, func() string { return "from " + src })
	}); a != 0 {
		t.Errorf("note allocates %.1f per call", a)
	}
}

// TestQuietHandlerClassifies: sipgo's records about unparseable input are
// counted, not logged; other errors about remote input go to Debug.
func TestQuietHandlerClassifies(t *testing.T) {
	sum, _, sumOut := newSummaryForTest(t)
	out := &logLines{}
	log := slog.New(quietHandler{slog.NewTextHandler(out, nil), sum})
	for range 1000 {
		log.Error("failed to parse", "data", strings.Repeat("x", 1000), "error", "bad start line")
		log.Error("Server tx failed to handle request", "error", "make key failed: no Via", "req", "BYE sip:x")
	}
	log.Error("Read error", "error", "connection reset by peer")
	if n := out.len(); n != 0 {
		t.Errorf("handler at Info wrote %q", out.lines())
	}
	if got := sum.count(TrafficMalformed); got != 2000 {
		t.Errorf("malformed counted %d, want 2000", got)
	}
	if l := sumOut.lines(); len(l) != 1 || !strings.Contains(l[0], "bad start line") {
		t.Errorf("summary: %q", l)
	}

	debugOut := &logLines{}
	log = slog.New(quietHandler{slog.NewTextHandler(debugOut, &slog.HandlerOptions{Level: slog.LevelDebug}), sum})
	log.Error("Read error", "error", "connection reset by peer", "data", strings.Repeat("y", 1000))
	l := debugOut.lines()
	if len(l) != 1 || !strings.Contains(l[0], "level=DEBUG") || len(l[0]) > 400 {
		t.Errorf("demoted record: %q", l)
	}
	if !log.Handler().Enabled(context.Background(), slog.LevelError) {
		t.Error("errors not enabled")
	}
}

// TestQuietHandlerDropsLibraryDebug: with --log-level debug, a server's
// sipgo logger still writes no line per message.
func TestQuietHandlerDropsLibraryDebug(t *testing.T) {
	sum, _, _ := newSummaryForTest(t)
	out := &logLines{}
	log := slog.New(quietHandler{slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}), sum})
	log.Debug("Server transaction retained for timer termination")
	log.Info("Non existing client tx was removed", "tx", "x")
	if l := out.lines(); len(l) != 1 || !strings.Contains(l[0], "Non existing") {
		t.Errorf("lines: %q", l)
	}
}
