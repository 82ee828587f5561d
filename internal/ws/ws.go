// Package ws is the WebSocket transport: it writes a client's events to an
// upgraded connection as the text frames an Encoder makes of them (RIG's
// JSON events, or a protocol's, such as Phoenix channels, on top), turns
// heartbeats into pings, ends connections with close frames, and reads the
// client's frames under a size limit and a pong deadline. It knows no
// protocol beyond WebSocket.
//
// Every frame a client sends counts against one budget, pings and pongs as
// much as messages: answering a flood of pings costs the edge as much as
// reading a flood of messages.
//
// A connection costs one goroutine, the one reading; writes happen on the
// client's short-lived flush goroutine (see package client), and write
// buffers come from one shared pool, so an idle connection holds only a
// small read buffer.
package ws

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
)

// Encoder appends to dst the text frames that carry ev to one socket, and
// returns it; none for an event the socket does not take. Heartbeats never
// reach it (they are pings). A final event's frames (see client.Final) are
// the last the socket writes before its close frame.
type Encoder func(dst [][]byte, ev *rig.Event) [][]byte

const (
	// readBufferSize is what an idle socket keeps for reading. Clients send
	// little (joins, heartbeats); larger messages are read in pieces.
	readBufferSize = 512
	// writeBufferSize is the pooled buffer a write borrows; larger messages
	// go out as more frames of the same message.
	writeBufferSize = 4 << 10
	// closeGrace is how long a closing socket waits for the peer's answer to
	// its close frame.
	closeGrace = time.Second
	// maxDrain bounds what a closing socket reads and drops.
	maxDrain = 1 << 20
	// pongWriteWait bounds writing the pong that answers a client's ping.
	pongWriteWait = time.Second
)

// What a client may send: FrameBurst frames at once, then FrameRate a
// second, counting messages, pings and pongs alike; and ByteBurst bytes
// more than its largest message at once, then ByteRate a second. Clients
// send little (a pong per heartbeat, joins, a Phoenix heartbeat every
// 30s); one that keeps sending more is refused with ErrFlood before it
// costs others.
//
// The bytes are counted because the frames the library reads inside a
// message are not: a message may come as any number of continuation
// frames, empty ones too (six bytes each), and 49 million of those in 3 s
// kept a core busy without a message ever ending. Every frame costs a
// client at least six bytes, so the byte budget bounds them all.
const (
	FrameRate  = 20
	FrameBurst = 120
	ByteRate   = 64 << 10
	ByteBurst  = 64 << 10
)

// ErrFlood is returned by Read and Discard once a client has sent more
// frames or bytes than its budget allows; the socket should be closed
// with 1008.
var ErrFlood = errors.New("client sent more frames or bytes than allowed")

var writeBuffers sync.Pool // a websocket.BufferPool shared by every socket

// upgrader completes handshakes that CheckHandshake accepted. It accepts
// every Origin: the edge checks origins before, so that it can refuse with
// the same JSON errors as every other refusal.
var upgrader = websocket.Upgrader{
	ReadBufferSize:  readBufferSize,
	WriteBufferSize: writeBufferSize,
	WriteBufferPool: &writeBuffers,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// HandshakeError is a request that cannot be upgraded, with the status to
// refuse it with.
type HandshakeError struct {
	Status  int
	Message string
}

func (e *HandshakeError) Error() string { return e.Message }

// CheckHandshake applies the upgrader's rules to a request while it can
// still be refused with an HTTP error, and returns its Sec-WebSocket-Key.
func CheckHandshake(ctx *fasthttp.RequestCtx) (key string, err error) {
	if !websocket.FastHTTPIsWebSocketUpgrade(ctx) {
		return "", &HandshakeError{fasthttp.StatusUpgradeRequired, "this is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket"}
	}
	if !headerHasToken(ctx.Request.Header.Peek("Sec-WebSocket-Version"), "13") {
		return "", &HandshakeError{fasthttp.StatusBadRequest, "unsupported WebSocket version: expected Sec-WebSocket-Version: 13"}
	}
	key = string(bytes.TrimSpace(ctx.Request.Header.Peek("Sec-WebSocket-Key")))
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return "", &HandshakeError{fasthttp.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"}
	}
	return key, nil
}

func headerHasToken(v []byte, token string) bool {
	for _, t := range bytes.Split(v, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}

// Upgrade completes the handshake CheckHandshake accepted, on the raw
// connection the edge took over from fasthttp, and returns the socket,
// which reads through the client's byte budget for messages of up to
// maxMessage bytes.
//
// Upgrading after fasthttp let go of the connection, rather than inside
// fasthttp's hijack handler (FastHTTPUpgrader), lets fasthttp free the
// request context and read buffer at once instead of for the socket's
// whole life: about 40% of an idle socket's memory. The library's net/http
// upgrader does it through a minimal http.Hijacker.
func Upgrade(raw net.Conn, key string, handshakeTimeout time.Duration, maxMessage int) (*websocket.Conn, error) {
	r := &http.Request{Method: http.MethodGet, Header: http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {key},
	}}
	u := upgrader
	u.HandshakeTimeout = handshakeTimeout
	budget := &byteBudget{Conn: raw, burst: float64(maxMessage + ByteBurst), last: time.Now()}
	budget.allowance = budget.burst
	return u.Upgrade(&hijacker{conn: budget}, r, nil)
}

// byteBudget is a connection whose reads spend a client's byte budget (a
// token bucket of ByteRate a second, burst bytes deep), and fail with
// ErrFlood once it is spent. It is hand-written rather than a
// rate.Limiter because one read may return more bytes than any bucket
// size a Limiter would need. Only the socket's reader reads it.
type byteBudget struct {
	net.Conn
	burst, allowance float64
	last             time.Time
}

func (b *byteBudget) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	now := time.Now()
	b.allowance = min(b.burst, b.allowance+now.Sub(b.last).Seconds()*ByteRate) - float64(n)
	b.last = now
	if b.allowance < 0 {
		return 0, ErrFlood
	}
	return n, err
}

// hijacker is the http.ResponseWriter the upgrader writes to: the
// connection itself, already taken over.
type hijacker struct {
	conn   net.Conn
	header http.Header
}

var errNoResponse = errors.New("the WebSocket handshake was checked before the connection was taken over")

func (h *hijacker) Header() http.Header {
	if h.header == nil {
		h.header = http.Header{}
	}
	return h.header
}
func (h *hijacker) Write([]byte) (int, error) { return 0, errNoResponse }
func (h *hijacker) WriteHeader(int)           {}

// Hijack hands over the connection with empty buffers: the upgrader reads
// with its own, and writes its response through this small writer.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReaderSize(h.conn, 16), bufio.NewWriterSize(h.conn, 256)), nil
}

// ErrBinary is returned by Read for a binary message: no protocol here takes one.
var ErrBinary = errors.New("binary messages are not accepted")

// Conn is one upgraded socket. Its writes (events, replies, pings, close
// frames) are serialized, as a WebSocket connection allows one writer.
type Conn struct {
	ws       *websocket.Conn
	raw      net.Conn // under the byte budget: for closing, and draining
	encode   Encoder
	timeout  time.Duration
	pongWait time.Duration

	mu    sync.Mutex  // held while writing
	ended atomic.Bool // a final event was written: its close frame comes next

	closing atomic.Bool // a close frame was sent (or is being sent)

	// frames is the client's budget, used only by the reader (the ping
	// and pong handlers run inside its reads); nil until the first frame.
	frames *rate.Limiter
}

// New takes over an upgraded connection, whose events encode frames. Every
// write must finish within writeTimeout; a client must answer pings (or
// send something) within pongWait; a message larger than maxMessage closes
// the socket with 1009.
func New(c *websocket.Conn, encode Encoder, writeTimeout, pongWait time.Duration, maxMessage int) *Conn {
	conn := &Conn{ws: c, raw: c.NetConn(), encode: encode, timeout: writeTimeout, pongWait: pongWait}
	if b, ok := conn.raw.(*byteBudget); ok {
		conn.raw = b.Conn
	}
	c.SetReadLimit(int64(maxMessage))
	c.SetPongHandler(func(string) error {
		if err := conn.spend(); err != nil {
			return err
		}
		conn.alive()
		return nil
	})
	c.SetPingHandler(conn.pong)
	conn.alive()
	return conn
}

// spend takes one frame from the client's budget.
func (c *Conn) spend() error {
	if c.frames == nil {
		c.frames = rate.NewLimiter(FrameRate, FrameBurst)
	}
	if !c.frames.Allow() {
		return ErrFlood
	}
	return nil
}

// pong answers a client's ping, within its budget: the library's default
// handler answers every ping, which made a ping flood free for the client
// and a full core's work for the edge.
func (c *Conn) pong(data string) error {
	if err := c.spend(); err != nil {
		return err
	}
	c.alive()
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(pongWriteWait))
	var ne net.Error
	if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
		return nil // closing, or the write failed: the read that follows says why
	}
	return err
}

// alive extends the read deadline: the client answered a ping or spoke.
func (c *Conn) alive() {
	if c.closing.Load() {
		return
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.pongWait))
	if c.closing.Load() { // Close may have set the shorter deadline meanwhile
		_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
	}
}

// Read returns the next text message, answering pings and taking pongs on
// the way. It fails when the client misses pongs for the pong wait, sends
// a message over the limit, more frames than its budget (ErrFlood), a
// binary message (ErrBinary) or text that is not UTF-8 (ErrInvalidUTF8),
// closes, or goes away.
func (c *Conn) Read() ([]byte, error) {
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if err := c.spend(); err != nil {
		return nil, err
	}
	c.alive()
	if mt != websocket.TextMessage {
		return nil, ErrBinary
	}
	if !utf8.Valid(data) {
		return nil, ErrInvalidUTF8
	}
	return data, nil
}

// Discard reads the next message and drops it: a plain socket's client has
// nothing to say, but its pongs and close frame must be read. It fails as
// Read does, except that binary messages are dropped too; a text message
// is checked for UTF-8 as it is read, without being kept.
func (c *Conn) Discard() error {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return err
	}
	if err := c.spend(); err != nil {
		return err
	}
	if mt == websocket.TextMessage {
		err = checkUTF8(r)
	} else {
		_, err = io.Copy(io.Discard, r)
	}
	c.alive()
	return err
}

// Write implements client.Transport: each event becomes the text frames
// the Encoder makes of it, and a heartbeat a ping. After a final event
// (session_killed, token_expired, reconnect) nothing more is written; Close
// sends its close frame.
func (c *Conn) Write(evs []*rig.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended.Load() {
		return nil // the final event was the last; Close sends the close frame
	}
	if c.closing.Load() {
		return client.ErrClosing // the reader ends it, and says why
	}
	deadline := time.Now().Add(c.timeout)
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return err
	}
	var buf [4][]byte
	for _, ev := range evs {
		if ev.Kind == rig.KindHeartbeat {
			if err := c.ws.WriteControl(websocket.PingMessage, nil, deadline); err != nil {
				return c.writeFailed(err)
			}
			continue
		}
		for _, frame := range c.encode(buf[:0], ev) {
			if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
				return c.writeFailed(err)
			}
		}
		if client.Final(ev.Kind) {
			c.ended.Store(true)
			return nil
		}
	}
	return nil
}

// writeFailed says why a write failed: the library refuses writes once it
// sent a close frame itself (1009 for an oversized message, 1002 for a
// protocol error, on the reader's goroutine), and then the socket is
// closing, not broken; the reader, which saw why, closes the client.
func (c *Conn) writeFailed(err error) error {
	if errors.Is(err, websocket.ErrCloseSent) {
		c.closing.Store(true)
		return client.ErrClosing
	}
	return err
}

// CloseWith sends a close frame with d's code and reason (cut to 123
// bytes), once, after any write in progress. The reader should then
// return, and the connection end with CloseAfterRead.
func (c *Conn) CloseWith(d client.Disconnect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeFrameLocked(d, time.Now().Add(closeGrace))
}

func (c *Conn) closeFrameLocked(d client.Disconnect, deadline time.Time) error {
	if c.closing.Swap(true) {
		return nil
	}
	text := d.Reason
	if len(text) > 123 {
		text = text[:123]
	}
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(d.Code, text), deadline)
}

// Close implements client.Transport. After a final event it sends the
// close frame for d (within the write timeout) and gives the reader a
// moment to read the peer's answer before CloseAfterRead closes; after a
// close frame it does only the latter. Otherwise it closes the connection
// at once, without blocking.
func (c *Conn) Close(d client.Disconnect) error {
	var err error
	if c.ended.Load() { // no write is in progress or to come: the lock is free
		c.mu.Lock()
		err = c.closeFrameLocked(d, time.Now().Add(c.timeout))
		c.mu.Unlock()
	}
	if err == nil && c.closing.Load() {
		return c.raw.SetReadDeadline(time.Now().Add(closeGrace))
	}
	return c.raw.Close()
}

// CloseAfterRead closes the connection once the reader is done; readErr is
// why it stopped. If a close frame went out (sent here, or by the WebSocket library
// for an oversized or malformed message, or answering the peer's) and the
// peer may still be sending, it first half-closes and reads what arrives
// for a moment: closing a socket with unread data sends a reset, which can
// destroy the close frame before the peer reads it.
func (c *Conn) CloseAfterRead(readErr error) {
	nc := c.raw
	var ne net.Error
	gone := errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF) ||
		errors.Is(readErr, net.ErrClosed) || errors.As(readErr, &ne)
	if !gone {
		if tc, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, maxDrain))
	}
	_ = nc.Close()
}

// WriteText writes one text frame between events (a protocol's reply).
func (c *Conn) WriteText(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended.Load() || c.closing.Load() {
		return nil
	}
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}
