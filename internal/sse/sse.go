// Package sse frames events as Server-Sent Events and writes them to a
// hijacked HTTP connection, as one chunked response that lasts as long as
// the connection.
package sse

import (
	"bytes"
	"net"
	"strconv"
	"sync"
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

// Header returns the response head and the stream's first bytes: the
// reconnection delay for EventSource. extra holds more header lines, each
// ending in "\r\n" (CORS).
func Header(retry time.Duration, extra string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache, no-transform\r\n" +
		"Connection: keep-alive\r\n" +
		"X-Accel-Buffering: no\r\n" +
		"Transfer-Encoding: chunked\r\n")
	b.WriteString(extra)
	b.WriteString("\r\n")
	body := "retry: " + strconv.FormatInt(retry.Milliseconds(), 10) + "\n\n"
	writeChunk(&b, []byte(body))
	return b.Bytes()
}

func writeChunk(b *bytes.Buffer, p []byte) {
	b.WriteString(strconv.FormatInt(int64(len(p)), 16))
	b.WriteString("\r\n")
	b.Write(p)
	b.WriteString("\r\n")
}

var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Conn is the SSE transport on a hijacked connection.
type Conn struct {
	nc      net.Conn
	timeout time.Duration
}

// NewConn wraps a hijacked connection whose response head was written.
// Every write must finish within timeout.
func NewConn(nc net.Conn, timeout time.Duration) *Conn {
	return &Conn{nc: nc, timeout: timeout}
}

// Write coalesces evs into one chunk and one write. After a final event it
// also writes the last chunk, so the response ends cleanly and the browser
// reconnects (or, after session_killed, the application decides).
func (c *Conn) Write(evs []*rig.Event) error {
	b := bufs.Get().(*bytes.Buffer)
	defer func() {
		if b.Cap() <= 64<<10 {
			b.Reset()
			bufs.Put(b)
		}
	}()
	b.Reset()
	n := 0
	for _, ev := range evs {
		n += len(ev.Encoded(rig.FormatSSE, encode))
	}
	b.Grow(n + 16)
	b.WriteString(strconv.FormatInt(int64(n), 16))
	b.WriteString("\r\n")
	end := false
	for _, ev := range evs {
		b.Write(ev.Encoded(rig.FormatSSE, encode))
		end = end || client.Final(ev.Kind)
	}
	b.WriteString("\r\n")
	if end {
		b.WriteString("0\r\n\r\n")
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b.Bytes())
	return err
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }
