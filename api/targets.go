package api

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"chorus/bridge"
	"chorus/internal/egress"
)

// The request-time half of the outbound request policy (package egress):
// a target refused now is a 400 with the reason, so the application learns
// at once. Names are looked up here; what they resolve to at connect time
// is checked again by the fetcher, the dispatcher and the dialer.

// checkFileURL refuses a fileUrl the policy refuses.
func (s *server) checkFileURL(ctx context.Context, raw string) error {
	if err := s.outbound.CheckURL(ctx, raw); errors.Is(err, egress.ErrRefused) {
		return errTargetRefused("audio", "fileUrl", err.Error())
	}
	return nil
}

// checkCallback refuses a callbackUrl or fallbackUrl the policy refuses.
func (s *server) checkCallback(ctx context.Context, cb bridge.Callback) error {
	for _, u := range []struct{ prop, url string }{{"callbackUrl", cb.URL}, {"fallbackUrl", cb.FallbackURL}} {
		if u.url == "" {
			continue
		}
		if err := s.outbound.CheckURL(ctx, u.url); errors.Is(err, egress.ErrRefused) {
			return errCallbackRefused(u.prop, u.url, err.Error())
		}
	}
	return nil
}

// checkDialTarget refuses a SIP URI (already checked by validSIPURI) whose
// host is a refused address or a name that resolves only to refused
// addresses. A name that does not resolve passes: the dial fails on its
// own, as a call event.
func (s *server) checkDialTarget(ctx context.Context, uri string) error {
	host, port := sipHostPort(uri)
	if _, err := s.outbound.Resolve(ctx, host, port); errors.Is(err, egress.ErrRefused) {
		return errTargetRefused("call", "to", err.Error())
	}
	return nil
}

// sipHostPort returns the host of a sip: or sips: URI (without IPv6
// brackets) and its port: the URI's, else 5061 for sips: or
// transport=tls, else 5060 (RFC 3261 §19.1.2).
func sipHostPort(uri string) (string, uint16) {
	scheme, rest, _ := strings.Cut(uri, ":")
	hostport, params, _ := strings.Cut(rest, ";")
	hostport, _, _ = strings.Cut(hostport, "?")
	params, _, _ = strings.Cut(params, "?")
	if i := strings.LastIndexByte(hostport, '@'); i >= 0 {
		hostport = hostport[i+1:]
	}
	port := uint16(5060)
	if strings.EqualFold(scheme, "sips") || strings.Contains(strings.ToLower(params), "transport=tls") {
		port = 5061
	}
	host := hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host = h
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
			port = uint16(n)
		}
	}
	return strings.Trim(host, "[]"), port
}
