package media

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseCrypto: no a=crypto value panics; every error is one of ours;
// what parses formats back to an attribute that parses to the same key.
func FuzzParseCrypto(f *testing.F) {
	for _, s := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
		"2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
		"1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 FEC_ORDER=FEC_SRTP",
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|2:4",
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|18446744073709551615:8",
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:128 WSH=64 KDR=0",
		"1 F8_128_HMAC_SHA1_80 inline:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseCrypto(v)
		if err != nil {
			if !errors.Is(err, ErrBadCrypto) && !errors.Is(err, ErrUnsupportedCrypto) {
				t.Fatalf("%q: error %v is neither ErrBadCrypto nor ErrUnsupportedCrypto", v, err)
			}
			return
		}
		again, err := ParseCrypto(c.String())
		if err != nil || again.Tag != c.Tag || again.Key.Suite != c.Key.Suite || again.Key.Master != c.Key.Master ||
			again.Key.Lifetime != c.Key.Lifetime || !bytes.Equal(again.Key.MKI, c.Key.MKI) {
			t.Fatalf("%q formats as %q, which parses to %+v, %v", v, c.String(), again, err)
		}
		if _, err := NewSRTP(c.Key, c.Key); err != nil && len(c.Key.MKI) == 0 {
			t.Fatalf("%q: parsed key refused by NewSRTP: %v", v, err)
		}
	})
}
