package dtmf

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/pion/rtp"
)

// sippPcaps are SIPp's RFC 2833 captures (Debian package sip-tester,
// /usr/share/sip-tester), copied to testdata so the tests do not depend on
// the package, and the digit each one carries.
var sippPcaps = []struct {
	file  string
	digit rune
}{
	{"dtmf_2833_0.pcap", '0'},
	{"dtmf_2833_1.pcap", '1'},
	{"dtmf_2833_2.pcap", '2'},
	{"dtmf_2833_3.pcap", '3'},
	{"dtmf_2833_4.pcap", '4'},
	{"dtmf_2833_5.pcap", '5'},
	{"dtmf_2833_6.pcap", '6'},
	{"dtmf_2833_7.pcap", '7'},
	{"dtmf_2833_8.pcap", '8'},
	{"dtmf_2833_9.pcap", '9'},
	{"dtmf_2833_star.pcap", '*'},
	{"dtmf_2833_pound.pcap", '#'},
}

// sippEventPT is the telephone-event payload type in SIPp's captures.
const sippEventPT = 101

// readRTP returns the RTP packets of payload type pt in a pcap file from
// testdata (or, failing that, from the sip-tester package).
func readRTP(t testing.TB, file string, pt uint8) []rtp.Packet {
	t.Helper()
	path := filepath.Join("testdata", file)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		path = filepath.Join("/usr/share/sip-tester", file)
		f, err = os.Open(path)
	}
	if err != nil {
		t.Fatalf("%s: %v\nSIPp's DTMF captures are missing: restore dtmf/testdata from git, or install sip-tester "+
			"(apt-get install sip-tester) and copy /usr/share/sip-tester/dtmf_2833_*.pcap to dtmf/testdata", file, err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pkts []rtp.Packet
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			continue
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(udp.Payload); err != nil {
			t.Fatalf("%s: RTP packet %d: %v", path, len(pkts), err)
		}
		if pkt.PayloadType == pt {
			pkts = append(pkts, pkt)
		}
	}
	if len(pkts) == 0 {
		t.Fatalf("%s: no RTP packets of payload type %d", path, pt)
	}
	return pkts
}

func TestDetectorSIPpPcaps(t *testing.T) {
	for _, tc := range sippPcaps {
		t.Run(tc.file, func(t *testing.T) {
			pkts := readRTP(t, tc.file, sippEventPT)
			var d Detector
			var got []rune
			for i, p := range pkts {
				if digit, ok := d.Feed(p.SSRC, p.Timestamp, p.Payload); ok {
					if i != 0 {
						t.Errorf("digit fired on packet %d, want the first", i)
					}
					got = append(got, digit)
				}
			}
			if len(got) != 1 || got[0] != tc.digit {
				t.Fatalf("digits %q, want exactly %q", string(got), tc.digit)
			}
		})
	}
}

// TestSIPpPcapShape checks the capture properties the detector tests rely on
// (research/peers.md §9): ten packets, a marked start with duration 0, and
// three end packets that repeat the sequence number and timestamp.
func TestSIPpPcapShape(t *testing.T) {
	for _, tc := range sippPcaps {
		pkts := readRTP(t, tc.file, sippEventPT)
		if len(pkts) != 10 {
			t.Fatalf("%s: %d packets, want 10", tc.file, len(pkts))
		}
		var first, last Event
		if err := first.Unmarshal(pkts[0].Payload); err != nil {
			t.Fatal(err)
		}
		if !pkts[0].Marker || first.End || first.Duration != 0 || first.Volume != 10 {
			t.Errorf("%s: first packet M=%v %+v", tc.file, pkts[0].Marker, first)
		}
		if d, _ := Digit(first.Code); d != tc.digit {
			t.Errorf("%s: code %d, want digit %q", tc.file, first.Code, tc.digit)
		}
		ends := pkts[7:]
		for _, p := range ends {
			if err := last.Unmarshal(p.Payload); err != nil {
				t.Fatal(err)
			}
			if !last.End || p.SequenceNumber != ends[0].SequenceNumber || p.Timestamp != pkts[0].Timestamp {
				t.Errorf("%s: end packet seq %d ts %d %+v", tc.file, p.SequenceNumber, p.Timestamp, last)
			}
		}
	}
}

// TestDetectorSIPpPcapsOneCall plays all twelve captures in one call, as a
// SIPp scenario with several play_pcap_audio actions does: same SSRC, and
// timestamps that are not in order. Each digit fires once, in order.
func TestDetectorSIPpPcapsOneCall(t *testing.T) {
	var d Detector
	var want, got []rune
	for _, tc := range sippPcaps {
		want = append(want, tc.digit)
		for _, p := range readRTP(t, tc.file, sippEventPT) {
			if digit, ok := d.Feed(p.SSRC, p.Timestamp, p.Payload); ok {
				got = append(got, digit)
			}
		}
	}
	if string(got) != string(want) {
		t.Fatalf("digits %q, want %q", string(got), string(want))
	}
}

// TestDetectorSIPpPcapLosses replays dtmf_2833_5.pcap with packets lost:
// whichever packets survive, the digit fires exactly once.
func TestDetectorSIPpPcapLosses(t *testing.T) {
	pkts := readRTP(t, "dtmf_2833_5.pcap", sippEventPT)
	for mask := 1; mask < 1<<len(pkts); mask++ {
		var d Detector
		fired := 0
		for i, p := range pkts {
			if mask&(1<<i) == 0 {
				continue
			}
			if digit, ok := d.Feed(p.SSRC, p.Timestamp, p.Payload); ok {
				if digit != '5' {
					t.Fatalf("mask %b: digit %q, want '5'", mask, digit)
				}
				fired++
			}
		}
		if fired != 1 {
			t.Fatalf("mask %b: fired %d times, want 1", mask, fired)
		}
	}
}
