package main

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTargetPolicyConfig: the outbound policy is safe by default and is
// set by flag, environment twin or config file, later sources winning.
func TestTargetPolicyConfig(t *testing.T) {
	check := func(what string, cfg Config, private bool, allow ...string) {
		t.Helper()
		var want []netip.Prefix
		for _, a := range allow {
			want = append(want, netip.MustParsePrefix(a))
		}
		if cfg.AllowPrivateTargets != private || !slices.Equal(cfg.targetAllow, want) {
			t.Errorf("%s: allow-private-targets %v, target-allow %v; want %v, %v", what, cfg.AllowPrivateTargets, cfg.targetAllow, private, want)
		}
	}
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	check("default", cfg, false)
	if err := cfg.targetPolicy().Check(netip.MustParseAddrPort("127.0.0.1:80")); err == nil {
		t.Error("the default policy allows loopback")
	}
	// The RTP range is the bridge's own, even with loopback allowed.
	cfg, _ = loadConfig([]string{"--allow-private-targets"}, noEnv, io.Discard)
	if err := cfg.targetPolicy().Check(netip.MustParseAddrPort("127.0.0.1:10000")); err == nil {
		t.Error("the policy allows the bridge's own RTP port")
	}
	if err := cfg.targetPolicy().Check(netip.MustParseAddrPort("127.0.0.1:9999")); err != nil {
		t.Errorf("--allow-private-targets: %v", err)
	}

	cfg, err = loadConfig([]string{"--allow-private-targets", "--target-allow", "127.0.0.1/32", "--target-allow", "fd00::1"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	check("flags", cfg, true, "127.0.0.1/32", "fd00::1/128")

	env := map[string]string{"CHORUS_ALLOW_PRIVATE_TARGETS": "true", "CHORUS_TARGET_ALLOW": "10.1.0.0/16, 192.168.7.7"}
	cfg, err = loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	check("env", cfg, true, "10.1.0.0/16", "192.168.7.7/32")

	file := filepath.Join(t.TempDir(), "chorus.json")
	if err := os.WriteFile(file, []byte(`{"allowPrivateTargets":true,"targetAllow":["10.2.0.0/16"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig([]string{"--config", file}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	check("file", cfg, true, "10.2.0.0/16")
	cfg, err = loadConfig([]string{"--config", file, "--allow-private-targets=false", "--target-allow", "10.3.0.0/16"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	check("flags over env over file", cfg, false, "10.3.0.0/16")

	for _, args := range [][]string{{"--target-allow", "not-a-cidr"}, {"--target-allow", "10.0.0.0/33"}} {
		var stderr bytes.Buffer
		if _, err := loadConfig(args, noEnv, &stderr); err == nil || !strings.Contains(err.Error()+stderr.String(), "CIDR") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := loadConfig(nil, func(k string) string { return map[string]string{"CHORUS_TARGET_ALLOW": "x"}[k] }, io.Discard); err == nil {
		t.Error("a bad CHORUS_TARGET_ALLOW was accepted")
	}
	if err := os.WriteFile(file, []byte(`{"targetAllow":["nope"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig([]string{"--config", file}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), "target-allow") {
		t.Errorf("bad targetAllow in the file: %v", err)
	}
}
