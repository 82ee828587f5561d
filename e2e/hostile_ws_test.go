package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/check"
)

// cpuSeconds is the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read the CPU time of %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// pingFlood is a hostile client that sends pings as fast as it can.
type pingFlood struct {
	sent, pongs atomic.Int64
	closeCode   int           // the close code the server sent; 1006 if none
	closed      time.Duration // from the first ping to the end of the socket
}

// floodPings dials u and sends pings until the socket ends or for at most
// d, reading what comes back (pongs, a close frame).
func floodPings(t testing.TB, u string, d time.Duration) *pingFlood {
	t.Helper()
	w := MustWS(t, u, WSOpts{NoRead: true})
	f := &pingFlood{}
	w.Conn.SetPongHandler(func(string) error { f.pongs.Add(1); return nil })
	done := make(chan error, 1)
	go func() {
		for {
			if _, _, err := w.Conn.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	start := time.Now()
	deadline := start.Add(d)
	var readErr error
flood:
	for time.Now().Before(deadline) {
		select {
		case readErr = <-done:
			break flood
		default:
		}
		if err := w.Conn.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)); err != nil {
			readErr = <-done
			break
		}
		f.sent.Add(1)
	}
	if readErr == nil {
		select {
		case readErr = <-done: // closed just as the flood ended
		default:
			f.closed = -1 // still open
			return f
		}
	}
	f.closed = time.Since(start)
	f.closeCode = websocket.CloseAbnormalClosure
	var ce *websocket.CloseError
	if errors.As(readErr, &ce) {
		f.closeCode = ce.Code
	}
	return f
}

// TestHostileWebSocketPingFlood: a client that sends pings as fast as it
// can is closed with 1008 after a bounded number of frames (the library
// used to answer every ping, outside the per-socket limit), on plain and
// Phoenix sockets, without costing the edge a core; other sockets go on.
func TestHostileWebSocketPingFlood(t *testing.T) {
	st := StartStack(t, nil, nil)
	bystander := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	bystander.Next(t, 5*time.Second)
	pid := st.Edge.cmd.Process.Pid

	const floodFor = 3 * time.Second
	for _, c := range []struct {
		name string
		url  string
	}{
		{"plain", wsURL(st.Edge.URL, plainQuery(Token(t, "mallory")))},
		{"phoenix", wsURL(st.Edge.URL, phxQuery(Token(t, "mallory"), "2.0.0"))},
	} {
		cpu0 := cpuSeconds(t, pid)
		f := floodPings(t, c.url, floodFor)
		cpu := cpuSeconds(t, pid) - cpu0
		t.Logf("%s: %d pings sent, %d pongs received, closed with %d after %s; edge CPU %.2fs",
			c.name, f.sent.Load(), f.pongs.Load(), f.closeCode, f.closed.Round(time.Millisecond), cpu)
		if f.closed < 0 {
			t.Errorf("%s: the socket was still open after %s of pings (%d sent, %d pongs)", c.name, floodFor, f.sent.Load(), f.pongs.Load())
			continue
		}
		if f.closeCode != websocket.ClosePolicyViolation {
			t.Errorf("%s: closed with %d, want 1008", c.name, f.closeCode)
		}
		// The budget is 120 frames at once; what the edge wrote before the
		// close frame is all the client gets.
		if n := f.pongs.Load(); n > 200 {
			t.Errorf("%s: %d pongs, want at most about 120 (the burst)", c.name, n)
		}
		if cpu > 1 {
			t.Errorf("%s: the flood cost the edge %.2fs of CPU, want well under a second", c.name, cpu)
		}
	}

	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "after the flood"})
	if ev := bystander.Next(t, 5*time.Second); ev.ID != id {
		t.Fatalf("the bystander got %+v, want message %s", ev, id)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := strings.Count(st.Edge.Logs(), "client sent too many frames"); got != 2 {
			return fmt.Errorf("want one log line per flooding socket: got %v", got)
		}
		return nil
	})
}

// TestHostileWebSocketFragmentFlood: a message that never ends, sent as
// empty continuation frames as fast as the client can (six bytes each,
// inside one message, so no message or frame count sees them), is closed
// with 1008 once the socket's byte budget is spent, on plain and Phoenix
// sockets. It used to keep a core busy (49 million frames in 3 s) until
// the pong deadline.
func TestHostileWebSocketFragmentFlood(t *testing.T) {
	st := StartStack(t, nil, nil)
	bystander := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	bystander.Next(t, 5*time.Second)
	pid := st.Edge.cmd.Process.Pid
	frames := bytes.Repeat([]byte{0x00, 0x80, 0, 0, 0, 0}, 2000) // continuation, not final, masked, empty

	const floodFor = 3 * time.Second
	for _, c := range []struct {
		name string
		url  string
	}{
		{"plain", wsURL(st.Edge.URL, plainQuery(Token(t, "mallory")))},
		{"phoenix", wsURL(st.Edge.URL, phxQuery(Token(t, "mallory"), "2.0.0"))},
	} {
		w := MustWS(t, c.url)
		nc := w.Conn.NetConn()
		cpu0 := cpuSeconds(t, pid)
		start := time.Now()
		if _, err := nc.Write([]byte{0x01, 0x80, 0, 0, 0, 0}); err != nil { // a text message, not final
			t.Fatal(err)
		}
		sent := 0
		for time.Since(start) < floodFor && w.Open() {
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := nc.Write(frames); err != nil {
				break
			}
			sent += 2000
		}
		code, closed := w.Closed(2 * time.Second)
		cpu := cpuSeconds(t, pid) - cpu0
		t.Logf("%s: %d empty continuation frames sent in %s; closed %v with %d; edge CPU %.2fs",
			c.name, sent, time.Since(start).Round(time.Millisecond), closed, code, cpu)
		if !closed || code != websocket.ClosePolicyViolation {
			t.Errorf("%s: closed %v with %d, want 1008 within the flood", c.name, closed, code)
		}
		if cpu > 1 {
			t.Errorf("%s: the flood cost the edge %.2fs of CPU, want well under a second", c.name, cpu)
		}
	}
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "after the flood"})
	if ev := bystander.Next(t, 5*time.Second); ev.ID != id {
		t.Fatalf("the bystander got %+v, want message %s", ev, id)
	}
}

// TestHostileWebSocketInvalidUTF8: a client text frame that is not UTF-8
// closes its socket with 1007 (RFC 6455 §8.1), on a plain socket (whose
// messages are otherwise ignored) and a Phoenix socket (whose JSON decoder
// would have taken it); valid text, and binary on a plain socket, do not.
func TestHostileWebSocketInvalidUTF8(t *testing.T) {
	st := StartStack(t, nil, nil)
	bystander := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	bystander.Next(t, 5*time.Second)

	plain := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "mallory"))))
	plain.Next(t, 5*time.Second)
	plain.Send(t, "héllo 🎉")
	if err := plain.Conn.WriteMessage(websocket.BinaryMessage, []byte("bin \xff")); err != nil {
		t.Fatal(err)
	}
	plain.Send(t, strings.Repeat("é", 20000)+"bad \xff") // invalid past the first reads
	if code, ok := plain.Closed(5 * time.Second); !ok || code != websocket.CloseInvalidFramePayloadData {
		t.Errorf("plain socket after invalid UTF-8: closed %v with %d, want 1007", ok, code)
	}

	p := dialPhx(t, st.Edge.URL, Token(t, "mallory"), "2.0.0")
	p.join(t, "1", "user:mallory", nil)
	p.Send(t, `[null,"2","phoenix","heartbeat",{"note":"bad `+"\xff"+`"}]`)
	if code, ok := p.Closed(5 * time.Second); !ok || code != websocket.CloseInvalidFramePayloadData {
		t.Errorf("phoenix socket after invalid UTF-8: closed %v with %d, want 1007", ok, code)
	}

	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "still here"})
	if ev := bystander.Next(t, 5*time.Second); ev.ID != id {
		t.Fatalf("the bystander got %+v, want message %s", ev, id)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := strings.Count(st.Edge.Logs(), "not UTF-8"); got != 2 {
			return fmt.Errorf("want one log line per socket closed for invalid UTF-8: got %v", got)
		}
		return nil
	})
}
