package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"chorus/media"
)

// SDP errors. ErrNoCommonCodec maps to 488 Not Acceptable Here, the others
// to 400 Bad Request.
var (
	ErrBadSDP        = errors.New("malformed SDP")
	ErrNoAudio       = errors.New("SDP has no audio stream")
	ErrNoCommonCodec = errors.New("no common codec (PCMU, PCMA)")
)

// Description is what Chorus needs from a session description (RFC 4566)
// offered or answered by the peer.
type Description struct {
	Addr             netip.Addr // connection address; unspecified means hold (RFC 3264 §8.4)
	Port             int
	Codecs           []media.Codec // supported codecs in the peer's order of preference
	TelephoneEventPT uint8         // 0: not offered
	Ptime            int           // ms, 0 if not given
	Direction        media.Direction
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
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, enc, ok := strings.Cut(a.Value, " ")
				if ok {
					rtpmap[pt] = strings.ToLower(strings.TrimSpace(enc))
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
				d.Codecs = append(d.Codecs, media.PCMU)
			case pt == int(media.PayloadTypePCMA) && (enc == "" || strings.HasPrefix(enc, "pcma/8000")):
				d.Codecs = append(d.Codecs, media.PCMA)
			case pt >= 96 && strings.HasPrefix(enc, "telephone-event/8000") && d.TelephoneEventPT == 0:
				d.TelephoneEventPT = uint8(pt)
			}
		}
		if len(d.Codecs) == 0 {
			return d, ErrNoCommonCodec
		}
		return d, nil
	}
	return d, ErrNoAudio
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
	codecs             []media.Codec
	telephoneEventPT   uint8
	direction          media.Direction
	secure             bool          // RTP/SAVP rather than RTP/AVP
	crypto             *media.Crypto // our a=crypto, when SRTP is in use
}

// buildSDP writes our session description.
func buildSDP(p sdpParams) ([]byte, error) {
	addrType := "IP4"
	if p.addr.Is6() {
		addrType = "IP6"
	}
	formats := make([]string, 0, len(p.codecs)+1)
	m := &sdp.MediaDescription{}
	for _, c := range p.codecs {
		pt := strconv.Itoa(int(c.PayloadType()))
		formats = append(formats, pt)
		m.Attributes = append(m.Attributes, sdp.NewAttribute("rtpmap", pt+" "+c.String()+"/8000"))
	}
	if p.telephoneEventPT != 0 {
		pt := strconv.Itoa(int(p.telephoneEventPT))
		formats = append(formats, pt)
		m.Attributes = append(m.Attributes,
			sdp.NewAttribute("rtpmap", pt+" telephone-event/8000"),
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
