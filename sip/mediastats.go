package sip

import (
	"log/slog"
	"sync"

	"chorus/media"
)

// mediaTally sums the counters of the server's RTP sessions for metrics
// (what strict RTP, SRTP and the send path dropped): a live session's own
// counters are read when metrics are, and folded into the totals when it
// closes. The per-packet path pays nothing for it; a scrape takes a lock
// and reads a few atomics per live session.
type mediaTally struct {
	mu     sync.Mutex
	live   map[*media.Session]struct{}
	closed media.SessionStats // of the sessions closed
}

func newMediaTally() *mediaTally {
	return &mediaTally{live: map[*media.Session]struct{}{}}
}

// track counts sess from now on.
func (t *mediaTally) track(sess *media.Session) {
	t.mu.Lock()
	t.live[sess] = struct{}{}
	t.mu.Unlock()
}

// close closes sess and folds its counters into the totals, once, however
// often it is called. Closed first, so that its counters are final.
func (t *mediaTally) close(sess *media.Session) error {
	err := sess.Close()
	st := sess.Stats()
	t.mu.Lock()
	if _, ok := t.live[sess]; ok {
		delete(t.live, sess)
		addStats(&t.closed, st)
	}
	t.mu.Unlock()
	return err
}

// sum returns the totals of every session, live or closed, so far.
func (t *mediaTally) sum() media.SessionStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	total := t.closed
	for s := range t.live {
		addStats(&total, s.Stats())
	}
	return total
}

func addStats(to *media.SessionStats, s media.SessionStats) {
	to.PacketsIn += s.PacketsIn
	to.PacketsOut += s.PacketsOut
	to.Malformed += s.Malformed
	to.Strangers += s.Strangers
	to.Unproven += s.Unproven
	to.UnknownPT += s.UnknownPT
	to.SendErrors += s.SendErrors
	to.Unsent += s.Unsent
	to.AuthFailures += s.AuthFailures
}

// MediaStats returns the counters of every RTP session the server has had,
// summed: what strict RTP and SRTP dropped and what was not sent, for
// metrics.
func (s *Server) MediaStats() media.SessionStats { return s.media.sum() }

// statsAttr is a call's RTP counters as one group of log fields (stats.
// packets_in=… in text, a nested object in JSON), for its "call ended"
// line: fields a log pipeline can sum and filter, where printing the
// struct gave one opaque string. With them, the reception as an RTCP
// receiver report states it (RFC 3550 §6.4.1): packets lost by sequence
// number and the interarrival jitter at the end.
func statsAttr(sess *media.Session) slog.Attr {
	st, rc := sess.Stats(), sess.Reception()
	return slog.Group("stats",
		slog.Uint64("packets_in", st.PacketsIn), slog.Uint64("packets_out", st.PacketsOut),
		slog.Uint64("packets_lost", rc.Lost), slog.Duration("jitter", rc.Jitter),
		slog.Uint64("malformed", st.Malformed), slog.Uint64("strangers", st.Strangers),
		slog.Uint64("unproven", st.Unproven), slog.Uint64("unknown_pt", st.UnknownPT),
		slog.Uint64("send_errors", st.SendErrors), slog.Uint64("unsent", st.Unsent),
		slog.Uint64("srtp_auth_failures", st.AuthFailures))
}
