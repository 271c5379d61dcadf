package sip

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/testphone"
)

// authBridge runs a bridge that trusts only 127.0.0.1, so that sipp and
// test clients on 127.0.0.2 and above are untrusted sources.
func authBridge(t *testing.T, rtpLow, rtpHigh int, mod ...func(*AuthConfig)) *testBridge {
	t.Helper()
	return startBridge(t, bridge.Config{AutoCreate: true}, rtpLow, rtpHigh, func(c *Config) {
		c.Auth = AuthConfig{
			Trusted:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Accounts: []Account{{Name: "alice", Password: "s3cret:pw", UserID: "u-alice"}, {Name: "x", Password: "bobpass", UserID: "bob"}},
		}
		for _, m := range mod {
			m(&c.Auth)
		}
	})
}

// runSipp runs one call of scenario from source address ip against the
// bridge and returns sipp's error and output.
func runSipp(t *testing.T, tb *testBridge, scenario, ip, service string, args ...string) (error, string) {
	t.Helper()
	sipp := testphone.Sipp(t)
	errFile := t.TempDir() + "/err.log"
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// sipp's digest uri is remote_ip:remote_port unless told: make it the
	// Request-URI, as RFC 2617 §3.2.2.5 wants and phones send.
	a := []string{tb.udp.String(), "-auth_uri", service + "@" + tb.udp.String(), "-sf", "testdata/sipp/" + scenario, "-s", service,
		"-i", ip, "-p", strconv.Itoa(testphone.FreeUDPPort(t)), "-mi", ip, "-mp", strconv.Itoa(testphone.FreeUDPPort(t)),
		"-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_err", "-error_file", errFile}
	cmd := exec.CommandContext(ctx, sipp, append(a, args...)...)
	cmd.Dir = ".." // scenarios live at the repository root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	errs, _ := os.ReadFile(errFile)
	return err, string(tail(out.Bytes(), 1500)) + "\nsipp errors:\n" + string(tail(errs, 1500))
}

// md5First puts the MD5 challenge first: sipp 3.6 answers the topmost
// challenge whatever its algorithm (RFC 8760 §2.4 says to skip the
// unsupported), so it can only answer SHA-256-first challenges by failing.
func md5First(c *AuthConfig) { c.Algorithms = []string{"MD5", "SHA-256"} }

// TestSippDigestJoins: sipp on an untrusted address answers the MD5
// challenge for account x (API user bob) and joins; the room it creates
// belongs to bob.
func TestSippDigestJoins(t *testing.T) {
	tb := authBridge(t, 40000, 40199, md5First)
	done := make(chan struct{})
	var err error
	var out string
	go func() {
		defer close(done)
		err, out = runSipp(t, tb, "uac_auth.xml", "127.0.0.2", "2000", "-au", "x", "-ap", "bobpass", "-d", "4000")
	}()
	joined := false
	for !joined {
		select {
		case <-done:
			t.Fatalf("sipp ended before joining: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		for _, c := range tb.b.Conferences("bob") {
			joined = joined || c.From() == "2000" && c.Info().ActiveMembers == 1
		}
	}
	<-done
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, out)
	}
	if got := tb.b.Conferences("u-test"); len(got) != 0 {
		t.Errorf("the default user owns %d conferences, want none", len(got))
	}
	st := tb.srv.AuthStats()
	if st.Accepted.Load() != 1 || st.Challenges.Load() != 1 || st.Failures.Load() != 0 {
		t.Errorf("stats: accepted %d challenges %d failures %d, want 1 1 0", st.Accepted.Load(), st.Challenges.Load(), st.Failures.Load())
	}
}

// TestSippWrongPasswordAndNoAccount: from an untrusted address, a wrong
// password gets 401 then 403, and so does a caller with no account at all
// (sipp answers the challenge as its -s user with the password
// "password"); neither joins or creates a room.
func TestSippWrongPasswordAndNoAccount(t *testing.T) {
	tb := authBridge(t, 40200, 40299, md5First)
	if err, out := runSipp(t, tb, "uac_auth_refused.xml", "127.0.0.2", "2000", "-au", "alice", "-ap", "wrong"); err != nil {
		t.Fatalf("wrong password: %v\n%s", err, out)
	}
	if err, out := runSipp(t, tb, "uac_auth_refused.xml", "127.0.0.2", "2000"); err != nil {
		t.Fatalf("no account: %v\n%s", err, out)
	}
	for _, u := range []string{"u-test", "u-alice", "bob"} {
		if n := len(tb.b.Conferences(u)); n != 0 {
			t.Errorf("user %s owns %d conferences, want none", u, n)
		}
	}
	st := tb.srv.AuthStats()
	if st.Challenges.Load() != 2 || st.Failures.Load() != 2 || st.Accepted.Load() != 0 {
		t.Errorf("stats: challenges %d failures %d accepted %d, want 2 2 0", st.Challenges.Load(), st.Failures.Load(), st.Accepted.Load())
	}
}

// TestSippBlockedAfterFailures: with a limit of 3 failures a minute, the
// fourth INVITE from that address gets 403 without a challenge, while
// another untrusted address still authenticates and joins.
func TestSippBlockedAfterFailures(t *testing.T) {
	tb := authBridge(t, 40300, 40399, md5First, func(c *AuthConfig) { c.MaxFailures = 3 })
	for i := range 3 {
		if err, out := runSipp(t, tb, "uac_auth_refused.xml", "127.0.0.2", "2000", "-au", "alice", "-ap", "wrong"); err != nil {
			t.Fatalf("failure %d: %v\n%s", i+1, err, out)
		}
	}
	if err, out := runSipp(t, tb, "uac_refused.xml", "127.0.0.2", "2000"); err != nil {
		t.Fatalf("the 4th INVITE was not refused without a challenge: %v\n%s", err, out)
	}
	if err, out := runSipp(t, tb, "uac_auth.xml", "127.0.0.3", "2000", "-au", "alice", "-ap", "s3cret:pw", "-d", "100"); err != nil {
		t.Fatalf("another address could not authenticate: %v\n%s", err, out)
	}
	st := tb.srv.AuthStats()
	if st.Blocks.Load() != 1 || st.Refused.Load() != 1 || st.Failures.Load() != 3 || st.Accepted.Load() != 1 {
		t.Errorf("stats: blocks %d refused %d failures %d accepted %d, want 1 1 3 1",
			st.Blocks.Load(), st.Refused.Load(), st.Failures.Load(), st.Accepted.Load())
	}
	if confs := tb.b.Conferences("u-alice"); len(confs) != 1 || confs[0].From() != "2000" {
		t.Errorf("alice's conferences: %v, want her room 2000", confs)
	}
}

// TestTrustedSourceJoinsWithoutCredentials: a phone and sipp on the
// trusted 127.0.0.1 are not challenged and their room belongs to the
// default user; the same sipp scenario from the untrusted 127.0.0.2 is
// challenged (and, having no [authentication], fails).
func TestTrustedSourceJoinsWithoutCredentials(t *testing.T) {
	tb := authBridge(t, 40400, 40499)
	tb.dial(t, testphone.Options{User: "4000"})
	conf := waitConference(t, tb, "4000")
	waitFor(t, "trusted phone joined", func() bool { return conf.Info().ActiveMembers == 1 })

	done := make(chan struct{})
	var err error
	var out string
	go func() {
		defer close(done)
		err, out = runSipp(t, tb, "uac_load.xml", "127.0.0.1", "4000", "-d", "3000")
	}()
	for joined := false; !joined; {
		select {
		case <-done:
			t.Fatalf("sipp ended before joining: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		joined = conf.Info().ActiveMembers == 2
	}
	<-done
	if err != nil {
		t.Fatalf("trusted sipp: %v\n%s", err, out)
	}
	if err, out := runSipp(t, tb, "uac_load.xml", "127.0.0.2", "4000", "-d", "100"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("untrusted sipp without credentials: %v, want a failure on 401\n%s", err, out)
	}
	st := tb.srv.AuthStats()
	if st.Trusted.Load() != 2 || st.Challenges.Load() != 1 || st.Accepted.Load() != 0 {
		t.Errorf("stats: trusted %d challenges %d accepted %d, want 2 1 0", st.Trusted.Load(), st.Challenges.Load(), st.Accepted.Load())
	}
}
