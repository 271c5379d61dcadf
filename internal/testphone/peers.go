package testphone

import (
	"net"
	"os/exec"
	"testing"
)

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago,
// for a peer (sipp, baresip) that must be told its ports up front.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// Sipp returns the path of the sipp binary; a missing sipp fails the test
// (CI installs it), it never skips.
func Sipp(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal("sipp not found: install the Debian package sip-tester (.ci/run does)")
	}
	return p
}
