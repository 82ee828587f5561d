package edge

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/sse"
)

// handleSSE admits the request, then takes the connection over from
// fasthttp: a hijacked connection sees the client leave at once, and it is
// not subject to the server's write timeout or its shutdown wait.
func (s *Server) handleSSE(c *fiber.Ctx) error {
	if err := s.checkOrigin(c); err != nil {
		return err
	}
	extra := s.corsHeaders(c)
	s.setCORS(c) // so that a page can read a refusal's JSON error
	a, err := s.admit(c)
	if err != nil {
		return err
	}
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(hc net.Conn) {
		// Own the raw connection and return, so fasthttp frees the request
		// context and read buffer instead of holding them for the stream.
		go s.serveSSE(rawConn(hc), a, extra)
	})
	return nil
}

// rawConn unwraps fasthttp's hijacked connection. Bytes the client sent
// after its request (there should be none on an SSE stream) are dropped.
func rawConn(hc net.Conn) net.Conn {
	if u, ok := hc.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return hc
}

func (s *Server) serveSSE(nc net.Conn, a *admission, extra string) {
	// Counted here, on the connection the edge now owns, so that whatever
	// becomes of it, the connection's end gives its slots back.
	if err := s.hold(a); err != nil {
		s.log.Debug("request refused", "path", "/socket/sse", "status", err.Status, "err", err.Message, "remote", a.remote)
		writeRawError(nc, err, extra)
		nc.Close()
		return
	}
	cn, err := s.open(a, "sse")
	if err != nil {
		s.log.Warn("SSE connection refused after upgrade", "err", err)
		writeRawError(nc, unavailable(err), extra)
		nc.Close()
		return
	}
	_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := nc.Write(sse.Header(extra)); err != nil {
		s.close(cn, client.DisconnectWriteFailed)
		return
	}
	// Spread reconnects of many clients over a few seconds.
	retry := time.Second + rand.N(2*time.Second)
	cn.Attach(sse.NewConn(nc, s.cfg.WriteTimeout, retry))
	s.begin(cn, a.users, a.resume)
	// Setting up grew this goroutine's stack (JWT, NATS, history, logging);
	// an idle stream's reader needs a fraction of it. A new goroutine
	// starts with a small stack, and this one's is freed: a few KiB less
	// for every connection.
	go s.readSSE(nc, cn)
}

// readSSE waits for the client to go, then closes the connection.
func (s *Server) readSSE(nc net.Conn, cn *conn) {
	readUntilClosed(nc)
	s.close(cn, client.DisconnectClientGone)
}

// readUntilClosed returns when the peer closes the connection or the
// connection is closed here. Anything the client sends is discarded.
func readUntilClosed(nc net.Conn) {
	var buf [64]byte
	for {
		if _, err := nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// writeRawError answers a request whose connection the edge took over
// before its stream started; extra is more header lines (CORS).
func writeRawError(nc net.Conn, e *api.Error, extra string) {
	body := `{"error":` + quote(e.Message) + `}`
	if e.RetryAfter > 0 {
		extra += "Retry-After: " + strconv.Itoa(e.RetryAfter) + "\r\n"
	}
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte("HTTP/1.1 " + strconv.Itoa(e.Status) + " " + fiberStatus(e.Status) + "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" + extra + "\r\n" + body))
}

func fiberStatus(code int) string { return utils.StatusMessage(code) }

// sanitizeHeader drops bytes that could end a header line early.
func sanitizeHeader(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}
