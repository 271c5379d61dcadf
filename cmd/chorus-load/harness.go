package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
)

// Config describes one load run.
type Config struct {
	Target         string // bridge SIP address, host:port (UDP)
	LocalIP        string // where callers bind SIP and RTP
	Callers        int
	Rooms          int
	FirstRoom      int // number dialled for room 0
	Rate           float64
	Duration       time.Duration // measured window
	Warmup         time.Duration
	SetupTimeout   time.Duration
	TalkersPerRoom int
	Codec          media.Codec
	Sample         int     // listeners recorded and checked
	MaxLoss        float64 // fraction
	MetricsURL     string
	// Metrics, if set, replaces scraping MetricsURL (the in-process bridge).
	Metrics   func() (Metrics, error)
	BridgePID int
	Senders   int
	Readers   int
	// MaxMembers is only used to start an in-process bridge.
	MaxMembers int
	Log        *slog.Logger
	// OnWindow, if set, is called at the start (true) and end (false) of
	// the measured window.
	OnWindow func(start bool)
}

func (c *Config) defaults() error {
	if c.Callers <= 0 || c.Rooms <= 0 || c.Rooms > c.Callers {
		return fmt.Errorf("need 0 < rooms (%d) <= callers (%d)", c.Rooms, c.Callers)
	}
	if c.Rate <= 0 {
		return errors.New("--rate must be positive")
	}
	if c.TalkersPerRoom < 0 || c.TalkersPerRoom > len(tonePeriods) {
		return fmt.Errorf("--talkers-per-room must be 0..%d", len(tonePeriods))
	}
	if c.Duration < time.Second {
		return errors.New("--duration must be at least 1s")
	}
	if c.LocalIP == "" {
		c.LocalIP = "127.0.0.1"
	}
	if c.FirstRoom == 0 {
		c.FirstRoom = 7000
	}
	if c.Codec == media.CodecInvalid {
		c.Codec = media.PCMU
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = 10 * time.Second
	}
	if c.Senders <= 0 {
		c.Senders = (c.Callers + 499) / 500
	}
	if c.Readers <= 0 {
		c.Readers = (c.Callers + 249) / 250
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil && c.MetricsURL != "" {
		url := c.MetricsURL
		c.Metrics = func() (Metrics, error) { return scrapeMetrics(url) }
	}
	return nil
}

// tonePeriods are the talkers' tones as periods in samples at 8 kHz
// (470.6, 727.3, 1142.9, 615.4, 421.1, 347.8, 275.9, 258.1 Hz). The first
// three are those of the bridge's own tests: G.711 distortion of any two
// never lands on the third. An integer period lets a tone loop seamlessly
// over `period` frames of 160 samples.
var tonePeriods = []int{17, 11, 7, 13, 19, 23, 29, 31}

// Levels of the generated audio and the listener check's tolerances.
const (
	talkDBFS     = -20.0
	noiseDBFS    = -70.0
	heardTol     = 2.0   // a talker's tone must arrive within ±2 dB of talkDBFS
	selfCeilDBFS = -45.0 // and one's own tone (or an absent talker) below this
	dropoutDB    = 6.0   // a talker's frame this far under talkDBFS is a dropout
	recordFrames = 55    // frames recorded per sampled listener (last 1.1 s)
	analyseMs    = 1000  // audio analysed: the last second
)

// Run places the calls, streams audio for the warm-up and the measured
// window, hangs up, and returns what it measured.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	target, err := netip.ParseAddrPort(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("--target: %w", err)
	}
	log := cfg.Log
	res := newResult(cfg)

	// Idle baseline, before any call.
	idleProc, _ := readProc(cfg.BridgePID)
	var idleMetrics Metrics
	if cfg.Metrics != nil {
		for try := 0; ; try++ { // a bridge just spawned may serve SIP before HTTP
			if idleMetrics, err = cfg.Metrics(); err == nil {
				break
			}
			if try == 30 || !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
				return nil, fmt.Errorf("metrics: %w", err)
			}
		}
	}

	agent, err := newAgent(ctx, cfg.LocalIP, log)
	if err != nil {
		return nil, err
	}
	defer agent.Close()

	callers, err := makeCallers(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range callers {
			c.sock.Close()
		}
	}()
	audio, err := newAudio(cfg.Codec)
	if err != nil {
		return nil, err
	}

	// Media: senders and readers run from now until the end.
	mctx, stopMedia := context.WithCancel(context.Background())
	var sendWG, readWG sync.WaitGroup
	var sendLate lateness
	for _, part := range split(callers, cfg.Senders) {
		sendWG.Add(1)
		go func() { defer sendWG.Done(); sendLoop(mctx, part, audio, cfg.Codec, &sendLate) }()
	}
	rctx, stopReaders := context.WithCancel(context.Background())
	var recording atomic.Bool
	for _, part := range split(callers, cfg.Readers) {
		readWG.Add(1)
		go func() { defer readWG.Done(); readLoop(rctx, part, cfg.Codec, &recording) }()
	}
	stopAll := func() {
		stopMedia()
		sendWG.Wait()
		stopReaders()
		readWG.Wait()
	}
	defer stopAll()

	// Calls, paced at the rate.
	log.Info("placing calls", "callers", cfg.Callers, "rooms", cfg.Rooms, "rate", cfg.Rate)
	var callWG sync.WaitGroup
	start := time.Now()
	for i, c := range callers {
		at := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
		if !sleepUntil(ctx, at) {
			break
		}
		callWG.Add(1)
		go func() {
			defer callWG.Done()
			cctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
			defer cancel()
			c.setupErr = agent.call(cctx, c, target, cfg)
			if c.setupErr != nil {
				log.Warn("call failed", "caller", c.idx, "room", c.room, "err", c.setupErr)
			}
		}()
	}
	callWG.Wait()
	setupEnd := time.Now()
	res.collectSetup(callers, start, setupEnd)
	log.Info("calls placed", "answered", res.Calls.Answered, "failed", res.Calls.Failed, "took", setupEnd.Sub(start).Round(time.Millisecond))

	// Warm-up, then the measured window.
	if !sleepUntil(ctx, time.Now().Add(cfg.Warmup)) {
		return nil, ctx.Err()
	}
	before := snapshotAll(cfg, callers)
	if cfg.OnWindow != nil {
		cfg.OnWindow(true)
	}
	windowEnd := before.at.Add(cfg.Duration)
	recordFrom := windowEnd.Add(-recordFrames * 20 * time.Millisecond)
	if !sleepUntil(ctx, recordFrom) {
		return nil, ctx.Err()
	}
	recording.Store(true)
	if !sleepUntil(ctx, windowEnd) {
		return nil, ctx.Err()
	}
	after := snapshotAll(cfg, callers)
	recording.Store(false)
	if cfg.OnWindow != nil {
		cfg.OnWindow(false)
	}

	// Stop sending, give the bridge a few ticks to read what is queued,
	// then count what it read.
	stopMedia()
	sendWG.Wait()
	time.Sleep(150 * time.Millisecond)
	var drained Metrics
	if cfg.Metrics != nil {
		drained, _ = cfg.Metrics()
	}
	stopReaders()
	readWG.Wait()

	// Hang up.
	hangupAll(agent, callers, log)

	res.collectMedia(callers, cfg, idleMetrics, drained)
	res.collectWindow(cfg, idleProc, before, after, len(answered(callers)))
	res.collectHeard(callers, cfg)
	res.Load.SendLateP99Ms, res.Load.SendLateMaxMs = sendLate.quantiles()
	res.collectHangup(callers)
	res.judge(cfg)
	return res, nil
}

func answered(cs []*caller) []*caller {
	var out []*caller
	for _, c := range cs {
		if c.setupErr == nil && c.dlg != nil {
			out = append(out, c)
		}
	}
	return out
}

func hangupAll(agent *agent, callers []*caller, log *slog.Logger) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, c := range answered(callers) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if c.byeFromBridge.Load() {
				return
			}
			if err := agent.hangup(ctx, c); err != nil {
				c.byeErr = err
				log.Warn("BYE failed", "caller", c.idx, "err", err)
			}
		}()
	}
	wg.Wait()
}

// sleepUntil waits until t or ctx ends; it reports whether t was reached.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// split deals cs into n contiguous parts.
func split(cs []*caller, n int) [][]*caller {
	n = max(1, min(n, len(cs)))
	out := make([][]*caller, 0, n)
	for i := range n {
		out = append(out, cs[i*len(cs)/n:(i+1)*len(cs)/n])
	}
	return out
}

// snapshot is the state at one edge of the measured window.
type snapshot struct {
	at      time.Time
	proc    procStat
	procOK  bool
	self    procStat
	machine machineStat
	metrics Metrics
	sent    uint64
	recv    uint64
}

func snapshotAll(cfg Config, callers []*caller) snapshot {
	s := snapshot{at: time.Now()}
	s.proc, s.procOK = readProc(cfg.BridgePID)
	s.self, _ = readSelf()
	s.machine = readMachine()
	if cfg.Metrics != nil {
		s.metrics, _ = cfg.Metrics()
	}
	for _, c := range callers {
		s.sent += c.sent.Load()
		s.recv += c.recvCount.Load()
	}
	return s
}

// Result is what one run measured. Durations are in milliseconds, memory
// in KiB, CPU in percent of one core.
type Result struct {
	Run struct {
		Callers        int     `json:"callers"`
		Rooms          int     `json:"rooms"`
		TalkersPerRoom int     `json:"talkersPerRoom"`
		Rate           float64 `json:"rate"`
		DurationS      float64 `json:"durationS"`
		Codec          string  `json:"codec"`
		Target         string  `json:"target"`
	} `json:"run"`
	Calls struct {
		Attempted       int            `json:"attempted"`
		Answered        int            `json:"answered"`
		Failed          int            `json:"failed"`
		DroppedByBridge int            `json:"droppedByBridge"`
		ByeFailed       int            `json:"byeFailed"`
		Reasons         map[string]int `json:"reasons,omitempty"`
		SetupP50Ms      float64        `json:"setupP50Ms"`
		SetupP99Ms      float64        `json:"setupP99Ms"`
		SetupMaxMs      float64        `json:"setupMaxMs"`
		AcceptedPerS    float64        `json:"acceptedPerS"` // answered / (last answer − first INVITE)
	} `json:"calls"`
	RTP struct {
		Sent            uint64  `json:"sent"`
		Received        uint64  `json:"received"`
		Lost            uint64  `json:"lost"` // from the bridge, by sequence numbers
		CallersWithLoss int     `json:"callersWithLoss"`
		BridgeRead      int64   `json:"bridgeRead"`   // from /metrics; −1 unknown
		UpstreamLost    int64   `json:"upstreamLost"` // sent − bridge read; −1 unknown
		LossFraction    float64 `json:"lossFraction"`
		WindowSentPS    float64 `json:"windowSentPerS"`
		WindowRecvPS    float64 `json:"windowRecvPerS"`
	} `json:"rtp"`
	Heard struct {
		Sampled       int      `json:"sampled"`
		Correct       int      `json:"correct"`
		Frames        int      `json:"frames"`        // talker frames checked
		DropoutFrames int      `json:"dropoutFrames"` // of those, more than dropoutDB low
		Problems      []string `json:"problems,omitempty"`
	} `json:"heard"`
	Bridge struct {
		PID               int     `json:"pid"`
		WindowS           float64 `json:"windowS"`
		CPUSeconds        float64 `json:"cpuSeconds"`
		CPUPercent        float64 `json:"cpuPercent"`          // of one core
		CPUPercentPerMemb float64 `json:"cpuPercentPerMember"` // of one core
		RSSIdleKiB        int64   `json:"rssIdleKiB"`
		RSSKiB            int64   `json:"rssKiB"`
		RSSPerMemberKiB   float64 `json:"rssPerMemberKiB"` // (RSS − idle RSS) / members
		// AnonPerMemberKiB is (RssAnon − idle RssAnon) / members: the
		// per-member figure without the binary's code pages, which a bigger
		// binary brings in once as the load first runs them.
		AnonPerMemberKiB   float64 `json:"anonPerMemberKiB"`
		Threads            int     `json:"threads"`
		VoluntaryCtxSwitch uint64  `json:"voluntaryCtxSwitches"`
	} `json:"bridge"`
	Mixer struct {
		Available     bool    `json:"available"`
		Ticks         uint64  `json:"ticks"`
		TicksPerS     float64 `json:"ticksPerS"`
		Restarts      uint64  `json:"restarts"`
		LatenessP99Ms float64 `json:"latenessP99Ms"`
		Within2ms     float64 `json:"within2ms"` // fraction of ticks at most 2 ms late
		LatenessMaxMs float64 `json:"latenessMaxMs"`
		TickMeanUs    float64 `json:"tickMeanUs"` // time spent in one mixOnce
		PacketsInPS   float64 `json:"packetsInPerS"`
		PacketsOutPS  float64 `json:"packetsOutPerS"`
		EncodesPS     float64 `json:"encodesPerS"`
	} `json:"mixer"`
	Load struct {
		SendLateP99Ms float64 `json:"harnessSendLatenessP99Ms"` // the harness's own sender ticks
		SendLateMaxMs float64 `json:"harnessSendLatenessMaxMs"`
		CPUs          int     `json:"cpus"`
		MachineBusy   float64 `json:"machineBusyCores"` // all processes, in cores
		HarnessCores  float64 `json:"harnessCores"`
		OtherCores    float64 `json:"otherCores"` // busy − bridge − harness
		LoadAvg       string  `json:"loadavg"`
	} `json:"load"`
	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
}

func newResult(cfg Config) *Result {
	r := &Result{}
	r.Run.Callers, r.Run.Rooms, r.Run.TalkersPerRoom = cfg.Callers, cfg.Rooms, cfg.TalkersPerRoom
	r.Run.Rate, r.Run.DurationS, r.Run.Codec, r.Run.Target = cfg.Rate, cfg.Duration.Seconds(), cfg.Codec.String(), cfg.Target
	r.RTP.BridgeRead, r.RTP.UpstreamLost = -1, -1
	return r
}

func (r *Result) collectSetup(cs []*caller, start, end time.Time) {
	r.Calls.Reasons = map[string]int{}
	var lat []time.Duration
	var last time.Time
	for _, c := range cs {
		if c.attempted {
			r.Calls.Attempted++
		}
		if c.setupErr != nil || c.dlg == nil {
			if c.attempted {
				r.Calls.Failed++
				r.Calls.Reasons[reason(c.setupErr)]++
			}
			continue
		}
		r.Calls.Answered++
		lat = append(lat, c.setup)
		if c.answeredAt.After(last) {
			last = c.answeredAt
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.Calls.SetupP50Ms = ms(quantile(lat, 0.50))
		r.Calls.SetupP99Ms = ms(quantile(lat, 0.99))
		r.Calls.SetupMaxMs = ms(lat[len(lat)-1])
		if d := last.Sub(start); d > 0 {
			r.Calls.AcceptedPerS = float64(len(lat)) / d.Seconds()
		}
	}
	if len(r.Calls.Reasons) == 0 {
		r.Calls.Reasons = nil
	}
}

func reason(err error) string {
	if err == nil {
		return "no dialog"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *Result) collectMedia(cs []*caller, cfg Config, idle, drained Metrics) {
	for _, c := range cs {
		r.RTP.Sent += c.sent.Load()
		r.RTP.Received += c.recvCount.Load()
		if l := c.lost(); l > 0 {
			r.RTP.Lost += l
			r.RTP.CallersWithLoss++
		}
	}
	if idle.OK && drained.OK {
		read := int64(drained.PacketsIn - idle.PacketsIn)
		r.RTP.BridgeRead = read
		r.RTP.UpstreamLost = max(0, int64(r.RTP.Sent)-read)
	}
	total := r.RTP.Sent + r.RTP.Received
	lost := r.RTP.Lost
	if r.RTP.UpstreamLost > 0 {
		lost += uint64(r.RTP.UpstreamLost)
	}
	if total > 0 {
		r.RTP.LossFraction = float64(lost) / float64(total)
	}
}

func (r *Result) collectWindow(cfg Config, idle procStat, b, a snapshot, members int) {
	win := a.at.Sub(b.at).Seconds()
	r.Bridge.WindowS = win
	r.RTP.WindowSentPS = float64(a.sent-b.sent) / win
	r.RTP.WindowRecvPS = float64(a.recv-b.recv) / win
	if b.procOK && a.procOK {
		r.Bridge.PID = cfg.BridgePID
		cpu := float64(a.proc.cpuTicks-b.proc.cpuTicks) / clkTck
		r.Bridge.CPUSeconds = cpu
		r.Bridge.CPUPercent = 100 * cpu / win
		if members > 0 {
			r.Bridge.CPUPercentPerMemb = r.Bridge.CPUPercent / float64(members)
		}
		r.Bridge.RSSIdleKiB = idle.rssKiB
		r.Bridge.RSSKiB = a.proc.rssKiB
		if members > 0 && idle.rssKiB > 0 {
			r.Bridge.RSSPerMemberKiB = float64(a.proc.rssKiB-idle.rssKiB) / float64(members)
		}
		if members > 0 && idle.anonKiB > 0 {
			r.Bridge.AnonPerMemberKiB = float64(a.proc.anonKiB-idle.anonKiB) / float64(members)
		}
		r.Bridge.Threads = a.proc.threads
		r.Bridge.VoluntaryCtxSwitch = a.proc.volCtx - b.proc.volCtx
	}
	r.Load.CPUs = runtime.NumCPU()
	if busy, ok := a.machine.busyCores(b.machine, win); ok {
		r.Load.MachineBusy = busy
		r.Load.HarnessCores = float64(a.self.cpuTicks-b.self.cpuTicks) / clkTck / win
		r.Load.OtherCores = max(0, busy-r.Load.HarnessCores-r.Bridge.CPUPercent/100)
	}
	r.Load.LoadAvg = readLoadAvg()
	if b.metrics.OK && a.metrics.OK {
		m := &r.Mixer
		m.Available = true
		m.Ticks = a.metrics.Ticks - b.metrics.Ticks
		m.TicksPerS = float64(m.Ticks) / win
		m.Restarts = a.metrics.Restarts - b.metrics.Restarts
		m.LatenessP99Ms, m.Within2ms = latenessP99(b.metrics, a.metrics)
		m.LatenessMaxMs = a.metrics.LatenessMax * 1000
		if m.LatenessMaxMs > 0 && m.LatenessP99Ms > m.LatenessMaxMs {
			m.LatenessP99Ms = m.LatenessMaxMs // interpolation overshoots a sparse bucket
		}
		if m.Ticks > 0 {
			m.TickMeanUs = (a.metrics.TickSeconds - b.metrics.TickSeconds) / float64(m.Ticks) * 1e6
		}
		m.PacketsInPS = float64(a.metrics.PacketsIn-b.metrics.PacketsIn) / win
		m.PacketsOutPS = float64(a.metrics.PacketsOut-b.metrics.PacketsOut) / win
		m.EncodesPS = float64(a.metrics.Encodes-b.metrics.Encodes) / win
	}
}

// collectHeard checks each sampled listener's last second, frame by
// frame (20 ms, Goertzel): the median level of every other talker of its
// room must be talkDBFS ± heardTol, and that of its own tone (and of talker
// slots its room does not have) below selfCeilDBFS. A frame in which a
// talker that should be heard is more than dropoutDB under talkDBFS counts
// as a dropout (a gap or a slip in what the bridge sent).
func (r *Result) collectHeard(cs []*caller, cfg Config) {
	talkers := map[int][]int{} // room -> talker slots present (answered)
	for _, c := range cs {
		if c.talker >= 0 && c.setupErr == nil && c.dlg != nil {
			talkers[c.room] = append(talkers[c.room], c.talker)
		}
	}
	rate := cfg.Codec.AudioRate() // the recording's: 8, 16 or 48 kHz
	fs, analyseLen := rate/50, rate*analyseMs/1000
	for _, c := range cs {
		if !c.sampled || c.setupErr != nil || c.dlg == nil {
			continue
		}
		r.Heard.Sampled++
		rec := c.rec
		if len(rec) < analyseLen {
			r.heardProblem(fmt.Sprintf("caller %d (room %d): recorded %d samples, want %d", c.idx, c.room, len(rec), analyseLen))
			continue
		}
		rec = rec[len(rec)-analyseLen:]
		ok := true
		for slot := range cfg.TalkersPerRoom {
			f := 8000 / float64(tonePeriods[slot])
			levels := make([]float64, 0, analyseLen/fs)
			for i := 0; i+fs <= len(rec); i += fs {
				levels = append(levels, audiotest.LevelDBFS(rec[i:i+fs], f, rate))
			}
			slices.Sort(levels)
			got := levels[len(levels)/2]
			present := slices.Contains(talkers[c.room], slot)
			switch {
			case present && slot != c.talker:
				r.Heard.Frames += len(levels)
				for _, l := range levels {
					if l < talkDBFS-dropoutDB {
						r.Heard.DropoutFrames++
					}
				}
				if math.Abs(got-talkDBFS) > heardTol {
					ok = false
					r.heardProblem(fmt.Sprintf("caller %d (room %d) hears talker %d at %.1f dBFS (median of frames), want %.0f", c.idx, c.room, slot, got, talkDBFS))
				}
			default:
				if got > selfCeilDBFS {
					ok = false
					r.heardProblem(fmt.Sprintf("caller %d (room %d, talker %d) hears tone %d at %.1f dBFS, want < %.0f", c.idx, c.room, c.talker, slot, got, selfCeilDBFS))
				}
			}
		}
		if ok {
			r.Heard.Correct++
		}
	}
}

func (r *Result) heardProblem(s string) {
	if len(r.Heard.Problems) < 8 {
		r.Heard.Problems = append(r.Heard.Problems, s)
	}
}

func (r *Result) collectHangup(cs []*caller) {
	for _, c := range cs {
		if c.byeFromBridge.Load() {
			r.Calls.DroppedByBridge++
		}
		if c.byeErr != nil {
			r.Calls.ByeFailed++
		}
	}
}

func (r *Result) judge(cfg Config) {
	if r.Calls.Failed > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d calls failed", r.Calls.Failed))
	}
	if r.Calls.DroppedByBridge > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d calls hung up by the bridge", r.Calls.DroppedByBridge))
	}
	if r.Calls.ByeFailed > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d BYEs failed", r.Calls.ByeFailed))
	}
	if r.RTP.LossFraction > cfg.MaxLoss {
		r.Problems = append(r.Problems, fmt.Sprintf("loss %.6f > max %.6f (lost from bridge %d, not read by bridge %d)",
			r.RTP.LossFraction, cfg.MaxLoss, r.RTP.Lost, r.RTP.UpstreamLost))
	}
	if r.Heard.Correct < r.Heard.Sampled {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d sampled listeners heard wrong", r.Heard.Sampled-r.Heard.Correct, r.Heard.Sampled))
	}
	if r.Calls.Answered == 0 {
		r.Problems = append(r.Problems, "no call answered")
	}
	r.Pass = len(r.Problems) == 0
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
