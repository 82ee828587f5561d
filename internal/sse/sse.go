// Package sse frames events as Server-Sent Events and writes them to a
// hijacked HTTP connection, as one chunked response that lasts as long as
// the connection.
package sse

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
)

// Encode returns ev as an SSE event, ending in a blank line. A payload with
// line breaks becomes several data: lines, as the SSE spec says, so the
// browser's EventSource rebuilds it with "\n" between them.
func Encode(ev *rig.Event) []byte {
	var b bytes.Buffer
	b.Grow(len(ev.Data) + len(ev.ID) + 40)
	switch ev.Kind {
	case rig.KindMessage:
		b.WriteString("id: ")
		b.WriteString(ev.ID)
		b.WriteString("\nevent: message\n")
		writeData(&b, ev.Data)
	case rig.KindGap:
		b.WriteString("event: gap\n")
		writeData(&b, []byte(ev.ID))
	case rig.KindReconnect:
		// The stream ends after this (the edge is draining); EventSource
		// reconnects after retry, to whichever edge the address reaches,
		// sending Last-Event-ID.
		b.WriteString("retry: " + strconv.Itoa(ReconnectRetryMillis) + "\nevent: reconnect\n")
		writeData(&b, ev.Data)
	default:
		if ev.ID != "" {
			// The connected event's id is the stream position the
			// connection starts at: EventSource resumes from it.
			b.WriteString("id: ")
			b.WriteString(ev.ID)
			b.WriteByte('\n')
		}
		b.WriteString("event: ")
		b.WriteString(ev.Kind.String())
		b.WriteByte('\n')
		writeData(&b, ev.Data)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// writeData writes data as data: lines, splitting at \r\n, \r and \n.
func writeData(b *bytes.Buffer, data []byte) {
	for {
		i := bytes.IndexAny(data, "\r\n")
		b.WriteString("data: ")
		if i < 0 {
			b.Write(data)
			b.WriteByte('\n')
			return
		}
		b.Write(data[:i])
		b.WriteByte('\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

func encode(ev *rig.Event) []byte { return Encode(ev) }

// ReconnectRetryMillis is the reconnection delay an edge that is draining
// gives EventSource: short, since another edge is ready.
const ReconnectRetryMillis = 500

// Header returns the response head of a stream. extra holds more header
// lines, each ending in "\r\n" (CORS).
func Header(extra string) []byte {
	return []byte("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache, no-transform\r\n" +
		"Connection: keep-alive\r\n" +
		"X-Accel-Buffering: no\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		extra + "\r\n")
}

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Conn is the SSE transport on a hijacked connection.
type Conn struct {
	nc net.Conn
	// raw is nc's socket, for WriteNow's write that does not wait; nil
	// when nc is not a plain socket (TLS), and WriteNow only frames.
	raw     syscall.RawConn
	timeout time.Duration
	// retry is the "retry:" line the connected event's block starts with,
	// nil once written. A block of its own, before the first event, was
	// reported as an empty event by Go SSE clients (r3labs/sse,
	// tmaxmax/go-sse); inside the connected event it is one event, and
	// EventSource reads it the same.
	retry []byte
	// rest is what WriteNow framed and the socket did not take at once;
	// the next Write writes it before anything else.
	rest []byte
}

// NewConn wraps a hijacked connection whose response head was written.
// Every write must finish within timeout. retry is EventSource's
// reconnection delay, sent with the connected event; 0 sends none.
func NewConn(nc net.Conn, timeout, retry time.Duration) *Conn {
	c := &Conn{nc: nc, timeout: timeout}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	if retry > 0 {
		c.retry = []byte("retry: " + strconv.FormatInt(retry.Milliseconds(), 10) + "\n")
	}
	return c
}

// Write coalesces evs into one chunk and one write, after what WriteNow
// left (evs may then be empty). After a final event it also writes the
// last chunk, so the response ends cleanly and the browser reconnects (or,
// after session_killed, the application decides).
func (c *Conn) Write(evs []*rig.Event) error {
	b := bufs.Get().(*bytes.Buffer)
	defer putBuf(b)
	b.Reset()
	b.Write(c.rest)
	c.rest = nil
	c.frame(b, evs)
	if b.Len() == 0 {
		return nil
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	if _, err := c.nc.Write(b.Bytes()); err != nil {
		return err
	}
	// WriteNow's write, which never waits, must not fail on this deadline
	// once it has passed.
	return c.nc.SetWriteDeadline(time.Time{})
}

// WriteNow is Write without waiting, for the goroutine that delivers
// messages to many connections (see client.Client.Deliver): one write(2)
// of what the socket takes at once. What it does not take (a full send
// buffer: the client reads slowly) is kept for the next Write, and
// WriteNow reports left; so does a connection that is not a plain socket,
// whose bytes all wait for Write, or one with bytes kept from before.
func (c *Conn) WriteNow(evs []*rig.Event) (left bool, err error) {
	b := bufs.Get().(*bytes.Buffer)
	defer putBuf(b)
	b.Reset()
	c.frame(b, evs)
	out := b.Bytes()
	if c.raw != nil && len(c.rest) == 0 { // else what is kept goes first
		w := rawWriters.Get().(*rawWriter)
		w.out, w.n, w.err = out, 0, nil
		err := c.raw.Write(w.fn)
		n, werr := w.n, w.err
		w.out = nil
		rawWriters.Put(w)
		if err != nil {
			return false, err
		}
		if werr != nil {
			return false, werr
		}
		out = out[n:]
	}
	if len(out) == 0 {
		return false, nil
	}
	c.rest = append(c.rest, out...)
	return true, nil
}

// rawWriter is WriteNow's write(2) loop with its state, pooled: a closure
// over locals would put three small objects on the heap per write (one per
// message and heartbeat of every SSE client), and one per Conn would cost
// every idle connection its bytes.
type rawWriter struct {
	out []byte
	n   int
	err error
	fn  func(fd uintptr) bool // w.write, bound once
}

var rawWriters = sync.Pool{New: func() any {
	w := &rawWriter{}
	w.fn = w.write
	return w
}}

// write writes what the socket takes at once and never waits: Write does,
// on its own goroutine.
func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.out) {
		m, err := syscall.Write(int(fd), w.out[w.n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				w.err = err
			}
			break
		}
		w.n += m
	}
	return true
}

// Direct reports whether WriteNow writes: nc is a plain socket.
func (c *Conn) Direct() bool { return c.raw != nil }

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		b.Reset()
		bufs.Put(b)
	}
}

// frame appends evs to b as one chunk (none for no events).
func (c *Conn) frame(b *bytes.Buffer, evs []*rig.Event) {
	if len(evs) == 0 {
		return
	}
	n := 0
	for _, ev := range evs {
		if ev.Kind == rig.KindConnected {
			n += len(c.retry)
		}
		n += len(ev.Encoded(rig.FormatSSE, encode))
	}
	b.Grow(n + 16)
	var size [16]byte // the chunk's size line, without a string per write
	b.Write(strconv.AppendInt(size[:0], int64(n), 16))
	b.WriteString("\r\n")
	end := false
	for _, ev := range evs {
		if ev.Kind == rig.KindConnected {
			b.Write(c.retry) // the connected event is the first, and only one
			c.retry = nil
		}
		b.Write(ev.Encoded(rig.FormatSSE, encode))
		end = end || client.Final(ev.Kind)
	}
	b.WriteString("\r\n")
	if end {
		b.WriteString("0\r\n\r\n")
	}
}

// Close closes the connection.
func (c *Conn) Close(client.Disconnect) error { return c.nc.Close() }
