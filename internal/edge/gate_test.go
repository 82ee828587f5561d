package edge

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/clientaddr"
	"github.com/rig-go/rig/internal/limit"
	"github.com/rig-go/rig/internal/metrics"
)

func testGate(t *testing.T, max, perIP int, trusted ...netip.Prefix) (*gate, *metrics.Edge) {
	t.Helper()
	m := metrics.NewEdge(func() bool { return true }, metrics.ClientCounters{
		Delivered: func() uint64 { return 0 }, Dropped: func() uint64 { return 0 }, SlowClosed: func() uint64 { return 0 }})
	g := newGate("127.0.0.1:0", nil, slog.New(slog.DiscardHandler), m, max, limit.NewCount[netip.Addr](perIP), clientaddr.NewTrusted(trusted))
	if err := g.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, m
}

// accepted runs Accept in the background, handing out what it returns.
func accepted(g *gate) chan net.Conn {
	ch := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	return ch
}

func dial(t *testing.T, g *gate) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialRefused dials a connection the gate should refuse: the reset may
// come before the dial returns.
func dialRefused(t *testing.T, g *gate) bool {
	t.Helper()
	c, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		return true
	}
	defer c.Close()
	return closedSoon(c)
}

func closedSoon(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// conns is a check.For condition: g counts want connections.
func conns(g *gate, want int64) func() error {
	return func() error {
		if n := g.Conns(); n != want {
			return fmt.Errorf("gate counts %d connections, want %d", n, want)
		}
		return nil
	}
}

// The gate counts a connection from Accept to its first Close, keeps the
// half-close a closing WebSocket needs, and closes new ones at once past
// the cap while the others carry on.
func TestGateCap(t *testing.T) {
	g, m := testGate(t, 2, 0)
	out := accepted(g)
	c1, c2 := dial(t, g), dial(t, g)
	a1, a2 := <-out, <-out
	check.For(t, 2*time.Second, 5*time.Millisecond, conns(g, 2))
	if !dialRefused(t, g) {
		t.Fatal("a connection past MAX_CONNECTIONS was not closed")
	}
	if _, err := c1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := a1.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("an admitted connection stopped working: %d %v", n, err)
	}
	cw, ok := a2.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("the counted connection lost CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c2); err != nil {
		t.Fatalf("after CloseWrite the peer reads %v, want EOF", err)
	}
	a1.Close()
	a1.Close() // twice: counted once
	check.For(t, 2*time.Second, 5*time.Millisecond, conns(g, 1))
	c4 := dial(t, g)
	a4 := <-out
	check.For(t, 2*time.Second, 5*time.Millisecond, conns(g, 2))
	_, _ = c4, a4
	if n := sample(t, m, `rig_edge_connections_refused_total{reason="capacity"}`); n != "1" {
		t.Fatalf("%s refused for capacity, want 1", n)
	}
}

// Past MAX_CONNECTIONS_PER_IP an untrusted peer's new connection is closed;
// a trusted one is not counted.
func TestGatePerIP(t *testing.T) {
	g, _ := testGate(t, 100, 2)
	out := accepted(g)
	dial(t, g)
	dial(t, g)
	a := <-out
	<-out
	if !dialRefused(t, g) {
		t.Fatal("a third connection from one address was not closed")
	}
	a.Close()
	dial(t, g)
	<-out
	check.For(t, 2*time.Second, 5*time.Millisecond, conns(g, 2))

	tg, _ := testGate(t, 100, 1, netip.MustParsePrefix("127.0.0.0/8"))
	tout := accepted(tg)
	for range 3 {
		dial(t, tg)
		<-tout
	}
	check.For(t, 2*time.Second, 5*time.Millisecond, conns(tg, 3))
}

// failing is a listener whose first accepts fail as a process out of file
// descriptors sees them fail.
type failing struct {
	net.Listener
	left atomic.Int32
}

func (f *failing) Accept() (net.Conn, error) {
	if f.left.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

// Accept errors are never returned (fasthttp would stop serving): the gate
// pauses, counts them, and accepts again.
func TestGateAcceptErrors(t *testing.T) {
	g, m := testGate(t, 10, 0)
	f := &failing{Listener: g.ln}
	f.left.Store(5)
	g.mu.Lock()
	g.ln = f
	g.mu.Unlock()
	out := accepted(g)
	start := time.Now()
	dial(t, g)
	select {
	case c, ok := <-out:
		if !ok || c == nil {
			t.Fatal("Accept returned an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after the errors")
	}
	// 5 + 10 + 20 + 40 + 80 ms of pauses.
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("accepted after %s: the errors did not pause the gate", took)
	}
	if n := sample(t, m, "rig_edge_accept_errors_total"); n != "5" {
		t.Errorf("%s accept errors counted, want 5", n)
	}
	g.Close()
	if _, ok := <-out; ok {
		t.Fatal("Accept did not end when the gate closed")
	}
}

func TestFileReserve(t *testing.T) {
	for _, c := range []struct{ nofile, max int }{{20000, 18000}, {1024, 768}, {1 << 20, 943719}, {300, 150}} {
		if got := c.nofile - fileReserve(c.nofile); got != c.max {
			t.Errorf("open-file limit %d: cap %d, want %d", c.nofile, got, c.max)
		}
	}
}

// sample is the value of one sample of m's registry, as served.
func sample(t *testing.T, m *metrics.Edge, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.Handler(m.Registry).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestGateKeepsItsPort: a gate for port 0, or for a listener its caller
// opened, listens on the same port each time it opens, and that port is
// known (Addr) before the gate ever opens.
func TestGateKeepsItsPort(t *testing.T) {
	g, _ := testGate(t, 0, 0)
	first := g.Addr().String()
	g.shut()
	if err := g.open(); err != nil {
		t.Fatal(err)
	}
	if again := g.Addr().String(); again != first {
		t.Fatalf("gate for port 0 listens on %s, then on %s", first, again)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.NewEdge(func() bool { return true }, metrics.ClientCounters{
		Delivered: func() uint64 { return 0 }, Dropped: func() uint64 { return 0 }, SlowClosed: func() uint64 { return 0 }})
	g2 := newGate(":4000", ln, slog.New(slog.DiscardHandler), m, 0, limit.NewCount[netip.Addr](0), clientaddr.NewTrusted(nil))
	t.Cleanup(func() { g2.Close() })
	if g2.Addr().String() != ln.Addr().String() {
		t.Fatalf("shut gate says %s, its listener was %s", g2.Addr(), ln.Addr())
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("a starting gate accepts connections")
	}
	if err := g2.open(); err != nil {
		t.Fatal(err)
	}
	go func() {
		if c, err := g2.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("open gate refuses on its listener's address: %v", err)
	}
	c.Close()
}

// TestReadyNeedsThePublicPort: the operations port's readiness answers 200
// only while the public port accepts. The gate opens on keepGate's next
// check after the edge can serve; a probe answered 200 before that sent
// clients to a refusing port. The gate is shut here by hand and reopened
// by keepGate, so the check repeats until a probe has seen it shut.
func TestReadyNeedsThePublicPort(t *testing.T) {
	s, _ := newTestEdge(t)
	ops := s.opsHandler()
	sawShut := false
	deadline := time.Now().Add(10 * time.Second)
	for !sawShut && time.Now().Before(deadline) {
		s.gate.shut()
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest("GET", "/health/ready", nil))
		body := rec.Body.String()
		open := strings.Contains(body, `"public_port_open":true`)
		switch {
		case rec.Code == 200 && !open:
			t.Fatalf("ready (200) while the public port is shut: %s", body)
		case rec.Code == 503 && !open:
			sawShut = true
			if !strings.Contains(body, "public port not open yet") {
				t.Errorf("unready probe does not say why: %s", body)
			}
		}
		// keepGate reopens it within its 100 ms tick.
		for !s.gate.isOpen() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !sawShut {
		t.Fatal("no probe saw the public port shut")
	}
	rec := httptest.NewRecorder()
	ops.ServeHTTP(rec, httptest.NewRequest("GET", "/health/ready", nil))
	if rec.Code != 200 {
		t.Fatalf("ready with the port open: %d %s", rec.Code, rec.Body.String())
	}
}
