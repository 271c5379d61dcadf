package audiofile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"chorus/internal/egress"
)

// Fetcher defaults.
const (
	// DefaultMaxBytes is the largest file a Fetcher downloads by default.
	DefaultMaxBytes = 20 << 20
	// DefaultTimeout bounds a whole Fetch by default.
	DefaultTimeout = 15 * time.Second
)

// StatusError is returned by [Fetcher.Fetch] when the server answers with a
// status outside 2xx.
type StatusError struct {
	URL        string // redacted: no password
	StatusCode int
}

// Error returns "fetch URL: HTTP code".
func (e *StatusError) Error() string {
	return fmt.Sprintf("fetch %s: HTTP %d", e.URL, e.StatusCode)
}

// Fetcher downloads audio files and decodes them with [DecodeLimit]. Fetch
// does its work on the calling goroutine and returns when it is done, so
// callers that must not block run it in a goroutine of their own. The zero
// value is ready to use; a Fetcher is safe for concurrent use as long as
// its fields are not changed.
type Fetcher struct {
	// Client sends the requests. Nil means a client whose Timeout is
	// Timeout and whose connections and redirects pass through Targets.
	// Whatever the client, the whole fetch (connect, headers and body) is
	// also bounded by Timeout through the request's context.
	Client *http.Client
	// Targets is the outbound request policy of the default client: which
	// addresses a fetch may connect to, checked at connect time and on
	// every redirect. Nil is the safe default, which refuses loopback,
	// private, link-local and other internal addresses; a refused target
	// fails the fetch with an error wrapping egress.ErrRefused.
	Targets *egress.Policy
	// MaxBytes caps the size of the file; a bigger one fails with
	// ErrTooLarge without reading more than MaxBytes+1 bytes. Zero or
	// negative means DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds one Fetch. Zero or negative means DefaultTimeout.
	Timeout time.Duration
	// MaxDuration caps the decoded length, as for DecodeLimit. Zero or
	// negative means DefaultMaxDuration.
	MaxDuration time.Duration
}

// Fetch downloads rawURL and decodes it to mono int16 at the file's
// [SourceRate].
//
// Only http and https URLs are fetched; anything else (file://, ftp://...)
// fails with [ErrUnsupportedScheme]. Errors name the URL (with any
// password redacted) and say what went wrong: a non-2xx answer is a
// *[StatusError] ("fetch URL: HTTP 404"); a body over MaxBytes is
// [ErrTooLarge]; content that is not audio is [ErrUnsupportedFormat] or
// [ErrMalformed]; a timeout wraps context.DeadlineExceeded; an unreachable
// host wraps the network error.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (Audio, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Audio{}, fmt.Errorf("fetch: bad URL: %w", err)
	}
	name := u.Redacted()
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return Audio{}, fmt.Errorf("fetch %s: %w %q (only http and https)", name, ErrUnsupportedScheme, u.Scheme)
	}
	if u.Host == "" {
		return Audio{}, fmt.Errorf("fetch %s: URL has no host", name)
	}
	maxBytes := f.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	client := f.Client
	if client == nil {
		// A transport per fetch, without keep-alive: fetches are rare,
		// and no idle connection outlives its Fetch.
		t := f.Targets.Transport()
		t.DisableKeepAlives = true
		client = &http.Client{Timeout: timeout, Transport: t, CheckRedirect: f.Targets.CheckRedirect}
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Audio{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	req.Header.Set("Accept", "audio/wav, audio/x-wav, audio/mpeg, audio/*;q=0.9, */*;q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		// url.Error already names the URL; unwrap it to say it once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Audio{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Audio{}, &StatusError{URL: name, StatusCode: resp.StatusCode}
	}
	if resp.ContentLength > maxBytes {
		return Audio{}, fmt.Errorf("fetch %s: %w: Content-Length %d, limit %d", name, ErrTooLarge, resp.ContentLength, maxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return Audio{}, fmt.Errorf("fetch %s: reading body: %w", name, err)
	}
	if int64(len(data)) > maxBytes {
		return Audio{}, fmt.Errorf("fetch %s: %w: over %d bytes", name, ErrTooLarge, maxBytes)
	}
	pcm, err := DecodeLimit(data, f.MaxDuration, MaxRate)
	if err != nil {
		return Audio{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	return pcm, nil
}
