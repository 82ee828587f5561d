package proxy

import (
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/route"
)

// newClient is the upstream client. Its timeout is an idle timeout (see
// idleConn) rather than fasthttp's ReadTimeout, which would also bound the
// whole of a streamed answer.
// Every connection passes guard's DialCheck on the address it resolved
// to, so a route's host name that resolves to a refused address now
// (rebound since the route was checked) is never connected to.
func newClient(timeout time.Duration, guard *route.Guard) *fasthttp.Client {
	return &fasthttp.Client{
		// Pass the answer on as it arrives instead of reading it whole.
		StreamResponseBody:       true,
		NoDefaultUserAgentHeader: true,
		// The path was normalised for matching; send it as matched.
		DisablePathNormalizing: true,
		ReadBufferSize:         16 << 10, // the largest upstream response header
		WriteBufferSize:        16 << 10,
		MaxConnsPerHost:        1024,
		MaxConnWaitTimeout:     timeout,
		MaxIdleConnDuration:    30 * time.Second,
		// One more attempt, on a new connection, only when the upstream
		// closed a kept-alive connection without answering: it has not
		// seen the request. Timeouts are not retried.
		MaxIdemponentCallAttempts: 2,
		RetryIfErr: func(_ *fasthttp.Request, _ int, err error) (bool, bool) {
			return false, errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed)
		},
		Dial: func(addr string) (net.Conn, error) {
			dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: guard.Control(addr)}
			c, err := dialer.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, timeout: timeout}, nil
		},
		// Errors about a malformed upstream answer quote none of it.
		ConfigureClient: func(hc *fasthttp.HostClient) error {
			hc.SecureErrorLogMessage = true
			return nil
		},
	}
}

// idleConn fails a read or write that waits longer than timeout for the
// upstream: for its answer to begin, and then for each next piece of it.
// That is RIG's PROXY_RECV_TIMEOUT, and a streamed answer that keeps
// coming is never cut. fasthttp's own deadlines are ignored.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *idleConn) SetDeadline(time.Time) error      { return nil }
func (c *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (c *idleConn) SetWriteDeadline(time.Time) error { return nil }

// Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and
// are not forwarded, nor are the headers Connection names. Expect is
// answered by the edge, which has the body already.
var (
	hopRequest  = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Te", "Transfer-Encoding", "Upgrade", "Expect"}
	hopResponse = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Upgrade"}
	// fasthttp keeps these apart from its list of headers; none is hop-by-hop
	// except Trailer, which is removed on its own.
	specialRequest  = map[string]bool{"Host": true, "Content-Length": true, "Content-Type": true, "User-Agent": true, "Trailer": true, "Cookie": true}
	specialResponse = map[string]bool{"Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Server": true, "Set-Cookie": true, "Trailer": true}
)

type header interface {
	All() iter.Seq2[[]byte, []byte]
	Peek(key string) []byte
	Del(key string)
	Add(key, value string)
}

// dropHopHeaders removes the hop-by-hop headers and those Connection names,
// keeping the others in order. fasthttp's Del fills the gap with the last
// header, which would swap two values of a repeated header; so when there is
// something to remove, the list is written anew.
func dropHopHeaders(h header, hop []string, special map[string]bool) {
	drop := make(map[string]bool, len(hop)+2)
	for _, name := range hop {
		drop[name] = true
	}
	for _, name := range strings.Split(string(h.Peek(fiber.HeaderConnection)), ",") {
		if name = strings.TrimSpace(name); name != "" {
			drop[http.CanonicalHeaderKey(name)] = true
		}
	}
	type field struct{ key, value string }
	var keep []field
	var all []string
	found := false
	for k, v := range h.All() {
		key := string(k)
		if special[key] {
			continue
		}
		all = append(all, key)
		if drop[key] {
			found = true
			continue
		}
		keep = append(keep, field{key, string(v)})
	}
	if !found {
		return
	}
	for _, key := range all {
		h.Del(key)
	}
	for _, f := range keep {
		h.Add(f.key, f.value)
	}
}

// dropTrailers removes the fields of a chunked request's trailer section,
// and the Trailer header that names them. They came after the body, unseen
// by whatever checked the head; removing only the Trailer header would
// make fasthttp move them into the head.
func dropTrailers(h *fasthttp.RequestHeader) {
	count := map[string]int{}
	var names []string
	for _, line := range strings.Split(string(h.TrailerHeader()), "\r\n") {
		if k, _, ok := strings.Cut(line, ":"); ok {
			if count[k] == 0 {
				names = append(names, k)
			}
			count[k]++
		}
	}
	for _, k := range names {
		// PeekAll lists the head's values before the trailer's.
		all := h.PeekAll(k)
		head := make([]string, 0, len(all))
		for _, v := range all[:max(len(all)-count[k], 0)] {
			head = append(head, string(v))
		}
		h.Del(k)
		for _, v := range head {
			h.Add(k, v)
		}
	}
	if len(h.Peek(fiber.HeaderTrailer)) > 0 {
		h.Del(fiber.HeaderTrailer)
	}
}

// forward sends the request upstream (fasthttp's client, which streams the
// answer) and leaves the upstream's answer as the response, its body
// written by the server as it arrives.
func (g *Gateway) forward(c *fiber.Ctx, m *route.Match, v *verified) error {
	target := m.Base + (&url.URL{Path: m.Path}).EscapedPath()
	if q := setIdentity(c, m.API, v); q != "" {
		target += "?" + q
	}
	req, resp := c.Request(), c.Response()
	clientClose := req.Header.ConnectionClose()
	setForwarded(c, g.trustedPeer(c))
	dropHopHeaders(&req.Header, hopRequest, specialRequest)
	dropTrailers(&req.Header)
	if m.Endpoint.TransformRequestHeaders && m.API.VersionData.Default.TransformRequestHeaders != nil {
		for k, v := range m.API.VersionData.Default.TransformRequestHeaders.AddHeaders {
			req.Header.Set(k, v)
		}
	}
	// The Host header becomes the upstream's, as in RIG.
	req.SetRequestURI(target)
	// fasthttp takes the URI of a request that came over TLS (TLS_CERT_FILE)
	// for https, whatever it says: the upstream's scheme is the target's.
	if scheme, _, ok := strings.Cut(m.Base, "://"); ok {
		req.URI().SetScheme(scheme)
	}
	start := time.Now()
	if err := g.client.Do(req, resp); err != nil {
		status, msg := fiber.StatusBadGateway, msgBadGateway
		if timeout(err) {
			status, msg = fiber.StatusGatewayTimeout, msgUpstreamSlow
		}
		g.log.Warn("upstream request failed", "api", m.API.ID, "endpoint", m.Endpoint.ID, "method", c.Method(),
			"upstream", upstream(m), "path", m.Path, "status", status, "after", time.Since(start).Round(time.Millisecond).String(), "err", redact(m, err))
		resp.Reset()
		if clientClose {
			resp.SetConnectionClose()
		}
		return reply(c, status, msg)
	}
	dropHopHeaders(&resp.Header, hopResponse, specialResponse)
	if clientClose {
		resp.SetConnectionClose()
	}
	g.log.Debug("proxied", "api", m.API.ID, "endpoint", m.Endpoint.ID, "method", c.Method(), "upstream", upstream(m),
		"path", m.Path, "status", resp.StatusCode(), "headers_after", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// setForwarded tells the upstream who asked: X-Forwarded-For gets the
// client's address appended; X-Forwarded-Proto and -Host are set unless a
// load balancer in front of the edge already did; Forwarded (RFC 7239, what
// RIG sent) says the same. Only a trusted proxy's are kept: a client's own
// are replaced, since the edge would otherwise vouch for them.
func setForwarded(c *fiber.Ctx, trusted bool) {
	h := &c.Request().Header
	if !trusted {
		for _, name := range []string{fiber.HeaderXForwardedFor, fiber.HeaderXForwardedProto, fiber.HeaderXForwardedHost, "Forwarded"} {
			h.Del(name)
		}
		// X-Forwarded-Port, -Prefix, ...: deleted after the walk, since
		// Del reorders the list.
		var other []string
		for k := range h.All() {
			if len(k) > len(xForwarded) && strings.EqualFold(string(k[:len(xForwarded)]), xForwarded) {
				other = append(other, string(k))
			}
		}
		for _, name := range other {
			h.Del(name)
		}
	}
	ip := c.IP()
	proto := c.Protocol()
	host := string(h.Host())
	if prior := strings.TrimSpace(string(h.Peek(fiber.HeaderXForwardedFor))); prior != "" {
		h.Set(fiber.HeaderXForwardedFor, prior+", "+ip)
	} else {
		h.Set(fiber.HeaderXForwardedFor, ip)
	}
	if len(h.Peek(fiber.HeaderXForwardedProto)) == 0 {
		h.Set(fiber.HeaderXForwardedProto, proto)
	}
	if len(h.Peek(fiber.HeaderXForwardedHost)) == 0 && host != "" {
		h.Set(fiber.HeaderXForwardedHost, host)
	}
	node := ip
	if strings.Contains(ip, ":") {
		node = `"[` + ip + `]"`
	}
	fwd := "for=" + node + ";proto=" + proto
	if host != "" && !strings.ContainsAny(host, "\";,") {
		fwd += `;host="` + host + `"`
	}
	if prior := strings.TrimSpace(string(h.Peek("Forwarded"))); prior != "" {
		fwd = prior + ", " + fwd
	}
	h.Set("Forwarded", fwd)
}

const xForwarded = "X-Forwarded-"

// timeout reports whether err means the upstream was too slow (504) rather
// than unreachable or broken (502).
func timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// upstream names a match's upstream for the log: its URL, or for use_env
// the variable's name, never its value.
func upstream(m *route.Match) string {
	if m.API.Proxy.UseEnv {
		return "$" + m.API.Proxy.TargetURL
	}
	return m.Base
}

// redact is err for the log. For a use_env route only its kind is told:
// the error of a dial quotes the host and address, which are the value of
// the variable.
func redact(m *route.Match, err error) string {
	if !m.API.Proxy.UseEnv {
		return err.Error()
	}
	switch {
	case errors.Is(err, route.ErrRefused):
		return "the target (from $" + m.API.Proxy.TargetURL + ") is refused by the route rules: a local address or a stack port"
	case timeout(err):
		return "timeout"
	}
	return "connection to the target (from $" + m.API.Proxy.TargetURL + ") failed"
}
