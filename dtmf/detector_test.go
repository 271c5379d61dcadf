package dtmf

import (
	"testing"
)

// pkt is one telephone-event packet fed to a Detector.
type pkt struct {
	ssrc, ts uint32
	code     uint8
	end      bool
	dur      uint16
}

func (p pkt) payload() []byte {
	b := make([]byte, 4)
	_, _ = Event{Code: p.code, End: p.end, Volume: 10, Duration: p.dur}.MarshalTo(b)
	return b
}

// press returns the packets of a well-formed key press: a start, updates
// every 160 samples and three end packets.
func press(ssrc, ts uint32, code uint8, updates int) []pkt {
	var ps []pkt
	for i := range updates + 1 {
		ps = append(ps, pkt{ssrc, ts, code, false, uint16(i * 160)})
	}
	for range 3 {
		ps = append(ps, pkt{ssrc, ts, code, true, uint16((updates + 1) * 160)})
	}
	return ps
}

func concat(parts ...[]pkt) []pkt {
	var all []pkt
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func feedAll(d *Detector, ps []pkt) string {
	var got []rune
	for _, p := range ps {
		if digit, ok := d.Feed(p.ssrc, p.ts, p.payload()); ok {
			got = append(got, digit)
		}
	}
	return string(got)
}

func TestDetector(t *testing.T) {
	const ssrc = 0x11223344
	long := []pkt{{ssrc, 8000, 5, false, 0}}
	for i := range 2000 { // 2000 updates of 160: the duration wraps four times
		long = append(long, pkt{ssrc, 8000, 5, false, uint16((i + 1) * 160)})
	}
	long = append(long, pkt{ssrc, 8000, 5, true, 2001 * 160 % 0x10000})

	// An RFC 4733 §2.5.1.3 long-duration event in two segments.
	segmented := []pkt{{ssrc, 1000, 7, false, 0}, {ssrc, 1000, 7, false, 0x8000}, {ssrc, 1000, 7, false, 0xffff},
		{ssrc, 1000 + 0xffff, 7, false, 160}, {ssrc, 1000 + 0xffff, 7, false, 320}, {ssrc, 1000 + 0xffff, 7, true, 480},
		{ssrc, 1000 + 0xffff, 7, true, 480}}

	tests := []struct {
		name string
		pkts []pkt
		want string
	}{
		{"one press", press(ssrc, 1000, 1, 5), "1"},
		{"all keys", concat(press(ssrc, 0, 0, 2), press(ssrc, 800, 1, 2), press(ssrc, 1600, 2, 2), press(ssrc, 2400, 3, 2),
			press(ssrc, 3200, 4, 2), press(ssrc, 4000, 5, 2), press(ssrc, 4800, 6, 2), press(ssrc, 5600, 7, 2),
			press(ssrc, 6400, 8, 2), press(ssrc, 7200, 9, 2), press(ssrc, 8000, 10, 2), press(ssrc, 8800, 11, 2),
			press(ssrc, 9600, 12, 2), press(ssrc, 10400, 13, 2), press(ssrc, 11200, 14, 2), press(ssrc, 12000, 15, 2)),
			"0123456789*#ABCD"},
		{"start-less event", []pkt{{ssrc, 1000, 3, true, 800}, {ssrc, 1000, 3, true, 800}, {ssrc, 1000, 3, true, 800}}, "3"},
		{"starts with an update", []pkt{{ssrc, 1000, 3, false, 480}, {ssrc, 1000, 3, false, 640}, {ssrc, 1000, 3, true, 800}}, "3"},
		{"missing end, then another digit", concat(press(ssrc, 1000, 1, 3)[:4], press(ssrc, 2000, 2, 3)), "12"},
		{"missing end, then the same digit", concat(press(ssrc, 1000, 1, 3)[:4], press(ssrc, 2000, 1, 3)), "11"},
		{"same digit twice", concat(press(ssrc, 1000, 9, 3), press(ssrc, 3000, 9, 3)), "99"},
		{"duplicated ends", concat(press(ssrc, 1000, 11, 3), press(ssrc, 1000, 11, 3)[4:], press(ssrc, 1000, 11, 3)[4:]), "#"},
		{"long press with duration wrap", long, "5"},
		{"long-duration segments", segmented, "7"},
		{"same digit after a segment-sized gap, previous ended", concat(press(ssrc, 1000, 7, 3), press(ssrc, 1000+0xffff, 7, 3)), "77"},
		{"ssrc change, same timestamp", concat(press(ssrc, 1000, 4, 3), press(ssrc+1, 1000, 4, 3)), "44"},
		{"ssrc change and back", concat(press(ssrc, 1000, 4, 3), press(ssrc+1, 5000, 6, 3), press(ssrc, 2000, 4, 3)), "464"},
		{"late packets of the previous event", concat(press(ssrc, 1000, 1, 3)[:3], press(ssrc, 2000, 2, 3)[:2],
			press(ssrc, 1000, 1, 3)[3:], press(ssrc, 2000, 2, 3)[2:]), "12"},
		{"late packets of older events", concat(press(ssrc, 1000, 1, 3), press(ssrc, 2000, 2, 3), press(ssrc, 3000, 3, 3),
			press(ssrc, 1000, 1, 3), press(ssrc, 2000, 2, 3)[6:]), "123"},
		{"code change under one timestamp", []pkt{{ssrc, 1000, 1, false, 0}, {ssrc, 1000, 1, true, 800},
			{ssrc, 1000, 2, false, 0}, {ssrc, 1000, 2, true, 800}}, "12"},
		{"timestamp wrap", concat(press(ssrc, 0xffffff00, 1, 3), press(ssrc, 0x100, 2, 3)), "12"},
		{"older timestamp not seen before", concat(press(ssrc, 17632, 0, 3), press(ssrc, 13280, 1, 3)), "01"},
		{"non-DTMF events ignored", []pkt{{ssrc, 1000, 16, false, 0}, {ssrc, 1000, 16, true, 800}, {ssrc, 2000, 255, true, 1},
			{ssrc, 3000, 8, true, 800}}, "8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Detector
			if got := feedAll(&d, tc.pkts); got != tc.want {
				t.Fatalf("digits %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDetectorIgnoresShortPayloads(t *testing.T) {
	var d Detector
	for _, b := range [][]byte{nil, {}, {1}, {1, 0x8a, 8}} {
		if digit, ok := d.Feed(1, 1000, b); ok {
			t.Fatalf("Feed(%x) fired %q", b, digit)
		}
	}
	if digit, ok := d.Feed(1, 1000, []byte{1, 0x8a, 8, 0xc0}); !ok || digit != '1' {
		t.Fatalf("Feed after short payloads = %q, %v; want '1'", digit, ok)
	}
}

func TestDetectorReset(t *testing.T) {
	var d Detector
	p := press(1, 1000, 6, 3)
	if got := feedAll(&d, p[:3]); got != "6" {
		t.Fatalf("before Reset: %q, want \"6\"", got)
	}
	if got := feedAll(&d, p[3:]); got != "" {
		t.Fatalf("rest of the press: %q, want none", got)
	}
	d.Reset()
	if got := feedAll(&d, p[4:]); got != "6" {
		t.Fatalf("after Reset: %q, want the event reported again", got)
	}
}

// TestDetectorHistory checks that the memory of recent events is bounded and
// that late packets within it do not fire.
func TestDetectorHistory(t *testing.T) {
	var d Detector
	for i := range historySize {
		feedAll(&d, press(1, uint32(1000*(i+1)), uint8(i%10), 1))
	}
	for i := range historySize {
		if got := feedAll(&d, press(1, uint32(1000*(i+1)), uint8(i%10), 1)); got != "" {
			t.Fatalf("late packets of event %d fired %q", i, got)
		}
	}
}

func TestDetectorNoAlloc(t *testing.T) {
	payloads := [][]byte{{1, 0x0a, 0, 0}, {1, 0x0a, 0, 160}, {1, 0x8a, 1, 64}}
	var d Detector
	ts := uint32(0)
	allocs := testing.AllocsPerRun(1000, func() {
		ts += 8000
		for _, p := range payloads {
			d.Feed(7, ts, p)
		}
		d.Feed(7, ts, payloads[0][:2]) // short: ignored
	})
	if allocs != 0 {
		t.Fatalf("Feed allocates %v times per press, want 0", allocs)
	}
}

func BenchmarkDetectorFeed(b *testing.B) {
	// A SIPp-like press: start, six updates, three identical end packets.
	var payloads [10][4]byte
	for i := range payloads {
		e := Event{Code: 5, Volume: 10, Duration: uint16(i * 320)}
		if i >= 7 {
			e.End, e.Duration = true, 2240
		}
		_, _ = e.MarshalTo(payloads[i][:])
	}
	var d Detector
	ts := uint32(0)
	b.ReportAllocs()
	for b.Loop() {
		ts += 8000
		for i := range payloads {
			d.Feed(0x0e05384e, ts, payloads[i][:])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(payloads)), "ns/packet")
}
