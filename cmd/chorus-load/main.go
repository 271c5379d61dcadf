// Command chorus-load is the load harness for the Chorus bridge: it places
// N callers into R rooms of a running bridge through real SIP over UDP,
// streams G.711 audio from each of them every 20 ms (a few talkers per
// room send a tone, the others low-level noise that keeps the noise gate
// shut), and reports what it cost the bridge and what the callers heard.
//
// Usage:
//
//	chorus-load --target 127.0.0.1:5060 --callers 1000 --rooms 200 \
//	    --duration 60s --rate 200 --bridge-pid $(pidof chorus) \
//	    --metrics http://127.0.0.1:8080/metrics [--json]
//
// With --bridge-cmd "…/chorus --flag …" it spawns the bridge itself and
// measures that process; with --inprocess it runs a bridge inside this
// process (for profiling with --cpuprofile, and for the package test).
//
// Measured per run: calls attempted, answered and failed; call setup
// latency (INVITE sent to 200 OK received) p50 and p99; RTP packets sent
// and received, and packets lost from the bridge by each caller's sequence
// numbers (and, with --metrics, packets the bridge did not read); for a
// sample of listeners the level of every talker's tone in the last second
// (Goertzel); the bridge's CPU time (utime+stime from /proc/PID/stat) as a
// percentage of one core per member over the measured window; its RSS
// (VmRSS) growth per member; and from /metrics the mixer tick lateness p99,
// ticks and clock restarts. It exits 0 only if no call failed, loss is at
// most --max-loss and every sampled listener heard the talkers.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"chorus/media"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs the harness and returns the process exit code: 0 on a clean
// run, 1 when a check failed, 2 on a usage or setup error.
func cli(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chorus-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg        Config
		codec      string
		jsonOut    bool
		bridgeCmd  string
		inprocess  bool
		cpuProfile string
		logLevel   string
		ready      time.Duration
		writeAudio string
	)
	fs.StringVar(&cfg.Target, "target", "127.0.0.1:5060", "bridge SIP address (UDP)")
	fs.StringVar(&cfg.LocalIP, "local-ip", "127.0.0.1", "address the callers bind (SIP and RTP)")
	fs.IntVar(&cfg.Callers, "callers", 10, "number of callers")
	fs.IntVar(&cfg.Rooms, "rooms", 1, "number of rooms; callers are dealt round robin")
	fs.IntVar(&cfg.FirstRoom, "first-room", 7000, "number dialled for the first room (the next rooms count up)")
	fs.Float64Var(&cfg.Rate, "rate", 50, "new calls per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window, after every call is up and the warm-up")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "settling time between the last answer and the measured window")
	fs.IntVar(&cfg.TalkersPerRoom, "talkers-per-room", 3, "callers per room that send a tone (the rest send −70 dBFS noise)")
	fs.StringVar(&codec, "codec", "PCMU", "codec offered: PCMU, PCMA, G722 or opus (48 kHz RTP clock, dynamic payload type 111)")
	fs.IntVar(&cfg.Sample, "sample", 50, "listeners whose audio is recorded and checked (0: none)")
	fs.Float64Var(&cfg.MaxLoss, "max-loss", 0, "largest tolerated packet loss, as a fraction (0.001 = 0.1 %)")
	fs.StringVar(&cfg.MetricsURL, "metrics", "", "bridge /metrics URL to scrape (e.g. http://127.0.0.1:8080/metrics)")
	fs.IntVar(&cfg.BridgePID, "bridge-pid", 0, "bridge process id, for CPU and RSS from /proc")
	fs.StringVar(&bridgeCmd, "bridge-cmd", "", "spawn the bridge with this command line (split on spaces) and measure it")
	fs.BoolVar(&inprocess, "inprocess", false, "run a bridge inside this process (ignores --target, --metrics, --bridge-pid)")
	fs.IntVar(&cfg.MaxMembers, "inprocess-max-members", 2000, "with --inprocess: the bridge's --max-members")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the measured window (useful with --inprocess)")
	fs.IntVar(&cfg.Senders, "senders", 0, "RTP sender goroutines (0: one per 500 callers)")
	fs.IntVar(&cfg.Readers, "readers", 0, "RTP reader goroutines (0: one per 250 callers)")
	fs.DurationVar(&cfg.SetupTimeout, "setup-timeout", 10*time.Second, "give up on a call not answered within this")
	fs.DurationVar(&ready, "ready-timeout", 10*time.Second, "how long to wait for the bridge to answer OPTIONS")
	fs.StringVar(&writeAudio, "write-audio", "", "write the callers' audio (raw G.711 of --codec: tone0..2 and noise) into this directory for sipp, and exit")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&logLevel, "log-level", "warn", "harness log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(stderr, "chorus-load: bad --log-level:", err)
		return 2
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	c, ok := media.CodecByName(codec)
	if !ok {
		fmt.Fprintf(stderr, "chorus-load: unknown codec %q\n", codec)
		return 2
	}
	cfg.Codec = c
	if writeAudio != "" {
		if err := writeAudioFiles(writeAudio, c); err != nil {
			fmt.Fprintln(stderr, "chorus-load:", err)
			return 2
		}
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case inprocess:
		ib, err := startInProcess(cfg.LocalIP, cfg.MaxMembers, cfg.Log)
		if err != nil {
			fmt.Fprintln(stderr, "chorus-load:", err)
			return 2
		}
		defer ib.Close()
		cfg.Target = ib.Target.String()
		cfg.MetricsURL = ""
		cfg.Metrics = ib.Metrics
		cfg.BridgePID = 0
	case bridgeCmd != "":
		fields := strings.Fields(bridgeCmd)
		cmd := exec.Command(fields[0], fields[1:]...)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(stderr, "chorus-load: start bridge:", err)
			return 2
		}
		cfg.BridgePID = cmd.Process.Pid
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "chorus-load:", err)
			return 2
		}
		defer f.Close()
		runtime.SetCPUProfileRate(500)
		cfg.OnWindow = func(start bool) {
			if start {
				_ = pprof.StartCPUProfile(f)
			} else {
				pprof.StopCPUProfile()
			}
		}
	}

	rctx, cancel := context.WithTimeout(ctx, ready)
	err := waitReady(rctx, cfg.Target, cfg.LocalIP)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "chorus-load: bridge not ready:", err)
		return 2
	}

	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "chorus-load:", err)
		return 2
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		res.Print(stdout)
	}
	if !res.Pass {
		return 1
	}
	return 0
}

// writeAudioFiles writes the loops the harness streams as raw G.711 files
// (sipp's rtp_stream format): tone0..tone2 (the first three talkers' tones,
// each a whole number of periods and frames) and noise (1 s at −70 dBFS).
func writeAudioFiles(dir string, codec media.Codec) error {
	if !codec.Stateless() {
		return fmt.Errorf("--write-audio writes G.711 only (sipp's rtp_stream), not %s", codec)
	}
	a, err := newAudio(codec)
	if err != nil {
		return err
	}
	name := strings.ToLower(codec.String())
	for k := range 3 {
		f := filepath.Join(dir, fmt.Sprintf("tone%d_%s.raw", k, name))
		if err := os.WriteFile(f, bytes.Join(a.tones[k], nil), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "noise_"+name+".raw"), bytes.Join(a.noise, nil), 0o644)
}
