package main

import (
	"log/slog"
	"net/http"

	"chorus/bridge"
	"chorus/sip"
)

// mountAPI adds the control API to mux.
func mountAPI(mux *http.ServeMux, cfg Config, br *bridge.Bridge, sipSrv *sip.Server, log *slog.Logger) error {
	_ = cfg
	_ = br
	_ = sipSrv
	_ = log
	return nil
}
