// Package edge is the public gateway: it admits client connections (SSE,
// WebSocket, long-polling), subscribes to their users' NATS subjects, and
// streams each message to every connection of its user.
package edge

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/proxy"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/run"
	"github.com/rig-go/rig/internal/stats"
)

// Server is one edge node.
type Server struct {
	cfg      *config.Edge
	log      *slog.Logger
	broker   *broker.Broker
	verifier *auth.Verifier
	hub      *hub.Hub[*client.Client]
	history  *history.Reader
	subs     *subscriber
	app      *fiber.App
	gateway  *proxy.Gateway
	metrics  *metrics.Edge
	counters client.Counters // every client's, read by metrics

	bucket    *blacklist.Bucket
	blacklist *blacklist.Set      // admission checks it; not loaded means not ready
	presence  *presence.Responder // nil if it could not subscribe
	stats     *stats.Responder    // nil if it could not subscribe

	gate     *gate        // the public listener
	opsLn    net.Listener // the operations port; nil: none
	limits   *limits      // per client address, user and session
	draining atomic.Bool

	lp *lpSessions // phoenix.js long-poll sessions served here
}

// Listeners are the ports an edge serves, opened by its caller so that a
// port in use stops the binary at start, and ":0" gives a port the caller
// can learn (Addr).
type Listeners struct {
	// Public is INBOUND_PORT's listener. The edge closes it at once and
	// listens on its address again whenever it is ready (see gate); nil
	// listens on INBOUND_PORT then.
	Public net.Listener
	// Ops is METRICS_PORT's listener; nil: no operations port.
	Ops net.Listener
}

// New builds an edge on an open broker; Run serves it. v verifies every
// token the edge sees: connections' and the API gateway's (see auth.New).
func New(cfg *config.Edge, log *slog.Logger, b *broker.Broker, ln Listeners, v *auth.Verifier) *Server {
	s := &Server{
		cfg:      cfg,
		log:      log,
		broker:   b,
		verifier: v,
		history:  history.NewReader(b.JS, cfg.HistoryReadConcurrency),
		opsLn:    ln.Ops,
		lp:       newLPSessions(longPollSecret(cfg, log)),
	}
	s.metrics = metrics.NewEdge(b.Connected, metrics.ClientCounters{
		Delivered:  s.counters.Delivered.Load,
		Dropped:    s.counters.Dropped.Load,
		SlowClosed: s.counters.SlowClosed.Load,
	})
	s.metrics.HistoryReads(s.history.InFlight, s.history.Waiting)
	s.subs = newSubscriber(b.NC, s.history, log, s.metrics)
	b.OnReconnect(s.subs.resyncAll)
	b.OnSlowConsumer(func(sub *nats.Subscription) {
		s.metrics.SlowConsumer.Inc()
		if user, err := rig.UserFromSubject(strings.TrimPrefix(sub.Subject, rig.LiveSubjectPrefix)); err == nil {
			s.subs.resyncUser(user)
		}
	})
	s.hub = hub.New[*client.Client](s.subs)
	s.subs.hub = s.hub
	s.subs.sink = hubSink{s.hub} // here, not in Run: tests put a sink in between first
	s.limits = newLimits(cfg.Limits, s.metrics)
	s.gateway = proxy.New(cfg.Proxy, s.verifier, log)
	s.gateway.SetTrustedPeer(s.trustedPeer)
	// Its own ports, as opened (a test's may differ from the settings).
	s.gateway.RefusePorts(listenerPort(ln.Public), listenerPort(ln.Ops))
	s.gateway.SetClientIP(func(c *fiber.Ctx) string {
		addr, _, _ := s.limits.client(c)
		return remoteString(addr)
	})
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		// fasthttp applies ReadTimeout from the connection's start (or a
		// later request's first byte) to the end of the request head: a
		// connection that sends nothing, or drips its head, is closed
		// then. The body gets its own, longer, deadline (below).
		ReadTimeout:    cfg.Limits.HeaderTimeout,
		IdleTimeout:    2 * time.Minute,
		ReadBufferSize: 8 << 10,
		ErrorHandler:   api.ErrorHandler(log),
	})
	// Streams own their connections after the upgrade: fasthttp must not
	// close them, nor keep its per-request buffers for them.
	s.app.Server().KeepHijackedConns = true
	// A malformed request's error must not quote it: its query or header
	// may hold a token, and the error is logged and answered.
	s.app.Server().SecureErrorLogMessage = true
	s.app.Server().HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		return fasthttp.RequestConfig{ReadTimeout: bodyTimeout}
	}
	s.routes()

	s.bucket = blacklist.NewBucket(b, log)
	s.blacklist = blacklist.NewSet(s.bucket, b.NC, log, s.killSession)
	// The gateway refuses blacklisted sessions too (RIG forgot to).
	s.gateway.SetRevocations(revocations{s.blacklist})
	s.setRoutes(nil) // the route file's, until the cluster's are loaded
	resp, err := presence.NewResponder(b.NC, cfg.EdgeID, presence.DefaultAnnounceInterval, presenceSource{s}, log)
	if err != nil {
		log.Error("presence queries will not be answered", "err", err)
	}
	s.presence = resp
	sr, err := stats.NewResponder(b.NC, s.statsSnapshot, log)
	if err != nil {
		log.Error("the console's charts will show this edge as a gap", "err", err)
	}
	s.stats = sr

	maxConns, nofile := maxConnections(cfg.Limits.MaxConnections)
	l := cfg.Limits
	log.Info("connection limits", "max_connections", maxConns, "derived", l.MaxConnections == 0, "open_file_limit", nofile,
		"per_ip", l.PerIP, "per_minute", l.PerMinute, "per_user", l.PerUser, "per_session", l.PerSession,
		"trusted_proxies", l.TrustedProxiesSet, "header_timeout", l.HeaderTimeout.String())
	if room := nofile - fileReserve(nofile); l.MaxConnections > room {
		log.Warn("MAX_CONNECTIONS leaves less than the reserve of the open-file limit: a flood can exhaust file descriptors (the edge then pauses accepting)",
			"max_connections", maxConns, "open_file_limit", nofile, "reserve", fileReserve(nofile))
	}
	if cfg.TLS.Pair != nil {
		s.logTLS()
	}
	s.gate = newGate(":"+strconv.Itoa(cfg.InboundPort), ln.Public, log, s.metrics, maxConns, s.limits.perIP, s.limits.trusted)
	s.metrics.TCP(s.gate.Conns, maxConns)
	return s
}

// longPollSecret is what the long-poll tokens' key is derived from:
// PHOENIX_LONGPOLL_SECRET, else JWT_SECRET_KEY (every edge has the same).
// An edge with neither (its tokens verified by public keys only) makes
// its own: its sessions cannot move to another edge, whose 410 makes
// phoenix.js open a new session and join again with its params.
func longPollSecret(cfg *config.Edge, log *slog.Logger) []byte {
	if cfg.PhoenixLongPoll.Secret != "" {
		return []byte(cfg.PhoenixLongPoll.Secret)
	}
	if cfg.JWT.SecretKey != "" {
		return []byte(cfg.JWT.SecretKey)
	}
	log.Warn("neither PHOENIX_LONGPOLL_SECRET nor JWT_SECRET_KEY is set: Phoenix long-poll sessions stay on the edge they start on (set PHOENIX_LONGPOLL_SECRET, the same on every edge)")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return key
}

// Addr returns the public port's address, open or not.
func (s *Server) Addr() net.Addr { return s.gate.Addr() }

// OpsAddr returns the operations port's address (nil: none).
func (s *Server) OpsAddr() net.Addr {
	if s.opsLn == nil {
		return nil
	}
	return s.opsLn.Addr()
}

// Run serves until ctx ends, then stops in the order that keeps clients
// served: first the public port drains (see drain), then the operations
// port closes, then the background work (blacklist, presence, the NATS
// subscriptions, heartbeats, the gateway's routes) stops.
func (s *Server) Run(ctx context.Context) error {
	return run.Ordered(ctx, s.serveClients, s.serveOps, s.background)
}

// background is the work that serving needs, until ctx ends.
func (s *Server) background(ctx context.Context) error {
	parts := []run.Func{
		s.bucket.Run,
		s.blacklist.Run,
		s.keepGate,
		s.watchAPIs,
		until(s.gateway.Run),
		until(s.heartbeats),
		until(s.limits.sweep),
		func(ctx context.Context) error {
			var wg sync.WaitGroup
			s.subs.start(ctx, &wg)
			wg.Wait()
			return nil
		},
	}
	if s.presence != nil {
		parts = append(parts, s.presence.Run)
	}
	if s.stats != nil {
		parts = append(parts, s.stats.Run)
	}
	if s.cfg.TLS.Pair != nil {
		parts = append(parts, s.watchTLS)
	}
	defer s.gateway.Close()
	return run.All(ctx, parts...)
}

// until makes a loop that ends with its context a run.Func.
func until(loop func(context.Context)) run.Func {
	return func(ctx context.Context) error {
		loop(ctx)
		return nil
	}
}

// serveClients accepts connections on the public port (INBOUND_PORT) until
// ctx ends, then drains. The port is open only while the edge is ready
// (see gate).
func (s *Server) serveClients(ctx context.Context) error {
	var ln net.Listener = s.gate
	if s.cfg.TLS.Pair != nil {
		ln = newTLSListener(s.gate, s.cfg.TLS.Pair, s.cfg.Limits.HeaderTimeout, s.log)
	}
	served := make(chan error, 1)
	go func() { served <- s.app.Listener(ln) }()
	select {
	case err := <-served:
		return stopped("public port", err)
	case <-ctx.Done():
	}
	s.log.Info("edge stopping", "drain_timeout", s.cfg.DrainTimeout.String())
	// The drain's own deadline: ctx has ended.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout+shutdownMargin)
	defer cancel()
	if err := s.drain(dctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served
	return nil
}

// stopped is the error of a server that stopped serving before it was
// asked to.
func stopped(port string, err error) error {
	if err == nil {
		err = errors.New("stopped serving")
	}
	return fmt.Errorf("%s: %w", port, err)
}

// shutdownMargin is how long past DRAIN_TIMEOUT the closing of what is left
// may take before the edge stops regardless.
const shutdownMargin = 5 * time.Second

// bodyTimeout bounds the reading of a request body (through the API
// gateway: up to 4 MiB), once its head is in.
const bodyTimeout = 30 * time.Second

// A draining edge tells drainBatch clients to reconnect, then pauses.
const (
	drainBatch = 500
	drainPause = 50 * time.Millisecond
)

// drain stops accepting, tells every client to reconnect elsewhere, waits
// up to the drain timeout for them to go, and closes the rest. fasthttp's
// Shutdown waits for every open request, streams included, for ever: it
// runs meanwhile, and returns once the streams are closed.
func (s *Server) drain(ctx context.Context) error {
	s.draining.Store(true)
	// Stop accepting first so reconnecting clients land on another edge.
	s.gate.shut()
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.app.ShutdownWithContext(ctx) }()

	// Tell clients to reconnect elsewhere, a batch at a time, so that the
	// other edges are not hit by every client in the same instant.
	reconnect := &rig.Event{Kind: rig.KindReconnect, Data: []byte(`{"reason":"edge restarting"}`)}
	told := 0
	s.hub.Each(func(c *client.Client) {
		c.SendFinal(reconnect, client.DisconnectDraining)
		if told++; told%drainBatch == 0 {
			time.Sleep(drainPause)
		}
	})
	drain, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	if !waitFor(drain, func() bool { return s.hub.Len() == 0 }) {
		n := s.hub.Len()
		s.hub.Each(func(c *client.Client) { c.Close(client.DisconnectShutdown) })
		s.log.Warn("drain timeout: closed remaining connections", "connections", n)
	}
	waitFor(ctx, func() bool { return s.hub.Len() == 0 })
	err := <-shutdownDone
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // the long-lived requests were closed above
	}
	return err
}

// waitFor polls cond until it holds (true) or ctx ends (false).
func waitFor(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
	return true
}
