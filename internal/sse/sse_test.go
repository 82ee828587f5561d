package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
)

func TestEncode(t *testing.T) {
	cases := []struct {
		ev   *rig.Event
		want string
	}{
		{&rig.Event{Kind: rig.KindMessage, ID: "01A", Data: []byte(`{"a":1}`)}, "id: 01A\nevent: message\ndata: {\"a\":1}\n\n"},
		{&rig.Event{Kind: rig.KindMessage, ID: "x", Data: []byte("a\nb\r\nc\rd")}, "id: x\nevent: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n"},
		{&rig.Event{Kind: rig.KindMessage, ID: "x", Data: []byte("trailing\n")}, "id: x\nevent: message\ndata: trailing\ndata: \n\n"},
		{&rig.Event{Kind: rig.KindMessage, ID: "x", Data: nil}, "id: x\nevent: message\ndata: \n\n"},
		{&rig.Event{Kind: rig.KindConnected, Data: []byte(`{"users":["a"]}`)}, "event: connected\ndata: {\"users\":[\"a\"]}\n\n"},
		{&rig.Event{Kind: rig.KindHeartbeat, Data: []byte(`{}`)}, "event: heartbeat\ndata: {}\n\n"},
		{&rig.Event{Kind: rig.KindConnected, ID: "seq:7", Data: []byte(`{"users":["a"]}`)}, "id: seq:7\nevent: connected\ndata: {\"users\":[\"a\"]}\n\n"},
		{&rig.Event{Kind: rig.KindGap, ID: "old-id"}, "event: gap\ndata: old-id\n\n"},
		{&rig.Event{Kind: rig.KindSessionKilled, Data: []byte(`{}`)}, "event: session_killed\ndata: {}\n\n"},
	}
	for _, c := range cases {
		if got := string(Encode(c.ev)); got != c.want {
			t.Errorf("Encode(%s %q) = %q, want %q", c.ev.Kind, c.ev.Data, got, c.want)
		}
	}
}

// TestStreamIsValidHTTP writes a header and events through a real TCP
// connection and reads them back with net/http's response parser, which
// undoes the chunked encoding.
func TestStreamIsValidHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		nc.Write(Header("X-Extra: 1\r\n"))
		c := NewConn(nc, time.Second, 1500*time.Millisecond)
		c.Write([]*rig.Event{{Kind: rig.KindConnected, ID: "seq:0", Data: []byte(`{"users":["a"]}`)}})
		c.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "1", Data: []byte("one")}, {Kind: rig.KindMessage, ID: "2", Data: []byte("two")}})
		c.Write([]*rig.Event{{Kind: rig.KindReconnect, Data: []byte("{}")}})
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || resp.Header.Get("X-Extra") != "1" {
		t.Fatalf("head %d %v", resp.StatusCode, resp.Header)
	}
	body, err := io.ReadAll(resp.Body) // ends at the last chunk after the final event
	if err != nil {
		t.Fatal(err)
	}
	// retry: opens the connected event's block: no block without an event.
	want := "retry: 1500\nid: seq:0\nevent: connected\ndata: {\"users\":[\"a\"]}\n\nid: 1\nevent: message\ndata: one\n\nid: 2\nevent: message\ndata: two\n\nretry: 500\nevent: reconnect\ndata: {}\n\n"
	if string(body) != want {
		t.Fatalf("body %q\nwant %q", body, want)
	}
}

func TestEncodedOnce(t *testing.T) {
	ev := &rig.Event{Kind: rig.KindMessage, ID: "1", Data: []byte("x")}
	a := ev.Encoded(rig.FormatSSE, encode)
	b := ev.Encoded(rig.FormatSSE, func(*rig.Event) []byte { t.Fatal("encoded twice"); return nil })
	if &a[0] != &b[0] || !strings.HasPrefix(string(a), "id: 1") {
		t.Fatal("cached encoding not reused")
	}
}

func BenchmarkWrite(b *testing.B) {
	c := NewConn(discardConn{}, time.Second, 0)
	evs := make([]*rig.Event, 8)
	for i := range evs {
		evs[i] = &rig.Event{Kind: rig.KindMessage, ID: "01K0000000000000000000000", Data: []byte(`{"user":"alice","text":"hello"}`)}
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Write(evs)
	}
}

type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

// TestDeliverWritesDirectlyThenThroughTheWriter delivers messages through
// a client on a real TCP connection whose reader reads only once they are
// all delivered: the first message is written on the
// delivering goroutine (WriteNow takes it whole), later ones fill the
// socket, WriteNow keeps the rest of a chunk, the client's writer
// finishes it and goes on. The stream read back must be every message
// once, in order, in valid chunks.
func TestDeliverWritesDirectlyThenThroughTheWriter(t *testing.T) {
	nc, peer := tcpPair(t)
	// Small, yet not below loopback's segment size (64 KiB), where TCP
	// would stall on its window instead of the test on its reader.
	nc.(*net.TCPConn).SetWriteBuffer(128 << 10)
	if _, err := nc.Write(Header("")); err != nil {
		t.Fatal(err)
	}
	conn := NewConn(nc, 5*time.Second, 0)
	if conn.raw == nil {
		t.Fatal("a TCP connection has no raw socket for WriteNow")
	}
	c := client.New(&rig.Session{}, "sse", 100000)
	c.Counters = &client.Counters{}
	var mu sync.Mutex
	var receipts []string
	c.Written = func(_ *client.Client, ev *rig.Event) {
		mu.Lock()
		receipts = append(receipts, ev.ID)
		mu.Unlock()
	}
	c.Attach(conn)
	defer c.Close(client.DisconnectShutdown)

	msg := func(i int) *rig.Event {
		return &rig.Event{Kind: rig.KindMessage, ID: strconv.Itoa(i), Receipt: "rig.receipt.test", Data: bytes.Repeat([]byte{'a' + byte(i%26)}, 1000)}
	}
	c.Deliver(msg(0))
	br := bufio.NewReader(peer)
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if conn.rest != nil {
		t.Fatalf("a 1 KB message on an idle socket left %d bytes for the writer", len(conn.rest))
	}
	const n = 3000 // 3 MB: far more than the socket buffers hold
	for i := 1; i < n; i++ {
		c.Deliver(msg(i))
	}
	sc := bufio.NewScanner(resp.Body)
	next := 0
	for next < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			if got := strings.TrimPrefix(line, "id: "); got != strconv.Itoa(next) {
				t.Fatalf("message %s where %d was due", got, next)
			}
		case strings.HasPrefix(line, "data: "):
			if want := string(msg(next).Data); line != "data: "+want {
				t.Fatalf("message %d: data of %d bytes %.20q..., want %d: %v", next, len(line)-6, line, len(want), c.Reason())
			}
			next++
		}
	}
	if next != n {
		t.Fatalf("read %d of %d messages: %v", next, n, sc.Err())
	}
	// Each message counted and receipted once, in order, whichever
	// goroutine wrote its last byte.
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := c.Counters.Delivered.Load(); got != n {
			return fmt.Errorf("%d messages counted as delivered, want %d", got, n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i, id := range receipts {
		if id != strconv.Itoa(i) {
			t.Fatalf("receipt %d is for message %s", i, id)
		}
	}
	if len(receipts) != n {
		t.Fatalf("%d receipts, want %d", len(receipts), n)
	}
	select {
	case <-c.Done():
		t.Fatalf("client closed: %v", c.Reason())
	default:
	}
}

// TestWriteNowKeepsWhatTheSocketDidNotTake writes with WriteNow until
// the socket takes no more (nobody reads yet), then lets Write finish:
// what WriteNow kept comes first, whole, and the stream stays valid.
func TestWriteNowKeepsWhatTheSocketDidNotTake(t *testing.T) {
	nc, peer := tcpPair(t)
	nc.(*net.TCPConn).SetWriteBuffer(128 << 10)
	nc.Write(Header(""))
	c := NewConn(nc, 5*time.Second, 0)
	ev := func(i int) *rig.Event {
		return &rig.Event{Kind: rig.KindMessage, ID: strconv.Itoa(i), Data: bytes.Repeat([]byte{'x'}, 4000)}
	}
	sent := 0
	for left := false; !left; sent++ {
		if sent == 10000 { // 40 MB: no socket buffers are that large
			t.Fatal("the socket took 40 MB without a reader")
		}
		var err error
		if left, err = c.WriteNow([]*rig.Event{ev(sent)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.rest) == 0 {
		t.Fatal("WriteNow reported bytes left but kept none")
	}
	done := make(chan error, 1)
	go func() { done <- c.Write([]*rig.Event{ev(sent), {Kind: rig.KindReconnect, Data: []byte("{}")}}) }()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(peer), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body) // up to the last chunk, after the reconnect event
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 0; i <= sent; i++ {
		want.Write(Encode(ev(i)))
	}
	want.WriteString("retry: 500\nevent: reconnect\ndata: {}\n\n")
	if string(body) != want.String() {
		t.Fatalf("read %d bytes, want %d (%d events, %d bytes kept by WriteNow)", len(body), want.Len(), sent+2, len(c.rest))
	}
}

// TestWriteNowAfterWriteTimeout: a Write's deadline, once passed, does not
// fail a later WriteNow (which never waits, so needs none). Before the
// fix, every SSE client closed CLIENT_WRITE_TIMEOUT after its last Write.
func TestWriteNowAfterWriteTimeout(t *testing.T) {
	nc, peer := tcpPair(t)
	const timeout = 20 * time.Millisecond
	c := NewConn(nc, timeout, 0)
	if err := c.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "1", Data: []byte("one")}}); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	for time.Since(wrote) < 3*timeout { // until the Write's deadline is well past
		runtime.Gosched()
	}
	if left, err := c.WriteNow([]*rig.Event{{Kind: rig.KindMessage, ID: "2", Data: []byte("two")}}); err != nil || left {
		t.Fatalf("WriteNow after the Write's deadline: left %v, %v", left, err)
	}
	want := "id: 1\nevent: message\ndata: one\n\nid: 2\nevent: message\ndata: two\n\n"
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 0, 256)
	buf := make([]byte, 256)
	for !strings.Contains(string(got), "data: two") {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if body := chunkBodies(t, string(got)); body != want {
		t.Fatalf("read %q, want %q", body, want)
	}
}

// chunkBodies undoes the chunked encoding of a stream's complete chunks.
func chunkBodies(t *testing.T, s string) string {
	t.Helper()
	var out strings.Builder
	for s != "" {
		size, rest, ok := strings.Cut(s, "\r\n")
		n, err := strconv.ParseInt(size, 16, 64)
		if !ok || err != nil || int64(len(rest)) < n+2 {
			t.Fatalf("not a chunk: %q", s)
		}
		out.WriteString(rest[:n])
		s = rest[n+2:]
	}
	return out.String()
}

// A direct write allocates nothing of its own once the pools are warm: it
// runs for every message and heartbeat of every SSE client.
func TestWriteNowAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop objects: go test without -race counts")
	}
	nc, peer := tcpPair(t)
	go io.Copy(io.Discard, peer)
	c := NewConn(nc, 5*time.Second, 0)
	evs := []*rig.Event{{Kind: rig.KindMessage, ID: "1", Data: []byte(`{"n":1}`)}}
	evs[0].Encoded(rig.FormatSSE, encode)
	allocs := testing.AllocsPerRun(200, func() {
		if left, err := c.WriteNow(evs); err != nil || left {
			t.Fatalf("WriteNow: left %v, %v", left, err)
		}
	})
	if allocs > 0 {
		t.Fatalf("WriteNow allocated %.1f objects per write, want 0", allocs)
	}
}

// tcpPair is a loopback TCP connection: nc the server's side, as an edge
// holds it, peer the client's; both closed when the test ends.
func tcpPair(t *testing.T) (nc, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			accepted <- nc
		}
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc = <-accepted
	t.Cleanup(func() { nc.Close() })
	return nc, peer
}
