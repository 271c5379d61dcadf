package main

import (
	"runtime"
	"runtime/debug"
)

// stampedVersion is the release's name, set when the binary is linked:
//
//	go build -ldflags "-X main.stampedVersion=$(git describe --tags --always --dirty)" ./cmd/chorus
//
// It is the one package-level variable the binary has, written only by
// the linker. Empty (go run, a plain go build) falls back to what the Go
// toolchain embedded (buildVersion).
var stampedVersion string

// buildVersion names the build (chorus -version, chorus_build_info, the
// start-up line) and its Go version.
func buildVersion() (version, goVersion string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionOf(stampedVersion, bi), runtime.Version()
}

// versionOf chooses the version: the stamped one; else the module's
// version (a go install of a tagged release); else, in a build from a
// checkout, "devel-" and the VCS revision (with "-dirty" for uncommitted
// changes), which go build embeds unless -buildvcs=false; else "(devel)",
// as for go run, which embeds no VCS information.
func versionOf(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi == nil {
		return "(devel)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "(devel)"
	}
	v := "devel-" + rev[:min(len(rev), 12)]
	if modified == "true" {
		v += "-dirty"
	}
	return v
}
