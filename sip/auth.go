package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Who may call in (RFC 3261 §22). A source on a trusted network (a PBX,
// a carrier trunk, a LAN softphone) calls without credentials and its calls
// belong to the bridge's default user. Everyone else answers a digest
// challenge (RFC 3261 §22.4) for one of the configured accounts, and the call
// belongs to that account's API user.
//
// Only a new INVITE is checked. Requests inside a dialog (ACK, BYE, INFO,
// UPDATE, re-INVITE) are admitted by matching the dialog, which only an
// admitted INVITE creates; out of a dialog they get 481. OPTIONS is answered
// to anyone (keep-alives of trunks and load balancers); other methods get
// sipgo's 405.
//
// Nonces are stateless: a timestamp and random bytes signed with an HMAC key
// drawn at start, so the bridge keeps nothing per challenge and a flood of
// unauthenticated INVITEs costs no memory. A nonce expires after NonceTTL
// (RFC 2617 §3.2.1 leaves the lifetime to the server); an expired nonce with
// an otherwise correct response is answered with stale=true, so the phone
// retries with the new nonce without asking its user. Accepted
// (nonce, cnonce, nc) triples are remembered until their nonce expires, so a
// captured Authorization cannot be replayed to place another call.
//
// Failed authentication (wrong password, unknown user, malformed
// credentials) is counted per source address (IPv6 per /64, which one
// subscriber holds); after MaxFailures within Window the source gets 403
// without a challenge for Block, logged once per episode (kamailio's pike,
// Asterisk's and fail2ban's practice).

// DefaultDigestAlgorithms are the digest algorithms challenged by default,
// most preferred first (RFC 8760 §2.3): a UAC takes the topmost it supports
// (RFC 8760 §2.4), so SHA-256 phones use it and older phones fall back to
// MD5. Some older UACs (sipp 3.6 among them) take the topmost challenge
// whatever it is and fail on SHA-256; AuthConfig.Algorithms can put MD5
// first, or offer it alone, for them.
func DefaultDigestAlgorithms() []string { return []string{"SHA-256", "MD5"} }

// Defaults of AuthConfig.
const (
	DefaultRealm          = "chorus"
	DefaultMaxAuthFailure = 10
	defaultAuthWindow     = time.Minute
	defaultAuthBlock      = time.Minute
	defaultNonceTTL       = 5 * time.Minute
	defaultMaxSources     = 10000
	defaultMaxUsedNonces  = 100000
	// nonceSkew is how far in the future a nonce's timestamp may lie (the
	// clock of this process only goes forward, but an injected one in a
	// test may not).
	nonceSkew = 5 * time.Second
)

// Account is a SIP digest account: Name and Password authenticate a caller
// whose calls belong to the API user UserID.
type Account struct {
	Name     string
	Password string
	UserID   string
}

// AuthConfig says who may call in. The zero value trusts DefaultTrusted and
// knows no accounts.
type AuthConfig struct {
	// Trusted networks call without credentials. Nil means
	// DefaultTrusted(); an empty non-nil slice trusts nobody.
	Trusted []netip.Prefix
	// Accounts may authenticate from anywhere else.
	Accounts []Account
	// Algorithms are the digest algorithms challenged, most preferred
	// first: "SHA-256" and "MD5" (RFC 8760); DefaultDigestAlgorithms if
	// empty.
	Algorithms []string
	// Realm names the protection domain in challenges; DefaultRealm if empty.
	Realm string
	// MaxFailures failed authentications from one source within Window
	// block it for Block (defaults 10, 1 min, 1 min).
	MaxFailures int
	Window      time.Duration
	Block       time.Duration
	// NonceTTL is how long a challenge's nonce is accepted (default 5 min).
	NonceTTL time.Duration
	// MaxSources caps the sources whose failures are tracked (default
	// 10,000, about 1 MB).
	MaxSources int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// DefaultTrusted is loopback and the private ranges (RFC 1918, RFC 4193),
// so a PBX or a softphone on the LAN calls in without setup.
func DefaultTrusted() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// AuthStats counts what the call-in check decided.
type AuthStats struct {
	Trusted    atomic.Uint64 // INVITEs admitted from trusted networks
	Accepted   atomic.Uint64 // INVITEs admitted by digest credentials
	Challenges atomic.Uint64 // 401 challenges sent (stale ones included)
	Failures   atomic.Uint64 // wrong passwords, unknown users, malformed credentials
	Refused    atomic.Uint64 // INVITEs refused without a challenge from a blocked source
	Blocks     atomic.Uint64 // times a source was blocked
}

// AuthStats returns the live counters of the call-in check.
func (s *Server) AuthStats() *AuthStats { return &s.auth.stats }

// authOutcome is what verify concluded about one INVITE.
type authOutcome int

const (
	authChallenge authOutcome = iota // no usable credentials for our realm: 401
	authStale                        // right response, expired or used nonce: 401 stale=true
	authOK                           // admitted
	authFailed                       // wrong password or unknown user: 403
	authMalformed                    // unusable Authorization: 400
)

func (o authOutcome) String() string {
	switch o {
	case authChallenge:
		return "challenge"
	case authStale:
		return "stale"
	case authOK:
		return "ok"
	case authFailed:
		return "failed"
	case authMalformed:
		return "malformed"
	}
	return fmt.Sprintf("authOutcome(%d)", int(o))
}

// authSource is the failure record of one source address.
type authSource struct {
	windowStart  time.Time
	failures     int
	blockedUntil time.Time
	lastSeen     time.Time
}

// authGate decides whether an INVITE may place a call.
type authGate struct {
	cfg      AuthConfig
	key      []byte
	accounts map[string]Account
	stats    AuthStats
	log      *slog.Logger

	mu        sync.Mutex
	sources   map[netip.Addr]*authSource
	lastSweep time.Time
	used      map[string]time.Time // accepted nonce|cnonce|nc → nonce expiry
	usedSweep time.Time
}

func newAuthGate(cfg AuthConfig, log *slog.Logger) (*authGate, error) {
	if cfg.Trusted == nil {
		cfg.Trusted = DefaultTrusted()
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultDigestAlgorithms()
	}
	algs := make([]string, 0, len(cfg.Algorithms))
	for _, a := range cfg.Algorithms {
		a = strings.ToUpper(strings.TrimSpace(a))
		if a != "MD5" && a != "SHA-256" {
			return nil, fmt.Errorf("sip: digest algorithm %q: want SHA-256 or MD5", a)
		}
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	cfg.Algorithms = algs
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxAuthFailure
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultAuthWindow
	}
	if cfg.Block <= 0 {
		cfg.Block = defaultAuthBlock
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = defaultNonceTTL
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = defaultMaxSources
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &authGate{cfg: cfg, key: make([]byte, 32), accounts: map[string]Account{}, log: log,
		sources: map[netip.Addr]*authSource{}, used: map[string]time.Time{}}
	if _, err := rand.Read(g.key); err != nil {
		return nil, fmt.Errorf("sip: nonce key: %w", err)
	}
	cfg.Trusted = slices.Clone(cfg.Trusted) // the caller's slice stays as it was
	for i, p := range cfg.Trusted {
		cfg.Trusted[i] = p.Masked()
	}
	for _, a := range cfg.Accounts {
		if a.Name == "" || a.Password == "" || a.UserID == "" {
			return nil, fmt.Errorf("sip: account %q: needs a name, a password and a user id", a.Name)
		}
		if _, dup := g.accounts[a.Name]; dup {
			return nil, fmt.Errorf("sip: account %q configured twice", a.Name)
		}
		g.accounts[a.Name] = a
	}
	return g, nil
}

// authorize admits or answers an out-of-dialog INVITE. It returns the API
// user the call belongs to ("" for the default user of a trusted source)
// and whether the call may go on; if not, it has responded.
func (s *Server) authorize(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger) (string, bool) {
	g := s.auth
	src := sourceAddr(req)
	if g.trusted(src) {
		g.stats.Trusted.Add(1)
		return "", true
	}
	now := g.cfg.Now()
	key := sourceKey(src)
	if g.blocked(key, now) {
		g.stats.Refused.Add(1)
		s.respond(req, tx, sip.StatusForbidden, "Forbidden")
		return "", false
	}
	outcome, acct, why := g.verify(req.Method.String(), req.Recipient, authorizations(req), now)
	switch outcome {
	case authOK:
		g.succeeded(key, now)
		g.stats.Accepted.Add(1)
		log.Info("caller authenticated", "account", acct.Name, "user", acct.UserID, "source", src)
		return acct.UserID, true
	case authChallenge, authStale:
		g.stats.Challenges.Add(1)
		s.respond(req, tx, sip.StatusUnauthorized, "Unauthorized", g.challenges(now, outcome == authStale)...)
	case authFailed, authMalformed:
		g.stats.Failures.Add(1)
		g.failed(key, now)
		log.Debug("authentication failed", "source", src, "why", why)
		if outcome == authMalformed {
			s.respond(req, tx, sip.StatusBadRequest, "Bad Authorization")
		} else {
			s.respond(req, tx, sip.StatusForbidden, "Forbidden")
		}
	}
	return "", false
}

// sourceAddr is the address the request came from: the transport's peer,
// which sipgo records for every received message, not a Via header the
// sender wrote.
func sourceAddr(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// sourceKey is what failures are counted by: the address, or its /64 for
// IPv6, since one subscriber holds a whole /64.
func sourceKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (g *authGate) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range g.cfg.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// authorizations returns the values of the request's Authorization headers.
func authorizations(req *sip.Request) []string {
	hs := req.GetHeaders("Authorization")
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Value())
	}
	return out
}

// challenges are the WWW-Authenticate headers of a 401: one per algorithm,
// in order of preference, sharing one fresh nonce (RFC 8760 §2.3, RFC 3261
// §22.4).
func (g *authGate) challenges(now time.Time, stale bool) []sip.Header {
	nonce := g.newNonce(now)
	hs := make([]sip.Header, 0, len(g.cfg.Algorithms))
	for _, alg := range g.cfg.Algorithms {
		c := digest.Challenge{Realm: g.cfg.Realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		hs = append(hs, sip.NewHeader("WWW-Authenticate", c.String()))
	}
	return hs
}

// nonceLen is the decoded size of a nonce: an 8-byte Unix time in
// milliseconds, 8 random bytes, and 16 bytes of HMAC-SHA256 over both.
const nonceLen = 32

func (g *authGate) newNonce(now time.Time) string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli()))
	_, _ = rand.Read(b[8:16])
	copy(b[16:], g.mac(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (g *authGate) mac(b []byte) []byte {
	m := hmac.New(sha256.New, g.key)
	m.Write(b)
	return m.Sum(nil)[:nonceLen-16]
}

// nonceIssued checks that nonce is one of ours and returns when it was made.
func (g *authGate) nonceIssued(nonce string) (time.Time, bool) {
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != nonceLen {
		return time.Time{}, false
	}
	var b [nonceLen]byte
	if n, err := base64.RawURLEncoding.Decode(b[:], []byte(nonce)); err != nil || n != nonceLen {
		return time.Time{}, false
	}
	if !hmac.Equal(b[16:], g.mac(b[:16])) {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:8]))), true
}

// errBadCredentials and friends say why credentials were refused (logged at
// debug level, and used by tests).
var (
	errNoCredentials  = errors.New("no digest credentials for our realm")
	errNotOurNonce    = errors.New("nonce not issued by us")
	errBadCredentials = errors.New("malformed credentials")
	errUnknownUser    = errors.New("unknown user")
	errWrongResponse  = errors.New("wrong response")
	errStaleNonce     = errors.New("nonce expired")
	errReplay         = errors.New("nonce, cnonce and nc already used")
)

// verify checks the digest credentials of a request (RFC 3261 §22.4, RFC
// 2617 §3.2.2, RFC 8760): the first Digest Authorization for our realm
// must name an account, carry a nonce of ours that has not expired, a uri
// that is the Request-URI, and the right response.
func (g *authGate) verify(method string, reqURI sip.Uri, headers []string, now time.Time) (authOutcome, Account, error) {
	var cred *digest.Credentials
	for _, h := range headers {
		if !digest.IsDigest(h) {
			continue
		}
		c, err := digest.ParseCredentials(h)
		if err != nil {
			return authMalformed, Account{}, fmt.Errorf("%w: %v", errBadCredentials, err)
		}
		if c.Realm == g.cfg.Realm {
			cred = c
			break
		}
	}
	if cred == nil {
		return authChallenge, Account{}, errNoCredentials
	}
	issued, ours := g.nonceIssued(cred.Nonce)
	if !ours || issued.After(now.Add(nonceSkew)) {
		// Not a guess at the password: the response cannot be checked
		// against a nonce we never gave, so challenge again (RFC 2617 §3.2.2).
		return authChallenge, Account{}, errNotOurNonce
	}
	alg := strings.ToUpper(cred.Algorithm)
	if alg == "" {
		alg = "MD5" // RFC 2617 §3.2.1
	}
	if !slices.Contains(g.cfg.Algorithms, alg) {
		return authMalformed, Account{}, fmt.Errorf("%w: algorithm %q not offered", errBadCredentials, cred.Algorithm)
	}
	switch {
	case cred.Username == "" || cred.Response == "" || cred.URI == "":
		return authMalformed, Account{}, fmt.Errorf("%w: username, uri and response are required", errBadCredentials)
	case cred.Userhash:
		return authMalformed, Account{}, fmt.Errorf("%w: userhash not offered", errBadCredentials)
	case cred.QOP != "" && cred.QOP != "auth":
		return authMalformed, Account{}, fmt.Errorf("%w: qop %q not offered", errBadCredentials, cred.QOP)
	case cred.QOP == "auth" && (cred.Cnonce == "" || cred.Nc <= 0):
		return authMalformed, Account{}, fmt.Errorf("%w: qop=auth needs cnonce and nc", errBadCredentials)
	}
	if !sameURI(cred.URI, reqURI) {
		return authMalformed, Account{}, fmt.Errorf("%w: uri %q is not the Request-URI", errBadCredentials, cred.URI)
	}
	acct, known := g.accounts[cred.Username]
	password := acct.Password
	if !known {
		// Compute a response anyway, so that timing does not tell which
		// user names exist.
		password = "\x00unknown"
	}
	chal := &digest.Challenge{Realm: g.cfg.Realm, Nonce: cred.Nonce, Algorithm: alg}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{Method: method, URI: cred.URI, Username: cred.Username,
		Password: password, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return authMalformed, Account{}, fmt.Errorf("%w: %v", errBadCredentials, err)
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(cred.Response)), []byte(want.Response)) != 1 || !known {
		if !known {
			return authFailed, Account{}, fmt.Errorf("%w %q", errUnknownUser, cred.Username)
		}
		return authFailed, Account{}, fmt.Errorf("%w for %q", errWrongResponse, cred.Username)
	}
	expires := issued.Add(g.cfg.NonceTTL)
	if !now.Before(expires) {
		return authStale, Account{}, errStaleNonce
	}
	if !g.firstUse(cred.Nonce+"|"+cred.Cnonce+"|"+fmt.Sprint(cred.Nc)+"|"+cred.Response, expires, now) {
		return authStale, Account{}, errReplay
	}
	return authOK, acct, nil
}

// sameURI reports whether the digest uri names the Request-URI: scheme, user,
// host and port as RFC 3261 §19.1.4 compares them. Parameters are not
// compared: clients differ in whether they copy them (sipgo's does not).
func sameURI(s string, r sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, r.Scheme) && u.User == r.User &&
		strings.EqualFold(u.Host, r.Host) && u.Port == r.Port
}

// firstUse records an accepted credential until its nonce expires and
// reports whether it was new. The record is bounded: when it is full of
// unexpired entries, a credential is refused as stale, which costs an
// honest phone one more round trip.
func (g *authGate) firstUse(k string, expires, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, seen := g.used[k]; seen {
		return false
	}
	if len(g.used) >= defaultMaxUsedNonces || now.Sub(g.usedSweep) > g.cfg.NonceTTL {
		g.usedSweep = now
		for k, exp := range g.used {
			if !now.Before(exp) {
				delete(g.used, k)
			}
		}
		if len(g.used) >= defaultMaxUsedNonces {
			return false
		}
	}
	g.used[k] = expires
	return true
}

// blocked reports whether key is refused without a challenge.
func (g *authGate) blocked(key netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sources[key]
	return st != nil && now.Before(st.blockedUntil)
}

// succeeded forgets the failures of key: a user who mistyped a password
// and then got it right starts afresh.
func (g *authGate) succeeded(key netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.sources[key]; st != nil && !now.Before(st.blockedUntil) {
		delete(g.sources, key)
	}
}

// failed counts one failure of key and blocks it at MaxFailures within the
// window.
func (g *authGate) failed(key netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sources[key]
	if st == nil {
		st = g.track(key, now)
		if st == nil {
			return
		}
	}
	st.lastSeen = now
	if now.Sub(st.windowStart) >= g.cfg.Window {
		st.windowStart, st.failures = now, 0
	}
	st.failures++
	if st.failures < g.cfg.MaxFailures {
		return
	}
	st.blockedUntil = now.Add(g.cfg.Block)
	st.windowStart, st.failures = now, 0
	g.stats.Blocks.Add(1)
	g.log.Warn("sip source blocked after failed authentication", "source", key,
		"failures", g.cfg.MaxFailures, "within", g.cfg.Window, "for", g.cfg.Block)
}

// track adds a record for key, first expiring idle ones, and within
// MaxSources. When every slot holds a blocked source it tracks nothing
// rather than grow. Called with g.mu held.
func (g *authGate) track(key netip.Addr, now time.Time) *authSource {
	if len(g.sources) >= g.cfg.MaxSources || now.Sub(g.lastSweep) >= g.cfg.Window {
		g.lastSweep = now
		for k, st := range g.sources {
			if now.Sub(st.lastSeen) >= g.cfg.Window && !now.Before(st.blockedUntil) {
				delete(g.sources, k)
			}
		}
	}
	if len(g.sources) >= g.cfg.MaxSources {
		evicted := false
		for k, st := range g.sources {
			if !now.Before(st.blockedUntil) {
				delete(g.sources, k)
				evicted = true
				break
			}
		}
		if !evicted {
			return nil
		}
	}
	st := &authSource{windowStart: now, lastSeen: now}
	g.sources[key] = st
	return st
}
