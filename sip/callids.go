package sip

import (
	"hash/maphash"
	"sync"
	"time"
)

// callIDPeriod is how long a Call-ID stays known after the INVITE that
// brought it or the end of its call: at least 64×T1, the life of a
// transaction that may still see a CANCEL, an ACK or a retransmitted BYE
// (RFC 3261 §17.2.1, §17.2.2), at most twice that.
const callIDPeriod = 64 * 500 * time.Millisecond // 64×T1, T1 = 500 ms (RFC 3261 §17.1.1.1)

// callIDSet is the Call-IDs the UDP screen lets through to sipgo: an
// in-dialog request (BYE, INFO, UPDATE, re-INVITE, CANCEL, ACK) with any
// other Call-ID matches no dialog of ours and is answered there,
// statelessly (unwanted.go). A Call-ID is known
//   - while its call lives: an inbound call from when it is registered in
//     s.calls, a dialled one from before its INVITE leaves, so a BYE right
//     behind the callee's 200 reaches sipgo although sipgo stores the
//     dialog only once it has processed that 200;
//   - for one to two periods after an INVITE with it arrived, so a CANCEL
//     or the ACK of a non-2xx answer (§17.2.1) reaches the INVITE's
//     transaction whether or not the call was ever registered;
//   - for one to two periods after its call ended, so a retransmitted BYE
//     still gets the answer of its transaction.
//
// The recent ones are kept in two generations swapped every period. Call-IDs
// are kept as seeded hashes: the screen looks them up without allocating,
// and a collision only lets a stray through to sipgo, as before the screen.
type callIDSet struct {
	seed   maphash.Seed
	now    func() time.Time
	period time.Duration

	mu      sync.Mutex
	live    map[uint64]int32 // calls holding the Call-ID
	recent  map[uint64]struct{}
	older   map[uint64]struct{} // the generation before recent
	rotated time.Time           // when recent began
}

func newCallIDSet(now func() time.Time, period time.Duration) *callIDSet {
	if now == nil {
		now = time.Now
	}
	return &callIDSet{seed: maphash.MakeSeed(), now: now, period: period, live: map[uint64]int32{},
		recent: map[uint64]struct{}{}, older: map[uint64]struct{}{}, rotated: now()}
}

// hash is the key of a Call-ID as it appears in a datagram.
func (s *callIDSet) hash(id []byte) uint64 { return maphash.Bytes(s.seed, id) }

// hashString is the key of a Call-ID string; the same as hash of its bytes.
func (s *callIDSet) hashString(id string) uint64 { return maphash.String(s.seed, id) }

// add registers a call's Call-ID for as long as the call lives.
func (s *callIDSet) add(id string) {
	h := s.hashString(id)
	s.mu.Lock()
	s.live[h]++
	s.mu.Unlock()
}

// remove ends what add began; the Call-ID stays known a while longer.
func (s *callIDSet) remove(id string) {
	h := s.hashString(id)
	s.mu.Lock()
	if s.live[h]--; s.live[h] <= 0 {
		delete(s.live, h)
	}
	s.noteLocked(h)
	s.mu.Unlock()
}

// seen notes the Call-ID of an INVITE that arrived.
func (s *callIDSet) seen(h uint64) {
	s.mu.Lock()
	s.noteLocked(h)
	s.mu.Unlock()
}

func (s *callIDSet) noteLocked(h uint64) {
	now := s.now()
	if d := now.Sub(s.rotated); d >= s.period {
		// New maps rather than cleared ones: what a flood grew is freed.
		s.older = s.recent
		if d >= 2*s.period {
			s.older = map[uint64]struct{}{}
		}
		s.recent = make(map[uint64]struct{}, len(s.live))
		s.rotated = now
	}
	s.recent[h] = struct{}{}
}

// known tells whether a request with this Call-ID may belong to a dialog
// or transaction of ours. Entries older than two periods may linger until
// the next note; that only lets a request through to sipgo.
func (s *callIDSet) known(h uint64) bool {
	s.mu.Lock()
	_, ok := s.live[h]
	if !ok {
		_, ok = s.recent[h]
	}
	if !ok {
		_, ok = s.older[h]
	}
	s.mu.Unlock()
	return ok
}
