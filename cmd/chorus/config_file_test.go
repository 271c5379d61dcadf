package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
)

// flagNames lists the flags as loadConfig's FlagSet defines them, read
// from its own -h listing, so that a new flag is covered without editing
// the test.
func flagNames(t *testing.T) []string {
	t.Helper()
	var usage bytes.Buffer
	if _, err := loadConfig([]string{"-h"}, noEnv, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	var names []string
	sc := bufio.NewScanner(&usage)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "  -"); ok {
			name, _, _ := strings.Cut(rest, " ")
			names = append(names, name)
		}
	}
	if len(names) < 30 {
		t.Fatalf("only %d flags read from -h:\n%s", len(names), usage.String())
	}
	return names
}

// jsonKey is a flag's config-file field: sip-tcp-idle-timeout is
// sipTcpIdleTimeout.
func jsonKey(flagName string) string {
	parts := strings.Split(flagName, "-")
	for i := 1; i < len(parts); i++ {
		r := []rune(parts[i])
		r[0] = unicode.ToUpper(r[0])
		parts[i] = string(r)
	}
	return strings.Join(parts, "")
}

// TestConfigExampleCoversEveryFlag: docs/config.example.json loads, and
// every flag (but --config and --version) has its field there: the
// repeatable ones (--user, --sip-account) under their plural.
func TestConfigExampleCoversEveryFlag(t *testing.T) {
	const example = "../../docs/config.example.json"
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, name := range flagNames(t) {
		if name == "config" || name == "version" {
			continue
		}
		key := jsonKey(name)
		if _, ok := fields[key]; !ok {
			if _, ok := fields[key+"s"]; !ok {
				t.Errorf("--%s has no field %q in %s", name, key, example)
			}
		}
	}
	cfg, err := loadConfig([]string{"--config", example}, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if cfg.RTPHoldTimeout != 10*time.Minute || cfg.SIPAuthBlock != time.Minute || cfg.LogFormat != "json" {
		t.Errorf("example read as %+v", cfg)
	}
}

// TestConfigDurationStrings: durations in the file may be "30s" strings or,
// as before, integer nanoseconds; a bad one names its field.
func TestConfigDurationStrings(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		f := filepath.Join(dir, "c.json")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cfg, err := loadConfig([]string{"--config", write(`{"rtpTimeout":"45s","sipAuthBlock":"2m","retention":7200000000000,"drainPeriod":"1m30s"}`)}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RTPTimeout != 45*time.Second || cfg.SIPAuthBlock != 2*time.Minute || cfg.Retention != 2*time.Hour || cfg.DrainPeriod != 90*time.Second {
		t.Errorf("durations read as rtp %v, block %v, retention %v, drain %v", cfg.RTPTimeout, cfg.SIPAuthBlock, cfg.Retention, cfg.DrainPeriod)
	}
	for body, want := range map[string]string{
		`{"rtpTimeout":"soon"}`: "rtpTimeout",
		`{"rtpTimeout":true}`:   "rtpTimeout",
		`{"noSuchField":1}`:     "noSuchField",
		`[1,2]`:                 "JSON object",
	} {
		if _, err := loadConfig([]string{"--config", write(body)}, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %q", body, err, want)
		}
	}
}

// TestVersionFlag: chorus -version prints its version and exits cleanly.
func TestVersionFlag(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "chorus ") || !strings.Contains(stdout.String(), "go1.") {
		t.Errorf("-version printed %q", stdout.String())
	}
}

// FuzzDecodeConfigFile: any config file gets a config or an error, never a
// panic; a file that decodes decodes the same way again.
func FuzzDecodeConfigFile(f *testing.F) {
	for _, seed := range []string{`{"rtpTimeout":"30s"}`, `{"rtpTimeout":30000000000}`, `{"sipAuthBlock":"1m","users":[]}`,
		`{"rtpTimeout":"-5h"}`, `{"retention":"9999999999h"}`, `[]`, `null`, `{"rtpTimeout":null}`, `{"rtpTimeout":"\u0033s"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c1, c2 Config
		if err := decodeConfigFile(b, &c1); err != nil {
			return
		}
		if err := decodeConfigFile(b, &c2); err != nil {
			t.Fatalf("decoded once, then: %v", err)
		}
	})
}
