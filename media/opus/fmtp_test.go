package opus

import (
	"errors"
	"testing"
)

// TestParseFmtp reads fmtp values as peers write them.
func TestParseFmtp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Fmtp
		bad  bool
	}{
		{"", Fmtp{}, false},
		{"minptime=10;useinbandfec=1", Fmtp{MinPtime: 10, UseInbandFEC: true}, false}, // Chrome
		{"maxplaybackrate=48000;stereo=1;sprop-stereo=1;useinbandfec=1",
			Fmtp{MaxPlaybackRate: 48000, Stereo: true, SpropStereo: true, UseInbandFEC: true}, false},
		{" MaxPlaybackRate = 16000 ; usedtx=1 ;; cbr=1 ;", Fmtp{MaxPlaybackRate: 16000, UseDTX: true, CBR: true}, false},
		{"maxaveragebitrate=20000;ptime=20;maxptime=60;sprop-maxcapturerate=8000",
			Fmtp{MaxAverageBitrate: 20000, Ptime: 20, MaxPtime: 60, SpropMaxCaptureRate: 8000}, false},
		{"x-google-foo=bar;useinbandfec=1;unknown", Fmtp{UseInbandFEC: true}, false},
		{"useinbandfec=1;useinbandfec=0", Fmtp{}, false}, // the last one wins
		{"stereo=yes;useinbandfec=1", Fmtp{UseInbandFEC: true}, true},
		{"maxplaybackrate=96000;usedtx=1", Fmtp{UseDTX: true}, true},
		{"maxplaybackrate=4000", Fmtp{}, true},
		{"maxaveragebitrate=;useinbandfec=1", Fmtp{UseInbandFEC: true}, true},
		{"maxptime=121", Fmtp{}, true},
		{"ptime", Fmtp{}, true},
		{"useinbandfec=1 0", Fmtp{}, true},
	} {
		got, err := ParseFmtp(tc.in)
		if got != tc.want || (err != nil) != tc.bad || (err != nil && !errors.Is(err, ErrFmtp)) {
			t.Errorf("ParseFmtp(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestFmtpString: what Chorus would write reads back the same.
func TestFmtpString(t *testing.T) {
	f := Fmtp{MaxPlaybackRate: 48000, UseInbandFEC: true, Ptime: 20, MaxAverageBitrate: 32000}
	s := f.String()
	if s != "maxplaybackrate=48000;maxaveragebitrate=32000;useinbandfec=1;ptime=20" {
		t.Errorf("String() = %q", s)
	}
	if back, err := ParseFmtp(s); err != nil || back != f {
		t.Errorf("ParseFmtp(%q) = %+v, %v", s, back, err)
	}
	if (Fmtp{}).String() != "" {
		t.Error("empty Fmtp does not format to an empty string")
	}
}

// TestFmtpEncoderConfig: the receiver's wishes narrow what we send.
func TestFmtpEncoderConfig(t *testing.T) {
	base := DefaultConfig()
	base.DTX = true
	for _, tc := range []struct {
		in   string
		want func(*Config)
	}{
		{"", func(c *Config) { c.FEC, c.DTX = false, false }},
		{"useinbandfec=1;usedtx=1", func(*Config) {}},
		{"maxplaybackrate=16000;maxaveragebitrate=20000;useinbandfec=1",
			func(c *Config) { c.MaxPlaybackRate, c.Bitrate, c.DTX = 16000, 20000, false }},
		{"maxaveragebitrate=64000;useinbandfec=1;stereo=1;cbr=1", func(c *Config) { c.DTX = false }},
	} {
		f, err := ParseFmtp(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		want := base
		tc.want(&want)
		if got := f.EncoderConfig(base); got != want {
			t.Errorf("%q: EncoderConfig = %+v, want %+v", tc.in, got, want)
		}
		if err := f.EncoderConfig(base).Validate(); err != nil {
			t.Errorf("%q: %v", tc.in, err)
		}
	}
	if (Fmtp{}).PlaybackRate() != 48000 {
		t.Error("absent maxplaybackrate is not 48000")
	}
}

// FuzzParseFmtp: any string parses without panicking, every accepted value
// is in range, and what String writes parses back to the same parameters.
func FuzzParseFmtp(f *testing.F) {
	for _, s := range []string{
		"minptime=10;useinbandfec=1",
		"maxplaybackrate=48000;stereo=1;sprop-stereo=1;useinbandfec=1;usedtx=0;cbr=1",
		"maxaveragebitrate=510000;ptime=120;maxptime=3;sprop-maxcapturerate=8000",
		" = ;=;;stereo==1;USEINBANDFEC=1",
		"maxplaybackrate=+16000;ptime=-1;maxptime=0x10",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFmtp(s)
		if err != nil && !errors.Is(err, ErrFmtp) {
			t.Fatalf("%q: error %v does not wrap ErrFmtp", s, err)
		}
		if r := got.MaxPlaybackRate; r != 0 && (r < 8000 || r > 48000) {
			t.Fatalf("%q: maxplaybackrate %d accepted", s, r)
		}
		if b := got.MaxAverageBitrate; b != 0 && (b < 6000 || b > 510000) {
			t.Fatalf("%q: maxaveragebitrate %d accepted", s, b)
		}
		for _, p := range []int{got.Ptime, got.MinPtime, got.MaxPtime} {
			if p < 0 || p > 120 {
				t.Fatalf("%q: ptime %d accepted", s, p)
			}
		}
		back, err := ParseFmtp(got.String())
		if err != nil || back != got {
			t.Fatalf("%q: %+v formats to %q, which parses to %+v, %v", s, got, got.String(), back, err)
		}
		if err := got.EncoderConfig(DefaultConfig()).Validate(); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	})
}
