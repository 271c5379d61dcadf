package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc (100 on Linux).
const clkTck = 100.0

// procStat is a process's CPU time and memory from /proc.
type procStat struct {
	cpuTicks uint64 // utime + stime
	rssKiB   int64
	// anonKiB is the anonymous part of rssKiB (RssAnon): the heap, stacks
	// and buffers. The rest is mostly the binary's own pages, which come in
	// as code first runs during a load and do not grow with members.
	anonKiB int64
	threads int
	volCtx  uint64
}

func readProc(pid int) (procStat, bool) {
	if pid <= 0 {
		return procStat{}, false
	}
	return readProcDir(fmt.Sprintf("/proc/%d", pid))
}

func readSelf() (procStat, bool) { return readProcDir("/proc/self") }

func readProcDir(dir string) (procStat, bool) {
	var p procStat
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return p, false
	}
	f := strings.Fields(s[i+1:])
	// after the comm: state(0) ppid(1) … utime(11) stime(12) … num_threads(17)
	if len(f) < 18 {
		return p, false
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	p.cpuTicks = ut + st
	p.threads, _ = strconv.Atoi(f[17])
	if b, err := os.ReadFile(dir + "/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "VmRSS":
				p.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			case "RssAnon":
				p.anonKiB, _ = strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			}
		}
	}
	// context switches of every thread (the leader's status counts its own only)
	tasks, _ := filepath.Glob(dir + "/task/*/status")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				p.volCtx += n
			}
		}
	}
	return p, true
}

// machineStat is the whole machine's CPU time from /proc/stat.
type machineStat struct {
	busy, total uint64
	ok          bool
}

func readMachine() machineStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineStat{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineStat{}
	}
	var m machineStat
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		m.total += v
		if i != 3 && i != 4 { // idle, iowait
			m.busy += v
		}
	}
	m.ok = true
	return m
}

// busyCores returns how many cores the machine kept busy on average.
func (m machineStat) busyCores(before machineStat, win float64) (float64, bool) {
	if !m.ok || !before.ok || win <= 0 {
		return 0, false
	}
	return float64(m.busy-before.busy) / clkTck / win, true
}

func readLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Metrics are the bridge counters the harness uses.
type Metrics struct {
	OK                                              bool
	Ticks, Restarts, PacketsIn, PacketsOut, Encodes uint64
	TickSeconds                                     float64
	LatenessLE                                      []float64 // bucket bounds in seconds; +Inf last
	LatenessCum                                     []uint64  // cumulative counts
	LatenessMax                                     float64   // seconds
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

func scrapeMetrics(url string) (Metrics, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return Metrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metrics{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format lines the harness needs.
func parseMetrics(r io.Reader) (Metrics, error) {
	var m Metrics
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "chorus_mixer_ticks_total":
			m.Ticks = uint64(v)
		case name == "chorus_mixer_restarts_total":
			m.Restarts = uint64(v)
		case name == "chorus_rtp_packets_in_total":
			m.PacketsIn = uint64(v)
		case name == "chorus_rtp_packets_out_total":
			m.PacketsOut = uint64(v)
		case name == "chorus_mixer_encodes_total":
			m.Encodes = uint64(v)
		case name == "chorus_mixer_tick_seconds_total":
			m.TickSeconds = v
		case name == "chorus_mixer_tick_lateness_max_seconds":
			m.LatenessMax = v
		case strings.HasPrefix(name, `chorus_mixer_tick_lateness_seconds_bucket{le="`):
			le := strings.TrimSuffix(strings.TrimPrefix(name, `chorus_mixer_tick_lateness_seconds_bucket{le="`), `"}`)
			b := math.Inf(1)
			if le != "+Inf" {
				if b, err = strconv.ParseFloat(le, 64); err != nil {
					continue
				}
			}
			m.LatenessLE = append(m.LatenessLE, b)
			m.LatenessCum = append(m.LatenessCum, uint64(v))
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	m.OK = len(m.LatenessLE) > 0
	if !m.OK {
		return m, fmt.Errorf("no chorus_mixer_tick_lateness_seconds histogram")
	}
	return m, nil
}

// latenessP99 estimates the 99th percentile of tick lateness over the
// window between two scrapes, in milliseconds, by linear interpolation in
// the histogram bucket that holds it (the last finite bound when it falls
// in +Inf), and the fraction of ticks at most 2 ms late.
func latenessP99(b, a Metrics) (p99ms, within2 float64) {
	if len(a.LatenessLE) != len(b.LatenessLE) || len(a.LatenessLE) == 0 {
		return -1, -1
	}
	n := len(a.LatenessLE)
	d := make([]uint64, n)
	for i := range n {
		d[i] = a.LatenessCum[i] - b.LatenessCum[i]
	}
	total := d[n-1]
	if total == 0 {
		return -1, -1
	}
	for i := range n {
		if a.LatenessLE[i] == 0.002 {
			within2 = float64(d[i]) / float64(total)
		}
	}
	want := 0.99 * float64(total)
	lo, prev := 0.0, uint64(0)
	for i := range n {
		if float64(d[i]) >= want {
			hi := a.LatenessLE[i]
			if math.IsInf(hi, 1) {
				return lo * 1000, within2
			}
			inBucket := float64(d[i] - prev)
			frac := 1.0
			if inBucket > 0 {
				frac = (want - float64(prev)) / inBucket
			}
			return (lo + frac*(hi-lo)) * 1000, within2
		}
		lo, prev = a.LatenessLE[i], d[i]
	}
	return lo * 1000, within2
}

// Print writes the result for people.
func (r *Result) Print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("chorus-load: %d callers in %d rooms (%d talkers/room), %s, %.0f calls/s, %.0f s window, target %s",
		r.Run.Callers, r.Run.Rooms, r.Run.TalkersPerRoom, r.Run.Codec, r.Run.Rate, r.Run.DurationS, r.Run.Target)
	c := r.Calls
	p("calls      attempted %d  answered %d  failed %d  hung up by bridge %d  BYE failed %d",
		c.Attempted, c.Answered, c.Failed, c.DroppedByBridge, c.ByeFailed)
	for _, k := range sortedKeys(c.Reasons) {
		p("           %4d × %s", c.Reasons[k], k)
	}
	p("setup      p50 %.1f ms  p99 %.1f ms  max %.1f ms  accepted %.0f calls/s", c.SetupP50Ms, c.SetupP99Ms, c.SetupMaxMs, c.AcceptedPerS)
	t := r.RTP
	up := "unknown (no --metrics)"
	if t.BridgeRead >= 0 {
		up = fmt.Sprintf("%d (bridge read %d)", t.UpstreamLost, t.BridgeRead)
	}
	p("rtp        sent %d  received %d  lost from bridge %d (%d callers)  not read by bridge %s  loss %.6f",
		t.Sent, t.Received, t.Lost, t.CallersWithLoss, up, t.LossFraction)
	p("           window: %.0f pkt/s sent, %.0f pkt/s received", t.WindowSentPS, t.WindowRecvPS)
	p("heard      %d of %d sampled listeners heard their room's talkers right; %d of %d talker frames dropped out (> %.0f dB low)",
		r.Heard.Correct, r.Heard.Sampled, r.Heard.DropoutFrames, r.Heard.Frames, dropoutDB)
	for _, s := range r.Heard.Problems {
		p("           %s", s)
	}
	b := r.Bridge
	if b.PID > 0 {
		p("bridge     pid %d  CPU %.2f s in %.1f s = %.1f %% of a core = %.4f %% per member", b.PID, b.CPUSeconds, b.WindowS, b.CPUPercent, b.CPUPercentPerMemb)
		p("           RSS %d KiB (idle %d KiB) = %.1f KiB per member, anonymous %.1f KiB  threads %d  voluntary ctx switches %d",
			b.RSSKiB, b.RSSIdleKiB, b.RSSPerMemberKiB, b.AnonPerMemberKiB, b.Threads, b.VoluntaryCtxSwitch)
	} else {
		p("bridge     no --bridge-pid: CPU and RSS not measured")
	}
	m := r.Mixer
	if m.Available {
		p("mixer      ticks %d (%.1f/s)  restarts %d  lateness p99 %.2f ms  ≤2 ms %.4f  max %.2f ms  mean tick %.1f µs",
			m.Ticks, m.TicksPerS, m.Restarts, m.LatenessP99Ms, m.Within2ms, m.LatenessMaxMs, m.TickMeanUs)
		p("           packets in %.0f/s out %.0f/s  encodes %.0f/s", m.PacketsInPS, m.PacketsOutPS, m.EncodesPS)
	} else {
		p("mixer      no --metrics: lateness not measured")
	}
	l := r.Load
	p("load       %d CPUs, busy %.2f cores: bridge %.2f, harness %.2f, other %.2f; loadavg %s; harness send lateness p99 %.1f ms max %.1f ms",
		l.CPUs, l.MachineBusy, b.CPUPercent/100, l.HarnessCores, l.OtherCores, l.LoadAvg, l.SendLateP99Ms, l.SendLateMaxMs)
	if r.Pass {
		p("PASS")
	} else {
		p("FAIL: %s", strings.Join(r.Problems, "; "))
	}
}
