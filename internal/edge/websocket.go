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
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/wire"
	"github.com/rig-go/rig/internal/ws"
)

// Why a socket is closed from the reading side: logged, and sent in the
// close frame when the edge sends one.
var (
	disconnectMissedPongs = client.Disconnect{Code: websocket.CloseGoingAway, Reason: "client missed pongs"}
	disconnectTooLarge    = client.Disconnect{Code: websocket.CloseMessageTooBig, Reason: "message larger than WS_MAX_FRAME_SIZE"}
	disconnectFlood       = client.Disconnect{Code: websocket.ClosePolicyViolation, Reason: "client sent too many frames or bytes"}
	disconnectBinary      = client.Disconnect{Code: websocket.CloseUnsupportedData, Reason: "client sent a binary message"}
	disconnectInvalidUTF8 = client.Disconnect{Code: websocket.CloseInvalidFramePayloadData, Reason: "client sent a text message that is not UTF-8"}
	disconnectPanic       = client.Disconnect{Code: websocket.CloseInternalServerErr, Reason: "internal error"}
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
	// A browser never shows a page why an upgrade failed; a client (such as
	// clients/js) asks again without the upgrade to read the status, which
	// from another origin it can only with CORS.
	s.setCORS(c)
	v, err := socketProtocol(c)
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
	if v != 0 {
		// A Phoenix socket subscribes, and resumes, per joined topic.
		a.users, a.resume = nil, ""
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(hc net.Conn) {
		// Own the raw connection and return, so fasthttp frees the request
		// context and read buffer instead of holding them for the socket.
		// Bytes a client sent before the handshake's answer are dropped; a
		// WebSocket client must wait for it.
		go s.serveWebSocket(rawConn(hc), key, a, v)
	})
	return nil
}

// socketProtocol reads what a socket speaks: the Phoenix serializer named
// by vsn=, or, without vsn, 0: RIG's JSON events.
func socketProtocol(c *fiber.Ctx) (phoenix.Version, error) {
	args := c.Context().QueryArgs()
	if !args.Has("vsn") {
		return 0, nil
	}
	v, err := phoenix.ParseVersion(string(args.Peek("vsn")))
	if err != nil {
		return 0, api.NewError(fiber.StatusBadRequest, err.Error())
	}
	return v, nil
}

// transportName is a socket's transport in logs and presence.
func transportName(v phoenix.Version) string {
	if v == 0 {
		return "websocket"
	}
	return "phoenix"
}

// plainFrames is the Encoder of a plain socket: each event is one text
// frame of RIG's JSON, a final one included, before the close frame.
func plainFrames(dst [][]byte, ev *rig.Event) [][]byte {
	return append(dst, wire.Encoded(ev))
}

// serveWebSocket completes the handshake on a connection taken over from
// fasthttp and runs the socket; its goroutine is the socket's reader. With
// KeepHijackedConns fasthttp never closes the connection: CloseAfterRead does.
func (s *Server) serveWebSocket(nc net.Conn, key string, a *admission, v phoenix.Version) {
	transport := transportName(v)
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
		s.log.Info("WebSocket handshake failed", "transport", transport, "user", a.session.User, "remote", a.remote, "err", err)
		nc.Close()
		return
	}
	cn, err := s.open(a, transport)
	if err != nil {
		s.log.Warn("WebSocket closed right after the upgrade", "transport", transport, "user", a.session.User, "err", err)
		wc := ws.New(c, plainFrames, s.cfg.WriteTimeout, 2*s.cfg.HeartbeatInterval, s.cfg.WSMaxFrameSize)
		wc.CloseWith(client.Disconnect{Code: websocket.CloseTryAgainLater, Reason: err.Error()})
		wc.CloseAfterRead(err)
		return
	}
	if v == 0 {
		wc := ws.New(c, plainFrames, s.cfg.WriteTimeout, 2*s.cfg.HeartbeatInterval, s.cfg.WSMaxFrameSize)
		cn.Attach(wc)
		s.begin(cn, a.users, a.resume)
		// Setting up grew this goroutine's stack; the socket's reader
		// starts anew with a small one, and this one's is freed (see
		// serveSSE).
		go s.readWebSocket(cn, wc, func() (client.Disconnect, error) { return readPlain(wc) })
		return
	}
	p := s.newPhoenixSocket(cn, v)
	wc := ws.New(c, p.frames, s.cfg.WriteTimeout, 2*s.cfg.HeartbeatInterval, s.cfg.WSMaxFrameSize)
	p.wc, p.w = wc, wsReplies{wc}
	cn.Attach(wc)
	cn.Release(nil, 0) // channels hold and release their user on each join
	go s.readWebSocket(cn, wc, p.serve)
}

// readWebSocket is the socket's reader, read, until the client goes or
// breaks the protocol; then it closes the connection.
func (s *Server) readWebSocket(cn *conn, wc *ws.Conn, read func() (client.Disconnect, error)) {
	reason, readErr := disconnectPanic, error(nil)
	defer func() {
		// A bug in reading one client's frames must not take the edge down.
		if p := recover(); p != nil {
			s.log.Error("WebSocket reader panicked", "transport", cn.Transport, "user", cn.Session.User, "panic", p, "stack", string(debug.Stack()))
			wc.CloseWith(disconnectPanic)
		}
		s.close(cn, reason)
		wc.CloseAfterRead(readErr)
	}()
	reason, readErr = read()
}

// readPlain reads what a plain socket's client sends, which is only pongs
// and its close frame that matter; messages are dropped (after the checks
// of ws.Conn.Discard: the frame budget, UTF-8).
func readPlain(wc *ws.Conn) (client.Disconnect, error) {
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
func readFailed(wc *ws.Conn, err error) client.Disconnect {
	var ne net.Error
	switch {
	case errors.Is(err, ws.ErrFlood):
		wc.CloseWith(disconnectFlood)
		return disconnectFlood
	case errors.Is(err, ws.ErrInvalidUTF8):
		wc.CloseWith(disconnectInvalidUTF8)
		return disconnectInvalidUTF8
	case errors.Is(err, ws.ErrBinary):
		wc.CloseWith(disconnectBinary)
		return disconnectBinary
	case errors.Is(err, websocket.ErrReadLimit):
		return disconnectTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return disconnectMissedPongs
	}
	return client.DisconnectClientGone
}
