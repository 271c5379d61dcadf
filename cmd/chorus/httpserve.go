package main

import (
	"container/list"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts and sizes of the API's HTTP server. A request must arrive whole
// in httpReadTimeout (its headers in httpReadHeaderTimeout); a client that
// connects and sends nothing is closed after httpReadHeaderTimeout, a
// keep-alive connection after httpIdleTimeout without a request. The write
// timeout covers the longest handler: adding a ringing call as a member
// waits up to api.DefaultAnswerWait (60 s) for the answer.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 90 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 16 << 10
	// defaultHTTPMaxConns bounds open API connections: far more than any
	// application keeps, few enough for the default 1,024 descriptors.
	defaultHTTPMaxConns = 512
)

// newHTTPServer is the API's http.Server: timeouts, a header cap, HTTP/1.1
// only (so that one connection is one request at a time and the
// connection cap is also a cap on requests in progress), and the
// limiter's view of each connection's state. The server's own error lines
// (failed TLS handshakes, malformed requests) come one per connection, so
// anyone could flood the log with them: they are debug, not warn.
func newHTTPServer(h http.Handler, lim *connLimiter, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: httpReadHeaderTimeout, ReadTimeout: httpReadTimeout,
		WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: httpMaxHeaderBytes,
		ConnState: lim.connState, TLSConfig: tlsCfg, Protocols: new(http.Protocols),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	srv.Protocols.SetHTTP1(true)
	return srv
}

// loadHTTPTLS reads the API's certificate and key; both or neither must
// be given.
func loadHTTPTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--http-tls-cert and --http-tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("http tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"}}, nil
}

// startHTTP serves h on l in the background: through the connection
// limiter, and over TLS when the configuration has a certificate. The
// returned server is shut down by the caller.
func startHTTP(cfg Config, h http.Handler, l net.Listener, log *slog.Logger) *http.Server {
	lim := newConnLimiter(cfg.HTTPMaxConns, log)
	srv := newHTTPServer(h, lim, cfg.httpTLS, log)
	l = lim.wrap(l)
	if srv.TLSConfig != nil {
		l = tls.NewListener(l, srv.TLSConfig)
	}
	go func() { _ = srv.Serve(l) }()
	return srv
}

// connLimiter caps the API's open connections without ever queueing one.
// When a new connection would pass the cap, the connection that has been
// waiting longest without a request in progress (just connected and not
// yet sent a whole request header, or kept alive between requests) is
// closed to make room; only when every connection is busy with a request
// is the new one closed instead. So idle and slow-header connections,
// which cost an attacker nothing, can never keep a real request out: a
// new connection is always accepted at once and the oldest idle one
// pays. netutil.LimitListener, by contrast, stops accepting at the cap
// and leaves new connections in the kernel's queue until an idle one
// times out.
//
// A request's body is read under the server's ReadTimeout, and a request
// with wrong or missing credentials is answered at once with Connection:
// close, so a busy connection is an authenticated one or a short one.
type connLimiter struct {
	max int
	log *slog.Logger

	mu    sync.Mutex
	open  int
	idle  list.List // of *limitedConn, oldest first: no request in progress
	stats struct {
		evicted, refused int
		lastLog          time.Time
	}
}

func newConnLimiter(max int, log *slog.Logger) *connLimiter {
	return &connLimiter{max: max, log: log}
}

// wrap returns a listener whose connections the limiter counts.
func (lim *connLimiter) wrap(l net.Listener) net.Listener {
	return &limitedListener{Listener: l, lim: lim}
}

type limitedListener struct {
	net.Listener
	lim *connLimiter
}

// Accept admits the next connection, evicting an idle one when at the
// cap. A connection refused because all are busy is closed here and the
// next one accepted.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.lim.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// limitedConn is an admitted connection; elem is its place in the idle
// list while it has no request in progress.
type limitedConn struct {
	net.Conn
	lim       *connLimiter
	closeOnce sync.Once
	elem      *list.Element // guarded by lim.mu
	closed    bool          // guarded by lim.mu
}

// Close closes the connection once and releases its place.
func (c *limitedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.lim.release(c)
	})
	return err
}

// admit counts c in, or closes it and returns nil.
func (lim *connLimiter) admit(c net.Conn) *limitedConn {
	lc := &limitedConn{Conn: c, lim: lim}
	lim.mu.Lock()
	var victim *limitedConn
	if lim.open >= lim.max {
		if front := lim.idle.Front(); front != nil {
			victim = front.Value.(*limitedConn)
			lim.idle.Remove(front)
			victim.elem = nil
			lim.stats.evicted++
		} else {
			lim.stats.refused++
			lim.noteLocked()
			lim.mu.Unlock()
			_ = c.Close()
			return nil
		}
		lim.noteLocked()
	}
	lim.open++
	lc.elem = lim.idle.PushBack(lc)
	lim.mu.Unlock()
	if victim != nil {
		// Its goroutine in the server sees the read fail and ends it.
		_ = victim.Close()
	}
	return lc
}

// release forgets a closed connection.
func (lim *connLimiter) release(c *limitedConn) {
	lim.mu.Lock()
	if c.elem != nil {
		lim.idle.Remove(c.elem)
		c.elem = nil
	}
	c.closed = true
	lim.open--
	lim.mu.Unlock()
}

// connState follows the server's view: a connection is evictable while
// new or idle, not while a request is in progress (http.StateActive is
// set once a request's header has been read).
func (lim *connLimiter) connState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	switch state {
	case http.StateActive:
		if lc.elem != nil {
			lim.idle.Remove(lc.elem)
			lc.elem = nil
		}
	case http.StateIdle:
		if lc.elem == nil && !lc.closed {
			lc.elem = lim.idle.PushBack(lc)
		}
	}
}

// noteLocked logs a summary of evicted and refused connections at most
// once a minute.
func (lim *connLimiter) noteLocked() {
	now := time.Now()
	if now.Sub(lim.stats.lastLog) < time.Minute {
		return
	}
	lim.log.Warn("api: connection cap reached: closed the oldest idle connections to admit new ones",
		"max_conns", lim.max, "evicted", lim.stats.evicted, "refused_all_busy", lim.stats.refused)
	lim.stats.lastLog, lim.stats.evicted, lim.stats.refused = now, 0, 0
}
