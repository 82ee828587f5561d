package e2e

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// netCut is a TCP proxy the test can cut, as a network partition cuts a
// process off: Cut drops every proxied connection and refuses new ones,
// Restore listens again on the same port.
type netCut struct {
	t      testing.TB
	Port   int
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newNetCut(t testing.TB, target string) *netCut {
	n := &netCut{t: t, Port: FreePort(t), target: target, conns: map[net.Conn]struct{}{}}
	n.Restore()
	t.Cleanup(n.Cut)
	return n
}

// Addr is where clients connect.
func (n *netCut) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// Restore accepts and forwards connections again.
func (n *netCut) Restore() {
	ln, err := net.Listen("tcp", n.Addr())
	if err != nil {
		n.t.Fatalf("netcut listen: %v", err)
	}
	n.mu.Lock()
	n.ln = ln
	n.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go n.forward(c)
		}
	}()
}

func (n *netCut) forward(c net.Conn) {
	up, err := net.Dial("tcp", n.target)
	if err != nil {
		c.Close()
		return
	}
	n.mu.Lock()
	n.conns[c], n.conns[up] = struct{}{}, struct{}{}
	n.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// Cut closes the listener and every connection through it.
func (n *netCut) Cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln != nil {
		n.ln.Close()
		n.ln = nil
	}
	for c := range n.conns {
		c.Close()
	}
	n.conns = map[net.Conn]struct{}{}
}
