package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipgosip "github.com/emiago/sipgo/sip"

	"chorus/sip"
)

// TestSIPAuthConfig: who may call in is set by flag, environment twin or
// config file, later sources winning; the defaults trust loopback and the
// private ranges and challenge SHA-256 before MD5.
func TestSIPAuthConfig(t *testing.T) {
	cfg, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ac := cfg.authConfig()
	if ac.Trusted != nil || len(ac.Accounts) != 0 || ac.MaxFailures != 10 || ac.Block != time.Minute ||
		!slices.Equal(ac.Algorithms, []string{"SHA-256", "MD5"}) || ac.Realm != "chorus" {
		t.Errorf("defaults %+v; want the sip package's default trusted networks, no accounts, 10 failures, 1m, SHA-256,MD5", ac)
	}

	cfg, err = loadConfig([]string{"--user", "bob:t:s", "--sip-trusted", "192.0.2.0/24", "--sip-trusted", "2001:db8::1",
		"--sip-account", "x:pa:ss:bob", "--sip-account", "y:pw:bob", "--sip-auth-failures", "3", "--sip-auth-block", "5m",
		"--sip-digest-algorithms", "MD5", "--sip-realm", "pbx.example"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ac = cfg.authConfig()
	wantTrusted := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")}
	if !slices.Equal(ac.Trusted, wantTrusted) || len(ac.Accounts) != 2 || ac.Accounts[0] != (sip.Account{Name: "x", Password: "pa:ss", UserID: "bob"}) ||
		ac.MaxFailures != 3 || ac.Block != 5*time.Minute || !slices.Equal(ac.Algorithms, []string{"MD5"}) || ac.Realm != "pbx.example" {
		t.Errorf("flags: %+v", ac)
	}

	env := map[string]string{"CHORUS_USER": "bob:t:s", "CHORUS_SIP_TRUSTED": "none", "CHORUS_SIP_ACCOUNT": "x:pw:bob, y:pw2:bob",
		"CHORUS_SIP_AUTH_FAILURES": "4"}
	cfg, err = loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ac = cfg.authConfig(); ac.Trusted == nil || len(ac.Trusted) != 0 || len(ac.Accounts) != 2 || ac.Accounts[1].Password != "pw2" || ac.MaxFailures != 4 {
		t.Errorf("env: %+v; want no trusted network (none), two accounts, 4 failures", ac)
	}

	file := filepath.Join(t.TempDir(), "chorus.json")
	if err := os.WriteFile(file, []byte(`{"users":[{"id":"bob","token":"t","secret":"s"}],"sipTrusted":["10.9.0.0/16"],
		"sipAccounts":[{"name":"x","password":"pw","userId":"bob"}],"sipAuthFailures":6}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig([]string{"--config", file, "--sip-auth-failures", "7"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ac = cfg.authConfig(); !slices.Equal(ac.Trusted, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}) ||
		len(ac.Accounts) != 1 || ac.Accounts[0].UserID != "bob" || ac.MaxFailures != 7 {
		t.Errorf("file then flag: %+v", ac)
	}
}

// TestSIPAuthConfigErrors: bad accounts and networks get a clear message,
// which never shows the password.
func TestSIPAuthConfigErrors(t *testing.T) {
	cases := map[string][]string{
		"NAME:PASSWORD:USERID":  {"--sip-account", "x:hunter2"},
		"not an API user":       {"--user", "bob:t:s", "--sip-account", "x:hunter2:carol"},
		"configured twice":      {"--user", "bob:t:s", "--sip-account", "x:hunter2:bob", "--sip-account", "x:hunter2:bob"},
		"CIDR":                  {"--sip-trusted", "10.0.0.0/33"},
		"none cannot":           {"--sip-trusted", "none", "--sip-trusted", "10.0.0.0/8"},
		"sip-auth-failures":     {"--sip-auth-failures", "0"},
		"sip-auth-block":        {"--sip-auth-block", "0s"},
		"sip-digest-algorithms": {"--sip-digest-algorithms", "SHA-512"},
		"sip-realm":             {"--sip-realm", `a"b`},
	}
	for want, args := range cases {
		var stderr bytes.Buffer
		_, err := loadConfig(args, noEnv, &stderr)
		if err == nil {
			t.Errorf("%v accepted", args)
			continue
		}
		msg := err.Error() + stderr.String()
		if !strings.Contains(msg, want) {
			t.Errorf("%v: message %q does not mention %q", args, msg, want)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%v: message %q shows the password", args, msg)
		}
	}
}

// TestSIPDigestCallEndToEnd: the binary with --sip-trusted 127.0.0.1/32 and
// an account for API user bob: sipgo's own UAC on 127.0.0.2 answers the
// SHA-256 challenge (the first offered), joins, and bob's API lists the
// room it created; /metrics counts the challenge and the admission.
func TestSIPDigestCallEndToEnd(t *testing.T) {
	r := startChorusArgs(t, "41000-41099", "--user", "u-bob:bob-token:bob-secret",
		"--sip-trusted", "127.0.0.1/32", "--sip-account", "x:pass:word:u-bob")
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	// Listen on 127.0.0.2 and send every request from that socket, as
	// internal/testphone does on 127.0.0.1.
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeUDP(pc) }()
	laddr := pc.LocalAddr().String()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if c, err := ua.TransportLayer().GetConnection("udp", laddr); err == nil && c != nil {
			c.TryClose()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the UAC's SIP listener did not start")
		}
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.2"), sipgo.WithClientConnectionAddr(laddr))
	if err != nil {
		t.Fatal(err)
	}
	dua := sipgo.DialogUA{Client: cl, ContactHDR: sipgosip.ContactHeader{Address: sipgosip.Uri{Scheme: "sip", User: "t", Host: "127.0.0.2", Port: port}}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	target := sipgosip.Uri{Scheme: "sip", User: "7000", Host: "127.0.0.1", Port: int(r.SIPUDP.Port())}
	sess, err := dua.Invite(ctx, target, []byte(sdp), sipgosip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "x", Password: "pass:word"}); err != nil {
		t.Fatalf("authenticated call: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if auth := sess.InviteRequest.GetHeader("Authorization"); auth == nil || !strings.Contains(auth.Value(), "algorithm=SHA-256") {
		t.Errorf("the UAC answered with %v, want the SHA-256 challenge", auth)
	}
	bob := client{t: t, base: "http://" + r.HTTP.String(), token: "bob-token", secret: "bob-secret"}
	res, body := bob.do("GET", "/v1/users/u-bob/conferences", nil)
	var confs []map[string]any
	if res.StatusCode != 200 || json.Unmarshal(body, &confs) != nil || len(confs) != 1 || confs[0]["from"] != "7000" {
		t.Errorf("bob's conferences: %d %s, want the room 7000 his account's call created", res.StatusCode, body)
	}
	alice := client{t: t, base: "http://" + r.HTTP.String(), token: "alice-token", secret: "alice-secret"}
	if res, body := alice.do("GET", "/v1/users/u-alice/conferences", nil); res.StatusCode != 200 || strings.Contains(string(body), "7000") {
		t.Errorf("alice (the default user) sees %s", body)
	}
	if err := sess.Bye(ctx); err != nil {
		t.Errorf("BYE: %v", err)
	}
	mres, err := http.Get("http://" + r.HTTP.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	for _, want := range []string{"chorus_sip_auth_challenges_total 1\n", "chorus_sip_auth_accepted_total 1\n", "chorus_sip_auth_failures_total 0\n"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
