package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestVersionOf: the version a build reports, from the most deliberate
// source there is: the linker's stamp, the module version, the VCS
// revision, or "(devel)".
func TestVersionOf(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "3d23c5a0123456789abcdef0123456789abcdef0"
	for _, tc := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped", "v1.4.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "v1.4.0"},
		{"go install of a tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.2"}}, "v1.3.2"},
		{"checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "devel-3d23c5a01234"},
		{"dirty checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "devel-3d23c5a01234-dirty"},
		{"short revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc", "false")}, "devel-abc"},
		{"go run, -buildvcs=false", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"no module version", "", &debug.BuildInfo{}, "(devel)"},
		{"no build info", "", nil, "(devel)"},
	} {
		if got := versionOf(tc.stamped, tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// This test binary is stamped by nobody and built without VCS
	// information: what go run reports.
	if v, gv := buildVersion(); v != "(devel)" && !strings.HasPrefix(v, "devel-") || gv != runtime.Version() {
		t.Errorf("unstamped build: %q %q", v, gv)
	}
}

// TestStampedBuild builds the binary as docs/deploy.md says a release is
// built, with the version given to the linker, and checks that
// chorus -version and the running server's chorus_build_info carry it.
func TestStampedBuild(t *testing.T) {
	const version = "v9.8.7-test"
	bin := filepath.Join(t.TempDir(), "chorus")
	args := []string{"build", "-ldflags", "-X main.stampedVersion=" + version, "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				// As this test was built: the packages are then in the
				// build cache already, and only the link is left to do.
				args = append(args, "-race")
			}
		}
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("chorus -version: %v", err)
	}
	if want := "chorus " + version + " " + runtime.Version() + "\n"; string(out) != want {
		t.Errorf("chorus -version printed %q, want %q", out, want)
	}

	cmd := exec.Command(bin, "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", "34350-34359",
		"--user", "u-alice:alice-token:alice-secret", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("chorus did not stop on SIGINT")
		}
	})
	// The start-up line names the API address and the version.
	var up struct{ Msg, Version, HTTP string }
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &up); err == nil && up.Msg == "chorus listening" {
			break
		}
	}
	go func() {
		for sc.Scan() { // keep the pipe drained
		}
	}()
	if up.HTTP == "" {
		t.Fatal("no start-up line")
	}
	if up.Version != version {
		t.Errorf("start-up line: version %q, want %q", up.Version, version)
	}
	m, _ := scrape(t, up.HTTP)
	series := `chorus_build_info{goversion="` + runtime.Version() + `",version="` + version + `"}`
	if m[series] != 1 {
		t.Errorf("/metrics has no %s 1", series)
	}
}
