package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"chorus/api"
	"chorus/bridge"
	"chorus/media"
	"chorus/sip"
	"chorus/store"
)

// metrics is every Prometheus series the binary exports, in one registry:
// the bridge's, SIP's, RTP's, the callbacks' and the event stream's
// counters read at scrape time by bridgeCollector (they stay plain atomics
// on their hot paths, which pay nothing for being exported), the API's
// requests counted by the HTTP middleware, and Go's runtime and process
// collectors. No label ever carries a call, conference or user id: every
// label has a small fixed set of values.
type metrics struct {
	reg *prometheus.Registry
	// HTTP requests by route pattern, method and status; their durations
	// by route pattern.
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

// metricsSources is what the scrape-time collector reads.
type metricsSources struct {
	bridge     *bridge.Bridge
	ports      *media.PortPool
	sip        *sip.Server
	dispatcher *api.Dispatcher
	events     *api.EventStream
	outbox     *api.Outbox
	store      store.Store // nil: memory only
}

func newMetrics(src metricsSources) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chorus_http_requests_total",
			Help: "HTTP requests served (API, console, metrics), by route pattern, method and status code."},
			[]string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chorus_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern (event streams last as long as the client stays).",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60}}, []string{"route"}),
	}
	version, goVersion := buildVersion()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chorus_build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	buildInfo.Set(1)
	m.reg.MustRegister(m.httpRequests, m.httpDuration, buildInfo, newBridgeCollector(src),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the registry in the Prometheus exposition format.
func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.ContinueOnError})
}

// observeHTTP counts a served request.
func (m *metrics) observeHTTP(route, method string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// bridgeCollector reads the counters of the bridge, the SIP server, the
// RTP sessions, the callback dispatcher and the event stream when
// Prometheus scrapes.
type bridgeCollector struct {
	src   metricsSources
	descs map[string]*prometheus.Desc
}

// metricDef is one series family the collector emits.
type metricDef struct {
	name, help string
	labels     []string
}

// bridgeMetricDefs lists the families of bridgeCollector, names kept from
// the hand-written exposition they replace (docs/performance.md's harness
// reads chorus_mixer_* and chorus_rtp_*).
var bridgeMetricDefs = []metricDef{
	{"chorus_conferences_created_total", "Conferences created.", nil},
	{"chorus_calls_total", "Calls created, inbound and outbound.", nil},
	{"chorus_members_added_total", "Members added to conferences.", nil},
	{"chorus_calls_active", "Calls not completed.", nil},
	{"chorus_conferences_live", "Conferences not completed.", nil},
	{"chorus_members_live", "Active members of live conferences (callers in a lobby excluded).", nil},
	{"chorus_members_waiting", "Callers waiting in a lobby (PIN entry) of a live conference.", nil},
	{"chorus_rtp_ports_in_use", "RTP ports allocated.", nil},
	{"chorus_mixer_ticks_total", "Mixer ticks.", nil},
	{"chorus_mixer_restarts_total", "Mixer clock restarts after a stall.", nil},
	{"chorus_mixer_demotions_total", "Mixer threads dropped from a raised priority after falling behind real time.", nil},
	{"chorus_mixer_mixed_frames_total", "Talker frames mixed.", nil},
	{"chorus_mixer_encodes_total", "G.711 frames encoded (shared encodes once).", nil},
	{"chorus_rtp_packets_in_total", "RTP datagrams read by the mixers.", nil},
	{"chorus_rtp_packets_out_total", "RTP packets sent by the mixers.", nil},
	{"chorus_mixer_panics_total", "Mixer ticks that panicked and were recovered (bugs).", nil},
	{"chorus_mixer_tick_seconds_total", "Time spent mixing.", nil},
	{"chorus_mixer_tick_lateness_seconds", "How late mixer ticks woke.", nil},
	{"chorus_mixer_tick_lateness_max_seconds", "Latest tick wake-up seen.", nil},
	{"chorus_dtmf_digits_total", "DTMF digits received from callers (RFC 4733 or SIP INFO).", nil},
	{"chorus_recordings_total", "Recordings started.", nil},
	{"chorus_recording_errors_total", "Recordings ended by an error: a writer that fell behind the mix (a slow disk), a failed write, or the user's quota crossed.", nil},
	{"chorus_recordings_refused_total", "Recordings refused at start: the user's recording quota used up, or the recordings' filesystem nearly full.", nil},
	{"chorus_recording_bytes", "Bytes of recording files on disk, every user's, as counted against the quotas.", nil},
	{"chorus_rtp_jitter_packets_total", "RTP packets the conference members' jitter buffers accepted (published about once a second while a call lasts).", nil},
	{"chorus_rtp_late_packets_total", "RTP packets dropped for arriving after their play-out time.", nil},
	{"chorus_rtp_concealed_samples_total", "Audio samples synthesised for lost or late RTP: the loss a listener heard (8 kHz samples).", nil},
	{"chorus_rtp_jitter_underruns_total", "Mixer reads that found a member's next audio not yet there.", nil},
	{"chorus_rtp_jitter_resyncs_total", "Jumps of the jitter buffers to a new timeline: a new SSRC, a timestamp jump.", nil},
	{"chorus_rtp_lost_packets_total", "RTP packets lost on the way in, by sequence number (RFC 3550 section 6.4.1: expected minus received), of conference members.", nil},
	{"chorus_rtp_interarrival_jitter_seconds", "Interarrival jitter (RFC 3550 section 6.4.1) of each conference member's incoming RTP, sampled once a second while its audio arrives: call-seconds by jitter.", nil},
	{"chorus_sip_unwanted_total", "Unwanted SIP traffic: malformed or stray messages, unserved methods, requests outside any dialog, OPTIONS answered statelessly, shed TCP connections, failed accepts.", []string{"kind"}},
	{"chorus_sip_requests_total", "SIP requests handled, by method (requests the UDP screen answers statelessly are in chorus_sip_unwanted_total).", []string{"method"}},
	{"chorus_sip_responses_total", "SIP responses sent by the handlers, by status class and code.", []string{"class", "code"}},
	{"chorus_sip_invites_rejected_total", "New INVITEs answered with a final non-2xx status, by code: 486 full, 488 no common codec, 503 draining or limited, 403 locked, 401 challenged, 404 no such room.", []string{"code"}},
	{"chorus_sip_call_setup_seconds", "Time from a new INVITE's arrival to its 2xx answer (any --answer-delay included).", nil},
	{"chorus_rtp_dropped_total", "RTP datagrams dropped unplayed, by reason: malformed, from a stranger (not the proven source), unproven (no source proven yet), unknown payload type, failed SRTP authentication or replay.", []string{"reason"}},
	{"chorus_rtp_unsent_total", "RTP packets not sent because the far end had not proven its address within the send grace.", nil},
	{"chorus_rtp_send_errors_total", "RTP packets whose send failed.", nil},
	{"chorus_sip_invites_limited_total", "INVITEs answered 503 by a per-source limit.", []string{"limit"}},
	{"chorus_sip_calls_unacked_total", "Answered calls ended because their ACK never came (64xT1).", nil},
	{"chorus_sip_tcp_connections", "Accepted SIP/TCP connections open.", nil},
	{"chorus_sip_auth_trusted_total", "INVITEs admitted from trusted networks without credentials.", nil},
	{"chorus_sip_auth_accepted_total", "INVITEs admitted by SIP digest credentials.", nil},
	{"chorus_sip_auth_challenges_total", "401 digest challenges sent.", nil},
	{"chorus_sip_auth_failures_total", "Failed SIP authentications: wrong password, unknown account, malformed credentials.", nil},
	{"chorus_sip_auth_refused_total", "INVITEs refused without a challenge from a source blocked after failures.", nil},
	{"chorus_sip_auth_blocks_total", "Times a source was blocked after repeated failed authentication.", nil},
	{"chorus_callback_events_published_total", "Events queued for the applications' callback URLs.", nil},
	{"chorus_callback_events_total", "Callback events by outcome: delivered (2xx from callbackUrl or fallbackUrl), failed (every attempt failed), dropped (full queue or shutdown), no_callback (no URL set).", []string{"outcome"}},
	{"chorus_callback_retries_total", "Callback attempts after the first, on either URL.", nil},
	{"chorus_callback_fallbacks_total", "Callback events sent to fallbackUrl after callbackUrl failed.", nil},
	{"chorus_callback_events_pending", "Callback events queued or being delivered.", nil},
	{"chorus_event_stream_events_published_total", "Events accepted by the event stream (GET /v1/users/{userId}/events).", nil},
	{"chorus_event_stream_events_dropped_total", "Events the event stream dropped: its queue was full or it was closed.", nil},
	{"chorus_event_stream_slow_clients_total", "Event stream clients disconnected for falling behind.", nil},
	{"chorus_event_stream_clients", "Event stream clients connected.", nil},
	{"chorus_store_events_written_total", "Callback events written to the store's outbox before delivery.", nil},
	{"chorus_store_events_unpersisted_total", "Events delivered without being written: the store's queue was full or its write failed.", nil},
	{"chorus_store_write_errors_total", "Store transactions that failed (and record changes lost to a full queue).", nil},
	{"chorus_store_lost_acks_total", "Delivery outcomes not recorded (full queue): those events are delivered again after a restart.", nil},
	{"chorus_store_answers_unwritten_total", "API changes answered before their records were written (the store took over a second).", nil},
	{"chorus_store_queue", "Changes waiting for the store's writer.", nil},
	{"chorus_callback_events_undeliverable", "Callback events kept in the store as undeliverable (GET /v1/users/{userId}/undeliveredEvents), until the retention.", nil},
}

func newBridgeCollector(src metricsSources) *bridgeCollector {
	c := &bridgeCollector{src: src, descs: map[string]*prometheus.Desc{}}
	for _, d := range bridgeMetricDefs {
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, d.labels, nil)
	}
	return c
}

// Describe sends every family's description.
func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range bridgeMetricDefs {
		ch <- c.descs[d.name]
	}
}

// Collect reads the counters now.
func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	br, s := c.src.bridge, c.src.sip
	st := br.Stats()
	counter("chorus_conferences_created_total", float64(st.Conferences.Load()))
	counter("chorus_calls_total", float64(st.Calls.Load()))
	counter("chorus_members_added_total", float64(st.Members.Load()))
	gauge("chorus_calls_active", float64(br.ActiveCalls()))
	confs, members, waiting := br.Live()
	gauge("chorus_conferences_live", float64(confs))
	gauge("chorus_members_live", float64(members))
	gauge("chorus_members_waiting", float64(waiting))
	gauge("chorus_rtp_ports_in_use", float64(c.src.ports.InUse()))
	counter("chorus_mixer_ticks_total", float64(st.Ticks.Load()))
	counter("chorus_mixer_restarts_total", float64(st.Restarts.Load()))
	counter("chorus_mixer_demotions_total", float64(st.Demotions.Load()))
	counter("chorus_mixer_mixed_frames_total", float64(st.Mixed.Load()))
	counter("chorus_mixer_encodes_total", float64(st.Encodes.Load()))
	counter("chorus_rtp_packets_in_total", float64(st.PacketsIn.Load()))
	counter("chorus_rtp_packets_out_total", float64(st.PacketsOut.Load()))
	counter("chorus_mixer_panics_total", float64(st.Panics.Load()))
	counter("chorus_mixer_tick_seconds_total", float64(st.TickNanos.Load())/1e9)
	// The lateness histogram: the bridge keeps per-bucket counts.
	var cum uint64
	buckets := make(map[float64]uint64, len(bridge.LatenessBuckets))
	for i, b := range bridge.LatenessBuckets {
		cum += st.Lateness[i].Load()
		buckets[b.Seconds()] = cum
	}
	cum += st.Lateness[len(bridge.LatenessBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(c.descs["chorus_mixer_tick_lateness_seconds"], cum,
		float64(st.LatenessNanos.Load())/1e9, buckets)
	gauge("chorus_mixer_tick_lateness_max_seconds", float64(st.MaxLateness.Load())/1e9)
	counter("chorus_dtmf_digits_total", float64(st.Digits.Load()))
	counter("chorus_recordings_total", float64(st.Recordings.Load()))
	counter("chorus_recording_errors_total", float64(st.RecordingErrors.Load()))
	counter("chorus_recordings_refused_total", float64(st.RecordingsRefused.Load()))
	gauge("chorus_recording_bytes", float64(br.RecordingBytesTotal()))
	counter("chorus_rtp_jitter_packets_total", float64(st.JitterPackets.Load()))
	counter("chorus_rtp_late_packets_total", float64(st.JitterLate.Load()))
	counter("chorus_rtp_concealed_samples_total", float64(st.JitterConcealed.Load()))
	counter("chorus_rtp_jitter_underruns_total", float64(st.JitterUnderruns.Load()))
	counter("chorus_rtp_jitter_resyncs_total", float64(st.JitterResyncs.Load()))
	counter("chorus_rtp_lost_packets_total", float64(st.Lost.Load()))
	cum = 0
	jitter := make(map[float64]uint64, len(bridge.JitterBuckets))
	for i, b := range bridge.JitterBuckets {
		cum += st.Jitter[i].Load()
		jitter[b.Seconds()] = cum
	}
	cum += st.Jitter[len(bridge.JitterBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(c.descs["chorus_rtp_interarrival_jitter_seconds"], cum,
		float64(st.JitterNanos.Load())/1e9, jitter)

	for _, k := range sip.TrafficKinds() {
		counter("chorus_sip_unwanted_total", float64(s.TrafficCount(k)), k.String())
	}
	sig := s.SignallingStats()
	for m, n := range sig.Requests {
		counter("chorus_sip_requests_total", float64(n), m)
	}
	for code, n := range sig.Responses {
		counter("chorus_sip_responses_total", float64(n), strconv.Itoa(code/100)+"xx", strconv.Itoa(code))
	}
	for code, n := range sig.InviteRejects {
		counter("chorus_sip_invites_rejected_total", float64(n), strconv.Itoa(code))
	}
	cum = 0
	setup := make(map[float64]uint64, len(sip.SetupBuckets))
	for i, b := range sip.SetupBuckets {
		cum += sig.Setup[i]
		setup[b.Seconds()] = cum
	}
	cum += sig.Setup[len(sip.SetupBuckets)]
	ch <- prometheus.MustNewConstHistogram(c.descs["chorus_sip_call_setup_seconds"], cum, sig.SetupSum.Seconds(), setup)

	// What the RTP sessions dropped (media.SessionStats), summed over live
	// and closed sessions.
	ms := s.MediaStats()
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"malformed", ms.Malformed}, {"stranger", ms.Strangers}, {"unproven", ms.Unproven}, {"unknown_pt", ms.UnknownPT}, {"srtp_auth", ms.AuthFailures}} {
		counter("chorus_rtp_dropped_total", float64(d.n), d.reason)
	}
	counter("chorus_rtp_unsent_total", float64(ms.Unsent))
	counter("chorus_rtp_send_errors_total", float64(ms.SendErrors))
	ls := s.LimitStats()
	counter("chorus_sip_invites_limited_total", float64(ls.LimitedRate), "rate")
	counter("chorus_sip_invites_limited_total", float64(ls.LimitedUnconfirmed), "unconfirmed")
	counter("chorus_sip_calls_unacked_total", float64(ls.NoAck))
	gauge("chorus_sip_tcp_connections", float64(s.TCPConns()))
	auth := s.AuthStats()
	counter("chorus_sip_auth_trusted_total", float64(auth.Trusted.Load()))
	counter("chorus_sip_auth_accepted_total", float64(auth.Accepted.Load()))
	counter("chorus_sip_auth_challenges_total", float64(auth.Challenges.Load()))
	counter("chorus_sip_auth_failures_total", float64(auth.Failures.Load()))
	counter("chorus_sip_auth_refused_total", float64(auth.Refused.Load()))
	counter("chorus_sip_auth_blocks_total", float64(auth.Blocks.Load()))

	ds := c.src.dispatcher.Stats()
	counter("chorus_callback_events_published_total", float64(ds.Published))
	counter("chorus_callback_events_total", float64(ds.Delivered), "delivered")
	counter("chorus_callback_events_total", float64(ds.Failed), "failed")
	counter("chorus_callback_events_total", float64(ds.Dropped), "dropped")
	counter("chorus_callback_events_total", float64(ds.NoCallback), "no_callback")
	counter("chorus_callback_retries_total", float64(ds.Retried))
	counter("chorus_callback_fallbacks_total", float64(ds.Fallback))
	gauge("chorus_callback_events_pending", float64(ds.Pending))
	es := c.src.events.Stats()
	counter("chorus_event_stream_events_published_total", float64(es.Published))
	counter("chorus_event_stream_events_dropped_total", float64(es.Dropped))
	counter("chorus_event_stream_slow_clients_total", float64(es.Slow))
	gauge("chorus_event_stream_clients", float64(es.Clients))
	if c.src.outbox != nil {
		os := c.src.outbox.Stats()
		counter("chorus_store_events_written_total", float64(os.Written))
		counter("chorus_store_events_unpersisted_total", float64(os.Unpersisted))
		counter("chorus_store_write_errors_total", float64(os.WriteErrors))
		counter("chorus_store_lost_acks_total", float64(os.LostAcks))
		counter("chorus_store_answers_unwritten_total", float64(os.UnwrittenAnswers))
		gauge("chorus_store_queue", float64(os.Queued))
	}
	if c.src.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := c.src.store.CountFailed(ctx)
		cancel()
		if err == nil {
			gauge("chorus_callback_events_undeliverable", float64(n))
		}
	}
}
