package bridge

import (
	"math"
	"time"

	"chorus/internal/audiotest"
	"chorus/media"
	"errors"
	"testing"
)

// enter feeds keys to e and returns the results.
func enter(e *pinEntry, keys, pin string) []pinResult {
	var out []pinResult
	for _, k := range keys {
		out = append(out, e.key(k, pin))
	}
	return out
}

func TestPINEntry(t *testing.T) {
	last := func(keys string) pinResult {
		var e pinEntry
		r := enter(&e, keys, "4711")
		return r[len(r)-1]
	}
	for _, tc := range []struct {
		keys string
		want pinResult
	}{
		{"4711#", pinAccepted},
		{"4711", pinPending},
		{"#", pinEmpty},
		{"47*4711#", pinAccepted},       // * starts again
		{"47114711#", pinRejected},      // longer is wrong
		{"471#", pinRejected},           // shorter is wrong
		{"47A11#", pinRejected},         // a key no PIN has spoils the entry
		{"1#2#3#", pinFailed},           // three tries
		{"1#2#4711#", pinAccepted},      // the third try is allowed
		{"1##2#4711#", pinAccepted},     // an empty entry is no try
		{"1234567890123#", pinRejected}, // 13 digits: too long, not its first 12
	} {
		if got := last(tc.keys); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.keys, got, tc.want)
		}
	}
	// Twelve digits is the longest PIN and works.
	var e pinEntry
	if r := enter(&e, "123456789012#", "123456789012"); r[len(r)-1] != pinAccepted {
		t.Errorf("12-digit PIN: %d", r[len(r)-1])
	}
	// After the third wrong try the entry stays failed.
	e = pinEntry{}
	enter(&e, "1#2#3#", "4711")
	if r := e.key('#', "4711"); r == pinAccepted {
		t.Error("accepted after failing")
	}
}

func TestValidPIN(t *testing.T) {
	for _, ok := range []string{"", "0", "0000", "123456789012"} {
		if err := ValidPIN(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"1234567890123", "12a4", " 12", "-1", "１２", "12#"} {
		if err := ValidPIN(bad); !errors.Is(err, ErrBadPIN) {
			t.Errorf("%q: %v, want ErrBadPIN", bad, err)
		}
	}
}

// FuzzPINEntry: any keys, against any valid PIN, never panic, never admit
// after the third wrong try, and admit exactly when an entry (the keys
// since the last *, # or start) equals the PIN within the first three
// non-empty entries.
func FuzzPINEntry(f *testing.F) {
	f.Add("4711#", "4711")
	f.Add("1#2#3#4711#", "4711")
	f.Add("47*4711#", "4711")
	f.Add("123456789012#", "123456789012")
	f.Add("##**AB#", "0")
	f.Fuzz(func(t *testing.T, keys, pin string) {
		if pin == "" || ValidPIN(pin) != nil {
			return
		}
		var e pinEntry
		tries, cur, spoiled, admitted := 0, "", false, false
		for _, k := range keys {
			got := e.key(k, pin)
			if admitted || tries >= pinTries {
				return // the lobby stops feeding keys after either
			}
			var want pinResult
			switch {
			case k >= '0' && k <= '9':
				cur += string(k)
				want = pinPending
			case k == '*':
				cur, spoiled, want = "", false, pinCleared
			case k == '#':
				switch {
				case cur == "" && !spoiled:
					want = pinEmpty
				case !spoiled && cur == pin:
					want, admitted = pinAccepted, true
				default:
					tries++
					want = pinRejected
					if tries >= pinTries {
						want = pinFailed
					}
				}
				cur, spoiled = "", false
			default:
				spoiled, want = true, pinPending
			}
			if len(cur) > MaxPINLength {
				spoiled = true
				cur = cur[:MaxPINLength]
			}
			if got != want {
				t.Fatalf("keys %q pin %q: key %q gave %d, want %d", keys, pin, k, got, want)
			}
		}
	})
}

// TestLobbyInMemory steps a room with a PIN by hand: a caller who dials in
// hears its prompt and nothing of the room, the room hears nothing of it,
// a waiting caller costs the tick no allocation, a key of the room's map
// does not act before it joins, and the right PIN and # let it in.
func TestLobbyInMemory(t *testing.T) {
	r := newRoom(t, Config{})
	if err := r.conf.SetPIN("12"); err != nil {
		t.Fatal(err)
	}
	a := r.join(media.PCMU, tone(400, -10)) // added through the API: no PIN
	b := r.joinWith(media.PCMU, tone(700, -10), MemberOptions{DialIn: true})
	if !b.member.Waiting() || b.member.Active() || r.conf.Info().ActiveMembers != 1 || len(r.conf.Members()) != 1 {
		t.Fatalf("dial-in to a PIN room: waiting %v, info %+v", b.member.Waiting(), r.conf.Info())
	}
	m := r.mark()
	r.step(50)
	if got := audiotest.RMSDBFS(b.rec[m[1]:]); got < -40 {
		t.Errorf("the waiting caller heard %.1f dBFS RMS, want its prompt", got)
	}
	if got := level(b.rec[m[1]:], 400); got > -60 {
		t.Errorf("the waiting caller heard the room at %.1f dBFS", got)
	}
	if got := level(a.rec[m[0]:], 700); got > -60 {
		t.Errorf("the room heard the waiting caller at %.1f dBFS", got)
	}

	// The prompt is over: a waiting caller is polled, and nothing more.
	for _, p := range r.peers {
		p.rec = p.rec[:0]
	}
	allocs := testing.AllocsPerRun(50, func() {
		for _, p := range r.peers {
			p.send()
		}
		r.now = r.now.Add(TickInterval)
		r.conf.mixOnce(r.now)
	})
	if allocs != 0 {
		t.Errorf("a tick with a waiting caller allocates %.1f times", allocs)
	}
	for _, p := range r.peers {
		p.receive()
	}

	b.call.Digit('0') // mute, in the room's map: here a digit of a wrong entry
	b.call.Digit('#')
	for _, d := range "12#" {
		b.call.Digit(d)
	}
	if b.member.Waiting() || !b.member.Active() || b.member.Muted() {
		t.Fatalf("after the PIN: waiting %v active %v muted %v", b.member.Waiting(), b.member.Active(), b.member.Muted())
	}
	if in := r.conf.Info(); in.ActiveMembers != 2 || in.Waiting != 0 || len(r.conf.Members()) != 2 {
		t.Fatalf("after the PIN: %+v", in)
	}
	r.step(25)
	m = r.mark()
	r.step(25)
	if got := level(a.rec[m[0]:], 700); math.Abs(got+10) > 1 {
		t.Errorf("the room hears the admitted caller at %.1f dBFS, want -10", got)
	}
	if got := level(b.rec[m[1]:], 400); math.Abs(got+10) > 1 {
		t.Errorf("the admitted caller hears the room at %.1f dBFS, want -10", got)
	}
}

// TestLobbyTimeoutInMemory: no PIN within the timeout plays the goodbye
// and hangs up; the room nobody got into stays created, and its mixer is
// parked.
func TestLobbyTimeoutInMemory(t *testing.T) {
	r := newRoom(t, Config{PINTimeout: time.Second})
	if err := r.conf.SetPIN("12"); err != nil {
		t.Fatal(err)
	}
	b := r.joinWith(media.PCMU, nil, MemberOptions{DialIn: true})
	r.step(45)
	if b.leg.hungUp.Load() != 0 {
		t.Fatal("hung up before the timeout")
	}
	r.step(60) // past the timeout, and the goodbye played out
	deadline := time.Now().Add(5 * time.Second)
	for b.leg.hungUp.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.leg.hungUp.Load() != 1 {
		t.Fatal("no hang-up after the PIN timeout")
	}
	if got := b.call.Info().Cause; got != CausePINTimeout {
		t.Errorf("cause %q, want %q", got, CausePINTimeout)
	}
	if st := r.conf.State(); st != StateCreated {
		t.Errorf("room %s after a caller who never got in left", st)
	}
	if !r.conf.park() { // what its clock does with an empty room
		t.Error("the empty room nobody got into cannot be parked")
	}
}
