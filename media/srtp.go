package media

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// SDES errors. ErrBadCrypto is an a=crypto attribute that does not follow
// RFC 4568; ErrUnsupportedCrypto is a well-formed one we cannot honour (a
// suite or session parameter we do not implement). Either makes that one
// attribute unusable; the offer may carry others.
var (
	ErrBadCrypto         = errors.New("media: malformed a=crypto attribute")
	ErrUnsupportedCrypto = errors.New("media: unsupported a=crypto attribute")
)

// SRTPSuite is an SDES crypto suite (RFC 4568 §6.2).
type SRTPSuite uint8

// The suites we implement: AES counter mode with a 128-bit key and an
// HMAC-SHA1 tag of 80 or 32 bits on SRTP (SRTCP always carries 80 bits).
const (
	SuiteNone SRTPSuite = iota
	AESCM128HMACSHA1_80
	AESCM128HMACSHA1_32
)

// masterLen is the length of an AES_CM_128 master key (16 bytes) followed
// by its master salt (14 bytes), as carried inline (RFC 4568 §6.2.1).
const masterLen = 16 + 14

// maxSRTPTrailer is the most an SRTP packet adds to the RTP packet: the
// 80-bit tag (we never send an MKI).
const maxSRTPTrailer = 10

// replayWindow is the SRTP replay window in packets (RFC 3711 §3.3.2
// requires at least 64); enough for a second of 20 ms audio reordering.
const replayWindow = 128

// maxLifetime is the most packets one AES_CM key may protect (RFC 4568
// §6.2.1: 2^48).
const maxLifetime = 1 << 48

// String returns the suite's SDP name.
func (s SRTPSuite) String() string {
	switch s {
	case AESCM128HMACSHA1_80:
		return "AES_CM_128_HMAC_SHA1_80"
	case AESCM128HMACSHA1_32:
		return "AES_CM_128_HMAC_SHA1_32"
	}
	return "NONE"
}

// ParseSRTPSuite maps an SDP suite name to a suite we implement.
func ParseSRTPSuite(name string) (SRTPSuite, bool) {
	switch name {
	case "AES_CM_128_HMAC_SHA1_80":
		return AESCM128HMACSHA1_80, true
	case "AES_CM_128_HMAC_SHA1_32":
		return AESCM128HMACSHA1_32, true
	}
	return SuiteNone, false
}

func (s SRTPSuite) profile() srtp.ProtectionProfile {
	if s == AESCM128HMACSHA1_32 {
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// SRTPKey is one SDES master key: the inline key-params of RFC 4568
// §6.1 for one of our suites.
type SRTPKey struct {
	Suite    SRTPSuite
	Master   [masterLen]byte // master key || master salt
	Lifetime uint64          // packets; 0 when not given (the suite's maximum)
	MKI      []byte          // master key identifier as sent on the wire; nil when none
}

// NewSRTPKey returns a fresh random key for suite, from crypto/rand.
func NewSRTPKey(suite SRTPSuite) (SRTPKey, error) {
	k := SRTPKey{Suite: suite}
	if suite == SuiteNone {
		return k, fmt.Errorf("%w: no suite", ErrUnsupportedCrypto)
	}
	if _, err := rand.Read(k.Master[:]); err != nil {
		return k, fmt.Errorf("media: SRTP key: %w", err)
	}
	return k, nil
}

// Crypto is one a=crypto attribute (RFC 4568 §9.1):
// tag SP crypto-suite SP key-params [SP session-params].
type Crypto struct {
	Tag int // 1 to 999999999, echoed in the answer (RFC 4568 §5.1)
	Key SRTPKey
}

// String formats the attribute value (what follows "a=crypto:"). Our own
// keys carry neither lifetime nor MKI.
func (c Crypto) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(c.Tag))
	b.WriteByte(' ')
	b.WriteString(c.Key.Suite.String())
	b.WriteString(" inline:")
	b.WriteString(base64.StdEncoding.EncodeToString(c.Key.Master[:]))
	if c.Key.Lifetime != 0 {
		b.WriteString("|" + strconv.FormatUint(c.Key.Lifetime, 10))
	}
	if len(c.Key.MKI) > 0 {
		var v uint64
		for _, x := range c.Key.MKI {
			v = v<<8 | uint64(x)
		}
		fmt.Fprintf(&b, "|%d:%d", v, len(c.Key.MKI))
	}
	return b.String()
}

// ParseCrypto parses the value of an a=crypto attribute. A suite other
// than ours, several master keys, or a session parameter that changes
// the transform (UNENCRYPTED_SRTP, KDR other than 0, FEC_KEY, ...) give
// ErrUnsupportedCrypto; anything malformed gives ErrBadCrypto.
func ParseCrypto(value string) (Crypto, error) {
	var c Crypto
	fields := strings.Fields(value)
	if len(fields) < 3 {
		return c, fmt.Errorf("%w: want tag, suite and key in %q", ErrBadCrypto, value)
	}
	tag, err := strconv.Atoi(fields[0])
	if err != nil || len(fields[0]) > 9 || !digits(fields[0]) {
		return c, fmt.Errorf("%w: tag %q", ErrBadCrypto, fields[0])
	}
	c.Tag = tag
	suite, ok := ParseSRTPSuite(fields[1])
	if !ok {
		return c, fmt.Errorf("%w: suite %q", ErrUnsupportedCrypto, fields[1])
	}
	c.Key.Suite = suite
	if strings.Contains(fields[2], ";") {
		return c, fmt.Errorf("%w: several master keys", ErrUnsupportedCrypto)
	}
	if err := parseKeyParam(fields[2], &c.Key); err != nil {
		return c, err
	}
	for _, p := range fields[3:] {
		if err := checkSessionParam(p); err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseKeyParam reads "inline:" key||salt ["|" lifetime] ["|" MKI ":" length]
// (RFC 4568 §6.1 and §9.2).
func parseKeyParam(s string, k *SRTPKey) error {
	method, info, ok := strings.Cut(s, ":")
	if !ok || method != "inline" {
		return fmt.Errorf("%w: key method %q (only inline)", ErrBadCrypto, method)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return fmt.Errorf("%w: too many '|' in key %q", ErrBadCrypto, info)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		return fmt.Errorf("%w: key is not base64: %v", ErrBadCrypto, err)
	}
	if len(raw) != masterLen {
		return fmt.Errorf("%w: key and salt are %d bytes, want %d for %s", ErrBadCrypto, len(raw), masterLen, k.Suite)
	}
	copy(k.Master[:], raw)
	for _, p := range parts[1:] {
		if v, l, isMKI := strings.Cut(p, ":"); isMKI {
			if k.MKI != nil {
				return fmt.Errorf("%w: two MKIs", ErrBadCrypto)
			}
			mki, err := parseMKI(v, l)
			if err != nil {
				return err
			}
			k.MKI = mki
			continue
		}
		if k.Lifetime != 0 || k.MKI != nil {
			return fmt.Errorf("%w: lifetime %q out of place", ErrBadCrypto, p)
		}
		lt, err := parseLifetime(p)
		if err != nil {
			return err
		}
		k.Lifetime = lt
	}
	return nil
}

// parseLifetime reads a key lifetime: decimal or "2^" decimal, at most
// 2^48 for AES_CM (RFC 4568 §6.2.1).
func parseLifetime(s string) (uint64, error) {
	if e, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.ParseUint(e, 10, 8)
		if err != nil || n > 48 {
			return 0, fmt.Errorf("%w: lifetime %q (at most 2^48)", ErrBadCrypto, s)
		}
		return 1 << n, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > maxLifetime {
		return 0, fmt.Errorf("%w: lifetime %q (1 to 2^48)", ErrBadCrypto, s)
	}
	return n, nil
}

// parseMKI reads "value:length": a decimal value sent big-endian in length
// (1 to 128) bytes (RFC 4568 §6.1).
func parseMKI(value, length string) ([]byte, error) {
	l, err := strconv.Atoi(length)
	if err != nil || !digits(length) || l < 1 || l > 128 {
		return nil, fmt.Errorf("%w: MKI length %q (1 to 128)", ErrBadCrypto, length)
	}
	v, err := strconv.ParseUint(value, 10, 64)
	if err != nil || (l < 8 && v >= 1<<(8*l)) {
		return nil, fmt.Errorf("%w: MKI value %q does not fit %d bytes", ErrBadCrypto, value, l)
	}
	mki := make([]byte, l)
	for i := l - 1; i >= 0 && v > 0; i-- {
		mki[i] = byte(v)
		v >>= 8
	}
	return mki, nil
}

// digits reports whether s is 1*DIGIT (RFC 4568's grammar has no signs).
func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// checkSessionParam accepts the SRTP session parameters that do not
// change the transform (RFC 4568 §6.3): a window-size hint, a KDR of 0,
// the FEC order (we use no FEC). Any other parameter makes the attribute
// unusable, as §6.3 asks of a parameter the answerer does not support.
func checkSessionParam(p string) error {
	name, val, _ := strings.Cut(p, "=")
	switch name {
	case "WSH":
		if n, err := strconv.Atoi(val); err != nil || n < 64 {
			return fmt.Errorf("%w: WSH %q (at least 64)", ErrBadCrypto, val)
		}
		return nil
	case "KDR":
		if val == "0" {
			return nil
		}
		return fmt.Errorf("%w: key derivation rate %q (only 0)", ErrUnsupportedCrypto, val)
	case "FEC_ORDER":
		return nil
	}
	return fmt.Errorf("%w: session parameter %q", ErrUnsupportedCrypto, name)
}

// SRTP protects the packets a session sends with our key and checks and
// decrypts those it receives with the peer's key (RFC 3711), one context
// each way, as SDES sets them up (RFC 4568). Protect writes into memory
// the SRTP owns, Unprotect decrypts in place; neither allocates per packet,
// and neither may be called from two goroutines at once (Session calls
// both under its lock).
type SRTP struct {
	tx, rx *srtp.Context
	hdr    rtp.Header
	out    [maxSend + maxSRTPTrailer]byte
	big    []byte // for packets beyond out (Opus), made at the first one
}

// NewSRTP sets up protection with our key local and the peer's key
// remote. Replay protection is on for received packets.
func NewSRTP(local, remote SRTPKey) (*SRTP, error) {
	if local.Suite == SuiteNone || remote.Suite == SuiteNone {
		return nil, fmt.Errorf("%w: no suite", ErrUnsupportedCrypto)
	}
	if len(local.MKI) > 0 {
		return nil, fmt.Errorf("%w: an MKI on our own key", ErrUnsupportedCrypto)
	}
	tx, err := srtp.CreateContext(local.Master[:16], local.Master[16:], local.Suite.profile())
	if err != nil {
		return nil, fmt.Errorf("media: SRTP send context: %w", err)
	}
	rx, err := receiveContext(remote)
	if err != nil {
		return nil, err
	}
	return &SRTP{tx: tx, rx: rx}, nil
}

// receiveContext checks and decrypts with the peer's key, with replay
// protection (RFC 3711 §3.3.2) and the peer's MKI, if it sends one.
func receiveContext(remote SRTPKey) (*srtp.Context, error) {
	opts := []srtp.ContextOption{srtp.SRTPReplayProtection(replayWindow)}
	if len(remote.MKI) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(remote.MKI))
	}
	rx, err := srtp.CreateContext(remote.Master[:16], remote.Master[16:], remote.Suite.profile(), opts...)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP receive context: %w", err)
	}
	return rx, nil
}

// Protect encrypts and authenticates one RTP packet. The result aliases
// the SRTP's own buffer and is valid until the next Protect.
func (s *SRTP) Protect(pkt []byte) ([]byte, error) {
	dst := s.out[:0]
	if len(pkt) > maxSend {
		if len(pkt) > maxWideSend {
			return nil, fmt.Errorf("media: SRTP: packet of %d bytes is longer than %d", len(pkt), maxWideSend)
		}
		if s.big == nil {
			s.big = make([]byte, maxWideSend+maxSRTPTrailer)
		}
		dst = s.big[:0]
	}
	out, err := s.tx.EncryptRTP(dst, pkt, &s.hdr)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP protect: %w", err)
	}
	return out, nil
}

// Unprotect checks the authentication tag of one SRTP packet and decrypts
// it in place, returning the RTP packet (pkt without its trailer). A
// packet that fails authentication, repeats one already seen or is too
// short gives an error, and pkt must then be dropped.
func (s *SRTP) Unprotect(pkt []byte) ([]byte, error) {
	out, err := s.rx.DecryptRTP(pkt, pkt, &s.hdr)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetSRTP makes the session send and receive SRTP with x from now on
// (nil: plain RTP). Signalling calls it with the outcome of an SDES
// offer/answer (RFC 4568 §7), before the first packet or on a re-key.
func (s *Session) SetSRTP(x *SRTP) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srtp = x
}

// SRTP returns the protection in use, nil for plain RTP.
func (s *Session) SRTP() *SRTP {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srtp
}

// WithRemote returns protection that keeps our sending context (its key
// and rollover counter) and checks received packets with a new peer key,
// for a peer that re-keys in a re-offer (RFC 4568 §7.1.4). s must no
// longer be used once the result is in place.
func (s *SRTP) WithRemote(remote SRTPKey) (*SRTP, error) {
	if remote.Suite == SuiteNone {
		return nil, fmt.Errorf("%w: no suite", ErrUnsupportedCrypto)
	}
	rx, err := receiveContext(remote)
	if err != nil {
		return nil, err
	}
	return &SRTP{tx: s.tx, rx: rx}, nil
}
