package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// TestWidebandFlags: --codecs reaches the SIP side (an offer of only a
// codec left out gets 488) and the members of a room show the codec each
// call negotiated, "opus" and "G722" among them.
func TestWidebandFlags(t *testing.T) {
	r := startChorusArgs(t, "30600-30649", "--codecs", "opus,G722,PCMU", "--max-mix-rate", "16000", "--opus-bitrate", "24000")
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, codecs := range [][]string{{"OPUS"}, {"G722", "PCMU"}, {"PCMA", "PCMU"}} {
		p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "5000", Codecs: codecs})
		if err != nil {
			t.Fatalf("dial offering %v: %v", codecs, err)
		}
		t.Cleanup(p.Close)
	}
	_, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "5000", Codecs: []string{"PCMA"}})
	if se := (*testphone.StatusError)(nil); !errors.As(err, &se) || se.Code != 488 {
		t.Errorf("PCMA only, with --codecs opus,G722,PCMU: %v, want 488", err)
	}
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := alice.do("GET", "/conferences", nil)
		var confs []struct{ ID, From string }
		_ = json.Unmarshal(body, &confs)
		got = got[:0]
		for _, c := range confs {
			if c.From != "5000" {
				continue
			}
			_, body := alice.do("GET", "/conferences/"+c.ID+"/members", nil)
			var ms []struct{ State, Codec string }
			_ = json.Unmarshal(body, &ms)
			for _, m := range ms {
				if m.State == "active" {
					got = append(got, m.Codec)
				}
			}
		}
		slices.Sort(got)
		if slices.Equal(got, []string{"G722", "PCMU", "opus"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members' codecs %v, want G722, PCMU, opus", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
