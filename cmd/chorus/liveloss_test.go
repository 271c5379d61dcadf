package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// TestLiveRTPLossMetrics: a caller whose network loses every 10th packet
// (a raw RTP stream from the phone's own socket, 20 ms apart) shows in
// /metrics while its call lasts: chorus_rtp_lost_packets_total moves before
// the stream ends and then equals what was dropped, the concealed samples
// agree (a frame per loss), and the jitter histogram has samples; the
// member's JSON shows the loss too. Hanging up adds nothing twice, and
// the call's end is logged with its loss.
func TestLiveRTPLossMetrics(t *testing.T) {
	var logs syncBuffer
	r := startChorusLogged(t, []string{"--rtp-ports", "34300-34349", "--user", "u-alice:alice-token:alice-secret",
		"--mixer-priority", "normal", "--log-format", "json"}, &logs)
	httpAddr := r.HTTP.String()
	before, _ := scrape(t, httpAddr)
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", httpAddr), token: "alice-token", secret: "alice-secret"}
	resp, body := alice.do("POST", "/conferences", map[string]any{"from": "7500"})
	if resp.StatusCode != 201 {
		t.Fatalf("create conference: %d %s", resp.StatusCode, body)
	}
	confID := path.Base(resp.Header.Get("Location"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	phone, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7500", Codecs: []string{"PCMU"}})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	phone.SetSending(false) // the stream below replaces the phone's own

	const packets, dropped = 150, 10 // drops at 5, 15, …, 95
	done := make(chan error, 1)
	go func() {
		pkt := make([]byte, 12+160)
		pkt[0] = 0x80 // version 2, PCMU
		for i := 12; i < len(pkt); i++ {
			pkt[i] = 0xff // µ-law silence
		}
		binary.BigEndian.PutUint32(pkt[8:], 0x10557)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for k := range packets {
			<-tick.C
			if k < 100 && k%10 == 5 {
				continue // lost on the way
			}
			binary.BigEndian.PutUint16(pkt[2:], uint16(1000+k))
			binary.BigEndian.PutUint32(pkt[4:], uint32(8000+160*k))
			if err := phone.SendRaw(pkt); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	moved := func(m map[string]float64, name string) float64 { return m[name] - before[name] }
	const lost = "chorus_rtp_lost_packets_total"

	// Live: the loss shows while the stream still flows.
	m := waitMetric(t, httpAddr, lost, func(v float64) bool { return v > before[lost] })
	select {
	case err := <-done:
		t.Fatalf("the stream ended (%v) before /metrics showed any loss", err)
	default:
	}
	t.Logf("while streaming: %v lost", moved(m, lost))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m = waitMetric(t, httpAddr, lost, func(v float64) bool { return v-before[lost] >= dropped })
	// The mixer publishes a member's figures about once a second: the
	// stream's last second shows a moment after its end.
	const accepted = "chorus_rtp_jitter_packets_total"
	m = waitMetric(t, httpAddr, accepted, func(v float64) bool { return v-before[accepted] >= packets-dropped-10 })
	if got := moved(m, lost); got != dropped {
		t.Errorf("call live: %v packets lost, want %d", got, dropped)
	}
	// Each loss is a frame concealed; a read that found nothing yet
	// conceals a frame too (an underrun: the phone's own stream stopping,
	// this one's end, a late sender); a stall that made the buffer skip
	// forward (a resync beyond the two streams' starts) may skip a loss.
	concealed, underruns := moved(m, "chorus_rtp_concealed_samples_total"), moved(m, "chorus_rtp_jitter_underruns_total")
	skips := max(moved(m, "chorus_rtp_jitter_resyncs_total")-2, 0)
	if concealed < (dropped-skips)*160 || concealed > (dropped+underruns)*160 {
		t.Errorf("call live: %v samples concealed with %v underruns, want %d plus at most a frame per underrun", concealed, underruns, dropped*160)
	}
	if n := moved(m, "chorus_rtp_interarrival_jitter_seconds_count"); n < 1 {
		t.Errorf("call live: %v jitter samples, want at least 1", n)
	}
	if j := moved(m, "chorus_rtp_interarrival_jitter_seconds_sum") / moved(m, "chorus_rtp_interarrival_jitter_seconds_count"); j > 0.02 {
		t.Errorf("call live: mean jitter %.1f ms over loopback, want under 20 ms", j*1000)
	}
	if p := moved(m, accepted); p > packets-dropped+50 { // the phone's own few before SetSending(false) count too
		t.Errorf("call live: %v packets published, want about %d", p, packets-dropped)
	}
	// The member's own figures, in the API.
	_, body = alice.do("GET", "/conferences/"+confID+"/members", nil)
	var members []struct {
		State string
		RTP   *struct {
			PacketsReceived, PacketsLost int
			JitterMs                     float64
		}
	}
	if err := json.Unmarshal(body, &members); err != nil || len(members) != 1 || members[0].RTP == nil {
		t.Fatalf("members: %v %s", err, body)
	}
	// A packet that came before the call joined its room is flushed
	// unread, and not expected either: the count starts at the first read.
	if rtp := members[0].RTP; rtp.PacketsLost != dropped || rtp.PacketsReceived < packets-dropped-5 || rtp.JitterMs < 0 || rtp.JitterMs > 20 {
		t.Errorf("member's rtp %+v, want %d lost of about %d received, jitter under 20 ms", *rtp, dropped, packets-dropped)
	}

	if err := phone.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	// Its member's memory goes at the mixer's next tick, with the figures
	// not yet published: every packet the mixer read is then counted, once.
	waitMetric(t, httpAddr, "chorus_members_live", func(v float64) bool { return v == 0 })
	var after map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after, _ = scrape(t, httpAddr)
		if moved(after, "chorus_rtp_jitter_packets_total") >= moved(after, "chorus_rtp_packets_in_total")-moved(after, "chorus_rtp_late_packets_total") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call ended: %v packets published of %v read", moved(after, "chorus_rtp_jitter_packets_total"), moved(after, "chorus_rtp_packets_in_total"))
		}
	}
	if got, want := moved(after, "chorus_rtp_jitter_packets_total"), moved(after, "chorus_rtp_packets_in_total")-moved(after, "chorus_rtp_late_packets_total"); got != want {
		t.Errorf("call ended: %v packets published, want the %v the mixer read and played", got, want)
	}
	if got := moved(after, lost); got != dropped {
		t.Errorf("call ended: %v packets lost, want still %d", got, dropped)
	}
	if _, body = alice.do("GET", "/conferences/"+confID+"/members", nil); strings.Contains(string(body), `"rtp"`) {
		t.Errorf("an ended member still shows RTP figures: %s", body)
	}
	// The call's end is logged with its loss and jitter.
	var ended map[string]any
	for deadline := time.Now().Add(10 * time.Second); ended == nil; time.Sleep(20 * time.Millisecond) {
		for _, l := range jsonLines(t, logs.String()) {
			if l["msg"] == "call ended" {
				ended = l
			}
		}
		if ended == nil && time.Now().After(deadline) {
			t.Fatal("no call ended line")
		}
	}
	if st, _ := ended["stats"].(map[string]any); st == nil || st["packets_lost"] != float64(dropped) || st["jitter"] == nil {
		t.Errorf("call ended: stats %v, want packets_lost %d and a jitter", ended["stats"], dropped)
	}
}
