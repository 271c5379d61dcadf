package main

import (
	"fmt"
	"net/http"
	"os"
	"syscall"

	"chorus/bridge"
	"chorus/media"
	"chorus/sip"
)

// metricsHandler serves the bridge's counters in the Prometheus text
// exposition format.
func metricsHandler(br *bridge.Bridge, ports *media.PortPool, sipSrv *sip.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := br.Stats()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		counter := func(name, help string, v uint64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
		}
		gauge := func(name, help string, v float64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
		}
		counter("chorus_conferences_created_total", "Conferences created.", st.Conferences.Load())
		counter("chorus_calls_total", "Calls created, inbound and outbound.", st.Calls.Load())
		counter("chorus_members_added_total", "Members added to conferences.", st.Members.Load())
		gauge("chorus_calls_active", "Calls not completed.", float64(br.ActiveCalls()))
		gauge("chorus_rtp_ports_in_use", "RTP ports allocated.", float64(ports.InUse()))
		counter("chorus_mixer_ticks_total", "Mixer ticks.", st.Ticks.Load())
		counter("chorus_mixer_restarts_total", "Mixer clock restarts after a stall.", st.Restarts.Load())
		counter("chorus_mixer_demotions_total", "Mixer threads dropped from a raised priority after falling behind real time.", st.Demotions.Load())
		counter("chorus_mixer_mixed_frames_total", "Talker frames mixed.", st.Mixed.Load())
		counter("chorus_mixer_encodes_total", "G.711 frames encoded (shared encodes once).", st.Encodes.Load())
		counter("chorus_rtp_packets_in_total", "RTP datagrams read by the mixers.", st.PacketsIn.Load())
		counter("chorus_rtp_packets_out_total", "RTP packets sent by the mixers.", st.PacketsOut.Load())
		counter("chorus_mixer_panics_total", "Mixer ticks that panicked and were recovered (bugs).", st.Panics.Load())
		fmt.Fprintf(w, "# HELP chorus_mixer_tick_seconds_total Time spent mixing.\n# TYPE chorus_mixer_tick_seconds_total counter\nchorus_mixer_tick_seconds_total %g\n",
			float64(st.TickNanos.Load())/1e9)
		fmt.Fprintf(w, "# HELP chorus_mixer_tick_lateness_seconds How late mixer ticks woke.\n# TYPE chorus_mixer_tick_lateness_seconds histogram\n")
		var cum uint64
		for i, b := range bridge.LatenessBuckets {
			cum += st.Lateness[i].Load()
			fmt.Fprintf(w, "chorus_mixer_tick_lateness_seconds_bucket{le=\"%g\"} %d\n", b.Seconds(), cum)
		}
		cum += st.Lateness[len(bridge.LatenessBuckets)].Load()
		fmt.Fprintf(w, "chorus_mixer_tick_lateness_seconds_bucket{le=\"+Inf\"} %d\nchorus_mixer_tick_lateness_seconds_count %d\n", cum, cum)
		gauge("chorus_mixer_tick_lateness_max_seconds", "Latest tick wake-up seen.", float64(st.MaxLateness.Load())/1e9)

		// Unwanted SIP traffic by kind (sip.TrafficKind): counted here,
		// summarised in the log at most once per kind per 10 s.
		fmt.Fprintf(w, "# HELP chorus_sip_unwanted_total Unwanted SIP traffic: malformed or stray messages, unserved methods, requests outside any dialog, OPTIONS answered statelessly, shed TCP connections, failed accepts.\n# TYPE chorus_sip_unwanted_total counter\n")
		for _, k := range sip.TrafficKinds() {
			fmt.Fprintf(w, "chorus_sip_unwanted_total{kind=%q} %d\n", k.String(), sipSrv.TrafficCount(k))
		}
		// What the RTP sessions dropped (media.SessionStats), summed over
		// live and closed sessions at scrape time.
		ms := sipSrv.MediaStats()
		fmt.Fprintf(w, "# HELP chorus_rtp_dropped_total RTP datagrams dropped unplayed, by reason: malformed, from a stranger (not the proven source), unproven (no source proven yet), unknown payload type, failed SRTP authentication or replay.\n# TYPE chorus_rtp_dropped_total counter\n")
		for _, d := range []struct {
			reason string
			n      uint64
		}{{"malformed", ms.Malformed}, {"stranger", ms.Strangers}, {"unproven", ms.Unproven}, {"unknown_pt", ms.UnknownPT}, {"srtp_auth", ms.AuthFailures}} {
			fmt.Fprintf(w, "chorus_rtp_dropped_total{reason=%q} %d\n", d.reason, d.n)
		}
		counter("chorus_rtp_unsent_total", "RTP packets not sent because the far end had not proven its address within the send grace.", ms.Unsent)
		counter("chorus_rtp_send_errors_total", "RTP packets whose send failed.", ms.SendErrors)
		ls := sipSrv.LimitStats()
		fmt.Fprintf(w, "# HELP chorus_sip_invites_limited_total INVITEs answered 503 by a per-source limit.\n# TYPE chorus_sip_invites_limited_total counter\n")
		fmt.Fprintf(w, "chorus_sip_invites_limited_total{limit=\"rate\"} %d\nchorus_sip_invites_limited_total{limit=\"unconfirmed\"} %d\n",
			ls.LimitedRate, ls.LimitedUnconfirmed)
		counter("chorus_sip_calls_unacked_total", "Answered calls ended because their ACK never came (64xT1).", ls.NoAck)
		gauge("chorus_sip_tcp_connections", "Accepted SIP/TCP connections open.", float64(sipSrv.TCPConns()))
		if n, err := openFiles(); err == nil {
			gauge("process_open_fds", "Open file descriptors.", float64(n))
		}
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
			gauge("process_max_fds", "Limit on open file descriptors (RLIMIT_NOFILE).", float64(rl.Cur))
		}
		// Who may call in (sip.AuthStats).
		auth := sipSrv.AuthStats()
		counter("chorus_sip_auth_trusted_total", "INVITEs admitted from trusted networks without credentials.", auth.Trusted.Load())
		counter("chorus_sip_auth_accepted_total", "INVITEs admitted by SIP digest credentials.", auth.Accepted.Load())
		counter("chorus_sip_auth_challenges_total", "401 digest challenges sent.", auth.Challenges.Load())
		counter("chorus_sip_auth_failures_total", "Failed SIP authentications: wrong password, unknown account, malformed credentials.", auth.Failures.Load())
		counter("chorus_sip_auth_refused_total", "INVITEs refused without a challenge from a source blocked after failures.", auth.Refused.Load())
		counter("chorus_sip_auth_blocks_total", "Times a source was blocked after repeated failed authentication.", auth.Blocks.Load())
	})
}

// openFiles counts the process's open descriptors (Linux).
func openFiles() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("count descriptors: %w", err)
	}
	return len(ents) - 1, nil // less the one ReadDir opened
}
