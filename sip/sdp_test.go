package sip

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"chorus/media"
	"chorus/media/opus"
)

func TestParseSDP(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	pcmu, pcma, g722 := Format{Codec: media.PCMU, PT: 0}, Format{Codec: media.PCMA, PT: 8}, Format{Codec: media.G722, PT: 9}
	cases := []struct {
		name, body string
		want       Description
		err        error
	}{
		{"order honoured", offerSDP(4000, "8 0 101", "8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000"),
			Description{Addr: lo, Port: 4000, Formats: []Format{pcma, pcmu}, TelephoneEvent8k: 101}, nil},
		{"static without rtpmap", offerSDP(4002, "0"),
			Description{Addr: lo, Port: 4002, Formats: []Format{pcmu}}, nil},
		{"opus first, then PCMU, event 96", offerSDP(4004, "111 0 96", "111 opus/48000/2", "96 telephone-event/8000"),
			Description{Addr: lo, Port: 4004, Formats: []Format{{Codec: media.Opus, PT: 111}, pcmu}, TelephoneEvent8k: 96}, nil},
		{"opus fmtp and events at both clocks",
			offerSDP(4010, "96 9 0 8 101 102", "96 OPUS/48000/2", "9 G722/8000", "101 telephone-event/48000", "102 telephone-event/8000") +
				"a=fmtp:96 maxplaybackrate=16000; useinbandfec=1;stereo=0\r\na=ptime:40\r\n",
			Description{Addr: lo, Port: 4010, Formats: []Format{
				{Codec: media.Opus, PT: 96, Opus: opus.Fmtp{MaxPlaybackRate: 16000, UseInbandFEC: true, Ptime: 40}}, g722, pcmu, pcma},
				TelephoneEvent8k: 102, TelephoneEvent48k: 101, Ptime: 40}, nil},
		{"G722 without rtpmap", offerSDP(4012, "9"), Description{Addr: lo, Port: 4012, Formats: []Format{g722}}, nil},
		{"G722/16000 as some phones write it", offerSDP(4014, "9 0", "9 G722/16000"),
			Description{Addr: lo, Port: 4014, Formats: []Format{g722, pcmu}}, nil},
		{"opus without channels, bad fmtp value kept out", offerSDP(4016, "120", "120 opus/48000") + "a=fmtp:120 maxplaybackrate=banana;useinbandfec=1\r\n",
			Description{Addr: lo, Port: 4016, Formats: []Format{{Codec: media.Opus, PT: 120, Opus: opus.Fmtp{UseInbandFEC: true}}}}, nil},
		{"opus at a static number is not opus", offerSDP(4018, "3 0", "3 opus/48000/2"),
			Description{Addr: lo, Port: 4018, Formats: []Format{pcmu}}, nil},
		{"hold", offerSDP(4006, "0") + "a=sendonly\r\n",
			Description{Addr: lo, Port: 4006, Formats: []Format{pcmu}, Direction: media.SendOnly}, nil},
		{"ptime", offerSDP(4008, "0") + "a=ptime:30\r\na=maxptime:60\r\n",
			Description{Addr: lo, Port: 4008, Formats: []Format{pcmu}, Ptime: 30, MaxPtime: 60}, nil},
		{"no common codec", offerSDP(4000, "18", "18 G729/8000"), Description{}, ErrNoCommonCodec},
		{"only unknown dynamic codecs", offerSDP(4000, "97 98", "97 speex/16000", "98 iLBC/8000"), Description{}, ErrNoCommonCodec},
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
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

// TestChoose: the offer's order wins, the enabled list only filters, and
// each codec's telephone-event is the one at its clock rate.
func TestChoose(t *testing.T) {
	d, err := ParseSDP([]byte(offerSDP(4000, "0 9 96 101 102", "96 opus/48000/2", "101 telephone-event/8000", "102 telephone-event/48000")))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		enabled []media.Codec
		want    media.Codec
		pt, te  uint8
	}{
		{DefaultCodecs(), media.PCMU, 0, 101},
		{[]media.Codec{media.Opus, media.G722}, media.G722, 9, 101},
		{[]media.Codec{media.Opus}, media.Opus, 96, 102},
	} {
		f, ok := d.Choose(c.enabled)
		if !ok || f.Codec != c.want || f.PT != c.pt || d.TelephoneEventPT(f.Codec) != c.te {
			t.Errorf("enabled %v: chose %+v (ok %v) te %d, want %v pt %d te %d", c.enabled, f, ok, d.TelephoneEventPT(f.Codec), c.want, c.pt, c.te)
		}
	}
	if f, ok := d.Choose([]media.Codec{media.PCMA}); ok {
		t.Errorf("PCMA only chose %+v from an offer without it", f)
	}
}

func TestParseCodecs(t *testing.T) {
	got, err := ParseCodecs(" G722, opus ,pcmu")
	if err != nil || !reflect.DeepEqual(got, []media.Codec{media.G722, media.Opus, media.PCMU}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "opus,speex", "PCMU,pcmu"} {
		if _, err := ParseCodecs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestAnswerRoundTrip: our answer parses back to what we meant.
func TestAnswerRoundTrip(t *testing.T) {
	b, err := buildSDP(sdpParams{sessionID: 7, version: 1, addr: netip.MustParseAddr("192.0.2.10"), port: 10002,
		formats: []Format{{Codec: media.PCMA, PT: 8}}, te8k: 101, direction: media.RecvOnly})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseSDP(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if d.Remote().String() != "192.0.2.10:10002" || d.Formats[0].Codec != media.PCMA || d.TelephoneEvent8k != 101 || d.Direction != media.RecvOnly {
		t.Errorf("round trip gave %+v\n%s", d, b)
	}
}

// TestOfferAllCodecs: our own offer lists Opus (opus/48000/2 with its
// fmtp), G.722, PCMU and PCMA, and telephone-event at 48000 and 8000, and
// reads back as such.
func TestOfferAllCodecs(t *testing.T) {
	b, err := buildSDP(sdpParams{sessionID: 7, version: 1, addr: netip.MustParseAddr("192.0.2.10"), port: 10002,
		formats: []Format{{Codec: media.Opus, PT: 111}, {Codec: media.G722, PT: 9}, {Codec: media.PCMU}, {Codec: media.PCMA, PT: 8}},
		te8k:    telephoneEventPT, te48k: telephoneEventPT48k, opusFmtp: "maxplaybackrate=48000;useinbandfec=1", direction: media.SendRecv})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"m=audio 10002 RTP/AVP 111 9 0 8 110 101\r\n", "a=rtpmap:111 opus/48000/2\r\n",
		"a=fmtp:111 maxplaybackrate=48000;useinbandfec=1\r\n", "a=rtpmap:9 G722/8000\r\n", "a=rtpmap:110 telephone-event/48000\r\n",
		"a=rtpmap:101 telephone-event/8000\r\n", "a=ptime:20\r\n"} {
		if !strings.Contains(string(b), line) {
			t.Errorf("offer lacks %q:\n%s", line, b)
		}
	}
	d, err := ParseSDP(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Format{{Codec: media.Opus, PT: 111, Opus: opus.Fmtp{MaxPlaybackRate: 48000, UseInbandFEC: true, Ptime: 20}},
		{Codec: media.G722, PT: 9}, {Codec: media.PCMU}, {Codec: media.PCMA, PT: 8}}
	if !reflect.DeepEqual(d.Formats, want) || d.TelephoneEvent8k != 101 || d.TelephoneEvent48k != 110 {
		t.Errorf("read back %+v", d)
	}
}

// FuzzParseSDP: no input panics, and what parses has a usable stream.
func FuzzParseSDP(f *testing.F) {
	f.Add([]byte(offerSDP(4000, "8 0 101", "8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000")))
	f.Add([]byte(offerSDP(4000, "0") + "a=sendonly\r\na=ptime:20\r\n"))
	f.Add([]byte(offerSDP(4000, "111 9 101", "111 opus/48000/2", "101 telephone-event/48000") + "a=fmtp:111 useinbandfec=1;maxplaybackrate=24000\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\nm=audio 99999 RTP/AVP 0\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseSDP(body)
		if err != nil {
			return
		}
		if len(d.Formats) == 0 || d.Port <= 0 || d.Port > 65535 || !d.Addr.IsValid() {
			t.Fatalf("accepted an unusable description %+v", d)
		}
		for _, f := range d.Formats {
			if f.Codec != media.Opus && f.PT != f.Codec.PayloadType() || f.Codec == media.Opus && f.PT < 96 {
				t.Fatalf("format %+v at a payload type it cannot have", f)
			}
		}
	})
}
