package edge

import (
	"context"
	"net"
	"sync"
	"time"
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
type gate struct {
	addr string

	mu     sync.Mutex
	ln     net.Listener  // nil while shut
	opened chan struct{} // closed when the gate opens
	final  bool
	bound  net.Addr
}

func newGate(addr string) *gate {
	return &gate{addr: addr, opened: make(chan struct{})}
}

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
	g.ln, g.bound = ln, ln.Addr()
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

// Accept implements net.Listener for the HTTP server.
func (g *gate) Accept() (net.Conn, error) {
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
		if err == nil {
			return c, nil
		}
		g.mu.Lock()
		shutHere := g.ln != ln || g.final
		g.mu.Unlock()
		if !shutHere {
			return nil, err
		}
	}
}

// Close closes the gate for good (server shutdown).
func (g *gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final {
		return nil
	}
	g.final = true
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
func (s *Server) keepGate(ctx context.Context) {
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
			return
		case <-t.C:
		}
	}
}
