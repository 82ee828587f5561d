package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rig-go/rig/internal/clientaddr"
	"github.com/rig-go/rig/internal/limit"
	"github.com/rig-go/rig/internal/metrics"
)

// unreadyGrace is how long an edge that lost NATS (or its blacklist) keeps
// its public port open, answering 503, before closing it: a reconnect
// usually takes less, and a closed port sends clients elsewhere.
const unreadyGrace = 5 * time.Second

// gate is the public listener, open only while the edge can serve. A
// browser's EventSource gives up for good on a non-200 answer but retries a
// refused connection, and a load balancer moves on from a refusing edge: so
// an edge that is starting, draining, or cut off from NATS closes its port
// rather than answer 503. The server keeps calling Accept throughout; it
// waits while the gate is shut.
//
// The gate also holds the connection cap: it counts every connection it
// hands out until that connection is closed (streams included: a hijacked
// connection unwraps to the gate's own), closes a new one at once past
// MAX_CONNECTIONS or past MAX_CONNECTIONS_PER_IP for an untrusted peer, and
// never lets an accept error end the server: fasthttp stops serving for
// good on any accept error but a timeout, and out of file descriptors
// (EMFILE) is exactly what a connection flood causes.
type gate struct {
	addr    string
	log     *slog.Logger
	metrics *metrics.Edge
	max     int64                    // MAX_CONNECTIONS in force
	conns   atomic.Int64             // connections handed out and not closed
	perIP   *limit.Count[netip.Addr] // TCP connections of untrusted peers
	trusted *clientaddr.Trusted

	mu     sync.Mutex
	ln     net.Listener  // nil while shut
	opened chan struct{} // closed when the gate opens
	done   chan struct{} // closed by Close
	final  bool
	bound  net.Addr

	// Only Accept's goroutine uses these: what was last logged, and when;
	// accept errors since the last "accepting again", and whether one of
	// them was logged.
	warned       map[string]time.Time
	failed       int
	failedLogged bool
}

// newGate returns a shut gate for addr. A listener ln the caller opened
// (nil: none) is closed at once (the edge is starting), and the gate
// listens on ln's address, rather than addr, whenever it opens: the caller
// learns the port, ":0" included, before the edge is ready.
func newGate(addr string, ln net.Listener, log *slog.Logger, m *metrics.Edge, max int, perIP *limit.Count[netip.Addr], trusted *clientaddr.Trusted) *gate {
	g := &gate{addr: addr, log: log, metrics: m, max: int64(max), perIP: perIP, trusted: trusted,
		opened: make(chan struct{}), done: make(chan struct{}), warned: map[string]time.Time{}}
	if ln != nil {
		g.addr, g.bound = ln.Addr().String(), ln.Addr()
		ln.Close()
	}
	return g
}

// pin makes the gate listen on bound's port from now on: a gate for port 0
// keeps the port it was first given across shut and open.
func (g *gate) pin(bound net.Addr) {
	g.bound = bound
	if host, port, err := net.SplitHostPort(g.addr); err == nil && port == "0" {
		if _, p, err := net.SplitHostPort(bound.String()); err == nil {
			g.addr = net.JoinHostPort(host, p)
		}
	}
}

// Conns returns how many connections the gate has handed out and not seen
// closed.
func (g *gate) Conns() int64 { return g.conns.Load() }

// open starts listening, if not already.
func (g *gate) open() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil || g.final {
		return nil
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return err
	}
	g.ln = ln
	g.pin(ln.Addr())
	close(g.opened)
	return nil
}

// shut stops listening; connections already accepted are not affected.
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return
	}
	g.ln.Close()
	g.ln = nil
	g.opened = make(chan struct{})
}

// isOpen reports whether the gate listens.
func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ln != nil
}

// Pauses after a failed accept, as net/http's: they double from the first
// to the last while accepts keep failing.
const (
	acceptPauseFirst = 5 * time.Millisecond
	acceptPauseMax   = time.Second
)

// warnEvery is how often one kind of trouble at the gate is logged again.
const warnEvery = time.Minute

// Accept implements net.Listener for the HTTP server. It returns only
// connections within the limits, and an error only once the gate is closed
// for good.
func (g *gate) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		g.mu.Lock()
		ln, opened, final := g.ln, g.opened, g.final
		g.mu.Unlock()
		if final {
			return nil, net.ErrClosed
		}
		if ln == nil {
			<-opened
			continue
		}
		c, err := ln.Accept()
		if err != nil {
			g.mu.Lock()
			shutHere := g.ln != ln || g.final
			g.mu.Unlock()
			if shutHere {
				continue
			}
			pause = min(max(2*pause, acceptPauseFirst), acceptPauseMax)
			g.acceptFailed(err, pause)
			select {
			case <-time.After(pause):
			case <-g.done:
			}
			continue
		}
		if pause > 0 {
			g.acceptRecovered()
			pause = 0
		}
		if tc := g.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// acceptFailed counts a failed accept and logs it when its reason is new,
// or last logged a while ago: a flood fails thousands of accepts a second.
func (g *gate) acceptFailed(err error, pause time.Duration) {
	g.metrics.AcceptErrors.Inc()
	g.failed++
	reason := "accept: " + acceptReason(err)
	if g.shouldWarn(reason) {
		g.log.Warn("public port cannot accept connections; pausing and retrying", "addr", g.addr, "err", err,
			"pause", pause.String(), "open", g.conns.Load(), "max_connections", g.max)
		g.failedLogged = true
	}
}

// acceptRecovered logs the end of trouble that was logged, once.
func (g *gate) acceptRecovered() {
	if g.failedLogged {
		g.log.Info("public port accepting again", "failed_accepts", g.failed, "open", g.conns.Load())
		g.failed, g.failedLogged = 0, false
	}
}

// acceptReason names an accept error by its errno where it has one, so
// that the same trouble logs once whatever the message around it.
func acceptReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func (g *gate) shouldWarn(reason string) bool {
	now := time.Now()
	if last, ok := g.warned[reason]; ok && now.Sub(last) < warnEvery {
		return false
	}
	g.warned[reason] = now
	return true
}

// admit wraps a new connection to be counted, or closes it at once when
// the edge holds MAX_CONNECTIONS, or the peer (not a trusted proxy) its
// MAX_CONNECTIONS_PER_IP. Closing is the answer that works for both kinds
// of client: an EventSource retries a closed connection (it gives up for
// good on a 503), and a load balancer takes it for a failed upstream and
// tries another edge. Writing an answer would also cost a read of the
// request first, at the moment the edge can least afford it.
func (g *gate) admit(c net.Conn) net.Conn {
	if g.max > 0 && g.conns.Load() >= g.max {
		g.metrics.Refused.Capacity.Inc()
		if g.shouldWarn("capacity") {
			g.log.Warn("public port at MAX_CONNECTIONS: closing new connections until some end", "max_connections", g.max)
		}
		closeNow(c)
		return nil
	}
	tc := &countedConn{Conn: c, g: g}
	if g.perIP.Max() > 0 {
		if peer := clientaddr.Addr(c.RemoteAddr()); !g.trusted.Contains(peer) {
			if !g.perIP.Acquire(peer) {
				g.metrics.Refused.IP.Inc()
				// Once a minute for all addresses: a flood from many
				// must not grow what the gate remembers.
				if g.shouldWarn("ip") {
					g.log.Warn("client address at MAX_CONNECTIONS_PER_IP: closing its new connections (logged once a minute, whatever the address)", "remote", peer.String(), "max", g.perIP.Max())
				}
				closeNow(c)
				return nil
			}
			tc.ip = peer
		}
	}
	g.conns.Add(1)
	return tc
}

// closeNow closes a refused connection with a reset, leaving no TIME_WAIT
// behind on the edge for each of a flood's connections.
func closeNow(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// countedConn is a connection the gate counts until it is closed, however
// many times and by whom. Its few words are all it adds to a connection.
type countedConn struct {
	net.Conn
	g      *gate
	ip     netip.Addr // counted in the gate's perIP when valid
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.g.conns.Add(-1)
		if c.ip.IsValid() {
			c.g.perIP.Release(c.ip)
		}
	}
	return err
}

var errNoCloseWrite = errors.New("connection cannot half-close")

// CloseWrite half-closes the connection, as *net.TCPConn does: a closing
// WebSocket sends its FIN and waits for the client's close.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoCloseWrite
}

var errNoSocket = errors.New("connection is not a plain socket")

// SyscallConn gives the socket under the count to a transport that writes
// without waiting (sse.Conn.WriteNow); a connection that is not a plain
// socket has none, and its transport's writes all wait on its writer.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSocket
}

// Close closes the gate for good (server shutdown).
func (g *gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final {
		return nil
	}
	g.final = true
	close(g.done)
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	} else {
		close(g.opened) // wake Accept to see final
	}
	return nil
}

// Addr returns the address last listened on (or the configured one).
func (g *gate) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bound != nil {
		return g.bound
	}
	a, _ := net.ResolveTCPAddr("tcp", g.addr)
	return a
}

// keepGate opens the public port when the edge is ready and shuts it when
// it is draining, or has not been ready for unreadyGrace.
func (s *Server) keepGate(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var unreadySince time.Time
	logged := ""
	for {
		h, ready := s.health()
		switch {
		case ready:
			unreadySince = time.Time{}
			if !s.gate.isOpen() {
				if err := s.gate.open(); err != nil {
					if msg := err.Error(); msg != logged {
						s.log.Error("cannot open the public port", "addr", s.gate.addr, "err", err)
						logged = msg
					}
				} else {
					s.log.Info("ready: public port open", "addr", s.gate.Addr().String())
					logged = ""
				}
			}
		case s.draining.Load():
			s.gate.shut()
		default:
			if unreadySince.IsZero() {
				unreadySince = time.Now()
			}
			if s.gate.isOpen() && time.Since(unreadySince) >= unreadyGrace {
				s.gate.shut()
				s.log.Warn("not ready: public port closed until ready", "detail", h.Detail)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
