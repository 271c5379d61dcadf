package sip

import (
	"context"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"testing"
	"time"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/internal/testphone"
	"chorus/media"
)

// distinctTones have periods of 17, 11 and 7 samples: G.711 distortion of
// any two of them never lands on the third (see bridge's mixer tests).
var distinctTones = []float64{8000.0 / 17, 8000.0 / 11, 8000.0 / 7}

type testBridge struct {
	b        *bridge.Bridge
	srv      *Server
	udp, tcp netip.AddrPort
}

func TestMain(m *testing.M) {
	SetLibraryLogger(logger(nil))
	os.Exit(m.Run())
}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("CHORUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startBridge runs a bridge with SIP on loopback ports chosen at run time.
func startBridge(t testing.TB, cfg bridge.Config, rtpLow, rtpHigh int, opts ...func(*Config)) *testBridge {
	t.Helper()
	if cfg.DefaultUser == "" {
		cfg.DefaultUser = "u-test"
	}
	log := logger(t)
	b := bridge.New(cfg, log, nil)
	ports, err := media.NewPortPool(netip.MustParseAddr("127.0.0.1"), rtpLow, rtpHigh, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sc := Config{PublicIP: netip.MustParseAddr("127.0.0.1"), Ports: ports, Bridge: b, Log: log}
	for _, o := range opts {
		o(&sc)
	}
	srv, err := New(sc)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := srv.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := srv.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.HangupAll(ctx, "test-end")
		_ = srv.Close()
	})
	return &testBridge{b: b, srv: srv, udp: udp, tcp: tcp}
}

func (tb *testBridge) dial(t testing.TB, opts testphone.Options) *testphone.Phone {
	t.Helper()
	if opts.Target == "" {
		opts.Target = tb.udp.String()
		if opts.Transport == "tcp" {
			opts.Target = tb.tcp.String()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := testphone.Dial(ctx, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", opts.User, err)
	}
	t.Cleanup(p.Close)
	return p
}

// level is what a listener heard at f most of the time: the median over
// 100 ms blocks, so that a packet delayed by a loaded machine does not
// read as a level change.
func level(rec []int16, f float64) float64 { return audiotest.MedianLevelDBFS(rec, f, 8000, 800) }

// listen waits d and returns what each phone received meanwhile.
func listen(d time.Duration, phones ...*testphone.Phone) [][]int16 {
	marks := make([]int, len(phones))
	for i, p := range phones {
		marks[i] = p.Mark()
	}
	time.Sleep(d)
	out := make([][]int16, len(phones))
	for i, p := range phones {
		out[i] = p.RecordingSince(marks[i])
	}
	return out
}

// TestThreeCallersHearEachOther is the spine end to end: three SIP callers
// (one on PCMA, one over TCP) each send a tone; each hears the other two at
// their level and its own at least 60 dB below them.
func TestThreeCallersHearEachOther(t *testing.T) {
	tb := startBridge(t, bridge.Config{AutoCreate: true}, 21000, 21999)
	opts := []testphone.Options{
		{User: "1000", Codecs: []string{"PCMU"}},
		{User: "1000", Codecs: []string{"PCMA"}},
		{User: "1000", Codecs: []string{"PCMU", "PCMA"}, Transport: "tcp"},
	}
	var phones []*testphone.Phone
	for i, o := range opts {
		o.Source = audiotest.ToneSource(distinctTones[i], -12, 8000)
		phones = append(phones, tb.dial(t, o))
	}
	if got := phones[1].Codec(); got != "PCMA" {
		t.Errorf("second caller negotiated %s, want PCMA", got)
	}
	time.Sleep(500 * time.Millisecond) // jitter buffers prime
	recs := listen(1500*time.Millisecond, phones...)
	for i, rec := range recs {
		if len(rec) < 8000 {
			st := tb.b.Stats()
			t.Fatalf("caller %d received %d samples in 1.5 s; phone stats %+v; bridge ticks %d restarts %d out %d", i, len(rec),
				phones[i].Stats(), st.Ticks.Load(), st.Restarts.Load(), st.PacketsOut.Load())
		}
		for j, f := range distinctTones {
			got := level(rec, f)
			if i == j {
				if got > -12-60 {
					t.Errorf("caller %d hears itself at %.1f dBFS", i, got)
				}
				continue
			}
			if math.Abs(got+12) > 1.5 {
				t.Errorf("caller %d hears caller %d at %.1f dBFS, want -12", i, j, got)
			}
		}
	}
	confs := tb.b.Conferences("u-test")
	if len(confs) != 1 || confs[0].From() != "1000" || confs[0].Info().ActiveMembers != 3 {
		t.Fatalf("want one auto-created conference 1000 with 3 members, got %+v", confs)
	}
}
