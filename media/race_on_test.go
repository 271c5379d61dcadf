//go:build race

package media

// raceEnabled: the race detector is on. Under it sync.Pool drops a quarter
// of what is Put (to shake out misuse), so code that reuses buffers through
// a pool (pion/srtp's CTR buffer) allocates now and then.
const raceEnabled = true
