package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestConferencePINAndLock: pin and locked are set on create and update,
// validated, and GET shows only whether a PIN is set, never the PIN.
func TestConferencePINAndLock(t *testing.T) {
	e := newEnv(t)
	id := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"7000","pin":"004711","locked":true}`), "/v1/users/"+alice.ID+"/conferences")
	conf, _ := e.b.Conference(id)
	if conf.PIN() != "004711" || !conf.Locked() {
		t.Fatalf("bridge: pin %q locked %v", conf.PIN(), conf.Locked())
	}
	get := func() (map[string]json.RawMessage, []byte) {
		r := e.as(alice, "GET", "/conferences/"+id, "")
		if r.status != 200 {
			t.Fatalf("GET: %d %s", r.status, r.body)
		}
		var raw map[string]json.RawMessage
		r.decode(t, &raw)
		return raw, r.body
	}
	raw, body := get()
	if string(raw["pinSet"]) != "true" || string(raw["locked"]) != "true" {
		t.Errorf("GET: %s", body)
	}
	if _, ok := raw["pin"]; ok || strings.Contains(string(body), "4711") {
		t.Errorf("GET shows the PIN: %s", body)
	}
	// Lists do not show it either.
	r := e.as(alice, "GET", "/conferences", "")
	if strings.Contains(string(r.body), "4711") || !strings.Contains(string(r.body), `"pinSet":true`) {
		t.Errorf("list: %s", r.body)
	}

	// Update: a new PIN, unlock; "" removes the PIN; a number is its digits.
	e.as(alice, "POST", "/conferences/"+id, `{"pin":"1234","locked":false}`).mustOK(t)
	if conf.PIN() != "1234" || conf.Locked() {
		t.Errorf("after update: pin %q locked %v", conf.PIN(), conf.Locked())
	}
	e.as(alice, "POST", "/conferences/"+id, `{"pin":5678,"locked":"true"}`).mustOK(t)
	if conf.PIN() != "5678" || !conf.Locked() {
		t.Errorf("after update: pin %q locked %v", conf.PIN(), conf.Locked())
	}
	e.as(alice, "POST", "/conferences/"+id, `{"pin":""}`).mustOK(t)
	raw, body = get()
	if conf.PIN() != "" || string(raw["pinSet"]) != "false" {
		t.Errorf("after removing the PIN: %q %s", conf.PIN(), body)
	}
	// null leaves it alone, like any absent property.
	e.as(alice, "POST", "/conferences/"+id, `{"pin":"9"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+id, `{"pin":null,"mute":true}`).mustOK(t)
	if conf.PIN() != "9" {
		t.Errorf("null changed the PIN to %q", conf.PIN())
	}

	// A conference made without them shows both false.
	other := e.createConf(alice)
	var oc conferenceJSON
	e.getJSON(alice, "/conferences/"+other, &oc)
	if oc.PINSet || oc.Locked {
		t.Errorf("defaults: %+v", oc)
	}
}

// TestConferencePINValidation: a PIN is 1 to 12 digits; anything else is
// 400 validation-error naming the property, on create and on update, and
// the refused value is not echoed.
func TestConferencePINValidation(t *testing.T) {
	e := newEnv(t)
	id := e.createConf(alice)
	for _, bad := range []string{`"12a4"`, `"1234567890123"`, `" 1234"`, `"-1"`, `"12.5"`, `-1`, `1.5`, `"١٢٣"`, `"*12#"`, `true`, `{}`} {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/conferences", `{"from":"7100","pin":` + bad + `}`},
			{"POST", "/conferences/" + id, `{"pin":` + bad + `}`},
		} {
			r := e.as(alice, req.method, req.path, req.body)
			ae := r.expectError(t, 400, "validation-error")
			if !strings.Contains(ae.Message, "'pin'") {
				t.Errorf("%s: message %q does not name pin", req.body, ae.Message)
			}
			if len(bad) > 4 && strings.Contains(string(r.body), strings.Trim(bad, `"`)) {
				t.Errorf("%s: the refused PIN is echoed: %s", req.body, r.body)
			}
		}
	}
	for _, bad := range []string{`"yes"`, `2`, `[]`} {
		e.as(alice, "POST", "/conferences/"+id, `{"locked":`+bad+`}`).expectError(t, 400, "validation-error")
	}
	conf, _ := e.b.Conference(id)
	if conf.PIN() != "" || conf.Locked() {
		t.Errorf("a refused update changed the room: pin %q locked %v", conf.PIN(), conf.Locked())
	}
	if n := len(e.b.Conferences(alice.ID)); n != 1 {
		t.Errorf("%d conferences: a refused create made one", n)
	}
	// A completed conference takes no PIN or lock any more.
	e.as(alice, "POST", "/conferences/"+id, `{"state":"completed"}`).mustOK(t)
	e.as(alice, "POST", "/conferences/"+id, `{"pin":"1"}`).expectError(t, 403, "conference-error")
	e.as(alice, "POST", "/conferences/"+id, `{"locked":true}`).expectError(t, 403, "conference-error")
}

// TestConferencePINCrossUser: Bob can neither read nor set the PIN or
// lock of Alice's room; he gets what a room that does not exist gets.
func TestConferencePINCrossUser(t *testing.T) {
	e := newEnv(t)
	id := e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"7200","pin":"4711"}`), "/v1/users/"+alice.ID+"/conferences")
	conf, _ := e.b.Conference(id)

	// On Alice's paths: denied.
	r := e.do(&bob, "GET", "/v1/users/"+alice.ID+"/conferences/"+id, "")
	r.expectError(t, 401, "user-access-denied")
	e.do(&bob, "POST", "/v1/users/"+alice.ID+"/conferences/"+id, `{"pin":"0000","locked":true}`).expectError(t, 401, "user-access-denied")
	// Alice's id on Bob's own paths: as if it never existed.
	ghost := "conf-doesnotexist0000000000"
	r1 := e.as(bob, "POST", "/conferences/"+id, `{"pin":"0000","locked":true}`)
	r2 := e.as(bob, "POST", "/conferences/"+ghost, `{"pin":"0000","locked":true}`)
	if r1.status != 404 || r1.status != r2.status || strings.ReplaceAll(string(r1.body), id, "X") != strings.ReplaceAll(string(r2.body), ghost, "X") {
		t.Errorf("Bob's update of Alice's room leaks: %s vs %s", r1.body, r2.body)
	}
	r = e.as(bob, "GET", "/conferences/"+id, "")
	if r.status != 404 || strings.Contains(string(r.body), "4711") || strings.Contains(string(r.body), "pinSet") {
		t.Errorf("Bob's GET of Alice's room: %d %s", r.status, r.body)
	}
	var list []conferenceJSON
	e.getJSON(bob, "/conferences", &list)
	if len(list) != 0 {
		t.Errorf("Bob lists Alice's room: %+v", list)
	}
	if conf.PIN() != "4711" || conf.Locked() {
		t.Errorf("Alice's room changed: pin %q locked %v", conf.PIN(), conf.Locked())
	}
}
