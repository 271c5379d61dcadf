package dtmf

// Profile names for the handling of a member's digits, as in the Catapult
// conference member API.
const (
	// ProfileInterpretDigits makes keys act on the member (see [KeyAction]).
	// It is the default.
	ProfileInterpretDigits = "interpret_digits"
	// ProfilePassthruDigits takes no action; each digit is reported as a
	// dtmf event to the call's application.
	ProfilePassthruDigits = "passthru_digits"
)

// ValidProfile reports whether name is one of the known profile names.
func ValidProfile(name string) bool {
	return name == ProfileInterpretDigits || name == ProfilePassthruDigits
}

// Action is what a key does in the interpret_digits profile.
type Action int

// Actions of the interpret_digits profile, with their keys.
const (
	ActionNone             Action = iota // no action (A-D and unknown keys)
	ActionTalkDown                       // '1': talk volume one step down
	ActionTalkReset                      // '2': talk volume back to 0
	ActionTalkUp                         // '3': talk volume one step up
	ActionReceiveDown                    // '4': receive volume one step down
	ActionReceiveReset                   // '5': receive volume back to 0
	ActionReceiveUp                      // '6': receive volume one step up
	ActionSensitivityUp                  // '7': pick up more (lower noise gate threshold)
	ActionSensitivityReset               // '8': sensitivity back to 0
	ActionSensitivityDown                // '9': pick up less (higher noise gate threshold)
	ActionToggleMute                     // '0': toggle mute
	ActionToggleHold                     // '*': toggle hold (mute and deaf)
	ActionLeave                          // '#': leave the conference
)

// KeyAction returns the action of a key in the interpret_digits profile.
// Keys without an action (A-D, anything else) give [ActionNone].
func KeyAction(digit rune) Action {
	switch {
	case digit >= '1' && digit <= '9':
		return ActionTalkDown + Action(digit-'1')
	case digit == '0':
		return ActionToggleMute
	case digit == '*':
		return ActionToggleHold
	case digit == '#':
		return ActionLeave
	}
	return ActionNone
}

// String returns a short lower-case name such as "toggle-mute", for logs and
// metrics labels, or "unknown" for a value that is not an Action.
func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionTalkDown:
		return "talk-down"
	case ActionTalkReset:
		return "talk-reset"
	case ActionTalkUp:
		return "talk-up"
	case ActionReceiveDown:
		return "receive-down"
	case ActionReceiveReset:
		return "receive-reset"
	case ActionReceiveUp:
		return "receive-up"
	case ActionSensitivityUp:
		return "sensitivity-up"
	case ActionSensitivityReset:
		return "sensitivity-reset"
	case ActionSensitivityDown:
		return "sensitivity-down"
	case ActionToggleMute:
		return "toggle-mute"
	case ActionToggleHold:
		return "toggle-hold"
	case ActionLeave:
		return "leave"
	}
	return "unknown"
}
