package testphone

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Static RTP payload types (RFC 3551), and the dynamic one the phone
// offers Opus at: not Chorus's own 111, so that tests see the offer's
// number kept in the answer.
const (
	ptPCMU uint8 = 0
	ptPCMA uint8 = 8
	ptG722 uint8 = 9
	ptOpus uint8 = 107
)

// Media directions (RFC 3264).
const (
	dirSendRecv = "sendrecv"
	dirSendOnly = "sendonly"
	dirRecvOnly = "recvonly"
	dirInactive = "inactive"
)

// codecPT maps a codec name to its payload type in the phone's offers.
func codecPT(name string) (uint8, bool) {
	switch strings.ToUpper(name) {
	case "PCMU":
		return ptPCMU, true
	case "PCMA":
		return ptPCMA, true
	case "G722":
		return ptG722, true
	case "OPUS":
		return ptOpus, true
	}
	return 0, false
}

// clockRate is a codec's RTP clock rate: 48000 for Opus (RFC 7587 §4.1),
// 8000 for the others, G.722 included (RFC 3551 §4.5.2).
func clockRate(name string) int {
	if strings.EqualFold(name, "OPUS") {
		return 48000
	}
	return 8000
}

// audioRate is the sample rate of a codec's audio: what Source fills and
// the recording holds.
func audioRate(name string) int {
	switch strings.ToUpper(name) {
	case "G722":
		return 16000
	case "OPUS":
		return 48000
	}
	return 8000
}

// offerParams describes one SDP body we send (offer or answer).
type offerParams struct {
	sessID, version uint64
	port            int
	codecs          []string // names, in order
	opusPT          uint8    // Opus's payload type; 0: ptOpus
	tePT            int      // telephone-event/8000 PT, or -1 for none
	te48PT          int      // telephone-event/48000 PT, or 0 for none
	ptime           int
	direction       string
	crypto          string // a=crypto value; set: RTP/SAVP (srtp.go)
}

func buildSDP(o offerParams) []byte {
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:  "audio",
			Port:   sdp.RangedPort{Value: o.port},
			Protos: []string{"RTP", "AVP"},
		},
	}
	for _, c := range o.codecs {
		pt, _ := codecPT(c)
		if strings.EqualFold(c, "OPUS") {
			if o.opusPT != 0 {
				pt = o.opusPT
			}
			md.MediaName.Formats = append(md.MediaName.Formats, strconv.Itoa(int(pt)))
			md.Attributes = append(md.Attributes, sdp.NewAttribute("rtpmap", fmt.Sprintf("%d opus/48000/2", pt)),
				sdp.NewAttribute("fmtp", fmt.Sprintf("%d useinbandfec=1", pt)))
			continue
		}
		md.MediaName.Formats = append(md.MediaName.Formats, strconv.Itoa(int(pt)))
		md.Attributes = append(md.Attributes, sdp.NewAttribute("rtpmap", fmt.Sprintf("%d %s/8000", pt, strings.ToUpper(c))))
	}
	if o.te48PT > 0 {
		md.MediaName.Formats = append(md.MediaName.Formats, strconv.Itoa(o.te48PT))
		md.Attributes = append(md.Attributes,
			sdp.NewAttribute("rtpmap", fmt.Sprintf("%d telephone-event/48000", o.te48PT)),
			sdp.NewAttribute("fmtp", fmt.Sprintf("%d 0-16", o.te48PT)))
	}
	if o.tePT >= 0 {
		md.MediaName.Formats = append(md.MediaName.Formats, strconv.Itoa(o.tePT))
		md.Attributes = append(md.Attributes,
			sdp.NewAttribute("rtpmap", fmt.Sprintf("%d telephone-event/8000", o.tePT)),
			sdp.NewAttribute("fmtp", fmt.Sprintf("%d 0-16", o.tePT)))
	}
	md.Attributes = append(md.Attributes,
		sdp.NewAttribute("ptime", strconv.Itoa(o.ptime)),
		sdp.NewPropertyAttribute(o.direction))
	if o.crypto != "" {
		md.MediaName.Protos[1] = "SAVP"
		md.Attributes = append(md.Attributes, sdp.NewAttribute("crypto", o.crypto))
	}
	sd := &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       "-",
			SessionID:      o.sessID,
			SessionVersion: o.version,
			NetworkType:    "IN",
			AddressType:    "IP4",
			UnicastAddress: "127.0.0.1",
		},
		SessionName: "chorus-testphone",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: "IP4",
			Address:     &sdp.Address{Address: "127.0.0.1"},
		},
		TimeDescriptions:  []sdp.TimeDescription{{Timing: sdp.Timing{}}},
		MediaDescriptions: []*sdp.MediaDescription{md},
	}
	b, err := sd.Marshal()
	if err != nil {
		// Only possible with a malformed struct, which buildSDP never makes.
		panic("testphone: marshal SDP: " + err.Error())
	}
	return b
}

// remoteMedia is what we learn from the peer's SDP (offer or answer).
type remoteMedia struct {
	addr      netip.AddrPort
	formats   []uint8          // payload types of the m=audio line, in order
	names     map[uint8]string // PT -> upper-case encoding name
	tePT      int              // telephone-event/8000 PT, or -1
	te48PT    int              // telephone-event/48000 PT, or -1
	direction string
	secure    bool     // RTP/SAVP
	crypto    []string // a=crypto values
}

var errNoAudio = errors.New("testphone: SDP has no usable m=audio line")

func parseSDP(body []byte) (*remoteMedia, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("testphone: parse SDP: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		ci := md.ConnectionInformation
		if ci == nil {
			ci = sd.ConnectionInformation
		}
		if ci == nil || ci.Address == nil {
			return nil, fmt.Errorf("testphone: SDP has no c= line")
		}
		ip, err := netip.ParseAddr(ci.Address.Address)
		if err != nil {
			return nil, fmt.Errorf("testphone: SDP c= address: %w", err)
		}
		rm := &remoteMedia{
			addr:      netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value)),
			names:     map[uint8]string{ptPCMU: "PCMU", ptPCMA: "PCMA", ptG722: "G722"},
			tePT:      -1,
			te48PT:    -1,
			direction: dirSendRecv,
			secure:    strings.EqualFold(strings.Join(md.MediaName.Protos, "/"), "RTP/SAVP"),
		}
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			rm.formats = append(rm.formats, uint8(pt))
		}
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap":
				ptStr, enc, ok := strings.Cut(a.Value, " ")
				if !ok {
					continue
				}
				pt, err := strconv.ParseUint(ptStr, 10, 7)
				if err != nil {
					continue
				}
				name, clock, _ := strings.Cut(enc, "/")
				name = strings.ToUpper(name)
				rm.names[uint8(pt)] = name
				if name == "TELEPHONE-EVENT" {
					if strings.HasPrefix(clock, "48000") {
						rm.te48PT = int(pt)
					} else {
						rm.tePT = int(pt)
					}
				}
			case dirSendRecv, dirSendOnly, dirRecvOnly, dirInactive:
				rm.direction = a.Key
			case "crypto":
				rm.crypto = append(rm.crypto, a.Value)
			}
		}
		return rm, nil
	}
	return nil, errNoAudio
}

// pick returns the first format of rm whose codec is in allowed.
func (rm *remoteMedia) pick(allowed []string) (name string, pt uint8, ok bool) {
	for _, f := range rm.formats {
		n := rm.names[f]
		for _, a := range allowed {
			if strings.EqualFold(n, a) {
				return strings.ToUpper(a), f, true
			}
		}
	}
	return "", 0, false
}

// teFor is the peer's telephone-event payload type at codec name's clock
// rate (RFC 4733 §2.1), or -1.
func (rm *remoteMedia) teFor(name string) int {
	if clockRate(name) == 48000 {
		return rm.te48PT
	}
	return rm.tePT
}

// reverseDirection is the answer direction to an offered one.
func reverseDirection(d string) string {
	switch d {
	case dirSendOnly:
		return dirRecvOnly
	case dirRecvOnly:
		return dirSendOnly
	case dirInactive:
		return dirInactive
	}
	return dirSendRecv
}
