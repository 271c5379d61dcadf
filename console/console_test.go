package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestServe: the files are served without credentials, with the security
// headers, /console redirects, and the page has no inline script or
// handler that the CSP would refuse.
func TestServe(t *testing.T) {
	mux := http.NewServeMux()
	Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(p string) (*http.Response, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for p, ctype := range map[string]string{"/console/": "text/html", "/console/console.js": "text/javascript",
		"/console/console.css": "text/css"} {
		resp, body := get(p)
		if resp.StatusCode != 200 || body == "" {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, ctype) {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		if resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", p, resp.Header)
		}
	}
	resp, body := get("/console")
	if resp.Request.URL.Path != "/console/" || !strings.Contains(body, "Chorus console") {
		t.Errorf("/console led to %s", resp.Request.URL)
	}
	if resp, _ := get("/console/nothing.js"); resp.StatusCode != 404 {
		t.Errorf("a missing file: %d", resp.StatusCode)
	}
	_, page := get("/console/")
	if m := regexp.MustCompile(`<script[^>]*>[^<]|\son[a-z]+=|javascript:|<style`).FindString(page); m != "" {
		t.Errorf("index.html has inline script or style: %q", m)
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %s", ContentSecurityPolicy)
	}
}
