package dtmf

import "testing"

func TestKeyAction(t *testing.T) {
	want := map[rune]Action{
		'1': ActionTalkDown, '2': ActionTalkReset, '3': ActionTalkUp,
		'4': ActionReceiveDown, '5': ActionReceiveReset, '6': ActionReceiveUp,
		'7': ActionSensitivityUp, '8': ActionSensitivityReset, '9': ActionSensitivityDown,
		'0': ActionToggleMute, '*': ActionToggleHold, '#': ActionLeave,
		'A': ActionNone, 'B': ActionNone, 'C': ActionNone, 'D': ActionNone,
		'a': ActionNone, 'x': ActionNone, 0: ActionNone, -1: ActionNone,
	}
	for digit, a := range want {
		if got := KeyAction(digit); got != a {
			t.Errorf("KeyAction(%q) = %v, want %v", digit, got, a)
		}
	}
}

func TestActionString(t *testing.T) {
	seen := map[string]Action{}
	for a := ActionNone; a <= ActionLeave; a++ {
		s := a.String()
		if s == "" || s == "unknown" {
			t.Errorf("Action(%d).String() = %q", int(a), s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Action(%d) and Action(%d) are both %q", int(prev), int(a), s)
		}
		seen[s] = a
	}
	for _, a := range []Action{-1, ActionLeave + 1, 1000} {
		if s := a.String(); s != "unknown" {
			t.Errorf("Action(%d).String() = %q, want unknown", int(a), s)
		}
	}
	if s := ActionToggleMute.String(); s != "toggle-mute" {
		t.Errorf("ActionToggleMute.String() = %q", s)
	}
}

func TestValidProfile(t *testing.T) {
	for name, want := range map[string]bool{
		"interpret_digits": true, "passthru_digits": true,
		"": false, "Interpret_Digits": false, "passthrough_digits": false,
	} {
		if got := ValidProfile(name); got != want {
			t.Errorf("ValidProfile(%q) = %v, want %v", name, got, want)
		}
	}
}
