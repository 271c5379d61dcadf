package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
)

// TestPINRoomThroughTheAPI is the room PIN and lock as an application and
// a caller meet them: the API sets a PIN and never shows it; the caller
// hears the spoken prompt (espeak-ng), is no member while it waits, and
// joins on the right PIN and # (the conference-member event follows
// then); the API locks the room and the next caller gets 403.
func TestPINRoomThroughTheAPI(t *testing.T) {
	events := &audioEvents{}
	evSrv := newTargetServer(events)
	t.Cleanup(evSrv.Close)
	r := startChorus(t, "30400-30499")
	alice := client{t: t, base: fmt.Sprintf("http://%s/v1/users/u-alice", r.HTTP), token: "alice-token", secret: "alice-secret"}

	resp, body := alice.do("POST", "/conferences", map[string]any{"from": "7400", "pin": "2468", "callbackUrl": evSrv.URL + "/conf"})
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	confID := loc[strings.LastIndex(loc, "/")+1:]
	_, body = alice.do("GET", "/conferences/"+confID, nil)
	if !strings.Contains(string(body), `"pinSet":true`) || strings.Contains(string(body), "2468") {
		t.Errorf("GET: %s", body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	p, err := testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7400"})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	mark := p.Mark()
	members := func() []map[string]any {
		_, body := alice.do("GET", "/conferences/"+confID+"/members", nil)
		var ms []map[string]any
		if err := json.Unmarshal(body, &ms); err != nil {
			t.Fatalf("members: %v %s", err, body)
		}
		return ms
	}
	// The sentence lasts about three seconds; tones would last 0.4 s.
	deadline := time.Now().Add(10 * time.Second)
	for p.Mark()-mark < 4*8000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if rms, d := speechIn(p.RecordingSince(mark)); d < 1500*time.Millisecond || rms < -40 {
		t.Errorf("the prompt was %v at %.1f dBFS RMS, want the spoken sentence", d, rms)
	}
	if ms := members(); len(ms) != 0 {
		t.Errorf("a caller waiting for the PIN is listed: %v", ms)
	}
	for _, d := range "2468#" {
		if err := p.SendDTMF(d); err != nil {
			t.Fatal(err)
		}
	}
	events.wait(t, "conference-member active", 5*time.Second, func(ev map[string]any) bool {
		return ev["eventType"] == "conference-member" && ev["state"] == "active"
	})
	if ms := members(); len(ms) != 1 || ms[0]["state"] != "active" {
		t.Errorf("after the PIN: %v", ms)
	}

	if resp, body := alice.do("POST", "/conferences/"+confID, map[string]any{"locked": true}); resp.StatusCode != 200 {
		t.Fatalf("lock: %d %s", resp.StatusCode, body)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = testphone.Dial(ctx, testphone.Options{Target: r.SIPUDP.String(), User: "7400"})
	cancel()
	var se *testphone.StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Errorf("dial-in to the locked room: %v, want 403", err)
	}
	if ms := members(); len(ms) != 1 || ms[0]["state"] != "active" {
		t.Errorf("the lock moved the member: %v", ms)
	}
}
