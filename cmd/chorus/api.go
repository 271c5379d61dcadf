package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"chorus/api"
	"chorus/bridge"
	"chorus/internal/egress"
	"chorus/media/audiofile"
	"chorus/media/tts"
)

// audioSources plays files fetched over HTTP and sentences spoken by
// espeak-ng.
type audioSources struct {
	fetch *audiofile.Fetcher
	tts   *tts.Engine
}

func (a audioSources) Fetch(ctx context.Context, url string) ([]int16, error) {
	return a.fetch.Fetch(ctx, url)
}

func (a audioSources) Speak(ctx context.Context, text, gender, locale, voice string) ([]int16, error) {
	return a.tts.Speak(ctx, text, gender, locale, voice)
}

// mountAPI adds the control API to mux and routes the bridge's events to
// the applications' callbacks. It returns the dispatcher, to be closed
// last at shutdown.
func mountAPI(mux *http.ServeMux, cfg Config, br *bridge.Bridge, httpAddr net.Addr, targets *egress.Policy, log *slog.Logger) *api.Dispatcher {
	users := make([]api.User, len(cfg.Users))
	for i, u := range cfg.Users {
		users[i] = api.User{ID: u.ID, Token: u.Token, Secret: u.Secret}
	}
	engine := tts.New("")
	if err := engine.Available(); err != nil {
		log.Warn("text to speech unavailable: sentences will fail", "err", err)
	}
	mux.Handle("/", api.New(api.Config{Users: users, Bridge: br, Log: log, Targets: targets,
		Audio:        audioSources{fetch: &audiofile.Fetcher{Targets: targets}, tts: engine},
		AuthFailures: cfg.HTTPAuthFailures, MaxLiveConferences: cfg.MaxConferencesPerUser}))
	// Event URIs name the API as callers reach it: the public address when
	// it listens on every interface.
	host, port, _ := net.SplitHostPort(httpAddr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = cfg.publicIP.String()
	}
	d := api.NewDispatcher(api.DispatcherConfig{Bridge: br, Log: log, Targets: targets, BaseURL: cfg.httpScheme() + "://" + net.JoinHostPort(host, port)})
	br.SetEventSink(d)
	return d
}
