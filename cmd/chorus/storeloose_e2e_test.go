package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"chorus/internal/testphone"
	"chorus/store"
)

// Loose ends of the store (issue 14): the event stream's ids, gathers,
// dialling a conference the store alone holds, and DTMF level changes,
// each over the real binary and a restart.

// callOfConf returns the id of the one call in a conference.
func callOfConf(t *testing.T, c client, conf string) string {
	t.Helper()
	var calls []map[string]any
	waitJSON(t, c, "/calls?conferenceId="+conf, func(v any) bool {
		b, _ := json.Marshal(v)
		_ = json.Unmarshal(b, &calls)
		return len(calls) == 1
	})
	return fmt.Sprint(calls[0]["id"])
}

// getRaw GETs path and returns its body with the API's address (which a
// restart changes) replaced.
func getRaw(t *testing.T, p *chorusProc, c client, path string) (int, string) {
	t.Helper()
	resp, b := c.do("GET", path, nil)
	return resp.StatusCode, strings.ReplaceAll(string(b), p.http, "API")
}

// TestStoreSSEIDIsEventID: each event on the stream has its eventId as its
// SSE id and exactly the body its callback carries; a client coming back
// with any id it read gets exactly what followed. After a clean restart,
// the last event's id resumes without a reset (nothing came since), and an
// older one gets a reset: the old process's history is gone.
func TestStoreSSEIDIsEventID(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	p := startProc(t, dir, "--rtp-ports", "32500-32599")
	u1 := p.client("u1", "t1", "s1")
	whole := openEvStream(t, u1, "")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550501", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	call := callOfConf(t, u1, conf)
	resp, _ = u1.do("POST", "/calls/"+call, map[string]any{"state": "completed"})
	if resp.StatusCode != 200 {
		t.Fatalf("hang up: %d", resp.StatusCode)
	}
	<-ph.Ended()
	whole.wait("conference completed", 15*time.Second, evIs("conference", "", "state", "completed"))
	whole.wait("hangup", 15*time.Second, evIs("hangup", "", "", nil))
	cbs := cb.waitFor(t, "the conference's completion", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference", "state", "completed")
	})
	all := whole.events()
	last := all[len(all)-1]
	byID := map[string]string{}
	for _, e := range cbs {
		byID[e.id] = e.raw
	}
	numbered := 0
	for _, ev := range all {
		id, _ := ev.data["eventId"].(string)
		if ev.data["eventType"] == "talking" {
			continue // the stream's own: an id after the newest eventId
		}
		numbered++
		if id == "" || ev.id != id {
			t.Errorf("SSE id %q, eventId %q: %s", ev.id, id, ev.raw)
		}
		if raw, ok := byID[id]; ok && raw != ev.raw {
			t.Errorf("event %s: callback body %s, stream body %s", id, raw, ev.raw)
		}
	}
	if numbered < 5 {
		t.Fatalf("%d events on the stream:\n%s", numbered, evSummary(all))
	}
	// Resume from each event read: exactly the rest.
	for from := range all[:len(all)-1] {
		c := openEvStream(t, u1, all[from].id)
		c.wait("the last event", 10*time.Second, func(map[string]any) bool { return c.events()[len(c.events())-1].id == last.id })
		c.close()
		got := c.events()
		var gotIDs, want []string
		for _, ev := range got {
			gotIDs = append(gotIDs, ev.id)
			if ev.id == last.id {
				break // anything later came after the snapshot
			}
		}
		for _, ev := range all[from+1:] {
			want = append(want, ev.id)
		}
		if !slices.Equal(gotIDs, want) {
			t.Errorf("resume after %s: %v, want %v", all[from].id, gotIDs, want)
		}
	}
	whole.close()
	evs := whole.events()
	last = evs[len(evs)-1] // the newest before the stop
	p.stop()

	p2 := startProc(t, dir, "--rtp-ports", "32500-32599")
	u1 = p2.client("u1", "t1", "s1")
	resumed := openEvStream(t, u1, last.id)
	stale := openEvStream(t, u1, all[0].id)
	resp, _ = u1.do("POST", "/conferences", map[string]any{"from": "+15550502"})
	conf2 := createdID(t, resp, "conference")
	next := resumed.wait("the new conference", 10*time.Second, evIs("conference", "", "conferenceId", conf2))
	if evs := resumed.events(); evs[0].id != next.id || eventSeq(t, next.id) != eventSeq(t, last.id)+1 {
		t.Errorf("resumed after the restart from %s:\n%s", last.id, evSummary(evs))
	}
	stale.wait("the new conference", 10*time.Second, evIs("conference", "", "conferenceId", conf2))
	if evs := stale.events(); evs[0].data["eventType"] != "reset" {
		t.Errorf("an id from before the restart, not the last: %s", evSummary(evs))
	}
	p2.stop()
}

// TestStoreGatherRestart: a gather that completed answers the same JSON
// after kill -9 and after a clean restart; one still collecting when the
// process was killed is completed at the next start (hung-up: its call
// ended with the process) and its gather event is delivered; another user
// gets 404 for both.
func TestStoreGatherRestart(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	p := startProc(t, dir, "--rtp-ports", "32600-32699")
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550601", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	call := callOfConf(t, u1, conf)
	resp, _ = u1.do("POST", "/calls/"+call+"/gather", map[string]any{"maxDigits": 2, "tag": "pin"})
	done := createdID(t, resp, "gather")
	for _, d := range "42" {
		if err := ph.SendDTMF(d); err != nil {
			t.Fatal(err)
		}
	}
	waitJSON(t, u1, "/calls/"+call+"/gather/"+done, func(v any) bool { return field(v, "reason") == "max-digits" })
	resp, _ = u1.do("POST", "/calls/"+call+"/gather", map[string]any{"maxDigits": 5, "interDigitTimeout": 30})
	live := createdID(t, resp, "gather")
	// Durable before the kill: the new gather's record is queued at its
	// creation, so it is written no later than the event of a change made
	// after it, which is delivered once written.
	var members []map[string]any
	_, b := u1.do("GET", "/conferences/"+conf+"/members", nil)
	if err := json.Unmarshal(b, &members); err != nil || len(members) != 1 {
		t.Fatalf("members %s", b)
	}
	if resp, b := u1.do("POST", "/conferences/"+conf+"/members/"+fmt.Sprint(members[0]["id"]), map[string]any{"mute": true}); resp.StatusCode != 200 {
		t.Fatalf("mute: %d %s", resp.StatusCode, b)
	}
	cb.waitFor(t, "the mute's event", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference-member", "mute", "true")
	})
	donePath, livePath := "/calls/"+call+"/gather/"+done, "/calls/"+call+"/gather/"+live
	_, doneBefore := getRaw(t, p, u1, donePath)
	_, liveBefore := getRaw(t, p, u1, livePath)
	if !strings.Contains(liveBefore, `"state":"created"`) {
		t.Fatalf("the second gather: %s", liveBefore)
	}
	p.kill()
	ph.Close()

	p2 := startProc(t, dir, "--rtp-ports", "32600-32699")
	u1 = p2.client("u1", "t1", "s1")
	if code, b := getRaw(t, p2, u1, donePath); code != 200 || b != doneBefore {
		t.Errorf("a completed gather after kill -9: %d %s\nbefore %s", code, b, doneBefore)
	}
	code, liveAfter := getRaw(t, p2, u1, livePath)
	var g map[string]any
	_ = json.Unmarshal([]byte(liveAfter), &g)
	if code != 200 || g["state"] != "completed" || g["reason"] != "hung-up" || g["completedTime"] == nil || g["id"] != live {
		t.Errorf("a gather left collecting by kill -9: %d %s", code, liveAfter)
	}
	evs := cb.waitFor(t, "the crashed gather's event", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "gather", "gatherId", live) && has(evs, "hangup", "cause", "SERVER_RESTART")
	})
	gi := slices.IndexFunc(evs, func(e cbEvent) bool { return e.typ == "gather" && e.body["gatherId"] == live })
	hi := slices.IndexFunc(evs, func(e cbEvent) bool { return e.typ == "hangup" && e.body["cause"] == "SERVER_RESTART" })
	if ge := evs[gi].body; ge["reason"] != "hung-up" || ge["state"] != "completed" || ge["callId"] != call || gi > hi {
		t.Errorf("the crashed gather's event %v (at %d, the hangup at %d)", ge, gi, hi)
	}
	checkOnceInOrder(t, evs)
	p2.stop()

	p3 := startProc(t, dir, "--rtp-ports", "32600-32699")
	u1 = p3.client("u1", "t1", "s1")
	if _, b := getRaw(t, p3, u1, donePath); b != doneBefore {
		t.Errorf("a completed gather after a clean restart: %s\nbefore %s", b, doneBefore)
	}
	if _, b := getRaw(t, p3, u1, livePath); b != liveAfter {
		t.Errorf("the crashed gather after a clean restart: %s\nbefore %s", b, liveAfter)
	}
	// Stopping a stored gather is a no-op, as for a completed one.
	if resp, b := u1.do("POST", livePath, map[string]any{"state": "completed"}); resp.StatusCode != 200 {
		t.Errorf("stopping a stored gather: %d %s", resp.StatusCode, b)
	}
	u2 := p3.client("u2", "t2", "s2")
	for _, path := range []string{donePath, livePath} {
		resp, b := u2.do("GET", path, nil)
		ghost, gb := u2.do("GET", "/calls/c-doesnotexist00000000000/gather/gather-doesnotexist000000000", nil)
		norm := strings.NewReplacer(call, "<c>", done, "<g>", live, "<g>", "c-doesnotexist00000000000", "<c>", "gather-doesnotexist000000000", "<g>")
		if resp.StatusCode != 404 || ghost.StatusCode != 404 || norm.Replace(string(b)) != norm.Replace(string(gb)) {
			t.Errorf("u2 GET %s: %d %s (a ghost: %s)", path, resp.StatusCode, b, gb)
		}
	}
	p3.stop()
}

// dialStatus dials number and returns the final status of the INVITE
// (200 when answered: the call is then hung up).
func dialStatus(t *testing.T, p *chorusProc, number string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ph, err := testphone.Dial(ctx, testphone.Options{Target: p.sip, User: number})
	if err == nil {
		_ = ph.Hangup(ctx)
		ph.Close()
		return 200
	}
	var se *testphone.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("dial %s: %v", number, err)
	}
	return se.Code
}

// TestStoreDialCompletedConference: a caller dialling the id of a
// completed conference hears that it is over (410 Gone), whether the
// bridge still holds the conference or only the store does after a
// restart; an id that never existed is 404 in both.
func TestStoreDialCompletedConference(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "--rtp-ports", "32700-32799")
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550701"})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "activeMembers") == "1" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ph.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitJSON(t, u1, "/conferences/"+conf, func(v any) bool { return field(v, "state") == "completed" })
	const ghost = "conf-doesnotexist0000000000"
	if code := dialStatus(t, p, conf); code != 410 {
		t.Errorf("a completed conference in memory: %d, want 410", code)
	}
	if code := dialStatus(t, p, ghost); code != 404 {
		t.Errorf("a conference that never existed: %d, want 404", code)
	}
	p.stop()

	p2 := startProc(t, dir, "--rtp-ports", "32700-32799")
	if code := dialStatus(t, p2, conf); code != 410 {
		t.Errorf("a completed conference only the store holds: %d, want 410", code)
	}
	if code := dialStatus(t, p2, ghost); code != 404 {
		t.Errorf("a conference that never existed, after the restart: %d, want 404", code)
	}
	p2.stop()
}

// storedMember reads a member's record straight from the database file of
// a running binary (read-only: SQLite's WAL lets a reader in beside the
// writer), to see what a crash now would keep.
func storedMember(t *testing.T, dir, user, id string) map[string]any {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dir+"/"+store.FileName+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var data []byte
	err = db.QueryRow(`SELECT data FROM records WHERE kind = ? AND uid = ? AND id = ?`, string(store.KindMember), user, id).Scan(&data)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

// TestStoreDTMFLevelsSurviveKill: levels a caller keys on the phone (RFC
// 4733) raise no event, yet they are written within moments, so kill -9
// keeps them: after the restart the member shows them, with the mute keyed
// after, completed with the call by SERVER_RESTART.
func TestStoreDTMFLevelsSurviveKill(t *testing.T) {
	dir := t.TempDir()
	cb := newCBServer(t)
	p := startProc(t, dir, "--rtp-ports", "32800-32899")
	u1 := p.client("u1", "t1", "s1")
	resp, _ := u1.do("POST", "/conferences", map[string]any{"from": "+15550801", "callbackUrl": cb.srv.URL})
	conf := createdID(t, resp, "conference")
	ph := dialConf(t, p, conf)
	var members []map[string]any
	waitJSON(t, u1, "/conferences/"+conf+"/members", func(v any) bool {
		b, _ := json.Marshal(v)
		_ = json.Unmarshal(b, &members)
		return len(members) == 1
	})
	member := fmt.Sprint(members[0]["id"])
	mpath := "/conferences/" + conf + "/members/" + member
	// Talk up twice, receive down, sensitivity down.
	for _, d := range "3349" {
		if err := ph.SendDTMF(d); err != nil {
			t.Fatal(err)
		}
	}
	waitJSON(t, u1, mpath, func(v any) bool {
		return field(v, "talkVolume") == "2" && field(v, "receiveVolume") == "-1" && field(v, "sensitivity") == "-1"
	})
	// No event was raised, yet the record has them (within 250 ms; the
	// bound is generous for a loaded machine).
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := storedMember(t, dir, "u1", member)
		if m != nil && fmt.Sprint(m["Talk"], m["Receive"], m["Sensitivity"]) == "2 -1 -1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the keyed levels were not written: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Mute by 0: an event, written before it is delivered.
	if err := ph.SendDTMF('0'); err != nil {
		t.Fatal(err)
	}
	cb.waitFor(t, "the mute's event", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "conference-member", "mute", "true")
	})
	p.kill()
	ph.Close()

	p2 := startProc(t, dir, "--rtp-ports", "32800-32899")
	u1 = p2.client("u1", "t1", "s1")
	_, b := u1.do("GET", mpath, nil)
	var mj map[string]any
	_ = json.Unmarshal(b, &mj)
	if mj["talkVolume"] != 2.0 || mj["receiveVolume"] != -1.0 || mj["sensitivity"] != -1.0 || mj["mute"] != true || mj["state"] != "completed" {
		t.Errorf("the member after kill -9 and restart: %s", b)
	}
	_, b = u1.do("GET", "/calls?conferenceId="+conf, nil)
	if !strings.Contains(string(b), `"state":"completed"`) {
		t.Errorf("the member's call after the restart: %s", b)
	}
	cb.waitFor(t, "the member's and call's completion after the restart", 15*time.Second, func(evs []cbEvent) bool {
		return has(evs, "hangup", "cause", "SERVER_RESTART") && slices.ContainsFunc(evs, func(e cbEvent) bool {
			return e.typ == "conference-member" && e.body["state"] == "completed" && e.body["memberId"] == member
		})
	})
	p2.stop()
}
