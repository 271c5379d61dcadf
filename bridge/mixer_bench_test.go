package bridge

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"chorus/media"
)

// BenchmarkMixTick measures one mixer tick with n members of whom 3 talk:
// draining every socket, mixing, encoding and sending to every member.
func BenchmarkMixTick(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRoom(b, Config{MaxMembers: n})
			// One sink socket takes every silent member's output (and drops most).
			sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = sink.Close() })
			talkers := []*peer{
				r.join(media.PCMU, tone(400, -12)),
				r.join(media.PCMA, tone(700, -12)),
				r.join(media.PCMU, tone(1100, -12)),
			}
			for range n - len(talkers) {
				bconn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				sess, err := media.NewSession(bconn, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = sess.Close() })
				sess.SetParams(media.Params{Remote: sink.LocalAddr().(*net.UDPAddr).AddrPort(), Codec: media.PCMU, Direction: media.SendRecv})
				call := r.b.NewCall("u-test", "x", "1000", DirectionIn, &fakeLeg{sess: sess}, Callback{})
				call.Answered()
				if _, err := r.conf.AddMember(call, MemberOptions{}); err != nil {
					b.Fatal(err)
				}
				// One packet from the sink, its SDP address, proves it:
				// strict RTP would stop sending to an unproven member
				// after media.SendGrace, and the tick would do less.
				if _, err := sink.WriteToUDPAddrPort([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}, sess.LocalAddr()); err != nil {
					b.Fatal(err)
				}
			}
			tick := func() {
				for _, p := range talkers {
					p.send()
				}
				r.now = r.now.Add(TickInterval)
				r.conf.mixOnce(r.now)
			}
			for range 20 {
				tick()
			}
			for _, m := range r.conf.Members() {
				if !m.ep.Proven() {
					b.Fatal("a member's address is not proven")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration // the process's CPU time in the ticks (getrusage)
			for b.Loop() {
				before := processCPU()
				tick()
				cpu += processCPU() - before
				b.StopTimer()
				// Keep the talkers' and sink's socket buffers from filling.
				for _, p := range talkers {
					p.rec = p.rec[:0]
					p.receive()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time (user and system) the process has used:
// on this shared VM wall-clock time per tick swings with the neighbours'
// load, CPU time much less.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
