package bridge

import (
	"fmt"
	"testing"
	"unsafe"

	"chorus/media"
)

// maxMemberBytes bounds a Member: the mixer walks members every tick, and
// at 1000 members their cache lines are most of a tick's cost
// (docs/performance.md).
const maxMemberBytes = 256

// TestMemberSize: publishing live reception figures keeps its state in the
// endpoint and the session, not in the Member.
func TestMemberSize(t *testing.T) {
	if n := unsafe.Sizeof(Member{}); n > maxMemberBytes {
		t.Errorf("a Member is %d bytes, want at most %d", n, maxMemberBytes)
	}
}

// skip is a packet the peer's network loses: its sequence number and
// timestamp go by unsent.
func (p *peer) skip() {
	p.hdr.SequenceNumber++
	p.hdr.Timestamp += media.FrameSamples
}

// TestLiveReceptionStats: a member's loss, concealment and jitter reach
// Stats while its call lasts (about once a second), and what is left
// when it leaves; the totals then equal its endpoint's own counts, once.
func TestLiveReceptionStats(t *testing.T) {
	r := newRoom(t, Config{})
	lossy := r.join(media.PCMU, tone(400, -12))
	r.join(media.PCMA, tone(700, -12))
	st := r.b.stats
	const ticks, dropped = 150, 10
	for k := range ticks {
		for _, p := range r.peers {
			if p == lossy && k < 100 && k%10 == 5 {
				p.skip()
				continue
			}
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
		for _, p := range r.peers {
			p.receive()
		}
	}
	// Live: every member has published at least once since tick 100.
	js := lossy.member.epv.JitterStats()
	if got := st.Lost.Load(); got != dropped {
		t.Errorf("live: %d packets lost, want %d", got, dropped)
	}
	// Each loss conceals a frame; a read that found nothing yet conceals
	// one more and waits (an underrun).
	if c, u := st.JitterConcealed.Load(), st.JitterUnderruns.Load(); c < dropped*media.FrameSamples || c > (dropped+u)*media.FrameSamples {
		t.Errorf("live: %d samples concealed with %d underruns, want %d plus at most a frame per underrun", c, u, dropped*media.FrameSamples)
	}
	if got := st.JitterPackets.Load(); got < 2*(ticks-50)-dropped || got > 2*ticks-dropped {
		t.Errorf("live: %d packets published, want those of all but the last second", got)
	}
	var samples uint64
	for i := range st.Jitter {
		samples += st.Jitter[i].Load()
	}
	// Two members, sampled once in each of the 3 seconds.
	if samples != 2*ticks/statsTicks || st.JitterNanos.Load() == 0 {
		t.Errorf("live: %d jitter samples summing to %dns, want %d above 0", samples, st.JitterNanos.Load(), 2*ticks/statsTicks)
	}

	// Both leave: what was not yet published is added, nothing twice.
	other := r.peers[1].member.epv.JitterStats()
	for _, p := range r.peers {
		if err := r.conf.RemoveMember(p.member); err != nil {
			t.Fatal(err)
		}
	}
	r.now = r.now.Add(TickInterval)
	r.conf.mixOnce(r.now) // releases them
	if got, want := st.JitterPackets.Load(), js.Packets+other.Packets; got != want {
		t.Errorf("after leaving: %d packets, want the endpoints' %d", got, want)
	}
	if got, want := st.JitterConcealed.Load(), js.Concealed+other.Concealed; got != want {
		t.Errorf("after leaving: %d samples concealed, want the endpoints' %d", got, want)
	}
	if got := st.Lost.Load(); got != dropped {
		t.Errorf("after leaving: %d packets lost, want %d", got, dropped)
	}
}

// BenchmarkPublishStats is what publishing the members' reception figures
// costs a tick of a room of n members: a 1/statsTicks share of them take
// their endpoints' stats, and the round's flush adds them to Stats.
func BenchmarkPublishStats(b *testing.B) {
	for _, n := range []int{5, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRoom(b, Config{MaxMembers: n})
			members := make([]*Member, n)
			for i := range members {
				members[i] = r.join(media.PCMU, nil).member
			}
			w := newTickWorker()
			var tick uint64
			b.ReportAllocs()
			for b.Loop() {
				tick++
				for i := int(tick % statsTicks); i < len(members); i += statsTicks {
					members[i].takeStats(&w.rtp, true)
				}
				w.flush(r.b.stats)
			}
		})
	}
}
