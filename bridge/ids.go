package bridge

import "crypto/rand"

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns prefix followed by 23 random lower-case alphanumerics, the
// shape of Catapult ids (conf-7qrj2t3lfixl4cgjcdonkna).
func newID(prefix string) string {
	var b [23]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b[:])
}

// ID prefixes.
const (
	ConferencePrefix = "conf-"
	MemberPrefix     = "member-"
	CallPrefix       = "c-"
)
