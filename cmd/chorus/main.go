// Command chorus runs the Chorus conference bridge: SIP and RTP for the
// callers, the Catapult-compatible REST API for applications, and
// Prometheus metrics at /metrics.
//
// Usage:
//
//	chorus [flags]
//
// Every flag has an environment twin (CHORUS_SIP_ADDR for --sip-addr, and
// so on) and a field in the optional JSON config file (--config). Run
// `chorus -h` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"chorus/bridge"
	"chorus/media"
	"chorus/media/tts"
	"chorus/sip"
)

func main() {
	// The parts of sipgo without a per-server logger log through a
	// process-wide one: set it once, before any SIP traffic, with
	// remote-input errors demoted to debug, in the configured format and
	// level. (run reads the configuration again and reports its errors;
	// here a bad one leaves the default.)
	sip.SetLibraryLogger(libraryLogger(os.Args[1:], os.Getenv, os.Stderr))
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "chorus:", err)
		}
		os.Exit(2)
	}
}

// libraryLogger is the logger for sipgo's process-wide one: the format
// and level the arguments configure, or the defaults if they are wrong
// (run reports the error).
func libraryLogger(args []string, getenv func(string) string, w io.Writer) *slog.Logger {
	cfg := defaultConfig()
	if c, err := loadConfig(args, getenv, io.Discard); err == nil {
		cfg = c
	}
	return newLogger(cfg, w)
}

// ready reports the bound addresses once the bridge serves (for tests).
type ready struct {
	SIPUDP, SIPTCP netip.AddrPort
	SIPTLS         netip.AddrPort // invalid: no TLS
	HTTP           net.Addr
	Users          []User
}

// run starts the bridge and serves until a signal or ctx ends it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, onReady func(ready)) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, errShowVersion) {
		version, goVersion := buildVersion()
		fmt.Fprintf(stdout, "chorus %s %s\n", version, goVersion)
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	fdLimit, err := raiseFileLimit()
	if err != nil {
		log.Warn("descriptor limit not raised", "limit", fdLimit, "err", err)
	}
	tcpLimits := tcpLimitsFor(cfg, fdLimit, log)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
	}

	listenHost, _, _ := net.SplitHostPort(cfg.SIPAddr)
	bindIP := netip.IPv4Unspecified()
	if listenHost != "" {
		if ip, err := netip.ParseAddr(listenHost); err == nil {
			bindIP = ip
		}
	}
	ports, err := media.NewPortPool(bindIP, cfg.rtpLow, cfg.rtpHigh, 2*time.Second)
	if err != nil {
		return err
	}
	br := bridge.New(bridge.Config{DefaultUser: cfg.Users[0].ID, AutoCreate: cfg.AutoCreate,
		MaxMembers: cfg.MaxMembers, LoudestN: cfg.LoudestN, RTPTimeout: cfg.RTPTimeout, RTPHoldTimeout: cfg.RTPHoldTimeout, Retention: bridgeRetention(cfg, st),
		MixerPriority: cfg.mixerPriority, Prompts: newPINPrompts(tts.New(""), log).get,
		MaxApplicationsPerUser: cfg.MaxApplicationsPerUser, MaxNumbersPerUser: cfg.MaxNumbersPerUser,
		IncomingCallTimeout: cfg.IncomingCallTimeout, MaxMixRate: cfg.MaxMixRate, OpusBitrate: cfg.OpusBitrate,
		RecordingsDir: cfg.recordingsDir(), KeepRecordingFiles: st != nil,
		RecordingQuota: cfg.RecordingQuota, RecordingMinFree: recordingMinFreeOn(cfg.recordingsDir())}, log, nil)
	janitorCtx, stopJanitor := context.WithCancel(context.Background())
	defer stopJanitor()
	go br.RunJanitor(janitorCtx, time.Minute)
	if st != nil {
		go pruneStore(janitorCtx, st, cfg.Retention, 10*time.Minute, br.RemoveMedia, log)
	}

	targets := cfg.targetPolicy()
	sipSrv, err := sip.New(sip.Config{PublicIP: cfg.publicIP, Ports: ports, Bridge: br, Log: log, AnswerDelay: cfg.AnswerDelay,
		Targets: targets, TCP: tcpLimits, Auth: cfg.authConfig(), SRTP: cfg.srtpPolicy, Codecs: cfg.codecs, Completed: storedCompleted(st, cfg.Users),
		Limits: sip.Limits{InviteRate: cfg.SIPInviteRate, InviteBurst: cfg.SIPInviteBurst,
			MaxUnconfirmed: cfg.SIPMaxUnconfirmed, Exempt: cfg.sipLimitExempt}})
	if err != nil {
		return err
	}
	defer sipSrv.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if br.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
	}
	defer hl.Close()
	targets.AddOwnPorts(uint16(hl.Addr().(*net.TCPAddr).Port), uint16(hl.Addr().(*net.TCPAddr).Port))
	// Everything the bridge reports to or calls on is wired before the
	// first SIP packet can arrive.
	br.SetDialer(sipSrv)
	dispatcher, events, outbox := mountAPI(mux, cfg, br, st, hl.Addr(), targets, log)
	// Before the first call: the applications and numbers come back, what
	// a crash left live is completed, and undelivered events are queued.
	rs, err := outbox.Recover(ctx)
	if err != nil {
		return fmt.Errorf("store: recover: %w", err)
	}
	// After Recover, which repairs the files a crash left recording.
	if err := adoptRecordingFiles(ctx, st, br, log); err != nil {
		log.Warn("recording files not all reconciled with the store", "err", err)
	}
	if st != nil {
		log.Info("store opened", "data_dir", cfg.DataDir, "applications", rs.Applications, "numbers", rs.Numbers,
			"pending_events", rs.Pending, "crashed_conferences", rs.Conferences, "crashed_members", rs.Members, "crashed_calls", rs.Calls, "crashed_recordings", rs.Recordings, "crashed_gathers", rs.Gathers)
	}
	outbox.Start()
	met := newMetrics(metricsSources{bridge: br, ports: ports, sip: sipSrv, dispatcher: dispatcher, events: events, outbox: outbox, store: st})
	mux.Handle("GET /metrics", met.handler(log))
	// TCP on the same port as UDP (the usual :5060 for both).
	udpAddr, tcpAddr, err := sipSrv.ListenUDPAndTCP(cfg.SIPAddr)
	if err != nil {
		return err
	}
	targets.AddOwnPorts(udpAddr.Port(), udpAddr.Port())
	tlsAddr, err := listenSIPTLS(sipSrv, cfg, log)
	if err != nil {
		return err
	}
	if cfg.PprofAddr != "" {
		if err := servePprof(cfg.PprofAddr, log); err != nil {
			return err
		}
	}
	httpSrv := startHTTP(cfg, observeHTTP(mux, met, log, time.Now), hl, log)

	version, goVersion := buildVersion()
	dialIn := fmt.Sprintf("sip:1000@%s", netip.AddrPortFrom(cfg.publicIP, udpAddr.Port()))
	log.Info("chorus listening", "version", version, "go", goVersion, "dial_in", dialIn, "sip_udp", udpAddr, "sip_tcp", tcpAddr, "sip_tls", tlsAddr, "http", hl.Addr().String(),
		"rtp_ports", cfg.RTPPorts, "public_ip", cfg.publicIP, "fd_limit", fdLimit,
		"sip_tcp_max_conns", tcpLimits.MaxConns, "sip_tcp_max_conns_per_source", tcpLimits.MaxConnsPerSource,
		"sip_tcp_idle_timeout", tcpLimits.IdleTimeout)
	if cfg.generatedUser {
		u := cfg.Users[0]
		fmt.Fprintf(stdout, "No --user given; generated a development user:\n  user id: %s\n  token:   %s\n  secret:  %s\n  try: curl -u %s:%s %s://%s/v1/users/%s/conferences\n",
			u.ID, u.Token, u.Secret, u.Token, u.Secret, cfg.httpScheme(), hl.Addr(), u.ID)
	}
	// The hint for a person at a terminal; with JSON logs for a pipeline,
	// the listening line above carries it as dial_in.
	if cfg.LogFormat == "text" {
		fmt.Fprintf(stdout, "Call %s to join conference 1000.\n", dialIn)
	}
	if onReady != nil {
		onReady(ready{SIPUDP: udpAddr, SIPTCP: tcpAddr, SIPTLS: tlsAddr, HTTP: hl.Addr(), Users: cfg.Users})
	}

	// Shutdown: SIGTERM drains (new calls get 503, calls in progress go on);
	// a second signal, SIGINT, or ctx ending hangs everyone up and exits.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	var drainDone <-chan time.Time
	idle := time.NewTicker(500 * time.Millisecond)
	defer idle.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case sig := <-sigs:
			if sig == syscall.SIGINT || br.Draining() {
				log.Info("stopping", "signal", sig)
				break wait
			}
			log.Info("draining: new calls are refused; send another signal to stop now", "signal", sig, "calls", br.ActiveCalls())
			br.Drain()
			if cfg.DrainPeriod > 0 {
				drainDone = time.After(cfg.DrainPeriod)
			}
		case <-drainDone:
			log.Info("drain period over")
			break wait
		case <-idle.C:
			if br.Draining() && br.ActiveCalls() == 0 {
				log.Info("drained: no calls left")
				break wait
			}
		}
	}
	br.Drain()
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	br.HangupAll(hctx, "shutdown")
	completeAll(br, cfg.Users)
	events.Close() // ends the event streams, which Shutdown would wait for
	_ = httpSrv.Shutdown(hctx)
	// The last events (hangups, completions) are written, then delivered
	// until hctx ends; what is not delivered by then waits in the store.
	_ = outbox.Close(hctx)
	log.Info("stopped")
	return nil
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the limit in force: every call holds an RTP socket and every
// SIP/TCP peer a connection, and running out means 500s to new calls and
// an API that no longer accepts. (Go's runtime raises it too, since 1.19,
// but silently; here the result is logged and sizes the TCP caps.)
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit nofile: %w", err)
	}
	if rl.Cur >= rl.Max {
		return rl.Cur, nil
	}
	want := rl
	want.Cur = want.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return rl.Cur, fmt.Errorf("setrlimit nofile %d: %w", want.Cur, err)
	}
	return want.Cur, nil
}

// tcpLimitsFor derives the SIP/TCP limits from the configuration, keeping
// the total cap within a quarter of the descriptor limit so that a flood
// of connections leaves descriptors for RTP and the API.
func tcpLimitsFor(cfg Config, fdLimit uint64, log *slog.Logger) sip.TCPLimits {
	lim := sip.TCPLimits{MaxConns: cfg.SIPTCPMaxConns, MaxConnsPerSource: cfg.SIPTCPMaxConnsPerSource,
		IdleTimeout: cfg.SIPTCPIdleTimeout}
	if quarter := int(min(fdLimit/4, uint64(math.MaxInt32))); fdLimit > 0 && lim.MaxConns > quarter {
		log.Info("SIP/TCP connection cap lowered to a quarter of the descriptor limit",
			"configured", lim.MaxConns, "cap", max(quarter, 1), "fd_limit", fdLimit)
		lim.MaxConns = max(quarter, 1)
	}
	lim.MaxConnsPerSource = min(lim.MaxConnsPerSource, lim.MaxConns)
	return lim
}
