// Package proxy is the edge's API gateway (RIG's "forward /"): it looks a
// request up in the route table, applies the rate limit and the route's
// token check, and forwards it upstream with fasthttp's client, passing the
// answer back as it arrives.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/limit"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/route"
)

// Revocations says whether a session (a token's jti) has been blacklisted.
type Revocations interface {
	Revoked(jti string) bool
}

// RIG's messages for the gateway's own answers, which (unlike the rest of
// the API's {"error": ...}) are {"message": ...}.
const (
	msgNoRoute       = "Route is not available"
	msgNoMethod      = "Method not allowed."
	msgUnauthorized  = "Missing or invalid token"
	msgTooMany       = "Too many requests."
	msgBadGateway    = "Bad gateway."
	msgUpstreamSlow  = "Gateway timeout."
	msgBadHeader     = "Invalid header name."
	maxTokensChecked = 4 // per request, so a request cannot make the edge verify without bound
)

// Gateway forwards requests by the current route table.
type Gateway struct {
	log      *slog.Logger
	verifier *auth.Verifier
	client   *fasthttp.Client
	limiter  *limit.Rate // nil: no rate limit
	perIP    bool        // a bucket per API and client address, else per API
	sweep    time.Duration
	// clientIP is the client's address for per-IP buckets: the peer's, or
	// the one a trusted proxy forwarded (see SetClientIP).
	clientIP func(*fiber.Ctx) string
	// trustedPeer says whether the request's peer is a trusted proxy,
	// whose X-Forwarded-* and Forwarded are kept (see SetTrustedPeer).
	trustedPeer func(*fiber.Ctx) bool
	// guard is the rule for targets; the client's dialer applies it.
	guard   *route.Guard
	table   atomic.Pointer[route.Table]
	revoked atomic.Pointer[Revocations]
}

// New returns a gateway with an empty route table (see SetRoutes).
func New(cfg config.Proxy, verifier *auth.Verifier, log *slog.Logger) *Gateway {
	guard := cfg.Guard
	guard.Ports = slices.Clone(guard.Ports)
	g := &Gateway{
		log:      log.With("component", "proxy"),
		verifier: verifier,
		guard:    &guard,
		client:   newClient(cfg.RecvTimeout, &guard),
		clientIP: (*fiber.Ctx).IP,
		// Until told otherwise no peer is trusted: what a client says about
		// where it came from is not passed on as the edge's word.
		trustedPeer: func(*fiber.Ctx) bool { return false },
	}
	if rl := cfg.RateLimit; rl.Enabled {
		g.limiter = limit.NewRate(float64(rl.AvgRatePerSec), rl.BurstSize)
		g.perIP = rl.PerIP
		g.sweep = rl.SweepInterval
	}
	t, _ := route.NewTable(nil, nil)
	g.table.Store(t)
	return g
}

// SetClientIP sets how the per-IP rate limit finds a request's client
// address (default: the peer's). Call it before serving.
func (g *Gateway) SetClientIP(fn func(*fiber.Ctx) string) { g.clientIP = fn }

// SetTrustedPeer sets how the gateway tells a trusted proxy (a load
// balancer, TRUSTED_PROXIES) from a client: only a trusted proxy's
// X-Forwarded-* and Forwarded reach the upstream; a client's are replaced.
// Call it before serving.
func (g *Gateway) SetTrustedPeer(fn func(*fiber.Ctx) bool) { g.trustedPeer = fn }

// RefusePorts adds ports (those the edge listens on) to the ports targets
// may not be on. Call it before serving.
func (g *Gateway) RefusePorts(ports ...int) {
	for _, p := range ports {
		if p != 0 && !slices.Contains(g.guard.Ports, p) {
			g.guard.Ports = append(g.guard.Ports, p)
		}
	}
}

// Guard returns the rules targets follow, for checking routes before
// they are served. It does not change after serving begins.
func (g *Gateway) Guard() *route.Guard { return g.guard }

// SetRoutes swaps in a new route table; requests in flight keep the old one.
func (g *Gateway) SetRoutes(t *route.Table) { g.table.Store(t) }

// Routes returns the current route table.
func (g *Gateway) Routes() *route.Table { return g.table.Load() }

// SetRevocations makes secured routes refuse blacklisted sessions. Until
// it is called (or with nil), no session is revoked.
func (g *Gateway) SetRevocations(r Revocations) {
	if r == nil {
		g.revoked.Store(nil)
		return
	}
	g.revoked.Store(&r)
}

// Run drops idle rate-limit buckets every sweep interval until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	if g.limiter == nil || g.sweep <= 0 {
		return
	}
	t := time.NewTicker(g.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := g.limiter.Sweep(now); n > 0 {
				g.log.Debug("rate-limit buckets dropped", "dropped", n, "left", g.limiter.Len())
			}
		}
	}
}

// Close closes idle upstream connections.
func (g *Gateway) Close() { g.client.CloseIdleConnections() }

// Handle is the fiber handler for every request the edge has no endpoint of
// its own for.
func (g *Gateway) Handle(c *fiber.Ctx) error {
	method := c.Method()
	// The decoded, normalised path: "/a/../b" cannot reach a route that
	// "/b" would not.
	path := string(c.Context().URI().Path())
	m, allow := g.table.Load().Lookup(method, path)
	if m == nil {
		if len(allow) > 0 {
			c.Set(fiber.HeaderAllow, strings.Join(allow, ", "))
			return g.refuse(c, fiber.StatusMethodNotAllowed, msgNoMethod, "no endpoint for this method", nil)
		}
		return g.refuse(c, fiber.StatusNotFound, msgNoRoute, "no route", nil)
	}
	if g.limiter != nil && !g.limiter.Allow(g.bucket(c, m.API.ID), time.Now()) {
		c.Set(fiber.HeaderRetryAfter, "1")
		return g.refuse(c, fiber.StatusTooManyRequests, msgTooMany, "rate limit", m)
	}
	if name, ok := invalidHeaderName(&c.Request().Header); !ok {
		return g.refuse(c, fiber.StatusBadRequest, msgBadHeader, fmt.Sprintf("invalid header name %q", name), m)
	}
	var id *verified
	if m.API.AuthType == route.AuthJWT && m.Endpoint.Secured {
		v, err := g.authenticate(c, m.API)
		if err != nil {
			c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
			return g.refuse(c, fiber.StatusUnauthorized, msgUnauthorized, err.Error(), m)
		}
		id = v
	}
	if m.BaseErr != nil {
		g.log.Warn("route has no upstream on this edge", "api", m.API.ID, "endpoint", m.Endpoint.ID, "err", m.BaseErr)
		return reply(c, fiber.StatusBadGateway, msgBadGateway)
	}
	return g.forward(c, m, id)
}

// bucket names the rate-limit bucket of a request to api.
func (g *Gateway) bucket(c *fiber.Ctx, api string) string {
	if !g.perIP {
		return api
	}
	return api + "\x00" + g.clientIP(c)
}

// refuse answers a request the gateway does not forward, logged once:
// like the API's other refusals at info, except the ones that come in
// floods (paths nobody routes, requests over the rate limit) at debug.
func (g *Gateway) refuse(c *fiber.Ctx, status int, msg, why string, m *route.Match) error {
	attrs := []any{"method", c.Method(), "path", c.Path(), "status", status, "reason", why, "remote", c.IP()}
	if m != nil {
		attrs = append(attrs, "api", m.API.ID, "endpoint", m.Endpoint.ID)
	}
	level := slog.LevelInfo
	if status == fiber.StatusNotFound || status == fiber.StatusTooManyRequests {
		level = slog.LevelDebug
	}
	g.log.Log(context.Background(), level, "proxy request refused", attrs...)
	return reply(c, status, msg)
}

// verified is what the gateway checked on a secured endpoint: the session
// and where its token was, so that only that token goes upstream.
type verified struct {
	session *rig.Session
	header  string // the header line that held the token, as sent; "" if the query did
	token   string
}

// authenticate accepts a request carrying at least one valid token, from
// the API's header (with or without "Bearer ") or query parameter (which
// may hold several, comma-separated, as in RIG), whose session is not
// blacklisted. It returns the first such token.
func (g *Gateway) authenticate(c *fiber.Ctx, a *route.API) (*verified, error) {
	type candidate struct{ header, token string }
	var tokens []candidate
	if a.Auth.UseHeader {
		for _, v := range c.Request().Header.PeekAll(a.Auth.HeaderName) {
			tokens = append(tokens, candidate{string(v), bearer(string(v))})
		}
	}
	if a.Auth.UseQuery {
		for _, v := range c.Context().QueryArgs().PeekMulti(a.Auth.QueryName) {
			for _, t := range strings.Split(string(v), ",") {
				tokens = append(tokens, candidate{"", t})
			}
		}
	}
	err := errors.New("no token")
	checked := 0
	for _, cand := range tokens {
		t := strings.TrimSpace(cand.token)
		if t == "" {
			continue
		}
		if checked++; checked > maxTokensChecked {
			break
		}
		s, verr := g.verifier.Verify(t)
		if verr != nil {
			err = verr
			continue
		}
		if r := g.revoked.Load(); r != nil && s.ID != "" && (*r).Revoked(s.ID) {
			err = fmt.Errorf("session %q is blacklisted", s.ID)
			continue
		}
		return &verified{session: s, header: cand.header, token: t}, nil
	}
	return nil, err
}

// bearer strips an optional "Bearer " scheme.
func bearer(v string) string {
	if t, ok := auth.BearerToken(v); ok {
		return t
	}
	return strings.TrimSpace(v)
}

type message struct {
	Message string `json:"message"`
}

// reply writes one of the gateway's own answers in RIG's shape.
func reply(c *fiber.Ctx, status int, msg string) error {
	b, _ := json.Marshal(message{Message: msg})
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(b)
}
