package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/testphone"
	"chorus/media"
	"chorus/sip"
)

func TestMain(m *testing.M) {
	if args, ok := childArgs(); ok {
		// Re-executed as the binary itself (store_e2e_test.go): main,
		// signals, exit status and all.
		os.Args = append([]string{"chorus"}, args...)
		main()
		os.Exit(0)
	}
	// As main does: sipgo's process-wide logger, set once.
	sip.SetLibraryLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func noEnv(string) string { return "" }

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIPAddr != ":5060" || cfg.HTTPAddr != "127.0.0.1:8080" || cfg.rtpLow != 10000 || cfg.rtpHigh != 20000 {
		t.Errorf("defaults %+v", cfg)
	}
	if !cfg.generatedUser || len(cfg.Users) != 1 {
		t.Errorf("no development user generated: %+v", cfg.Users)
	}
	if cfg.mixerPriority != bridge.PriorityRealtime {
		t.Errorf("mixer priority %v, want realtime", cfg.mixerPriority)
	}
	if !reflect.DeepEqual(cfg.codecs, []media.Codec{media.Opus, media.G722, media.PCMU, media.PCMA}) || cfg.MaxMixRate != 48000 || cfg.OpusBitrate != 32000 {
		t.Errorf("codec defaults %v, max mix rate %d, opus bitrate %d", cfg.codecs, cfg.MaxMixRate, cfg.OpusBitrate)
	}
	cfg, err = loadConfig([]string{"--codecs", "g722,pcma", "--max-mix-rate", "16000"}, noEnv, io.Discard)
	if err != nil || !reflect.DeepEqual(cfg.codecs, []media.Codec{media.G722, media.PCMA}) || cfg.MaxMixRate != 16000 {
		t.Errorf("--codecs g722,pcma --max-mix-rate 16000: %v %d %v", cfg.codecs, cfg.MaxMixRate, err)
	}
	cfg, err = loadConfig(nil, func(k string) string { return map[string]string{"CHORUS_MIXER_PRIORITY": "normal"}[k] }, io.Discard)
	if err != nil || cfg.mixerPriority != bridge.PriorityNormal {
		t.Errorf("CHORUS_MIXER_PRIORITY=normal: %v, %v", cfg.mixerPriority, err)
	}
}

// TestConfigPrecedence: file, then environment, then flags.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "chorus.json")
	if err := os.WriteFile(file, []byte(`{"sipAddr":"127.0.0.1:5070","httpAddr":"127.0.0.1:9000","maxMembers":5,"users":[{"id":"u-file","token":"t","secret":"s"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CHORUS_HTTP_ADDR": "127.0.0.1:9001", "CHORUS_MAX_MEMBERS": "7", "CHORUS_PUBLIC_IP": "192.0.2.7"}
	cfg, err := loadConfig([]string{"--config", file, "--max-members", "9"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIPAddr != "127.0.0.1:5070" || cfg.HTTPAddr != "127.0.0.1:9001" || cfg.MaxMembers != 9 || cfg.publicIP.String() != "192.0.2.7" {
		t.Errorf("precedence wrong: %+v", cfg)
	}
	if len(cfg.Users) != 1 || cfg.Users[0].ID != "u-file" || cfg.generatedUser {
		t.Errorf("users from file lost: %+v", cfg.Users)
	}
	cfg, err = loadConfig([]string{"--user", "u1:t1:s1", "--user", "u2:t2:s2"}, noEnv, io.Discard)
	if err != nil || len(cfg.Users) != 2 || cfg.Users[1].Secret != "s2" {
		t.Errorf("repeated --user: %+v %v", cfg.Users, err)
	}
}

// TestConfigErrors: bad input gets a clear message.
func TestConfigErrors(t *testing.T) {
	cases := map[string][]string{
		"rtp-ports":               {"--rtp-ports", "20000-10000"},
		"LOW-HIGH":                {"--rtp-ports", "abc"},
		"ID:TOKEN":                {"--user", "onlyid"},
		"log-level":               {"--log-level", "loud"},
		"public-ip":               {"--public-ip", "not-an-ip"},
		"sip-addr":                {"--sip-addr", "nope"},
		"max-members":             {"--max-members", "0"},
		"realtime":                {"--mixer-priority", "fast"},
		"not defined":             {"--no-such-flag"},
		"unexpected":              {"extra"},
		"unknown codec \"speex\"": {"--codecs", "opus,speex"},
		"PCMU listed twice":       {"--codecs", "PCMU,pcmu"},
		"no codec listed":         {"--codecs", ","},
		"max-mix-rate: want 8000, 16000 or 48000": {"--max-mix-rate", "44100"},
		"opus-bitrate: want 6000-510000":          {"--opus-bitrate", "1000"},
	}
	for want, args := range cases {
		var stderr bytes.Buffer
		_, err := loadConfig(args, noEnv, &stderr)
		if err == nil {
			t.Errorf("%v accepted", args)
			continue
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, want) {
			t.Errorf("%v: message %q does not mention %q", args, msg, want)
		}
	}
}

// TestPortInUse: a taken SIP port is a clear error, not a hang.
func TestPortInUse(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = run(context.Background(), []string{"--data-dir", "", "--sip-addr", taken.LocalAddr().String(), "--http-addr", "127.0.0.1:0",
		"--rtp-ports", "29500-29599", "--user", "u1:t1:s1"}, noEnv, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run on a taken port: %v", err)
	}
}

// TestRunDrainAndStop starts the whole binary in-process: a call works,
// /metrics answers, SIGTERM drains (new calls 503, the call goes on), a
// second SIGTERM hangs up and returns.
func TestRunDrainAndStop(t *testing.T) {
	dataDir := t.TempDir() // with the store: a clean stop leaves nothing live
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	var stdout, stderr syncBuffer
	go func() {
		done <- run(context.Background(), []string{"--data-dir", dataDir, "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--rtp-ports", "29000-29499", "--user", "u1:t1:s1", "--log-level", "debug"}, noEnv, &stdout, &stderr,
			func(r ready) { readyCh <- r })
	}()
	var r ready
	select {
	case r = <-readyCh:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	phone, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()

	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", r.HTTP))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "chorus_mixer_ticks_total") || !strings.Contains(string(body), "chorus_calls_active 1") {
		t.Errorf("metrics:\n%s", body)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "draining") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var se *testphone.StatusError
	if _, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000"}); !errors.As(err, &se) || se.Code != 503 {
		t.Errorf("dial while draining: %v, want 503", err)
	}
	select {
	case <-phone.Ended():
		t.Fatal("draining hung up a call in progress")
	case <-time.After(300 * time.Millisecond):
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-phone.Ended():
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not hang the call up")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the second signal")
	}
	if !strings.Contains(stdout.String(), "sip:1000@") {
		t.Errorf("stdout does not say how to call in:\n%s", stdout.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
