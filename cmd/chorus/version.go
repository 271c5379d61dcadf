package main

import (
	"runtime"
	"runtime/debug"
)

// buildVersion names the build, from what the Go toolchain embedded: the
// module version ("(devel)" for a build from a checkout), with the VCS
// revision when there is one, and the Go version.
func buildVersion() (version, goVersion string) {
	version, goVersion = "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, goVersion
	}
	version = bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && (version == "" || version == "(devel)") {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		version = "devel-" + rev
		if modified == "true" {
			version += "-dirty"
		}
	}
	if version == "" {
		version = "unknown"
	}
	return version, goVersion
}
