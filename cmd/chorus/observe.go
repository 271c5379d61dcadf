package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// observeHTTP wraps the HTTP handler: every request is counted in the
// metrics by route pattern and status, and logged once, when it ends, as
// one access line (method, route, status, duration, user; never a
// credential). The route is the pattern of the ServeMux that served it,
// read back from the request after serving (http.ServeMux sets
// Request.Pattern on the request it is given, and the API's own mux sets
// it on the same request), so the label set is the route table's, not
// the paths callers invent. The user is the {userId} of the route, which
// the API's authentication has checked against the credentials.
//
// Scrapes of /metrics and probes of /healthz are logged at Debug: a
// scraper every 15 s would otherwise fill the log.
func observeHTTP(h http.Handler, m *metrics, log *slog.Logger, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		d := now().Sub(start)
		status := sw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		route := routeOf(r.Pattern)
		m.observeHTTP(route, methodLabel(r.Method), status, d)
		level := slog.LevelInfo
		if route == "/metrics" || route == "/healthz" {
			level = slog.LevelDebug
		}
		if !log.Enabled(context.Background(), level) {
			return
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", d), slog.Int64("bytes", sw.bytes),
			slog.String("remote", r.RemoteAddr)}
		if u := r.PathValue("userId"); u != "" {
			attrs = append(attrs, slog.String("user", u))
		}
		log.LogAttrs(context.Background(), level, "http request", attrs...)
	})
}

// routeOf is the metrics label of a ServeMux pattern: its path, without
// the method ("GET /v1/users/{userId}/conferences" gives
// "/v1/users/{userId}/conferences"); "unmatched" when no pattern served
// the request (a redirect to a cleaned path).
func routeOf(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// statusWriter records the status and size of a response. It unwraps (for
// http.ResponseController, which the event stream flushes through) and
// flushes.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered (Server-Sent Events).
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
