package edge

import (
	"errors"
	"net"
	"runtime/debug"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/phoenix"
	"github.com/rig-go/rig/internal/ws"
)

// Reasons a socket is closed from the reading side, as logged.
const (
	reasonMissedPongs = "client missed pongs"
	reasonTooLarge    = "message larger than WS_MAX_FRAME_SIZE"
	reasonFlood       = "client sent too many frames or bytes"
	reasonBinary      = "client sent a binary message"
	reasonInvalidUTF8 = "client sent a text message that is not UTF-8"
	reasonPanic       = "internal error"
)

// handleWebSocket serves /socket/websocket: RIG's JSON events, or the
// Phoenix channels protocol when the query names a serializer (vsn=). Every
// refusal comes before the upgrade, as the JSON error SSE would get; then
// the edge takes the connection over from fasthttp, as for SSE, and
// completes the handshake on it.
func (s *Server) handleWebSocket(c *fiber.Ctx) error {
	if err := s.checkOrigin(c); err != nil {
		return err
	}
	mode, err := socketMode(c)
	if err != nil {
		return err
	}
	a, err := s.admit(c)
	if err != nil {
		return err
	}
	key, err := ws.CheckHandshake(c.Context())
	if err != nil {
		status := fiber.StatusBadRequest
		if he := (*ws.HandshakeError)(nil); errors.As(err, &he) {
			status = he.Status
		}
		if status == fiber.StatusUpgradeRequired {
			c.Set(fiber.HeaderUpgrade, "websocket")
		}
		c.Set("Sec-WebSocket-Version", "13")
		return api.NewError(status, err.Error())
	}
	if mode != ws.Plain {
		// A Phoenix socket subscribes, and resumes, per joined topic.
		a.users, a.resume = nil, ""
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(hc net.Conn) {
		// Own the raw connection and return, so fasthttp frees the request
		// context and read buffer instead of holding them for the socket.
		// Bytes a client sent before the handshake's answer are dropped; a
		// WebSocket client must wait for it.
		go s.serveWebSocket(rawConn(hc), key, a, mode)
	})
	return nil
}

func socketMode(c *fiber.Ctx) (ws.Mode, error) {
	args := c.Context().QueryArgs()
	if !args.Has("vsn") {
		return ws.Plain, nil
	}
	v, err := phoenix.ParseVersion(string(args.Peek("vsn")))
	if err != nil {
		return 0, api.NewError(fiber.StatusBadRequest, err.Error())
	}
	if v == phoenix.V1 {
		return ws.Phoenix1, nil
	}
	return ws.Phoenix2, nil
}

// serveWebSocket completes the handshake on a connection taken over from
// fasthttp and runs the socket; its goroutine is the socket's reader. With
// KeepHijackedConns fasthttp never closes the connection: Finish does.
func (s *Server) serveWebSocket(nc net.Conn, key string, a *admission, mode ws.Mode) {
	// Counted before the handshake's answer, on the connection the edge
	// now owns (see serveSSE): a refusal is still a plain HTTP answer.
	if err := s.hold(a); err != nil {
		s.log.Debug("request refused", "path", "/socket/websocket", "status", err.Status, "err", err.Message, "remote", a.remote)
		writeRawError(nc, err, "")
		nc.Close()
		return
	}
	c, err := ws.Upgrade(nc, key, s.cfg.WriteTimeout, s.cfg.WSMaxFrameSize)
	if err != nil {
		a.held.release()
		s.log.Info("WebSocket handshake failed", "transport", mode.Name(), "user", a.session.User, "remote", a.remote, "err", err)
		nc.Close()
		return
	}
	wc := ws.New(c, mode, s.cfg.WriteTimeout, 2*s.cfg.HeartbeatInterval, s.cfg.WSMaxFrameSize)
	cn, err := s.open(a, mode.Name())
	if err != nil {
		s.log.Warn("WebSocket closed right after the upgrade", "transport", mode.Name(), "user", a.session.User, "err", err)
		wc.CloseWith(websocket.CloseTryAgainLater, "NATS is unreachable")
		wc.Finish(err)
		return
	}
	cn.Start(wc)
	if mode == ws.Plain {
		s.start(cn, a.users, a.resume)
	} else {
		cn.Resume(nil, 0) // channels hold and release on each join
	}
	// Setting up grew this goroutine's stack; the socket's reader starts
	// anew with a small one, and this one's is freed (see serveSSE).
	go s.readWebSocket(cn, wc, a, mode)
}

// readWebSocket is the socket's reader, until the client goes or breaks
// the protocol; then it closes the connection.
func (s *Server) readWebSocket(cn *conn, wc *ws.Conn, a *admission, mode ws.Mode) {
	reason, readErr := reasonPanic, error(nil)
	defer func() {
		// A bug in reading one client's frames must not take the edge down.
		if p := recover(); p != nil {
			s.log.Error("WebSocket reader panicked", "transport", mode.Name(), "user", a.session.User, "panic", p, "stack", string(debug.Stack()))
			wc.CloseWith(websocket.CloseInternalServerErr, "internal error")
		}
		s.close(cn, reason)
		wc.Finish(readErr)
	}()
	if mode == ws.Plain {
		reason, readErr = readPlain(wc)
	} else {
		reason, readErr = s.newPhoenixSocket(cn, wc, mode.Version()).serve()
	}
}

// readPlain reads what a plain socket's client sends, which is only pongs
// and its close frame that matter; messages are dropped (after the checks
// of ws.Conn.Discard: the frame budget, UTF-8).
func readPlain(wc *ws.Conn) (string, error) {
	for {
		if err := wc.Discard(); err != nil {
			return readFailed(wc, err), err
		}
	}
}

// readFailed closes a socket whose client broke a rule, with the close
// code that rule calls for, and says why reading stopped. The library has
// already sent its close frame for an oversized message (1009) or a
// protocol error (1002); for a client that went away there is nothing to
// send.
func readFailed(wc *ws.Conn, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ws.ErrFlood):
		wc.CloseWith(websocket.ClosePolicyViolation, "too many frames")
		return reasonFlood
	case errors.Is(err, ws.ErrInvalidUTF8):
		wc.CloseWith(websocket.CloseInvalidFramePayloadData, "invalid UTF-8")
		return reasonInvalidUTF8
	case errors.Is(err, ws.ErrBinary):
		wc.CloseWith(websocket.CloseUnsupportedData, "binary messages are not accepted")
		return reasonBinary
	case errors.Is(err, websocket.ErrReadLimit):
		return reasonTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return reasonMissedPongs
	}
	return client.ReasonClientGone
}
