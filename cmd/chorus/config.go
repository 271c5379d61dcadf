package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"chorus/api"
	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/media"
	"chorus/media/opus"
	"chorus/sip"
)

// User is one API account: the id in URLs, and the Basic auth pair.
type User struct {
	ID     string `json:"id"`
	Token  string `json:"token"`
	Secret string `json:"secret"`
}

// Config is everything the binary can be told. Sources, later ones winning:
// embedded defaults, the JSON config file, CHORUS_* environment variables,
// command-line flags.
type Config struct {
	SIPAddr  string `json:"sipAddr"`
	HTTPAddr string `json:"httpAddr"`
	RTPPorts string `json:"rtpPorts"`
	PublicIP string `json:"publicIp"`
	Users    []User `json:"users"`
	LogLevel string `json:"logLevel"`
	// LogFormat is text (logfmt) or json.
	LogFormat  string        `json:"logFormat"`
	RTPTimeout time.Duration `json:"rtpTimeout"`
	// RTPHoldTimeout ends a held call (direction not sendrecv) this long
	// after the hold began.
	RTPHoldTimeout time.Duration `json:"rtpHoldTimeout"`
	MaxMembers     int           `json:"maxMembers"`
	LoudestN       int           `json:"loudestN"`
	AutoCreate     bool          `json:"autoCreate"`
	DrainPeriod    time.Duration `json:"drainPeriod"`
	Retention      time.Duration `json:"retention"`
	// DataDir holds the store (chorus.db); "" runs in memory only.
	DataDir string `json:"dataDir"`
	// CallbackRetries is how many attempts a callback event gets at
	// callbackUrl (then as many at fallbackUrl); CallbackBackoff is the
	// first retry's delay, doubled per retry up to 30 s.
	CallbackRetries int           `json:"callbackRetries"`
	CallbackBackoff time.Duration `json:"callbackBackoff"`
	// RecordingsDir is where conference and call recordings are written
	// (made on the first recording); nil: <DataDir>/recordings (none
	// without a DataDir), "": recording off. See recordingsDir.
	RecordingsDir *string `json:"recordingsDir"`
	// RecordingQuota is the bytes of recording files each API user may
	// have on disk; 0 is no limit (bridge.Config.RecordingQuota).
	RecordingQuota int64         `json:"recordingQuota"`
	AnswerDelay    time.Duration `json:"answerDelay"`
	PprofAddr      string        `json:"pprofAddr"`
	// MixerPriority is normal, high or realtime (see bridge.Priority).
	MixerPriority string `json:"mixerPriority"`
	// AllowPrivateTargets lets audio fetches, callbacks and dial-out reach
	// loopback, private and carrier-grade NAT addresses (egress.Options).
	AllowPrivateTargets bool `json:"allowPrivateTargets"`
	// TargetAllow lists CIDRs (or single addresses) those outbound requests
	// may reach whatever their class.
	TargetAllow []string `json:"targetAllow"`
	// HTTPTLSCert and HTTPTLSKey (PEM files) serve the API over HTTPS.
	HTTPTLSCert string `json:"httpTlsCert"`
	HTTPTLSKey  string `json:"httpTlsKey"`
	// HTTPMaxConns caps open API connections (see connLimiter).
	HTTPMaxConns int `json:"httpMaxConns"`
	// HTTPAuthFailures is how many wrong API credentials one address may
	// send a minute before it gets 429.
	HTTPAuthFailures int `json:"httpAuthFailures"`
	// MaxConferencesPerUser caps a user's live conferences made through the API.
	MaxConferencesPerUser int `json:"maxConferencesPerUser"`
	// MaxApplicationsPerUser and MaxNumbersPerUser cap a user's
	// applications and phone numbers.
	MaxApplicationsPerUser int `json:"maxApplicationsPerUser"`
	MaxNumbersPerUser      int `json:"maxNumbersPerUser"`
	// IncomingCallTimeout is how long a call to an application's number
	// rings for the application to decide.
	IncomingCallTimeout time.Duration `json:"incomingCallTimeout"`
	// SIP over TCP: connection caps and idle timeout (see sip.TCPLimits).
	SIPTCPMaxConns          int           `json:"sipTcpMaxConns"`
	SIPTCPMaxConnsPerSource int           `json:"sipTcpMaxConnsPerSource"`
	SIPTCPIdleTimeout       time.Duration `json:"sipTcpIdleTimeout"`
	// Per-source SIP limits (see sip.Limits); 0 turns one off.
	SIPInviteRate     float64 `json:"sipInviteRate"`
	SIPInviteBurst    int     `json:"sipInviteBurst"`
	SIPMaxUnconfirmed int     `json:"sipMaxUnconfirmed"`
	// SIPLimitExempt lists CIDRs (comma-separated) of sources that are not
	// limited: a PBX or proxy in front of the bridge.
	SIPLimitExempt string `json:"sipLimitExempt"`
	// Codecs is the ordered, comma-separated list of codecs calls may use
	// (opus, G722, PCMU, PCMA); the order is that of our own offers.
	Codecs string `json:"codecs"`
	// MaxMixRate caps the rate a room mixes at: 8000, 16000 or 48000 Hz.
	MaxMixRate int `json:"maxMixRate"`
	// OpusBitrate is the target of our Opus encoders, bit/s.
	OpusBitrate int `json:"opusBitrate"`
	// Who may call in: trusted networks and SIP digest accounts.
	sipAuthSettings
	SIPSecurity // TLS and SRTP (siptls.go)

	rtpLow, rtpHigh int
	mixerPriority   bridge.Priority
	sipLimitExempt  []netip.Prefix
	publicIP        netip.Addr
	targetAllow     []netip.Prefix
	codecs          []media.Codec
	httpTLS         *tls.Config
	generatedUser   bool
}

// Defaults of the store (issue 14): records are kept 30 days, like the
// call records Catapult kept for months.
const (
	defaultDataDir = "./chorus-data"
	// defaultRecordingQuota is 2 GiB of recordings per user: about six
	// hours of 48 kHz WAV, weeks of MP3 or Opus.
	defaultRecordingQuota = 2 << 30
	// recordingMinFree: no recording starts on a filesystem with less
	// free than this (or than a twentieth of a smaller filesystem, see
	// recordingMinFreeOn), whatever the quotas, so that recordings never
	// take the store's (or the system's) last bytes.
	recordingMinFree = 100 << 20
	defaultRetention = 30 * 24 * time.Hour
	// memoryRetention bounds how long the bridge keeps completed records
	// in memory when a store holds them: older ones are read from the store.
	memoryRetention = time.Hour
)

func defaultConfig() Config {
	return Config{SIPAddr: ":5060", HTTPAddr: "127.0.0.1:8080", RTPPorts: "10000-20000", LogLevel: "info", LogFormat: "text",
		RTPTimeout: 30 * time.Second, RTPHoldTimeout: 10 * time.Minute, MaxMembers: 20, LoudestN: 8, AutoCreate: true, DrainPeriod: 0,
		Retention: defaultRetention, DataDir: defaultDataDir, CallbackRetries: 3, CallbackBackoff: 500 * time.Millisecond, RecordingQuota: defaultRecordingQuota, MixerPriority: "realtime", HTTPMaxConns: defaultHTTPMaxConns,
		HTTPAuthFailures: api.DefaultAuthFailures, MaxConferencesPerUser: api.DefaultMaxLiveConferences,
		MaxApplicationsPerUser: bridge.DefaultMaxApplicationsPerUser, MaxNumbersPerUser: bridge.DefaultMaxNumbersPerUser,
		IncomingCallTimeout: bridge.DefaultIncomingCallTimeout,
		SIPTCPMaxConns:      sip.DefaultTCPMaxConns, SIPTCPMaxConnsPerSource: sip.DefaultTCPMaxConnsPerSource,
		SIPTCPIdleTimeout: sip.DefaultTCPIdleTimeout,
		// Twice the 200 calls/s one load generator places (docs/performance.md),
		// and far above what a caller behind one address needs; an answered
		// call is ACKed within a round trip, so 100 awaiting their ACK is a
		// flood, and holds 100 ports at most, 2 % of the default range.
		SIPInviteRate: 400, SIPInviteBurst: 400, SIPMaxUnconfirmed: 100,
		Codecs: defaultCodecs(), MaxMixRate: 48000, OpusBitrate: opus.DefaultBitrate,
		sipAuthSettings: defaultSIPAuth()}
}

// userList collects repeated --user flags.
type userList struct{ users *[]User }

func (u userList) String() string { return "" }
func (u userList) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return fmt.Errorf("want ID:TOKEN:SECRET, got %q", v)
	}
	*u.users = append(*u.users, User{ID: parts[0], Token: parts[1], Secret: parts[2]})
	return nil
}

// cidrList collects repeated --target-allow flags.
type cidrList struct{ list *[]string }

func (c cidrList) String() string { return "" }
func (c cidrList) Set(v string) error {
	if _, err := parsePrefix(v); err != nil {
		return err
	}
	*c.list = append(*c.list, strings.TrimSpace(v))
	return nil
}

// parsePrefix reads a CIDR, or a single address as its /32 or /128.
func parsePrefix(v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("want a CIDR such as 10.0.0.0/8 or an address, got %q", v)
}

// targetPolicy is the outbound request policy of fileUrl fetches,
// callbacks and dial-out. The bridge's listening ports are added to it as
// they bind; its RTP range is known now.
func (c Config) targetPolicy() *egress.Policy {
	p := egress.New(egress.Options{AllowPrivate: c.AllowPrivateTargets, Allow: c.targetAllow,
		LocalAddrs: []netip.Addr{c.publicIP}})
	p.AddOwnPorts(uint16(c.rtpLow), uint16(c.rtpHigh))
	if _, port, err := net.SplitHostPort(c.PprofAddr); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err == nil {
			p.AddOwnPorts(uint16(n), uint16(n))
		}
	}
	return p
}

// loadConfig builds the configuration from args and the environment.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("chorus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "JSON config file (env CHORUS_CONFIG); docs/config.example.json shows every field")
	showVersion := fs.Bool("version", false, "print the version and exit")
	var flagUsers []User
	var flagAllow []string
	fs.String("sip-addr", cfg.SIPAddr, "SIP listen address, UDP and TCP (env CHORUS_SIP_ADDR)")
	fs.String("http-addr", cfg.HTTPAddr, "control API listen address (env CHORUS_HTTP_ADDR)")
	fs.String("rtp-ports", cfg.RTPPorts, "RTP port range LOW-HIGH (env CHORUS_RTP_PORTS)")
	fs.String("public-ip", "", "address written into SDP and Contact; default: the SIP listen address, or the first non-loopback interface (env CHORUS_PUBLIC_IP)")
	fs.Var(userList{&flagUsers}, "user", "API user ID:TOKEN:SECRET, repeatable (env CHORUS_USER, comma-separated)")
	fs.String("log-level", cfg.LogLevel, "debug, info, warn or error (env CHORUS_LOG_LEVEL)")
	fs.String("log-format", cfg.LogFormat, "text (logfmt) or json, one object a line (env CHORUS_LOG_FORMAT)")
	fs.Duration("rtp-timeout", cfg.RTPTimeout, "hang up a call after this long without RTP, or that has not proved its RTP address this long after it started (env CHORUS_RTP_TIMEOUT)")
	fs.Duration("rtp-hold-timeout", cfg.RTPHoldTimeout, "hang up a held call (inactive, c=0.0.0.0, sendonly or recvonly) this long after the hold began; the RTP timeout does not apply to held calls (env CHORUS_RTP_HOLD_TIMEOUT)")
	fs.Int("max-members", cfg.MaxMembers, "active members per conference (env CHORUS_MAX_MEMBERS)")
	fs.Int("loudest-n", cfg.LoudestN, "talkers mixed at once (env CHORUS_LOUDEST_N)")
	fs.Bool("auto-create", cfg.AutoCreate, "create a conference for an unknown dialled number (env CHORUS_AUTO_CREATE)")
	fs.Duration("drain-period", cfg.DrainPeriod, "after SIGTERM, hang up remaining calls after this long; 0 waits for them (env CHORUS_DRAIN_PERIOD)")
	fs.String("pprof-addr", "", "serve Go's net/http/pprof profiles on this address (e.g. 127.0.0.1:6060); off by default (env CHORUS_PPROF_ADDR)")
	fs.Duration("answer-delay", cfg.AnswerDelay, "ring (180) this long before answering a call; 0 answers at once (env CHORUS_ANSWER_DELAY)")
	fs.String("mixer-priority", cfg.MixerPriority, "scheduling of mixer threads: realtime (SCHED_FIFO; needs CAP_SYS_NICE or RLIMIT_RTPRIO, else falls back), high (nice -10) or normal (env CHORUS_MIXER_PRIORITY)")
	fs.Int("sip-tcp-max-conns", cfg.SIPTCPMaxConns, "SIP/TCP connections open at once; lowered to a quarter of the descriptor limit if above it (env CHORUS_SIP_TCP_MAX_CONNS)")
	fs.Int("sip-tcp-max-conns-per-source", cfg.SIPTCPMaxConnsPerSource, "SIP/TCP connections open at once from one IP (env CHORUS_SIP_TCP_MAX_CONNS_PER_SOURCE)")
	fs.Duration("sip-tcp-idle-timeout", cfg.SIPTCPIdleTimeout, "close a SIP/TCP connection without traffic and without a live call after this long (env CHORUS_SIP_TCP_IDLE_TIMEOUT)")
	fs.Float64("sip-invite-rate", cfg.SIPInviteRate, "new calls (INVITEs) per second accepted from one source IP, on average; beyond it 503 with Retry-After; 0: no limit (env CHORUS_SIP_INVITE_RATE)")
	fs.Int("sip-invite-burst", cfg.SIPInviteBurst, "new calls one source IP may place at once, above --sip-invite-rate (env CHORUS_SIP_INVITE_BURST)")
	fs.Int("sip-max-unconfirmed", cfg.SIPMaxUnconfirmed, "calls one source IP may have answered but not yet ACKed; beyond it 503 with Retry-After; 0: no limit (env CHORUS_SIP_MAX_UNCONFIRMED)")
	fs.String("sip-limit-exempt", cfg.SIPLimitExempt, "comma-separated CIDRs not subject to the per-source limits, e.g. a PBX or proxy in front (env CHORUS_SIP_LIMIT_EXEMPT)")
	fs.Duration("retention", cfg.Retention, "how long completed conferences, members, calls, recordings (with their files) and undelivered events are kept in the store; pruned in the background (env CHORUS_RETENTION)")
	fs.Int("callback-retries", cfg.CallbackRetries, "attempts of a callback event at callbackUrl before fallbackUrl gets as many; then it is kept as undeliverable (env CHORUS_CALLBACK_RETRIES)")
	fs.Duration("callback-backoff", cfg.CallbackBackoff, "delay before a callback's first retry, doubled per retry up to 30s (env CHORUS_CALLBACK_BACKOFF)")
	fs.String("data-dir", cfg.DataDir, `directory of the store (chorus.db, SQLite), created on first start; "" keeps everything in memory only, lost at exit (env CHORUS_DATA_DIR)`)
	fs.String("recordings-dir", "", "directory of conference and call recordings, made on the first one; unset: <data-dir>/recordings; \"\" turns recording off (env CHORUS_RECORDINGS_DIR)")
	fs.Int64("recording-quota", cfg.RecordingQuota, "bytes of recording files each API user may have on disk, files of earlier runs included; at it no recording starts (403 recording-quota-exceeded) and a running one that crosses it ends in state error; DELETE of media and retention give bytes back; 0: no limit (env CHORUS_RECORDING_QUOTA)")
	fs.Bool("allow-private-targets", cfg.AllowPrivateTargets, "let fileUrl fetches, callbacks and dial-out reach loopback, private (RFC 1918, fc00::/7) and CGNAT addresses; link-local, multicast and the bridge's own ports stay refused (env CHORUS_ALLOW_PRIVATE_TARGETS)")
	fs.Var(cidrList{&flagAllow}, "target-allow", "CIDR that fileUrl fetches, callbacks and dial-out may reach whatever its kind, repeatable (env CHORUS_TARGET_ALLOW, comma-separated)")
	fs.String("http-tls-cert", "", "PEM certificate (chain) to serve the API over HTTPS, with --http-tls-key (env CHORUS_HTTP_TLS_CERT)")
	fs.String("http-tls-key", "", "PEM private key of --http-tls-cert (env CHORUS_HTTP_TLS_KEY)")
	fs.Int("http-max-conns", cfg.HTTPMaxConns, "open API connections at most; beyond, the oldest idle one is closed (env CHORUS_HTTP_MAX_CONNS)")
	fs.Int("http-auth-failures", cfg.HTTPAuthFailures, "wrong API credentials one address may send a minute before its requests get 429 (env CHORUS_HTTP_AUTH_FAILURES)")
	fs.Int("max-conferences-per-user", cfg.MaxConferencesPerUser, "live conferences one API user may create (env CHORUS_MAX_CONFERENCES_PER_USER)")
	fs.Int("max-applications-per-user", cfg.MaxApplicationsPerUser, "applications one API user may create (env CHORUS_MAX_APPLICATIONS_PER_USER)")
	fs.Int("max-numbers-per-user", cfg.MaxNumbersPerUser, "phone numbers one API user may allocate (env CHORUS_MAX_NUMBERS_PER_USER)")
	fs.Duration("incoming-call-timeout", cfg.IncomingCallTimeout, "how long a call to an application's number rings for the application to answer or reject it before 480 (env CHORUS_INCOMING_CALL_TIMEOUT)")
	fs.String("codecs", cfg.Codecs, "codecs calls may use, comma-separated: opus, G722, PCMU, PCMA; an answer follows the caller's order, our own offers (dial-out, INVITE without SDP) this one (env CHORUS_CODECS)")
	fs.Int("max-mix-rate", cfg.MaxMixRate, "highest rate a room mixes at, Hz: 8000, 16000 or 48000; a room mixes at the highest its members can hear, up to this (env CHORUS_MAX_MIX_RATE)")
	fs.Int("opus-bitrate", cfg.OpusBitrate, "target bitrate of the Opus we send, bit/s, 6000-510000; 32000 keeps fullband voice with in-band FEC (env CHORUS_OPUS_BITRATE)")
	var sipFlags sipAuthFlags
	sipFlags.define(fs, cfg.sipAuthSettings)
	addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *showVersion {
		return cfg, errShowVersion
	}
	if *configFile == "" {
		*configFile = getenv("CHORUS_CONFIG")
	}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return cfg, fmt.Errorf("config file: %w", err)
		}
		if err := decodeConfigFile(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", *configFile, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	// Environment, then flags, for every setting but users.
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || f.Name == "version" || f.Name == "user" || f.Name == "target-allow" || sipFlags.isList(f.Name) {
			return
		}
		val, ok := "", false
		if set[f.Name] {
			val, ok = f.Value.String(), true
		} else if v := getenv("CHORUS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); v != "" {
			val, ok = v, true
		}
		if !ok {
			return
		}
		if err := cfg.setField(f.Name, val); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
		}
	})
	if v := getenv("CHORUS_USER"); v != "" && len(flagUsers) == 0 {
		for _, u := range strings.Split(v, ",") {
			if err := (userList{&flagUsers}).Set(strings.TrimSpace(u)); err != nil {
				errs = append(errs, fmt.Errorf("CHORUS_USER: %w", err))
			}
		}
	}
	if len(flagUsers) > 0 {
		cfg.Users = flagUsers
	}
	if v := getenv("CHORUS_TARGET_ALLOW"); v != "" && len(flagAllow) == 0 {
		for _, c := range strings.Split(v, ",") {
			if err := (cidrList{&flagAllow}).Set(c); err != nil {
				errs = append(errs, fmt.Errorf("CHORUS_TARGET_ALLOW: %w", err))
			}
		}
	}
	if len(flagAllow) > 0 {
		cfg.TargetAllow = flagAllow
	}
	if err := sipFlags.apply(&cfg.sipAuthSettings, getenv); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// defaultCodecs lists every codec this build can code, Opus first.
func defaultCodecs() string {
	names := make([]string, 0, 4)
	for _, c := range sip.DefaultCodecs() {
		names = append(names, c.String())
	}
	return strings.Join(names, ",")
}

// recordingsDir is where recordings go: the directory set, else
// recordings beside the store, else nowhere (a memory-only bridge keeps
// no files unless told where).
func (c Config) recordingsDir() string {
	switch {
	case c.RecordingsDir != nil:
		return *c.RecordingsDir
	case c.DataDir == "":
		return ""
	}
	return filepath.Join(c.DataDir, "recordings")
}

// errShowVersion is loadConfig's answer to -version: run prints the
// version instead of starting.
var errShowVersion = errors.New("version requested")

// decodeConfigFile reads a JSON config file into cfg, refusing unknown
// fields. Durations may be strings in Go's syntax ("30s", "10m") or, as
// before, integer nanoseconds.
func decodeConfigFile(b []byte, cfg *Config) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("want a JSON object: %w", err)
	}
	for _, key := range durationFields(reflect.TypeOf(*cfg)) {
		raw, ok := fields[key]
		if !ok || len(raw) == 0 || raw[0] != '"' {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: want a duration such as \"30s\" or \"10m\", got %q", key, s)
		}
		fields[key] = json.RawMessage(strconv.FormatInt(int64(d), 10))
	}
	norm, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("re-encode: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(norm))
	dec.DisallowUnknownFields()
	return dec.Decode(cfg)
}

// durationFields lists the JSON names of t's time.Duration fields,
// embedded structs' included (their fields sit at the top level).
func durationFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, durationFields(f.Type)...)
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" && f.Type == reflect.TypeFor[time.Duration]() {
			out = append(out, name)
		}
	}
	return out
}

func (c *Config) setField(name, v string) error {
	if ok, err := c.sipAuthSettings.setField(name, v); ok {
		return err
	}
	var err error
	switch name {
	case "sip-addr":
		c.SIPAddr = v
	case "http-addr":
		c.HTTPAddr = v
	case "rtp-ports":
		c.RTPPorts = v
	case "public-ip":
		c.PublicIP = v
	case "log-level":
		c.LogLevel = v
	case "log-format":
		c.LogFormat = v
	case "rtp-timeout":
		c.RTPTimeout, err = time.ParseDuration(v)
	case "rtp-hold-timeout":
		c.RTPHoldTimeout, err = time.ParseDuration(v)
	case "drain-period":
		c.DrainPeriod, err = time.ParseDuration(v)
	case "pprof-addr":
		c.PprofAddr = v
	case "mixer-priority":
		c.MixerPriority = v
	case "answer-delay":
		c.AnswerDelay, err = time.ParseDuration(v)
	case "retention":
		c.Retention, err = time.ParseDuration(v)
	case "data-dir":
		c.DataDir = v
	case "callback-retries":
		c.CallbackRetries, err = strconv.Atoi(v)
	case "callback-backoff":
		c.CallbackBackoff, err = time.ParseDuration(v)
	case "recordings-dir":
		c.RecordingsDir = &v
	case "recording-quota":
		c.RecordingQuota, err = strconv.ParseInt(v, 10, 64)
	case "max-members":
		c.MaxMembers, err = strconv.Atoi(v)
	case "loudest-n":
		c.LoudestN, err = strconv.Atoi(v)
	case "auto-create":
		c.AutoCreate, err = strconv.ParseBool(v)
	case "allow-private-targets":
		c.AllowPrivateTargets, err = strconv.ParseBool(v)
	case "http-tls-cert":
		c.HTTPTLSCert = v
	case "http-tls-key":
		c.HTTPTLSKey = v
	case "http-max-conns":
		c.HTTPMaxConns, err = strconv.Atoi(v)
	case "http-auth-failures":
		c.HTTPAuthFailures, err = strconv.Atoi(v)
	case "max-conferences-per-user":
		c.MaxConferencesPerUser, err = strconv.Atoi(v)
	case "max-applications-per-user":
		c.MaxApplicationsPerUser, err = strconv.Atoi(v)
	case "max-numbers-per-user":
		c.MaxNumbersPerUser, err = strconv.Atoi(v)
	case "incoming-call-timeout":
		c.IncomingCallTimeout, err = time.ParseDuration(v)
	case "sip-tcp-max-conns":
		c.SIPTCPMaxConns, err = strconv.Atoi(v)
	case "sip-tcp-max-conns-per-source":
		c.SIPTCPMaxConnsPerSource, err = strconv.Atoi(v)
	case "sip-tcp-idle-timeout":
		c.SIPTCPIdleTimeout, err = time.ParseDuration(v)
	case "sip-invite-rate":
		c.SIPInviteRate, err = strconv.ParseFloat(v, 64)
	case "sip-invite-burst":
		c.SIPInviteBurst, err = strconv.Atoi(v)
	case "sip-max-unconfirmed":
		c.SIPMaxUnconfirmed, err = strconv.Atoi(v)
	case "sip-limit-exempt":
		c.SIPLimitExempt = v
	case "codecs":
		c.Codecs = v
	case "max-mix-rate":
		c.MaxMixRate, err = strconv.Atoi(v)
	case "opus-bitrate":
		c.OpusBitrate, err = strconv.Atoi(v)
	default:
		err = c.setSecurityField(name, v)
	}
	return err
}

// validate checks the configuration and derives the parsed fields.
func (c *Config) validate() error {
	var errs []error
	lo, hi, ok := strings.Cut(c.RTPPorts, "-")
	var err1, err2 error
	c.rtpLow, err1 = strconv.Atoi(strings.TrimSpace(lo))
	c.rtpHigh, err2 = strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || c.rtpLow < 1024 || c.rtpHigh > 65535 || c.rtpLow >= c.rtpHigh {
		errs = append(errs, fmt.Errorf("rtp-ports: want LOW-HIGH within 1024-65535, got %q", c.RTPPorts))
	}
	if _, _, err := net.SplitHostPort(c.SIPAddr); err != nil {
		errs = append(errs, fmt.Errorf("sip-addr %q: %w", c.SIPAddr, err))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http-addr %q: %w", c.HTTPAddr, err))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format: want text or json, got %q", c.LogFormat))
	}
	if c.MaxMembers < 1 {
		errs = append(errs, fmt.Errorf("max-members must be at least 1, got %d", c.MaxMembers))
	}
	if c.LoudestN < 1 {
		errs = append(errs, fmt.Errorf("loudest-n must be at least 1, got %d", c.LoudestN))
	}
	if c.AnswerDelay < 0 || c.AnswerDelay > time.Minute {
		errs = append(errs, fmt.Errorf("answer-delay must be within 0-1m, got %s", c.AnswerDelay))
	}
	if c.Retention < time.Minute {
		errs = append(errs, fmt.Errorf("retention must be at least 1m, got %s", c.Retention))
	}
	if c.RecordingQuota < 0 {
		errs = append(errs, fmt.Errorf("recording-quota must be 0 (no limit) or a number of bytes, got %d", c.RecordingQuota))
	}
	if c.CallbackRetries < 1 || c.CallbackRetries > 100 {
		errs = append(errs, fmt.Errorf("callback-retries must be 1 to 100, got %d", c.CallbackRetries))
	}
	if c.CallbackBackoff < 10*time.Millisecond || c.CallbackBackoff > time.Hour {
		errs = append(errs, fmt.Errorf("callback-backoff must be 10ms to 1h, got %s", c.CallbackBackoff))
	}
	if c.SIPInviteRate < 0 || c.SIPInviteBurst < 0 || c.SIPMaxUnconfirmed < 0 {
		errs = append(errs, errors.New("sip-invite-rate, sip-invite-burst and sip-max-unconfirmed must not be negative"))
	}
	c.sipLimitExempt = nil
	for _, f := range strings.Split(c.SIPLimitExempt, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			if a, err2 := netip.ParseAddr(f); err2 == nil {
				p, err = netip.PrefixFrom(a, a.BitLen()), nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sip-limit-exempt: want CIDRs or addresses, got %q", f))
			continue
		}
		c.sipLimitExempt = append(c.sipLimitExempt, p.Masked())
	}
	if cs, err := sip.ParseCodecs(c.Codecs); err != nil {
		errs = append(errs, fmt.Errorf("codecs: %w", err))
	} else {
		c.codecs = cs
	}
	if c.MaxMixRate != 8000 && c.MaxMixRate != 16000 && c.MaxMixRate != 48000 {
		errs = append(errs, fmt.Errorf("max-mix-rate: want 8000, 16000 or 48000 (Hz), got %d", c.MaxMixRate))
	}
	if c.OpusBitrate < 6000 || c.OpusBitrate > 510000 {
		errs = append(errs, fmt.Errorf("opus-bitrate: want 6000-510000 bit/s (RFC 7587 §3.1.1), got %d", c.OpusBitrate))
	}
	if p, err := bridge.ParsePriority(c.MixerPriority); err != nil {
		errs = append(errs, err)
	} else {
		c.mixerPriority = p
	}
	if c.HTTPMaxConns < 16 {
		errs = append(errs, fmt.Errorf("http-max-conns must be at least 16, got %d", c.HTTPMaxConns))
	}
	if c.HTTPAuthFailures < 1 || c.HTTPAuthFailures > 10000 {
		errs = append(errs, fmt.Errorf("http-auth-failures must be within 1-10000, got %d", c.HTTPAuthFailures))
	}
	if c.MaxConferencesPerUser < 1 {
		errs = append(errs, fmt.Errorf("max-conferences-per-user must be at least 1, got %d", c.MaxConferencesPerUser))
	}
	if c.MaxApplicationsPerUser < 1 {
		errs = append(errs, fmt.Errorf("max-applications-per-user must be at least 1, got %d", c.MaxApplicationsPerUser))
	}
	if c.MaxNumbersPerUser < 1 {
		errs = append(errs, fmt.Errorf("max-numbers-per-user must be at least 1, got %d", c.MaxNumbersPerUser))
	}
	if c.IncomingCallTimeout < time.Second || c.IncomingCallTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("incoming-call-timeout must be within 1s-10m, got %s", c.IncomingCallTimeout))
	}
	if tc, err := loadHTTPTLS(c.HTTPTLSCert, c.HTTPTLSKey); err != nil {
		errs = append(errs, err)
	} else {
		c.httpTLS = tc
	}
	if c.SIPTCPMaxConns < 1 || c.SIPTCPMaxConnsPerSource < 1 {
		errs = append(errs, fmt.Errorf("sip-tcp-max-conns and sip-tcp-max-conns-per-source must be at least 1, got %d and %d",
			c.SIPTCPMaxConns, c.SIPTCPMaxConnsPerSource))
	}
	if c.SIPTCPIdleTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("sip-tcp-idle-timeout must be at least 100ms, got %s", c.SIPTCPIdleTimeout))
	}
	if c.RTPTimeout < time.Second {
		errs = append(errs, fmt.Errorf("rtp-timeout must be at least 1s, got %s", c.RTPTimeout))
	}
	if c.RTPHoldTimeout < time.Second {
		errs = append(errs, fmt.Errorf("rtp-hold-timeout must be at least 1s, got %s", c.RTPHoldTimeout))
	}
	seen := map[string]bool{}
	for _, u := range c.Users {
		if u.ID == "" || u.Token == "" || u.Secret == "" {
			errs = append(errs, errors.New("every user needs id, token and secret"))
		}
		if seen[u.ID] || seen["token:"+u.Token] {
			errs = append(errs, fmt.Errorf("user %q or its token is configured twice", u.ID))
		}
		seen[u.ID], seen["token:"+u.Token] = true, true
	}
	if c.PublicIP != "" {
		ip, err := netip.ParseAddr(c.PublicIP)
		if err != nil || ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("public-ip: want an IP address, got %q", c.PublicIP))
		}
		c.publicIP = ip
	} else {
		c.publicIP = guessPublicIP(c.SIPAddr)
	}
	errs = append(errs, c.validateSecurity())
	c.targetAllow = nil
	for _, v := range c.TargetAllow {
		p, err := parsePrefix(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("target-allow: %w", err))
			continue
		}
		c.targetAllow = append(c.targetAllow, p)
	}
	if err := c.sipAuthSettings.validate(c.Users); err != nil {
		errs = append(errs, err)
	}
	if len(c.Users) == 0 {
		c.Users = []User{{ID: "u-" + randomString(20), Token: "t-" + randomString(20), Secret: randomString(24)}}
		c.generatedUser = true
	}
	return errors.Join(errs...)
}

// httpScheme is how clients reach the API: https with a certificate.
func (c *Config) httpScheme() string {
	if c.httpTLS != nil {
		return "https"
	}
	return "http"
}

// newLogger is the process's logger: the configured format and level,
// on w (stderr).
func newLogger(c Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log-level: want debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// guessPublicIP picks the SIP listen host if it is a specific address, else
// the first up, non-loopback IPv4 interface address, else loopback.
func guessPublicIP(sipAddr string) netip.Addr {
	if host, _, err := net.SplitHostPort(sipAddr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			return ip
		}
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr()
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// recordingMinFreeOn is the free space a recording needs to start on the
// filesystem of dir: recordingMinFree, or a twentieth of a filesystem too
// small for that to leave room for any recording (a small volume or tmpfs
// given to recordings).
func recordingMinFreeOn(dir string) int64 {
	if dir == "" {
		return 0
	}
	if _, size, ok := bridge.DiskSpace(dir); ok && size/20 < recordingMinFree {
		return size / 20
	}
	return recordingMinFree
}
