package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/tlsfile"
)

// tlsListener serves TLS on the gate's connections (TLS_CERT_FILE,
// TLS_KEY_FILE). It wraps the gate, not the other way round, so that the
// gate's caps count and refuse TCP connections before any handshake work.
// The handshake runs on the connection's own goroutine, at fasthttp's
// first Handshake or Read, never in Accept, where one slow client would
// hold up every other.
type tlsListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration // HEADER_TIMEOUT, for the handshake too
	log     *slog.Logger
}

// newTLSListener serves pair's certificate (as last reloaded) on ln.
func newTLSListener(ln net.Listener, pair *tlsfile.Pair, timeout time.Duration, log *slog.Logger) *tlsListener {
	config := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: pair.GetCertificate,
		// The edge speaks HTTP/1.1 only (SSE and its WebSocket upgrade
		// need it); a client that offers only h2 is refused.
		NextProtos: []string{"http/1.1"},
	}
	// A resumed session skips the certificate: a browser would go on with
	// the one it saw first for as long as its ticket lasts (up to 7 days),
	// a replaced certificate included. Each ticket names the certificate
	// it was issued under, and one issued under another is not resumed,
	// so that every client gets a new certificate at its next connection.
	// Go's own ticket encryption and key rotation stay.
	config.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, servedID(pair))
		return config.EncryptTicket(cs, ss)
	}
	config.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := config.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		if n := len(ss.Extra); n == 0 || !bytes.Equal(ss.Extra[n-1], servedID(pair)) {
			return nil, nil // a full handshake, with the certificate served now
		}
		return ss, nil
	}
	return &tlsListener{Listener: ln, timeout: timeout, log: log, config: config}
}

// servedID names the certificate served now, in session tickets.
func servedID(pair *tlsfile.Pair) []byte {
	id := sha256.Sum256(pair.Leaf().Raw)
	return id[:]
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.config), raw: c, l: l}, nil
}

// tlsConn is a server TLS connection whose handshake is bounded in time and
// answers a plain HTTP request with a 400, as net/http does.
type tlsConn struct {
	*tls.Conn
	raw  net.Conn // the gate's
	l    *tlsListener
	once sync.Once
	err  error
}

// Handshake runs the handshake once. fasthttp calls it first (it checks
// for a tls.Conn-like connection), then reads.
func (c *tlsConn) Handshake() error {
	c.once.Do(c.handshake)
	return c.err
}

// Read reads after the handshake. A failed handshake reads as the end of
// the connection: fasthttp then closes it without an answer, and without
// logging the error for every port scanner.
func (c *tlsConn) Read(p []byte) (int, error) {
	if c.Handshake() != nil {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) handshake() {
	// A context, not a deadline: fasthttp sets its own read deadline
	// (HEADER_TIMEOUT) before it reads, which a deadline here would
	// overwrite. The context also bounds the handshake's writes, to a
	// client that does not read.
	ctx, cancel := context.WithTimeout(context.Background(), c.l.timeout)
	defer cancel()
	c.err = c.Conn.HandshakeContext(ctx)
	if c.err == nil {
		return
	}
	var re tls.RecordHeaderError
	if errors.As(c.err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		refusePlainHTTP(re.Conn)
		c.l.log.Debug("plain HTTP request on the TLS port refused", "remote", c.raw.RemoteAddr().String())
		return
	}
	// Scanners and clients that do not trust the certificate fail here all
	// day long: not worth more than a debug line.
	c.l.log.Debug("TLS handshake failed", "remote", c.raw.RemoteAddr().String(), "err", c.err)
	_ = c.raw.Close()
}

// looksLikeHTTP reports whether the first bytes of a connection are an
// HTTP/1 request line's, as net/http tells.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// plainHTTPGrace bounds how long a refused plain HTTP client may take to
// read the answer before its connection is closed.
const plainHTTPGrace = time.Second

// refusePlainHTTP answers a plain HTTP request on the TLS port with a
// 400 and closes. It half-closes and drains what the client sent first
// (bounded in time and bytes): closing with its request unread would reset
// the connection, and the client could lose the answer.
func refusePlainHTTP(raw net.Conn) {
	writeRawError(raw, api.NewError(fiber.StatusBadRequest, "client sent an HTTP request to an HTTPS server"), "")
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = raw.SetReadDeadline(time.Now().Add(plainHTTPGrace))
	_, _ = io.Copy(io.Discard, io.LimitReader(raw, 64<<10))
	_ = raw.Close()
}

// watchTLS re-reads the certificate files every TLS_RELOAD_INTERVAL until
// ctx ends.
func (s *Server) watchTLS(ctx context.Context) error {
	pair := s.cfg.TLS.Pair
	reloaded, refused := s.metrics.TLS(func() time.Time { return pair.Leaf().NotAfter })
	pair.Watch(ctx, s.cfg.TLS.ReloadInterval, s.log, func(r tlsfile.Result) {
		if r == tlsfile.Reloaded {
			reloaded.Inc()
		} else {
			refused.Inc()
		}
	})
	return nil
}

// logTLS says what the public port serves, at start, and warns of a
// certificate outside its validity: browsers refuse it.
func (s *Server) logTLS() {
	leaf := s.cfg.TLS.Pair.Leaf()
	attrs := append([]any{"cert_file", s.cfg.TLS.CertFile, "key_file", s.cfg.TLS.KeyFile, "reload_interval", s.cfg.TLS.ReloadInterval.String()}, tlsfile.Attrs(leaf)...)
	s.log.Info("public port serves TLS only (HTTP/1.1, TLS 1.2 or later); the operations port stays plain HTTP", attrs...)
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		s.log.Warn("the public port's TLS certificate is not valid now: clients will refuse it", tlsfile.Attrs(leaf)...)
	}
}
