package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"chorus/api"
	"chorus/bridge"
	"chorus/console"
	"chorus/internal/egress"
	"chorus/media/audiofile"
	"chorus/media/tts"
	"chorus/store"
)

// audioSources plays files fetched over HTTP and sentences spoken by
// espeak-ng.
type audioSources struct {
	fetch *audiofile.Fetcher
	tts   *tts.Engine
}

func (a audioSources) Fetch(ctx context.Context, url string) (audiofile.Audio, error) {
	return a.fetch.Fetch(ctx, url)
}

func (a audioSources) Speak(ctx context.Context, text, gender, locale, voice string) (audiofile.Audio, error) {
	return a.tts.Speak(ctx, text, gender, locale, voice)
}

// mountAPI adds the control API and the operator console to mux and
// routes the bridge's events to the applications' callbacks and to the
// event stream. It returns the dispatcher, to be closed last at shutdown,
// and the event stream, to be closed before the HTTP server shuts down
// (its clients would hold the shutdown up).
func mountAPI(mux *http.ServeMux, cfg Config, br *bridge.Bridge, st store.Store, httpAddr net.Addr, targets *egress.Policy, log *slog.Logger) (*api.Dispatcher, *api.EventStream, *api.Outbox) {
	users := make([]api.User, len(cfg.Users))
	for i, u := range cfg.Users {
		users[i] = api.User{ID: u.ID, Token: u.Token, Secret: u.Secret}
	}
	engine := tts.New("")
	if err := engine.Available(); err != nil {
		log.Warn("text to speech unavailable: sentences will fail", "err", err)
	}
	// Event URIs name the API as callers reach it: the public address when
	// it listens on every interface.
	host, port, _ := net.SplitHostPort(httpAddr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = cfg.publicIP.String()
	}
	d := api.NewDispatcher(api.DispatcherConfig{Bridge: br, Log: log, Targets: targets,
		MaxRetries: cfg.CallbackRetries, Backoff: cfg.CallbackBackoff, BaseURL: cfg.httpScheme() + "://" + net.JoinHostPort(host, port)})
	events := api.NewEventStream(api.EventStreamConfig{Dispatcher: d, Bridge: br, Log: log})
	// Every event goes through the outbox: written (with a store) in the
	// transaction of the records it changed, then delivered and streamed.
	outbox := api.NewOutbox(api.OutboxConfig{Store: st, Bridge: br, Dispatcher: d, Next: []bridge.EventSink{events}, Log: log})
	br.SetEventSink(outbox)
	mux.Handle("/", api.New(api.Config{Users: users, Bridge: br, Log: log, Targets: targets, Events: events,
		Store: st, Outbox: outbox,
		Audio:        audioSources{fetch: &audiofile.Fetcher{Targets: targets}, tts: engine},
		AuthFailures: cfg.HTTPAuthFailures, MaxLiveConferences: cfg.MaxConferencesPerUser}))
	console.Mount(mux)
	return d, events, outbox
}
