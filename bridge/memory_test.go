package bridge

import (
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"chorus/media"
)

// maxRecordBytes is what a completed call or conference may cost while it
// is kept for the retention (issue 10: 6,000 short calls an hour must not
// hold 81 MB).
const maxRecordBytes = 2048

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// recordBridge is a bridge as the binary builds it for this measure: a
// real text logger (its With copies are part of what a record keeps),
// stepped by hand.
func recordBridge(t testing.TB) *Bridge {
	t.Helper()
	b := New(Config{AutoCreate: true, DefaultUser: "u-test"}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	b.manualClock = true
	return b
}

// shortCall places a call into conf, mixes a tick, and ends it the way a
// BYE does, leaving the completed records behind.
func shortCall(t testing.TB, b *Bridge, conf *Conference, w *tickWorker, now time.Time) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := media.NewSession(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.SetParams(media.Params{Remote: sess.LocalAddr(), Codec: media.PCMU, Direction: media.SendRecv})
	call := b.NewCall("u-test", "+15550001111", conf.From(), DirectionIn, &fakeLeg{sess: sess}, Callback{})
	call.Answered()
	if _, err := conf.AddMember(call, MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	conf.mixTick(now, w)
	call.Ended("hangup")
	conf.mixTick(now.Add(TickInterval), w) // the mixer releases what the member held
	_ = sess.Close()
}

// TestCompletedRecordMemory: what a completed call and a completed
// conference keep for the retention, measured on the heap over a few
// thousand of each.
func TestCompletedRecordMemory(t *testing.T) {
	const n = 5000
	perCall, perConf := measureRecords(t, n)
	t.Logf("completed call (with its member record): %.0f bytes; completed conference: %.0f bytes", perCall, perConf)
	if perCall > maxRecordBytes {
		t.Errorf("a completed call keeps %.0f bytes, want at most %d", perCall, maxRecordBytes)
	}
	if perConf > maxRecordBytes {
		t.Errorf("a completed conference keeps %.0f bytes, want at most %d", perConf, maxRecordBytes)
	}
}

func measureRecords(t testing.TB, n int) (perCall, perConf float64) {
	b := recordBridge(t)
	room, err := b.CreateConference(ConferenceOptions{UserID: "u-test", From: "+15550001000"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// A listener keeps the room live while the short calls come and go.
	shortCallWarm(t, b, room, now)
	// One receive buffer for every room, as a clock shard has.
	w := newTickWorker()
	before := heapInUse()
	for range n {
		shortCall(t, b, room, w, now)
	}
	perCall = grown(before, n)

	before = heapInUse()
	for i := range n {
		conf, err := b.Route("+1555"+itoa(i), "")
		if err != nil {
			t.Fatal(err)
		}
		shortCall(t, b, conf, w, now)
	}
	perConf = grown(before, n) - perCall
	runtime.KeepAlive(b)
	return perCall, perConf
}

// grown is how much the heap grew since before, per item of n.
func grown(before uint64, n int) float64 {
	return (float64(heapInUse()) - float64(before)) / float64(n)
}

// shortCallWarm makes the room live with one member that stays.
func shortCallWarm(t testing.TB, b *Bridge, conf *Conference, now time.Time) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := media.NewSession(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	sess.SetParams(media.Params{Remote: sess.LocalAddr(), Codec: media.PCMU, Direction: media.SendRecv})
	call := b.NewCall("u-test", "+15550002222", conf.From(), DirectionIn, &fakeLeg{sess: sess}, Callback{})
	call.Answered()
	if _, err := conf.AddMember(call, MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	conf.mixOnce(now)
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}
