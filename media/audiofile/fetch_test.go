package audiofile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"chorus/internal/egress"
)

func TestFetchWAV(t *testing.T) {
	wav := makeWAV(t, wavSpecs[1], 16000, sine(1000, 0.5, 16000, 1))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream") // ignored
		w.Write(wav)
	}))
	defer srv.Close()
	f := Fetcher{Targets: allowLoopback()}
	pcm, err := f.Fetch(context.Background(), srv.URL+"/tone.wav")
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm.Samples) != 16000 || pcm.Rate != 16000 {
		t.Errorf("%d samples at %d Hz, want 16000 at 16000 (the file's band kept)", len(pcm.Samples), pcm.Rate)
	}
	checkTone(t, pcm, 1000, 0.5, 0.1)
}

func TestFetchErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html><body>not audio</body></html>")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: streamed until the client stops reading.
		chunk := make([]byte, 64<<10)
		for range 1000 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/huge-declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000000")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/redirect-to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	f := &Fetcher{Targets: allowLoopback(), MaxBytes: 1 << 20, Timeout: 5 * time.Second}
	for _, tc := range []struct {
		path string
		want error
		msg  string
	}{
		{"/garbage", ErrUnsupportedFormat, "/garbage"},
		{"/empty", ErrEmpty, "/empty"},
		{"/huge", ErrTooLarge, "over 1048576 bytes"},
		{"/huge-declared", ErrTooLarge, "Content-Length 100000000"},
		{"/redirect-to-file", ErrUnsupportedScheme, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := f.Fetch(context.Background(), srv.URL+tc.path)
			if tc.path == "/redirect-to-file" {
				// net/http refuses to follow; any error will do.
				if err == nil {
					t.Fatal("redirect to file:// succeeded")
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}

	t.Run("404", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), srv.URL+"/missing")
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != 404 {
			t.Fatalf("err = %v, want a *StatusError 404", err)
		}
		if want := "fetch " + srv.URL + "/missing: HTTP 404"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	})
}

func TestFetchSchemes(t *testing.T) {
	f := Fetcher{Targets: allowLoopback()}
	for _, u := range []string{"file:///etc/passwd", "ftp://example.com/a.wav", "/etc/passwd", "gopher://x/", "data:audio/wav;base64,UklGRg=="} {
		if _, err := f.Fetch(context.Background(), u); !errors.Is(err, ErrUnsupportedScheme) {
			t.Errorf("%s: err = %v, want ErrUnsupportedScheme", u, err)
		}
	}
	if _, err := f.Fetch(context.Background(), "http:///nohost"); err == nil {
		t.Error("URL without host accepted")
	}
}

func TestFetchRedactsPassword(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1)
	f := Fetcher{Targets: allowLoopback()}
	_, err := f.Fetch(context.Background(), u+"/x.wav")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchTimeouts(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("RIFF"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	t.Run("fetcher-timeout", func(t *testing.T) {
		f := &Fetcher{Targets: allowLoopback(), Timeout: 200 * time.Millisecond}
		start := time.Now()
		_, err := f.Fetch(context.Background(), srv.URL+"/slow-headers")
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
	t.Run("ctx-timeout-slow-body", func(t *testing.T) {
		f := Fetcher{Targets: allowLoopback()}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.Fetch(ctx, srv.URL+"/slow-body")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Fatalf("err = %v after %v, want DeadlineExceeded soon", err, time.Since(start))
		}
	})
	t.Run("ctx-cancel", func(t *testing.T) {
		for len(arrived) > 0 {
			<-arrived
		}
		f := Fetcher{Targets: allowLoopback()}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		_, err := f.Fetch(ctx, srv.URL+"/slow-headers")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestFetchUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f := Fetcher{Targets: allowLoopback()}
	_, err = f.Fetch(context.Background(), "http://"+addr+"/a.wav")
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want a network error naming %s", err, addr)
	}
}

// allowLoopback is the outbound policy of tests that fetch from their own
// loopback servers: it allows 127.0.0.1 and nothing else internal.
func allowLoopback() *egress.Policy {
	return egress.New(egress.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
}
