// Package console is the operator console: a page of plain HTML, CSS and
// JavaScript, embedded in the binary and served at /console/ on the API's
// address. It holds no authority of its own: the page signs in with an API
// user's token and secret and makes every change through the public API
// (HTTP Basic on each fetch), so it can do nothing the API does not allow.
// Live updates come from GET /v1/users/{userId}/events, read with fetch()
// and a stream reader because EventSource cannot send an Authorization
// header (and a secret must never ride in a URL).
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every file: scripts and styles only
// from the console's own files (no inline script, no eval), requests only
// to this origin, never framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's files under /console/. They are public:
// the credentials are asked for by the page and sent only to the API.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Mount serves the console at /console/ (and redirects /console there).
func Mount(mux *http.ServeMux) {
	mux.Handle("GET /console/", Handler())
	mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
}
