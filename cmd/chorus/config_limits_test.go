package main

import (
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"chorus/bridge"
)

// TestConfigSIPLimits: the per-source limits' defaults, flags and errors.
func TestConfigSIPLimits(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIPInviteRate != 400 || cfg.SIPInviteBurst != 400 || cfg.SIPMaxUnconfirmed != 100 || len(cfg.sipLimitExempt) != 0 {
		t.Errorf("defaults: rate %v burst %d unconfirmed %d exempt %v", cfg.SIPInviteRate, cfg.SIPInviteBurst, cfg.SIPMaxUnconfirmed, cfg.sipLimitExempt)
	}
	env := map[string]string{"CHORUS_SIP_MAX_UNCONFIRMED": "7"}
	cfg, err = loadConfig([]string{"--sip-invite-rate", "2.5", "--sip-invite-burst", "3", "--sip-limit-exempt", "10.1.2.0/24, 192.0.2.9"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("192.0.2.9/32")}
	if cfg.SIPInviteRate != 2.5 || cfg.SIPInviteBurst != 3 || cfg.SIPMaxUnconfirmed != 7 || !slices.Equal(cfg.sipLimitExempt, want) {
		t.Errorf("flags: rate %v burst %d unconfirmed %d exempt %v", cfg.SIPInviteRate, cfg.SIPInviteBurst, cfg.SIPMaxUnconfirmed, cfg.sipLimitExempt)
	}
	for want, args := range map[string][]string{
		"sip-limit-exempt": {"--sip-limit-exempt", "10.0.0.0/33"},
		"negative":         {"--sip-max-unconfirmed", "-1"},
	} {
		if _, err := loadConfig(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want an error mentioning %q", args, err, want)
		}
	}
}

// TestRecordingMinFreeOn: the free-disk guard asks 100 MB of a large
// filesystem and a twentieth of a small one, nothing with recording off.
func TestRecordingMinFreeOn(t *testing.T) {
	if got := recordingMinFreeOn(""); got != 0 {
		t.Errorf("recording off: %d", got)
	}
	dir := t.TempDir()
	_, size, ok := bridge.DiskSpace(dir)
	if !ok {
		t.Fatal("statfs of a temporary directory failed")
	}
	want := int64(recordingMinFree)
	if size/20 < want {
		want = size / 20
	}
	if got := recordingMinFreeOn(filepath.Join(dir, "not", "yet")); got != want {
		t.Errorf("on a %d-byte filesystem: %d, want %d", size, got, want)
	}
}
