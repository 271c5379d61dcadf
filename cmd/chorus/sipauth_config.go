package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"chorus/sip"
)

// SIPAccount is a SIP digest account in the config file: a caller that
// authenticates as Name with Password places calls that belong to the API
// user UserID.
type SIPAccount struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	UserID   string `json:"userId"`
}

// sipAuthSettings are the config fields of who may call in (sip.AuthConfig).
type sipAuthSettings struct {
	// SIPTrusted lists the networks that call without credentials; the
	// default is loopback and the private ranges; ["none"] trusts nobody.
	SIPTrusted []string `json:"sipTrusted"`
	// SIPAccounts are the digest accounts everyone else uses.
	SIPAccounts []SIPAccount `json:"sipAccounts"`
	// SIPAuthFailures failed authentications from one address within a
	// minute block it for SIPAuthBlock.
	SIPAuthFailures int           `json:"sipAuthFailures"`
	SIPAuthBlock    time.Duration `json:"sipAuthBlock"`
	// SIPDigestAlgorithms are the challenged algorithms, preferred first.
	SIPDigestAlgorithms string `json:"sipDigestAlgorithms"`
	// SIPRealm names the protection domain of challenges.
	SIPRealm string `json:"sipRealm"`

	sipTrusted []netip.Prefix
}

func defaultSIPAuth() sipAuthSettings {
	return sipAuthSettings{SIPAuthFailures: sip.DefaultMaxAuthFailure, SIPAuthBlock: time.Minute,
		SIPDigestAlgorithms: strings.Join(sip.DefaultDigestAlgorithms(), ","), SIPRealm: sip.DefaultRealm}
}

// sipAuthFlags are the repeatable flags, collected until the environment
// and the config file have been read.
type sipAuthFlags struct {
	trusted  []string
	accounts []SIPAccount
	errs     []error // bad --sip-account values, reported by apply
}

// sipAccountList collects repeated --sip-account flags. A malformed value
// is kept in errs rather than returned: the flag package would print the
// value, password and all.
type sipAccountList struct {
	list *[]SIPAccount
	errs *[]error
}

func (l sipAccountList) String() string { return "" }

// Set reads NAME:PASSWORD:USERID; the password may itself contain colons.
func (l sipAccountList) Set(v string) error {
	name, rest, ok1 := strings.Cut(v, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok1 || i < 0 || name == "" || rest[:i] == "" || rest[i+1:] == "" {
		*l.errs = append(*l.errs, fmt.Errorf("sip-account: want NAME:PASSWORD:USERID, got %q", redactAccount(v)))
		return nil
	}
	*l.list = append(*l.list, SIPAccount{Name: name, Password: rest[:i], UserID: rest[i+1:]})
	return nil
}

// redactAccount keeps a password out of an error message.
func redactAccount(v string) string {
	name, rest, ok := strings.Cut(v, ":")
	if !ok {
		return "…" // no name to show: the whole value may be the password
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		return name + ":…" + rest[i:]
	}
	return name + ":…"
}

// trustedList collects repeated --sip-trusted flags.
type trustedList struct{ list *[]string }

func (c trustedList) String() string { return "" }
func (c trustedList) Set(v string) error {
	if strings.TrimSpace(v) != "none" {
		if _, err := parsePrefix(v); err != nil {
			return err
		}
	}
	*c.list = append(*c.list, strings.TrimSpace(v))
	return nil
}

func (f *sipAuthFlags) define(fs *flag.FlagSet, d sipAuthSettings) {
	fs.Var(trustedList{&f.trusted}, "sip-trusted", "CIDR that calls in without SIP credentials, repeatable; default loopback and the private ranges, \"none\" trusts nobody (env CHORUS_SIP_TRUSTED, comma-separated)")
	fs.Var(sipAccountList{&f.accounts, &f.errs}, "sip-account", "SIP digest account NAME:PASSWORD:USERID for callers outside the trusted networks; its calls belong to API user USERID, repeatable (env CHORUS_SIP_ACCOUNT, comma-separated)")
	fs.Int("sip-auth-failures", d.SIPAuthFailures, "failed SIP authentications from one address within a minute before it is refused without a challenge (env CHORUS_SIP_AUTH_FAILURES)")
	fs.Duration("sip-auth-block", d.SIPAuthBlock, "how long such an address is refused (env CHORUS_SIP_AUTH_BLOCK)")
	fs.String("sip-digest-algorithms", d.SIPDigestAlgorithms, "digest algorithms challenged, preferred first: SHA-256, MD5 (env CHORUS_SIP_DIGEST_ALGORITHMS)")
	fs.String("sip-realm", d.SIPRealm, "realm of SIP digest challenges (env CHORUS_SIP_REALM)")
}

// isList reports whether a flag is one of the repeatable ones read by apply.
func (f *sipAuthFlags) isList(name string) bool {
	return name == "sip-trusted" || name == "sip-account"
}

// apply takes the repeatable flags, or else their environment twins, over
// the config file's lists.
func (f *sipAuthFlags) apply(s *sipAuthSettings, getenv func(string) string) error {
	errs := f.errs
	if v := getenv("CHORUS_SIP_TRUSTED"); v != "" && len(f.trusted) == 0 {
		for _, c := range strings.Split(v, ",") {
			if err := (trustedList{&f.trusted}).Set(c); err != nil {
				errs = append(errs, fmt.Errorf("CHORUS_SIP_TRUSTED: %w", err))
			}
		}
	}
	if len(f.trusted) > 0 {
		s.SIPTrusted = f.trusted
	}
	if v := getenv("CHORUS_SIP_ACCOUNT"); v != "" && len(f.accounts) == 0 && len(f.errs) == 0 {
		for _, a := range strings.Split(v, ",") {
			_ = sipAccountList{&f.accounts, &errs}.Set(strings.TrimSpace(a))
		}
	}
	if len(f.accounts) > 0 {
		s.SIPAccounts = f.accounts
	}
	return errors.Join(errs...)
}

// setField sets a scalar setting from a flag or its environment twin; it
// reports whether name was one of these.
func (s *sipAuthSettings) setField(name, v string) (bool, error) {
	var err error
	switch name {
	case "sip-auth-failures":
		s.SIPAuthFailures, err = strconv.Atoi(v)
	case "sip-auth-block":
		s.SIPAuthBlock, err = time.ParseDuration(v)
	case "sip-digest-algorithms":
		s.SIPDigestAlgorithms = v
	case "sip-realm":
		s.SIPRealm = v
	default:
		return false, nil
	}
	return true, err
}

// validate checks the settings against the API users.
func (s *sipAuthSettings) validate(users []User) error {
	var errs []error
	s.sipTrusted = nil
	for _, v := range s.SIPTrusted {
		if v == "none" {
			if len(s.SIPTrusted) > 1 {
				errs = append(errs, errors.New("sip-trusted: none cannot be combined with networks"))
			}
			s.sipTrusted = []netip.Prefix{}
			continue
		}
		p, err := parsePrefix(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("sip-trusted: %w", err))
			continue
		}
		s.sipTrusted = append(s.sipTrusted, p)
	}
	known := map[string]bool{}
	for _, u := range users {
		known[u.ID] = true
	}
	seen := map[string]bool{}
	for _, a := range s.SIPAccounts {
		switch {
		case a.Name == "" || a.Password == "" || a.UserID == "":
			errs = append(errs, fmt.Errorf("sip-account %q: needs a name, a password and a user id", a.Name))
		case !known[a.UserID]:
			errs = append(errs, fmt.Errorf("sip-account %q: user id %q is not an API user (--user)", a.Name, a.UserID))
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("sip-account %q is configured twice", a.Name))
		}
		seen[a.Name] = true
	}
	if s.SIPAuthFailures < 1 {
		errs = append(errs, fmt.Errorf("sip-auth-failures must be at least 1, got %d", s.SIPAuthFailures))
	}
	if s.SIPAuthBlock < time.Second || s.SIPAuthBlock > 24*time.Hour {
		errs = append(errs, fmt.Errorf("sip-auth-block must be within 1s-24h, got %s", s.SIPAuthBlock))
	}
	for _, a := range strings.Split(s.SIPDigestAlgorithms, ",") {
		if a = strings.ToUpper(strings.TrimSpace(a)); a != "SHA-256" && a != "MD5" {
			errs = append(errs, fmt.Errorf("sip-digest-algorithms: want SHA-256 and/or MD5, got %q", a))
		}
	}
	if s.SIPRealm == "" || strings.ContainsAny(s.SIPRealm, "\"\\\r\n") {
		errs = append(errs, fmt.Errorf("sip-realm: want a non-empty name without quotes, got %q", s.SIPRealm))
	}
	return errors.Join(errs...)
}

// authConfig is the sip package's view of the settings.
func (s *sipAuthSettings) authConfig() sip.AuthConfig {
	c := sip.AuthConfig{Trusted: s.sipTrusted, Realm: s.SIPRealm, MaxFailures: s.SIPAuthFailures, Block: s.SIPAuthBlock}
	for _, a := range strings.Split(s.SIPDigestAlgorithms, ",") {
		c.Algorithms = append(c.Algorithms, strings.TrimSpace(a))
	}
	for _, a := range s.SIPAccounts {
		c.Accounts = append(c.Accounts, sip.Account{Name: a.Name, Password: a.Password, UserID: a.UserID})
	}
	return c
}
