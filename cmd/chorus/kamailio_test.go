package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// startNode runs one Chorus node in-process and returns it with a stop
// function (also called at cleanup).
func startNode(t *testing.T, rtp string) (ready, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--data-dir", "", "--sip-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rtp-ports", rtp,
			"--user", "u1:t1:s1", "--sip-limit-exempt", "127.0.0.1"}, noEnv, io.Discard, io.Discard,
			func(r ready) { readyCh <- r })
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("chorus node did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case r := <-readyCh:
		return r, stop
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("chorus node not ready")
	}
	return ready{}, stop
}

// startKamailio runs kamailio in the foreground with deploy/kamailio's
// configuration, on a UDP port of loopback, dispatching to nodes. It
// returns the SIP address once kamailio answers an OPTIONS.
func startKamailio(t *testing.T, nodes ...ready) string {
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		t.Fatal("kamailio not found: install Debian's kamailio package")
	}
	dir := t.TempDir()
	var list strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&list, "1 sip:%s 0 0\n", n.SIPUDP)
	}
	listFile := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testphone.FreeUDPPort(t))
	cfg, err := filepath.Abs("../../deploy/kamailio/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cmd := exec.Command(bin, "-f", cfg, "-DD", "-E", "-Y", dir, "-w", dir, "-n", "2",
		"-A", "LISTEN_UDP=udp:"+addr, "-A", "NO_TCP", "-A", "PING_INTERVAL=1", "-A", "FR_TIMER=2000",
		"-A", fmt.Sprintf("DISPATCHER_LIST=%q", listFile))
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("kamailio log:\n%s", log.String())
		}
	})
	// Ready when it answers OPTIONS.
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("kamailio exited:\n%s", log.String())
		default:
		}
		local := conn.LocalAddr().String()
		opt := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:probe@%s>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: probe-%d@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			addr, local, time.Now().UnixNano(), local, addr, time.Now().UnixNano())
		_, _ = conn.Write([]byte(opt))
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio does not answer OPTIONS at %s:\n%s", addr, log.String())
		}
	}
}

// liveRooms lists a node's live rooms: number -> active members.
func liveRooms(t *testing.T, n ready) map[string]int {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/users/u1/conferences", n.HTTP), nil)
	req.SetBasicAuth("t1", "s1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var confs []struct {
		ID, State, From string
		ActiveMembers   int
	}
	if err := json.NewDecoder(resp.Body).Decode(&confs); err != nil {
		t.Fatal(err)
	}
	rooms := map[string]int{}
	for _, c := range confs {
		if c.State != "completed" {
			rooms[c.From] += c.ActiveMembers
		}
	}
	return rooms
}

// endRoom completes a node's live room of number (the bridge hangs up its
// members: BYE from Chorus, through kamailio).
func endRoom(t *testing.T, n ready, number string) {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/users/u1/conferences", n.HTTP), nil)
	req.SetBasicAuth("t1", "s1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var confs []struct{ ID, State, From string }
	err = json.NewDecoder(resp.Body).Decode(&confs)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range confs {
		if c.From == number && c.State != "completed" {
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/v1/users/u1/conferences/%s", n.HTTP, c.ID),
				strings.NewReader(`{"state":"completed"}`))
			req.SetBasicAuth("t1", "s1")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("end room %s: %s", number, resp.Status)
			}
			return
		}
	}
	t.Fatalf("room %s not live on %s", number, n.HTTP)
}

// TestKamailioFleet: kamailio with deploy/kamailio's configuration in
// front of two Chorus nodes on loopback. 20 callers dial 10 rooms through
// it: every room's two callers land on one node, and the rooms spread over
// both. Half the rooms end by the callers' BYE, half by the API (Chorus's
// BYE), both through kamailio's Record-Route. Then one node stops, and new
// rooms all go to the other.
func TestKamailioFleet(t *testing.T) {
	a, _ := startNode(t, "32000-32099")
	b, stopB := startNode(t, "32100-32199")
	proxy := startKamailio(t, a, b)
	nodes := []ready{a, b}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const rooms = 10
	number := func(i int) string { return fmt.Sprintf("81%02d", i) }
	phones := make([][2]*testphone.Phone, rooms)
	for i := range rooms {
		for j := range 2 {
			p, err := testphone.Dial(ctx, testphone.Options{Target: proxy, User: number(i)})
			if err != nil {
				t.Fatalf("caller %d of room %s: %v", j, number(i), err)
			}
			defer p.Close()
			phones[i][j] = p
		}
	}
	// Every room on exactly one node, with both its callers.
	home := make([]ready, rooms)
	var spread [2]int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var live [2]map[string]int
		for k, n := range nodes {
			live[k] = liveRooms(t, n)
		}
		bad := ""
		spread = [2]int{}
		for i := range rooms {
			a, b := live[0][number(i)], live[1][number(i)]
			switch {
			case a == 2 && b == 0:
				home[i] = nodes[0]
				spread[0]++
			case b == 2 && a == 0:
				home[i] = nodes[1]
				spread[1]++
			default:
				bad += fmt.Sprintf(" %s: %d on A, %d on B;", number(i), a, b)
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rooms split or missing:%s", bad)
		}
	}
	if spread[0] == 0 || spread[1] == 0 {
		t.Errorf("rooms not spread over the nodes: %d on A, %d on B", spread[0], spread[1])
	}

	// BYE both ways through the proxy.
	for i := range rooms {
		if i%2 == 0 {
			for _, p := range phones[i] {
				if err := p.Hangup(ctx); err != nil {
					t.Errorf("room %s: caller's BYE: %v", number(i), err)
				}
			}
		} else {
			endRoom(t, home[i], number(i))
			for _, p := range phones[i] {
				select {
				case <-p.Ended():
				case <-ctx.Done():
					t.Fatalf("room %s: Chorus's BYE never reached the caller", number(i))
				}
			}
		}
	}
	for _, n := range nodes {
		waitMetric(t, n.HTTP.String(), "chorus_calls_active", func(v float64) bool { return v == 0 })
	}

	// Node B stops: every new room goes to A, either because the OPTIONS
	// health checks (1 s apart here) have marked B down, or because the
	// INVITE sent to B timed out (fr_timer, 2 s here) and failed over.
	stopB()
	for i := 20; i < 20+rooms; i++ {
		p, err := testphone.Dial(ctx, testphone.Options{Target: proxy, User: number(i)})
		if err != nil {
			t.Fatalf("room %s after node B stopped: %v", number(i), err)
		}
		defer p.Close()
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		liveA, missing := liveRooms(t, a), ""
		for i := 20; i < 20+rooms; i++ {
			if liveA[number(i)] != 1 {
				missing += fmt.Sprintf(" %s: %d;", number(i), liveA[number(i)])
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rooms after node B stopped, members on A:%s", missing)
		}
	}
}
