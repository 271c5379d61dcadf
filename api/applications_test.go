package api

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"chorus/bridge"
)

// createApp makes an application of u and returns its id.
func (e *env) createApp(u User, body string) string {
	e.t.Helper()
	return e.mustCreate(e.as(u, "POST", "/applications", body), "/v1/users/"+u.ID+"/applications")
}

// TestApplicationsCRUD: create (201, Location, autoAnswer defaulting to
// true), get, list with paging, update by POST (only what is given),
// delete (200; its numbers stay, unassigned).
func TestApplicationsCRUD(t *testing.T) {
	e := newEnv(t)
	id := e.createApp(alice, `{"name":"pin","incomingCallUrl":"http://127.0.0.1:9/in","incomingCallUrlCallbackTimeout":"2000",
		"incomingCallFallbackUrl":"http://127.0.0.1:9/fb","callbackHttpMethod":"get","unknown":1}`)
	if !strings.HasPrefix(id, "a-") {
		t.Errorf("id %q", id)
	}
	var a applicationJSON
	e.getJSON(alice, "/applications/"+id, &a)
	want := applicationJSON{ID: id, Name: "pin", IncomingCallURL: "http://127.0.0.1:9/in", IncomingCallURLCallbackTimeout: 2000,
		IncomingCallFallbackURL: "http://127.0.0.1:9/fb", CallbackHTTPMethod: "get", AutoAnswer: true, CreatedTime: a.CreatedTime}
	if a != want || a.CreatedTime == "" {
		t.Errorf("GET %+v, want %+v", a, want)
	}
	e.as(alice, "POST", "/applications/"+id, `{"autoAnswer":"false","name":"pin2","incomingCallFallbackUrl":null}`).mustOK(t)
	e.as(alice, "POST", "/applications/"+id, `{}`).mustOK(t)
	a = applicationJSON{}
	e.getJSON(alice, "/applications/"+id, &a)
	if a.AutoAnswer || a.Name != "pin2" || a.IncomingCallFallbackURL != "http://127.0.0.1:9/fb" || a.CallbackHTTPMethod != "get" {
		t.Errorf("after update: %+v", a)
	}

	for i := range 3 {
		e.createApp(alice, fmt.Sprintf(`{"name":"a%d","incomingCallUrl":"http://127.0.0.1:9/x"}`, i))
	}
	var list []applicationJSON
	r := e.getJSON(alice, "/applications?size=2", &list)
	if len(list) != 2 || list[0].ID != id || !strings.Contains(r.header.Get("Link"), `rel="next"`) {
		t.Errorf("page 0: %+v, Link %q", list, r.header.Get("Link"))
	}
	r = e.getJSON(alice, "/applications?size=2&page=1", &list)
	if len(list) != 2 || r.header.Get("Link") != "" {
		t.Errorf("page 1: %+v, Link %q", list, r.header.Get("Link"))
	}

	num := e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"+15550001111","applicationId":"`+id+`"}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	e.as(alice, "DELETE", "/applications/"+id, "").mustOK(t)
	e.as(alice, "GET", "/applications/"+id, "").expectError(t, 404, "application-not-found")
	e.as(alice, "DELETE", "/applications/"+id, "").expectError(t, 404, "application-not-found")
	var n numberJSON
	e.getJSON(alice, "/phoneNumbers/"+num, &n)
	if n.ApplicationID != "" || n.Application != "" {
		t.Errorf("number of a deleted application: %+v", n)
	}
}

// TestApplicationsValidation: required properties, wrong types, limits,
// URLs, and an incomingCallUrl the outbound policy refuses.
func TestApplicationsValidation(t *testing.T) {
	e := newEnv(t, func(b *bridge.Config, _ *Config) { b.MaxApplicationsPerUser = 2 })
	for _, c := range []struct{ body, code string }{
		{`{"incomingCallUrl":"http://127.0.0.1:9/x"}`, "missing-property"},
		{`{"name":"  ","incomingCallUrl":"http://127.0.0.1:9/x"}`, "blank-property"},
		{`{"name":"x"}`, "missing-property"},
		{`{"name":"x","incomingCallUrl":""}`, "blank-property"},
		{`{"name":"x","incomingCallUrl":"ftp://127.0.0.1/x"}`, "callback-invalid-url"},
		{`{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x","incomingCallUrlCallbackTimeout":20000}`, "validation-error"},
		{`{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x","incomingCallUrlCallbackTimeout":"soon"}`, "validation-error"},
		{`{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x","callbackHttpMethod":"PUT"}`, "validation-error"},
		{`{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x","autoAnswer":"maybe"}`, "validation-error"},
		{`{"name":["x"],"incomingCallUrl":"http://127.0.0.1:9/x"}`, "validation-error"},
		{`{"name":"x\u0007","incomingCallUrl":"http://127.0.0.1:9/x"}`, "validation-error"},
		{`{"name":"` + strings.Repeat("n", 257) + `","incomingCallUrl":"http://127.0.0.1:9/x"}`, "validation-error"},
	} {
		e.as(alice, "POST", "/applications", c.body).expectError(t, 400, c.code)
	}
	e.as(alice, "POST", "/applications", `[1]`).expectError(t, 400, "invalid-json")

	// The outbound policy: a link-local address is refused, named.
	r := e.as(alice, "POST", "/applications", `{"name":"x","incomingCallUrl":"http://169.254.169.254/x"}`)
	if ae := r.expectError(t, 400, "callback-invalid-url"); !strings.Contains(ae.Message, "169.254.169.254") {
		t.Errorf("refusal: %+v", ae)
	}
	id := e.createApp(alice, `{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x"}`)
	e.as(alice, "POST", "/applications/"+id, `{"incomingCallFallbackUrl":"http://169.254.169.254/x"}`).expectError(t, 400, "callback-invalid-url")
	e.as(alice, "POST", "/applications/"+id, `{"incomingCallUrl":""}`).expectError(t, 400, "blank-property")

	// The per-user cap, per user.
	e.createApp(alice, `{"name":"y","incomingCallUrl":"http://127.0.0.1:9/x"}`)
	r = e.as(alice, "POST", "/applications", `{"name":"z","incomingCallUrl":"http://127.0.0.1:9/x"}`)
	if ae := r.expectError(t, 403, "max-applications"); ae.Category != "limit" {
		t.Errorf("cap: %+v", ae)
	}
	e.createApp(bob, `{"name":"z","incomingCallUrl":"http://127.0.0.1:9/x"}`)
}

// TestPhoneNumbersCRUD: allocate, get by id and by the number itself,
// list with filters, assign and unassign, release.
func TestPhoneNumbersCRUD(t *testing.T) {
	e := newEnv(t)
	app := e.createApp(alice, `{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x"}`)
	id := e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"+15551112222","name":"main","applicationId":"`+app+`"}`),
		"/v1/users/"+alice.ID+"/phoneNumbers")
	other := e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":7000}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	var n numberJSON
	e.getJSON(alice, "/phoneNumbers/"+id, &n)
	if n.ID != id || n.Number != "+15551112222" || n.Name != "main" || n.ApplicationID != app || n.NumberState != "enabled" ||
		!strings.HasSuffix(n.Application, "/v1/users/"+alice.ID+"/applications/"+app) {
		t.Errorf("GET %+v", n)
	}
	var byNum numberJSON
	e.getJSON(alice, "/phoneNumbers/"+url.PathEscape("+15551112222"), &byNum)
	if byNum != n {
		t.Errorf("by number %+v, by id %+v", byNum, n)
	}
	var list []numberJSON
	e.getJSON(alice, "/phoneNumbers", &list)
	if len(list) != 2 || list[0].ID != id || list[1].ID != other || list[1].Number != "7000" {
		t.Errorf("list %+v", list)
	}
	e.getJSON(alice, "/phoneNumbers?applicationId="+app, &list)
	if len(list) != 1 || list[0].ID != id {
		t.Errorf("by application %+v", list)
	}
	if rt, ok := e.b.RouteApplication("+15551112222"); !ok || rt.App.ID() != app {
		t.Errorf("routing of an assigned number: %+v %v", rt, ok)
	}
	e.as(alice, "POST", "/phoneNumbers/"+id, `{"applicationId":""}`).mustOK(t)
	if _, ok := e.b.RouteApplication("+15551112222"); ok {
		t.Error("an unassigned number still routes to the application")
	}
	n = numberJSON{}
	e.getJSON(alice, "/phoneNumbers/"+id, &n)
	if n.ApplicationID != "" || n.Name != "main" {
		t.Errorf("after unassigning: %+v", n)
	}
	e.as(alice, "DELETE", "/phoneNumbers/"+id, "").mustOK(t)
	e.as(alice, "GET", "/phoneNumbers/"+id, "").expectError(t, 404, "number-not-found")
	// Released: anyone may take it.
	e.mustCreate(e.as(bob, "POST", "/phoneNumbers", `{"number":"+15551112222"}`), "/v1/users/"+bob.ID+"/phoneNumbers")
}

// TestPhoneNumbersValidation: the number's shape, an application that is
// not the user's, the cap, and numbers against conferences' from.
func TestPhoneNumbersValidation(t *testing.T) {
	e := newEnv(t, func(b *bridge.Config, _ *Config) { b.MaxNumbersPerUser = 3 })
	for _, c := range []struct{ body, code string }{
		{`{}`, "missing-property"},
		{`{"number":" "}`, "blank-property"},
		{`{"number":"sip:1@x"}`, "validation-error"},
		{`{"number":"12 34"}`, "validation-error"},
		{`{"number":"conf-abc"}`, "validation-error"},
		{`{"number":"` + strings.Repeat("1", 65) + `"}`, "validation-error"},
		{`{"number":true}`, "validation-error"},
		{`{"number":"1","applicationId":"a-nope"}`, "validation-error"},
	} {
		e.as(alice, "POST", "/phoneNumbers", c.body).expectError(t, 400, c.code)
	}
	e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"1"}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	e.as(alice, "POST", "/phoneNumbers", `{"number":"1"}`).expectError(t, 409, "number-in-use")

	// A conference from: Alice may host a room on her own number; Bob
	// may not, and may not take the from of her live room as a number.
	e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"1"}`), "/v1/users/"+alice.ID+"/conferences")
	e.as(bob, "POST", "/conferences", `{"from":"1"}`).expectError(t, 409, "number-in-use")
	e.mustCreate(e.as(alice, "POST", "/conferences", `{"from":"2"}`), "/v1/users/"+alice.ID+"/conferences")
	r := e.as(bob, "POST", "/phoneNumbers", `{"number":"2"}`)
	if r.expectError(t, 409, "number-in-use"); strings.Contains(string(r.body), alice.ID) {
		t.Errorf("409 names the holder: %s", r.body)
	}
	e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"2"}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	// A room auto-created on an allocated number is the number's owner's.
	e.mustCreate(e.as(bob, "POST", "/phoneNumbers", `{"number":"3"}`), "/v1/users/"+bob.ID+"/phoneNumbers")
	if c, err := e.b.Route("3", ""); err != nil || c.UserID() != bob.ID {
		t.Errorf("auto-create on Bob's number: %v %v", c, err)
	}

	e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"4"}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	e.as(alice, "POST", "/phoneNumbers", `{"number":"5"}`).expectError(t, 403, "max-phone-numbers")
}

// TestApplicationsCrossUser: Bob sees nothing of Alice's applications and
// numbers (404, as for ids that never existed), cannot assign her
// application to his number, and cannot allocate her number.
func TestApplicationsCrossUser(t *testing.T) {
	e := newEnv(t)
	aApp := e.createApp(alice, `{"name":"x","incomingCallUrl":"http://127.0.0.1:9/x"}`)
	aNum := e.mustCreate(e.as(alice, "POST", "/phoneNumbers", `{"number":"+15553330000","applicationId":"`+aApp+`"}`), "/v1/users/"+alice.ID+"/phoneNumbers")
	e.as(bob, "GET", "/applications/"+aApp, "").expectError(t, 404, "application-not-found")
	e.as(bob, "POST", "/applications/"+aApp, `{"name":"mine"}`).expectError(t, 404, "application-not-found")
	e.as(bob, "DELETE", "/applications/"+aApp, "").expectError(t, 404, "application-not-found")
	e.as(bob, "GET", "/phoneNumbers/"+aNum, "").expectError(t, 404, "number-not-found")
	e.as(bob, "GET", "/phoneNumbers/"+url.PathEscape("+15553330000"), "").expectError(t, 404, "number-not-found")
	e.as(bob, "POST", "/phoneNumbers/"+aNum, `{"applicationId":""}`).expectError(t, 404, "number-not-found")
	e.as(bob, "DELETE", "/phoneNumbers/"+aNum, "").expectError(t, 404, "number-not-found")
	e.as(bob, "POST", "/phoneNumbers", `{"number":"+15553330000"}`).expectError(t, 409, "number-in-use")
	r1 := e.as(bob, "POST", "/phoneNumbers", `{"number":"+15553339999","applicationId":"`+aApp+`"}`)
	r2 := e.as(bob, "POST", "/phoneNumbers", `{"number":"+15553339999","applicationId":"a-doesnotexist00000000000"}`)
	r1.expectError(t, 400, "validation-error")
	if strings.ReplaceAll(string(r1.body), aApp, "X") != strings.ReplaceAll(string(r2.body), "a-doesnotexist00000000000", "X") {
		t.Errorf("Alice's application vs none: %s / %s", r1.body, r2.body)
	}
	var apps []applicationJSON
	e.getJSON(bob, "/applications", &apps)
	var nums []numberJSON
	e.getJSON(bob, "/phoneNumbers", &nums)
	if len(apps) != 0 || len(nums) != 0 {
		t.Errorf("Bob lists %+v %+v", apps, nums)
	}
	var a applicationJSON
	e.getJSON(alice, "/applications/"+aApp, &a)
	if a.Name != "x" {
		t.Errorf("Alice's application changed: %+v", a)
	}
	if rt, ok := e.b.RouteApplication("+15553330000"); !ok || rt.App.ID() != aApp {
		t.Error("Alice's number no longer routes to her application")
	}
}
