package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/media"
)

// refusingDialer fails every dial at once: the fuzzer's POST /calls make
// call records, never sockets.
type refusingDialer struct{}

func (refusingDialer) Dial(context.Context, *bridge.Call, string, string) error {
	return &bridge.DialError{Status: 480, Reason: "Temporarily Unavailable"}
}

// fuzzFixture is a live conference of Alice's with one member whose call
// has a real media session, so that every route with ids reaches its
// handler's body; it is made again whenever an input completed any of it.
type fuzzFixture struct {
	b          *bridge.Bridge
	conf       *bridge.Conference
	member     *bridge.Member
	call       *bridge.Call
	gather     *bridge.Gather
	closeMedia func()
	app        *bridge.Application
	number     *bridge.PhoneNumber
}

func (fx *fuzzFixture) ensure(tb testing.TB) {
	fx.ensureApp(tb)
	if fx.conf != nil && fx.conf.State() != bridge.StateCompleted && fx.call.State() == bridge.CallActive &&
		fx.member.Active() {
		return
	}
	if fx.conf != nil {
		fx.conf.Complete()
		fx.closeMedia()
	}
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	sess, err := media.NewSession(conn, nil)
	if err != nil {
		tb.Fatal(err)
	}
	sess.SetParams(media.Params{Remote: phone.LocalAddr().(*net.UDPAddr).AddrPort(), Codec: media.PCMU,
		TelephoneEventPT: 101, Direction: media.SendRecv})
	fx.closeMedia = func() { _ = sess.Close(); _ = phone.Close() }
	fx.conf, err = fx.b.CreateConference(bridge.ConferenceOptions{UserID: alice.ID, From: "+15550001111"})
	if err != nil {
		tb.Fatal(err)
	}
	fx.call = fx.b.NewCall(alice.ID, "sip:caller@127.0.0.1", "+15550001111", bridge.DirectionIn, &fakeLeg{sess: sess}, bridge.Callback{})
	fx.call.Answered()
	if fx.member, err = fx.conf.AddMember(fx.call, bridge.MemberOptions{}); err != nil {
		tb.Fatal(err)
	}
	if fx.gather, err = fx.call.StartGather(bridge.GatherOptions{TerminatingDigits: "#"}); err != nil {
		tb.Fatal(err)
	}
}

// ensureApp makes Alice's application and its number again when an input
// deleted them.
func (fx *fuzzFixture) ensureApp(tb testing.TB) {
	if fx.app == nil || !fx.has(fx.app) {
		app, err := fx.b.CreateApplication(alice.ID, bridge.ApplicationOptions{Name: "fuzz", Callback: bridge.Callback{URL: "http://127.0.0.1:9/app"}})
		if err != nil {
			tb.Fatal(err)
		}
		fx.app = app
	}
	if n, ok := fx.b.PhoneNumber("+15550002222"); !ok || n != fx.number || n.Info().ApplicationID != fx.app.ID() {
		for _, n := range fx.b.PhoneNumbers(alice.ID) {
			fx.b.ReleaseNumber(n) // what inputs allocated: the cap stays far
		}
		n, err := fx.b.AllocateNumber(alice.ID, "+15550002222", bridge.NumberOptions{ApplicationID: fx.app.ID()})
		if err != nil {
			tb.Fatal(err)
		}
		fx.number = n
	}
}

func (fx *fuzzFixture) has(a *bridge.Application) bool {
	got, ok := fx.b.Application(a.ID())
	return ok && got == a
}

// path fills a route's path with the fixture's ids.
func (fx *fuzzFixture) path(p string) string {
	return strings.NewReplacer("{userId}", alice.ID, "{conferenceId}", fx.conf.ID(),
		"{memberId}", fx.member.ID(), "{callId}", fx.call.ID(), "{gatherId}", fx.gather.ID(),
		"{applicationId}", fx.app.ID(), "{numberId}", fx.number.ID()).Replace(p)
}

// FuzzRoutes drives the real handler of every route in the route table
// with arbitrary query strings and bodies, as an authenticated user on
// her own live resources: nothing panics, nothing is a 5xx, and every
// error is Catapult's error body.
func FuzzRoutes(f *testing.F) {
	bodies := []string{``, `{}`, `null`, `{"from":"+1555"}`, `{"state":"completed"}`, `{"mute":"true","hold":false}`,
		`{"callbackUrl":"http://app.example/cb","callbackTimeout":"2000","callbackHttpMethod":"get","tag":"t"}`,
		`{"callId":"c-x","joinTone":true}`, `{"fileUrl":"http://x.example/a.wav","loopEnabled":"true"}`,
		`{"sentence":"hello","gender":"male","locale":"en_US","voice":"paul"}`, `{"fileUrl":""}`,
		`{"talkVolume":4,"receiveVolume":"-4","sensitivity":9}`, `{"from":"+1","to":"sip:a@127.0.0.1;transport=tcp","callTimeout":300}`,
		`{"callbackTimeout":1e300}`, `{"tag":{"a":[1]}}`, `[`, `{"from":"` + strings.Repeat("9", 200) + `"}`,
		`{"from":"+1556","pin":"004711","locked":"true"}`, `{"pin":1234567890123,"locked":1}`,
		`{"dtmfOut":"12#"}`, `{"dtmfOut":"abcd*0"}`, `{"dtmfOut":12}`, `{"dtmfOut":"` + strings.Repeat("#", 33) + `"}`,
		`{"maxDigits":"5","interDigitTimeout":"2.5","terminatingDigits":"*#","tag":"g"}`,
		`{"maxDigits":0,"interDigitTimeout":1e9,"terminatingDigits":"x"}`,
		`{"prompt":{"sentence":"enter your pin","bargeable":"false","loopEnabled":true}}`,
		`{"prompt":{"fileUrl":"http://x.example/p.wav"},"maxDigits":30}`, `{"prompt":"hi"}`, `{"prompt":{"fileUrl":""}}`,
		`{"state":"created"}`,
		`{"name":"app","incomingCallUrl":"http://127.0.0.1:9/x","incomingCallUrlCallbackTimeout":"2000","autoAnswer":"false"}`,
		`{"number":"+15553334444","name":"n","applicationId":""}`, `{"number":12345,"applicationId":"a-x"}`,
		`{"state":"active"}`, `{"state":"rejected"}`}
	queries := []string{"", "page=0&size=1", "page=9223372036854775807&size=2", "size=1001", "state=active",
		"conferenceId=conf-x&page=1", "page=-1", "size=%zz", "page=1e3&&&=="}
	for i := range routes {
		for j, b := range bodies {
			f.Add(uint8(i), queries[(i+j)%len(queries)], []byte(b))
		}
	}
	b := bridge.New(bridge.Config{DefaultUser: alice.ID, AutoCreate: true}, nil, &eventLog{})
	b.SetDialer(refusingDialer{})
	h := New(Config{Users: []User{alice, bob}, Bridge: b, Audio: &fakeAudio{ms: 20}, AnswerWait: 100 * time.Millisecond,
		AudioTimeout: 100 * time.Millisecond, MaxLiveConferences: 20})
	fx := &fuzzFixture{b: b}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.HangupAll(ctx, "fuzz-over")
		if fx.closeMedia != nil {
			fx.closeMedia()
		}
	})

	f.Fuzz(func(t *testing.T, route uint8, query string, body []byte) {
		fx.ensure(t)
		rt := routes[int(route)%len(routes)]
		if rt.path == userBase+"/events" {
			return // a stream that lasts until the client goes: FuzzLastEventID and the stream tests
		}
		req := httptest.NewRequest(rt.method, fx.path(rt.path), bytes.NewReader(body))
		req.URL.RawQuery = query
		req.SetBasicAuth(alice.Token, alice.Secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		data, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s?%s %q: %d %s", rt.method, rt.path, query, body, res.StatusCode, data)
		}
		if res.StatusCode >= 400 {
			var e struct {
				Category, Code, Message *string
				Details                 []detail
			}
			if err := json.Unmarshal(data, &e); err != nil || e.Category == nil || e.Code == nil || e.Message == nil || e.Details == nil {
				t.Fatalf("%s %s: %d with a body that is not an error: %s", rt.method, rt.path, res.StatusCode, data)
			}
		}
	})
}
