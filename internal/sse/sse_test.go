package sse

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
