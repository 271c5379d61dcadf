package bridge

import (
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
