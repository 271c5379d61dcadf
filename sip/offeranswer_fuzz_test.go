package sip

import (
	"net/netip"
	"testing"

	"chorus/media"
)

// FuzzOfferAnswer drives the offer/answer step that decides hold (RFC 3264
// §6.1, §8.4): for any offer that parses, our answer parses back, says the
// direction we chose, and that direction is the one the offer allows — a
// sendonly offer is answered recvonly, recvonly sendonly, inactive or
// c=0.0.0.0 inactive, sendrecv sendrecv — so the phone-hold flag
// (direction not sendrecv) is set exactly when the phone holds. The codec
// is the offer's first that we speak, at the offer's payload type, with
// the telephone-event at its clock rate, and the answer says so.
func FuzzOfferAnswer(f *testing.F) {
	for _, dir := range []string{"", "a=sendonly\r\n", "a=recvonly\r\n", "a=inactive\r\n", "a=sendrecv\r\n"} {
		f.Add([]byte(offerSDP(4000, "0 8 101", "0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000") + dir))
	}
	f.Add([]byte(offerSDP(4000, "96 9 0 101 102", "96 opus/48000/2", "101 telephone-event/8000", "102 telephone-event/48000") +
		"a=fmtp:96 useinbandfec=1\r\n"))
	f.Add([]byte(offerSDP(4000, "9 8 101", "101 telephone-event/8000") + "a=recvonly\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=sendonly\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		offer, err := ParseSDP(body)
		if err != nil {
			return
		}
		dir := answerDirection(offer)
		want := media.SendRecv
		switch {
		case offer.Addr.IsUnspecified() || offer.Direction == media.Inactive:
			want = media.Inactive
		case offer.Direction == media.SendOnly:
			want = media.RecvOnly
		case offer.Direction == media.RecvOnly:
			want = media.SendOnly
		}
		if dir != want {
			t.Fatalf("offer %v (addr %v) answered %v, want %v", offer.Direction, offer.Addr, dir, want)
		}
		chosen, ok := offer.Choose(DefaultCodecs())
		if !ok || chosen != offer.Formats[0] {
			t.Fatalf("offer %+v: chose %+v, want its first format", offer.Formats, chosen)
		}
		te := offer.TelephoneEventPT(chosen.Codec)
		te8k, te48k := teSlots(chosen.Codec, te)
		ans, err := buildSDP(sdpParams{sessionID: 1, version: 1, addr: netip.MustParseAddr("192.0.2.9"), port: 10000,
			formats: []Format{chosen}, te8k: te8k, te48k: te48k, opusFmtp: "useinbandfec=1", direction: dir})
		if err != nil {
			t.Fatalf("our answer to %+v: %v", offer, err)
		}
		back, err := ParseSDP(ans)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, ans)
		}
		if back.Direction != dir || len(back.Formats) != 1 || back.Formats[0].Codec != chosen.Codec || back.Formats[0].PT != chosen.PT ||
			back.TelephoneEventPT(chosen.Codec) != te {
			t.Fatalf("answer says %v %+v te %d, chose %v %+v te %d\n%s", back.Direction, back.Formats, back.TelephoneEventPT(chosen.Codec),
				dir, chosen, te, ans)
		}
	})
}
