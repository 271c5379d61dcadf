package main

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"chorus/internal/audiotest"
	"chorus/internal/testphone"
)

// datagrams keeps what a test phone's RTP socket received.
type datagrams struct {
	mu sync.Mutex
	d  [][]byte
}

func (c *datagrams) add(b []byte) {
	c.mu.Lock()
	c.d = append(c.d, append([]byte(nil), b...))
	c.mu.Unlock()
}

func (c *datagrams) last(n int) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.d) < n {
		return nil
	}
	return c.d[len(c.d)-n:]
}

// TestRTPDropsInMetrics: a stranger sprays RTP at a live call's port, and
// forged packets arrive at an SRTP call from its caller's own address (an
// SRTP session authenticates before it looks at the source, so a stranger
// there counts as forged too); both show in /metrics as
// chorus_rtp_dropped_total by reason while the calls live, and stay there
// once they have ended.
func TestRTPDropsInMetrics(t *testing.T) {
	r := startChorusArgs(t, "31900-31999", "--mixer-priority", "normal")
	hc := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + r.HTTP.String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plain, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000", Codecs: []string{"PCMU"},
		Source: audiotest.ToneSource(440, -12, 8000)})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var got datagrams
	p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "1000", Codecs: []string{"PCMU"},
		SRTP: "AES_CM_128_HMAC_SHA1_80", Source: audiotest.ToneSource(1000, -12, 8000), OnDatagram: got.add})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const sprayed, forged = 50, 10
	// The bridge sends once it has proven the callers' sources.
	var dg [][]byte
	for deadline := time.Now().Add(5 * time.Second); dg == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		dg = got.last(forged)
	}
	if dg == nil {
		t.Fatal("the bridge sent the caller no RTP")
	}

	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	pkt := make([]byte, 12+160)
	pkt[0] = 0x80 // RTP version 2, PCMU
	binary.BigEndian.PutUint32(pkt[8:], 0x5747a1)
	for i := range sprayed {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(160*i))
		if _, err := stranger.WriteToUDPAddrPort(pkt, plain.RemoteRTPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Forged: what the bridge sent, a bit flipped, from the caller's own
	// address; the tag no longer matches (RFC 3711 §3.3).
	for _, d := range dg {
		d[len(d)/2] ^= 0x10
		if err := p.SendRaw(d); err != nil {
			t.Fatal(err)
		}
	}
	drops := func() (strangers, auth float64) {
		return metric(t, hc, base, `chorus_rtp_dropped_total{reason="stranger"}`),
			metric(t, hc, base, `chorus_rtp_dropped_total{reason="srtp_auth"}`)
	}
	var s, a float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s, a = drops(); s >= sprayed && a >= forged {
			break
		}
	}
	if s != sprayed || a != forged {
		t.Fatalf("live calls: /metrics shows %v strangers' and %v forged packets dropped, want %d and %d", s, a, sprayed, forged)
	}
	for _, name := range []string{`chorus_rtp_dropped_total{reason="malformed"}`, `chorus_rtp_dropped_total{reason="unproven"}`,
		`chorus_rtp_dropped_total{reason="unknown_pt"}`, "chorus_rtp_unsent_total", "chorus_rtp_send_errors_total"} {
		_ = metric(t, hc, base, name) // present
	}

	// The calls end: their sessions' counts are kept.
	for _, ph := range []*testphone.Phone{plain, p} {
		if err := ph.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); metric(t, hc, base, "chorus_rtp_ports_in_use") != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the calls' RTP ports were not freed")
		}
	}
	if s, a := drops(); s != sprayed || a != forged {
		t.Errorf("ended calls: /metrics shows %v and %v, want %d and %d", s, a, sprayed, forged)
	}
}
