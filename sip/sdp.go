package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"chorus/media"
	"chorus/media/opus"
)

// SDP errors. ErrNoCommonCodec maps to 488 Not Acceptable Here, the others
// to 400 Bad Request.
var (
	ErrBadSDP        = errors.New("malformed SDP")
	ErrNoAudio       = errors.New("SDP has no audio stream")
	ErrNoCommonCodec = errors.New("no common codec (opus, G722, PCMU, PCMA)")
)

// Format is one codec of a media line that Chorus speaks, with the payload
// type the peer gave it (RFC 4566 §6: a=rtpmap, a=fmtp).
type Format struct {
	Codec media.Codec
	PT    uint8
	// Opus is the peer's a=fmtp for an Opus format (RFC 7587 §6.1, §7),
	// with a=ptime and a=maxptime folded in when the fmtp has no ptime of
	// its own; zero for other codecs.
	Opus opus.Fmtp
}

// The telephone-event payload types of our own offers (RFC 4733 §7.1.1):
// one at each RTP clock rate our codecs use, since an event's timestamps
// run at its audio codec's clock (RFC 4733 §2.1).
const (
	telephoneEventPT    = 101 // telephone-event/8000, with G.722 and G.711
	telephoneEventPT48k = 110 // telephone-event/48000, with Opus
)

// DefaultCodecs returns what Chorus speaks, in the order of its own
// offers: wideband first.
func DefaultCodecs() []media.Codec {
	if !opus.Available {
		return []media.Codec{media.G722, media.PCMU, media.PCMA}
	}
	return []media.Codec{media.Opus, media.G722, media.PCMU, media.PCMA}
}

// cleanCodecs returns cs without invalid values and repeats, or
// DefaultCodecs if that leaves nothing.
func cleanCodecs(cs []media.Codec) []media.Codec {
	var out []media.Codec
	var seen [media.NumCodecs]bool
	for _, c := range cs {
		if c == media.CodecInvalid || int(c) >= media.NumCodecs || seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, c)
	}
	if len(out) == 0 {
		return DefaultCodecs()
	}
	return out
}

// ParseCodecs reads an ordered, comma-separated codec list such as
// "opus,G722,PCMU" (names case-insensitive), as --codecs takes it. It
// refuses an empty list, unknown names and repeats.
func ParseCodecs(s string) ([]media.Codec, error) {
	var out []media.Codec
	seen := map[media.Codec]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		c, ok := media.CodecByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown codec %q: want opus, G722, PCMU or PCMA", name)
		}
		if c == media.Opus && !opus.Available {
			return nil, errors.New("opus needs a build with cgo and libopus (this one has neither)")
		}
		if seen[c] {
			return nil, fmt.Errorf("codec %s listed twice", c)
		}
		seen[c] = true
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no codec listed: want some of opus, G722, PCMU, PCMA")
	}
	return out, nil
}

// Description is what Chorus needs from a session description (RFC 4566)
// offered or answered by the peer.
type Description struct {
	Addr netip.Addr // connection address; unspecified means hold (RFC 3264 §8.4)
	Port int
	// Formats are the codecs Chorus speaks, in the peer's order of
	// preference (whether this server has them enabled is decided later).
	Formats []Format
	// TelephoneEvent8k and TelephoneEvent48k are the payload types of
	// telephone-event at RTP clock 8000 and 48000 (RFC 4733 §7.1.1);
	// 0: not offered. Use TelephoneEventPT for a codec's.
	TelephoneEvent8k, TelephoneEvent48k uint8
	Ptime                               int // ms, 0 if not given
	MaxPtime                            int // ms, 0 if not given
	Direction                           media.Direction
	// Secure is an RTP/SAVP (or SAVPF) stream: SRTP or nothing (RFC 3711
	// §12, RFC 4568 §3.1.1).
	Secure bool
	// Crypto are the a=crypto attributes we could use, in the peer's order
	// of preference; the others (unknown suites, malformed) are left out.
	Crypto []media.Crypto
}

// Remote returns the RTP address, invalid when the peer gave none.
func (d Description) Remote() netip.AddrPort {
	if !d.Addr.IsValid() || d.Addr.IsUnspecified() || d.Port == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(d.Addr, uint16(d.Port))
}

// TelephoneEventPT is the peer's telephone-event payload type at codec c's
// RTP clock rate (RFC 4733 §2.1: events use the audio's clock), 0 if none.
func (d Description) TelephoneEventPT(c media.Codec) uint8 {
	if c.RTPClockRate() == 48000 {
		return d.TelephoneEvent48k
	}
	return d.TelephoneEvent8k
}

// Choose returns the first of d's formats, in d's order, whose codec is
// among enabled: the offerer's preference wins (RFC 3264 §6.1), enabled
// only filters. ok is false when none is.
func (d Description) Choose(enabled []media.Codec) (f Format, ok bool) {
	for _, f := range d.Formats {
		for _, c := range enabled {
			if c == f.Codec {
				return f, true
			}
		}
	}
	return Format{}, false
}

// find returns d's first format of codec c.
func (d Description) find(c media.Codec) (Format, bool) {
	for _, f := range d.Formats {
		if f.Codec == c {
			return f, true
		}
	}
	return Format{}, false
}

// ParseSDP reads the first usable audio stream of a session description.
func ParseSDP(body []byte) (Description, error) {
	var d Description
	var s sdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return d, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	var sessionAddr netip.Addr
	if s.ConnectionInformation != nil && s.ConnectionInformation.Address != nil {
		a, err := parseConnAddr(s.ConnectionInformation.Address.Address)
		if err != nil {
			return d, err
		}
		sessionAddr = a
	}
	sessionDir := directionOf(s.Attributes, media.SendRecv)
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		secure, ok := rtpProfile(m.MediaName.Protos)
		if !ok {
			continue
		}
		d.Secure = secure
		d.Port = m.MediaName.Port.Value
		if d.Port < 0 || d.Port > 65535 {
			return d, fmt.Errorf("%w: port %d", ErrBadSDP, d.Port)
		}
		d.Addr = sessionAddr
		if m.ConnectionInformation != nil && m.ConnectionInformation.Address != nil {
			a, err := parseConnAddr(m.ConnectionInformation.Address.Address)
			if err != nil {
				return d, err
			}
			d.Addr = a
		}
		if !d.Addr.IsValid() {
			return d, fmt.Errorf("%w: no connection address", ErrBadSDP)
		}
		d.Direction = directionOf(m.Attributes, sessionDir)
		rtpmap := map[string]string{}
		fmtp := map[string]string{}
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, enc, ok := strings.Cut(a.Value, " ")
				if ok {
					rtpmap[pt] = strings.ToLower(strings.TrimSpace(enc))
				}
			case "fmtp":
				pt, params, ok := strings.Cut(a.Value, " ")
				if ok {
					fmtp[pt] = params
				}
			case "maxptime":
				if v, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && v > 0 && v <= 200 {
					d.MaxPtime = v
				}
			case "crypto":
				if c, err := media.ParseCrypto(a.Value); err == nil {
					d.Crypto = append(d.Crypto, c)
				}
			case "ptime":
				if v, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && v > 0 && v <= 200 {
					d.Ptime = v
				}
			}
		}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.Atoi(f)
			if err != nil || pt < 0 || pt > 127 {
				continue
			}
			enc := rtpmap[f]
			switch {
			case pt == int(media.PayloadTypePCMU) && (enc == "" || strings.HasPrefix(enc, "pcmu/8000")):
				d.Formats = append(d.Formats, Format{Codec: media.PCMU, PT: uint8(pt)})
			case pt == int(media.PayloadTypePCMA) && (enc == "" || strings.HasPrefix(enc, "pcma/8000")):
				d.Formats = append(d.Formats, Format{Codec: media.PCMA, PT: uint8(pt)})
			case pt == int(media.PayloadTypeG722) && (enc == "" || strings.HasPrefix(enc, "g722/")):
				// RFC 3551 §4.5.2 says G722/8000; a few phones write
				// G722/16000 for the same static payload type.
				d.Formats = append(d.Formats, Format{Codec: media.G722, PT: uint8(pt)})
			case pt < 96:
				// other static or reserved payload types
			case enc == "opus/48000/2" || enc == "opus/48000":
				// RFC 7587 §7 requires "/2"; a few peers leave it out.
				d.Formats = append(d.Formats, Format{Codec: media.Opus, PT: uint8(pt), Opus: opusFmtp(fmtp[f], d.Ptime, d.MaxPtime)})
			case enc == "telephone-event/8000" && d.TelephoneEvent8k == 0:
				d.TelephoneEvent8k = uint8(pt)
			case enc == "telephone-event/48000" && d.TelephoneEvent48k == 0:
				d.TelephoneEvent48k = uint8(pt)
			}
		}
		if len(d.Formats) == 0 {
			return d, ErrNoCommonCodec
		}
		return d, nil
	}
	return d, ErrNoAudio
}

// opusFmtp reads an Opus format's fmtp, taking the media's a=ptime and
// a=maxptime when the fmtp does not give them. A malformed parameter is
// left at its default (ParseFmtp keeps the rest): a peer's typo costs it
// that parameter, not the call.
func opusFmtp(s string, ptime, maxPtime int) opus.Fmtp {
	f, _ := opus.ParseFmtp(s)
	if f.Ptime == 0 && ptime <= 120 {
		f.Ptime = ptime
	}
	if f.MaxPtime == 0 && maxPtime <= 120 {
		f.MaxPtime = maxPtime
	}
	return f
}

// rtpProfile tells the RTP profiles we take apart: plain (RTP/AVP,
// RTP/AVPF) and secure (RTP/SAVP, RTP/SAVPF). DTLS (UDP/TLS/RTP/SAVP) is
// not one of them.
func rtpProfile(protos []string) (secure, ok bool) {
	switch strings.ToUpper(strings.Join(protos, "/")) {
	case "RTP/AVP", "RTP/AVPF":
		return false, true
	case "RTP/SAVP", "RTP/SAVPF":
		return true, true
	}
	return false, false
}

func parseConnAddr(s string) (netip.Addr, error) {
	host, _, _ := strings.Cut(s, "/") // multicast TTL
	a, err := netip.ParseAddr(host)
	if err != nil {
		return a, fmt.Errorf("%w: connection address %q", ErrBadSDP, s)
	}
	return a.Unmap(), nil
}

func directionOf(attrs []sdp.Attribute, def media.Direction) media.Direction {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv":
			return media.SendRecv
		case "sendonly":
			return media.SendOnly
		case "recvonly":
			return media.RecvOnly
		case "inactive":
			return media.Inactive
		}
	}
	return def
}

// answerDirection is our direction given the peer's (RFC 3264 §6.1). An
// unspecified connection address is the old way of saying hold.
func answerDirection(peer Description) media.Direction {
	if peer.Addr.IsValid() && peer.Addr.IsUnspecified() {
		return media.Inactive
	}
	switch peer.Direction {
	case media.SendOnly:
		return media.RecvOnly
	case media.RecvOnly:
		return media.SendOnly
	case media.Inactive:
		return media.Inactive
	}
	return media.SendRecv
}

// sdpParams are what we put in our own offer or answer.
type sdpParams struct {
	sessionID, version uint64
	addr               netip.Addr
	port               int
	formats            []Format
	te8k, te48k        uint8 // telephone-event payload types, 0: none
	// opusFmtp is our a=fmtp for an Opus format: what we want to receive.
	opusFmtp  string
	direction media.Direction
	secure    bool          // RTP/SAVP rather than RTP/AVP
	crypto    *media.Crypto // our a=crypto, when SRTP is in use
}

// buildSDP writes our session description.
func buildSDP(p sdpParams) ([]byte, error) {
	addrType := "IP4"
	if p.addr.Is6() {
		addrType = "IP6"
	}
	formats := make([]string, 0, len(p.formats)+2)
	m := &sdp.MediaDescription{}
	for _, f := range p.formats {
		pt := strconv.Itoa(int(f.PT))
		formats = append(formats, pt)
		enc := f.Codec.String() + "/" + strconv.Itoa(f.Codec.RTPClockRate())
		if ch := f.Codec.Channels(); ch > 1 {
			enc += "/" + strconv.Itoa(ch)
		}
		m.Attributes = append(m.Attributes, sdp.NewAttribute("rtpmap", pt+" "+enc))
		if f.Codec == media.Opus && p.opusFmtp != "" {
			m.Attributes = append(m.Attributes, sdp.NewAttribute("fmtp", pt+" "+p.opusFmtp))
		}
	}
	for _, te := range []struct {
		pt    uint8
		clock string
	}{{p.te48k, "48000"}, {p.te8k, "8000"}} {
		if te.pt == 0 {
			continue
		}
		pt := strconv.Itoa(int(te.pt))
		formats = append(formats, pt)
		m.Attributes = append(m.Attributes,
			sdp.NewAttribute("rtpmap", pt+" telephone-event/"+te.clock),
			sdp.NewAttribute("fmtp", pt+" 0-16"))
	}
	if p.crypto != nil {
		m.Attributes = append(m.Attributes, sdp.NewAttribute("crypto", p.crypto.String()))
	}
	m.Attributes = append(m.Attributes, sdp.NewAttribute("ptime", "20"), sdp.NewPropertyAttribute(p.direction.String()))
	profile := "AVP"
	if p.secure {
		profile = "SAVP"
	}
	m.MediaName = sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: p.port}, Protos: []string{"RTP", profile}, Formats: formats}
	s := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "chorus", SessionID: p.sessionID, SessionVersion: p.version,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: p.addr.String()},
		SessionName: "chorus",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType,
			Address: &sdp.Address{Address: p.addr.String()}},
		TimeDescriptions:  []sdp.TimeDescription{{Timing: sdp.Timing{}}},
		MediaDescriptions: []*sdp.MediaDescription{m},
	}
	b, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal our SDP: %w", err)
	}
	return b, nil
}
