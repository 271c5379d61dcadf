package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigRTPHoldTimeout: the hold timeout has a default, a config-file
// field, an environment twin and a flag (later ones winning), is checked,
// and -h explains it.
func TestConfigRTPHoldTimeout(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, &bytes.Buffer{})
	if err != nil || cfg.RTPHoldTimeout != 10*time.Minute {
		t.Fatalf("default %v, %v", cfg.RTPHoldTimeout, err)
	}
	file := filepath.Join(t.TempDir(), "chorus.json")
	if err := os.WriteFile(file, []byte(`{"rtpHoldTimeout": 120000000000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		args []string
		env  string
		want time.Duration
	}{
		{[]string{"--config", file}, "", 2 * time.Minute},
		{[]string{"--config", file}, "3m", 3 * time.Minute},
		{[]string{"--config", file, "--rtp-hold-timeout", "90s"}, "3m", 90 * time.Second},
	} {
		env["CHORUS_RTP_HOLD_TIMEOUT"] = tc.env
		cfg, err := loadConfig(tc.args, getenv, &bytes.Buffer{})
		if err != nil || cfg.RTPHoldTimeout != tc.want {
			t.Errorf("%v with env %q: %v, %v; want %v", tc.args, tc.env, cfg.RTPHoldTimeout, err, tc.want)
		}
	}
	for _, bad := range []string{"0s", "500ms", "soon"} {
		_, err := loadConfig([]string{"--rtp-hold-timeout", bad}, noEnv, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "rtp-hold-timeout") {
			t.Errorf("--rtp-hold-timeout %s: %v", bad, err)
		}
	}
	var help bytes.Buffer
	if _, err := loadConfig([]string{"-h"}, noEnv, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if h := help.String(); !strings.Contains(h, "-rtp-hold-timeout") || !strings.Contains(h, "10m0s") || !strings.Contains(h, "CHORUS_RTP_HOLD_TIMEOUT") {
		t.Errorf("-h does not explain the hold timeout:\n%s", h)
	}
}
