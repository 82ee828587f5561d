// Package wstest holds what the tests of ws and of the edge's WebSocket
// transports share: reading from a client-side socket with a deadline.
package wstest

import (
	"errors"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// ReadText reads the next message from cl, failing the test unless it is
// a text message within 5 s.
func ReadText(t testing.TB, cl *websocket.Conn) string {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, b, err := cl.ReadMessage()
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("message type %d", mt)
	}
	return string(b)
}

// CloseCode reads from cl until its close frame, within 5 s, and returns
// the frame's code; the test fails if the socket ends without one.
func CloseCode(t testing.TB, cl *websocket.Conn) int {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := cl.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("client read ended without a close frame: %v", err)
		}
	}
}
