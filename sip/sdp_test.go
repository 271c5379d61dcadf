package sip

import (
	"errors"
	"net/netip"
	"testing"

	"chorus/media"
)

func TestParseSDP(t *testing.T) {
	cases := []struct {
		name, body string
		want       Description
		err        error
	}{
		{"order honoured", offerSDP(4000, "8 0 101", "8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000"),
			Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4000, Codecs: []media.Codec{media.PCMA, media.PCMU}, TelephoneEventPT: 101}, nil},
		{"static without rtpmap", offerSDP(4002, "0"),
			Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4002, Codecs: []media.Codec{media.PCMU}}, nil},
		{"opus first, then PCMU, event 96", offerSDP(4004, "111 0 96", "111 opus/48000/2", "96 telephone-event/8000"),
			Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4004, Codecs: []media.Codec{media.PCMU}, TelephoneEventPT: 96}, nil},
		{"hold", offerSDP(4006, "0") + "a=sendonly\r\n",
			Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4006, Codecs: []media.Codec{media.PCMU}, Direction: media.SendOnly}, nil},
		{"ptime", offerSDP(4008, "0") + "a=ptime:30\r\n",
			Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 4008, Codecs: []media.Codec{media.PCMU}, Ptime: 30}, nil},
		{"no common codec", offerSDP(4000, "18", "18 G729/8000"), Description{}, ErrNoCommonCodec},
		{"video only", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n", Description{}, ErrNoAudio},
		{"garbage", "hello", Description{}, ErrBadSDP},
		{"no connection", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", Description{}, ErrBadSDP},
	}
	for _, c := range cases {
		got, err := ParseSDP([]byte(c.body))
		if !errors.Is(err, c.err) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if got.Addr != c.want.Addr || got.Port != c.want.Port || got.TelephoneEventPT != c.want.TelephoneEventPT ||
			got.Direction != c.want.Direction || got.Ptime != c.want.Ptime || len(got.Codecs) != len(c.want.Codecs) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
			continue
		}
		for i := range got.Codecs {
			if got.Codecs[i] != c.want.Codecs[i] {
				t.Errorf("%s: codecs %v, want %v", c.name, got.Codecs, c.want.Codecs)
			}
		}
	}
}

// TestAnswerRoundTrip: our answer parses back to what we meant.
func TestAnswerRoundTrip(t *testing.T) {
	b, err := buildSDP(sdpParams{sessionID: 7, version: 1, addr: netip.MustParseAddr("192.0.2.10"), port: 10002,
		codecs: []media.Codec{media.PCMA}, telephoneEventPT: 101, direction: media.RecvOnly})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseSDP(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if d.Remote().String() != "192.0.2.10:10002" || d.Codecs[0] != media.PCMA || d.TelephoneEventPT != 101 || d.Direction != media.RecvOnly {
		t.Errorf("round trip gave %+v\n%s", d, b)
	}
}

// FuzzParseSDP: no input panics, and what parses has a usable stream.
func FuzzParseSDP(f *testing.F) {
	f.Add([]byte(offerSDP(4000, "8 0 101", "8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000")))
	f.Add([]byte(offerSDP(4000, "0") + "a=sendonly\r\na=ptime:20\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\nm=audio 99999 RTP/AVP 0\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseSDP(body)
		if err != nil {
			return
		}
		if len(d.Codecs) == 0 || d.Port <= 0 || d.Port > 65535 || !d.Addr.IsValid() {
			t.Fatalf("accepted an unusable description %+v", d)
		}
	})
}
