package main

import (
	"fmt"
	"net/http"

	"chorus/bridge"
	"chorus/media"
	"chorus/sip"
)

// metricsHandler serves the bridge's counters in the Prometheus text
// exposition format.
func metricsHandler(br *bridge.Bridge, ports *media.PortPool, auth *sip.AuthStats) http.Handler {
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
		// Who may call in (sip.AuthStats).
		counter("chorus_sip_auth_trusted_total", "INVITEs admitted from trusted networks without credentials.", auth.Trusted.Load())
		counter("chorus_sip_auth_accepted_total", "INVITEs admitted by SIP digest credentials.", auth.Accepted.Load())
		counter("chorus_sip_auth_challenges_total", "401 digest challenges sent.", auth.Challenges.Load())
		counter("chorus_sip_auth_failures_total", "Failed SIP authentications: wrong password, unknown account, malformed credentials.", auth.Failures.Load())
		counter("chorus_sip_auth_refused_total", "INVITEs refused without a challenge from a source blocked after failures.", auth.Refused.Load())
		counter("chorus_sip_auth_blocks_total", "Times a source was blocked after repeated failed authentication.", auth.Blocks.Load())
	})
}
