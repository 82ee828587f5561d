// Package ingest is the back-end API: it checks each posted message, picks
// the user it is for, and publishes it to that user's NATS subject, answering
// 202 only once the JetStream history stream has stored it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/pprof"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/console"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/route"
	"github.com/rig-go/rig/internal/run"
	"github.com/rig-go/rig/internal/stats"
)

// maxInFlight bounds JetStream publishes waiting for their ack.
const maxInFlight = 8192

// Server is the ingest API.
type Server struct {
	cfg    *config.Ingest
	log    *slog.Logger
	broker *broker.Broker
	js     jetstream.JetStream
	acks   *acks // reply subscriptions that single messages wait on
	// leader reads a stored message back from the stream's leader, which
	// has every acknowledged message (the jetstream package's GetMsg would
	// use a direct get, which a replica that lags may answer).
	leader nats.JetStreamContext
	app    *fiber.App
	// metrics is what GET /metrics serves.
	metrics *metrics.Ingest

	bucket   *blacklist.Bucket
	presence *presence.Gatherer
	stats    *stats.Sampler // the console's charts (GET /v1/admin/metrics)
	verifier *auth.Verifier // nil without any JWT key setting
	apis     *broker.APIs   // the API gateway's routes (/v1/apis)
	quorum   *quorum        // whether JetStream can store (readiness)
	ln       net.Listener   // API_PORT; nil: tests drive App
	tokens   *apiTokens     // API_TOKENS; nil: none, the API is open
	guard    route.Guard    // what a posted route's target may be
}

// New builds the ingest API on an open broker, to serve on ln (nil: none;
// tests drive App). Run runs it. v, nil without any JWT key setting,
// verifies the token that may come with DELETE /v1/users/<user>/sessions/<jti>.
func New(cfg *config.Ingest, log *slog.Logger, b *broker.Broker, ln net.Listener, v *auth.Verifier) (*Server, error) {
	js, err := jetstream.New(b.NC,
		jetstream.WithPublishAsyncMaxPending(maxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
	)
	if err != nil {
		return nil, err
	}
	leader, err := b.NC.JetStream()
	if err != nil {
		return nil, err
	}
	g, err := presence.NewGatherer(b.NC, cfg.PresenceTimeout, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, broker: b, js: js, acks: &acks{nc: b.NC}, leader: leader, presence: g,
		bucket: blacklist.NewBucket(b, log), ln: ln}
	s.metrics = metrics.NewIngest(b.Connected, func() int { return js.PublishAsyncPending() + s.acks.waiting() })
	s.stats = stats.NewSampler(b.NC, cfg.AdminMetricsInterval, cfg.PresenceTimeout, s.edgeIDs, s.statsReading, log)
	s.apis = broker.NewAPIs(b)
	s.guard = routeGuard(cfg.Routes.Guard, ln)
	s.quorum = newQuorum(b, log)
	if len(cfg.APITokens) > 0 {
		s.tokens = newAPITokens(cfg.APITokens)
	}
	s.verifier = v
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		// Batches may be larger than one message; every other body is
		// held to MESSAGE_MAX_SIZE by limitBody.
		BodyLimit:    max(cfg.MaxMessageSize, cfg.BatchMaxSize),
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorHandler: api.ErrorHandler(log),
	})
	// A malformed request's error must not quote it (a bearer token), in
	// the log or the answer.
	s.app.Server().SecureErrorLogMessage = true
	// Before everything else: an unauthenticated caller learns nothing,
	// not even the profiler's or a body limit's answer.
	// The console's page and files need no token: its data calls are to
	// /v1/*, with the token the operator types in.
	s.app.Use(console.Prefix, adaptor.HTTPHandler(console.Handler()))
	s.app.Use(s.requireToken)
	if cfg.Pprof {
		s.app.Use(pprof.New())
	}
	s.app.Get("/metrics", adaptor.HTTPHandler(metrics.Handler(s.metrics.Registry)))
	s.app.Use(s.limitBody, s.requireUTF8)
	s.routes()
	return s, nil
}

// limitBody refuses a body over MESSAGE_MAX_SIZE, except a batch of
// messages (POST /v1/messages), which checks its own limits.
func (s *Server) limitBody(c *fiber.Ctx) error {
	if n := len(c.Body()); n > s.cfg.MaxMessageSize && (c.Method() != fiber.MethodPost || c.Path() != "/v1/messages") {
		return api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d (MESSAGE_MAX_SIZE)", n, s.cfg.MaxMessageSize))
	}
	return c.Next()
}

// requireUTF8 refuses a body that is not valid UTF-8 with a 400. Every
// body ingest takes is JSON, which is UTF-8 (RFC 8259), but neither parser
// says so: fastjson passes the bytes on (a message would reach WebSocket
// clients as an invalid text frame, which closes their connection, again
// on every resume while it is in history), and encoding/json replaces them
// with U+FFFD (a session id would name another session).
func (s *Server) requireUTF8(c *fiber.Ctx) error {
	body := c.Body()
	if utf8.Valid(body) {
		return c.Next()
	}
	if c.Method() == fiber.MethodPost && c.Path() == "/v1/messages" {
		s.metrics.Rejected.Inc()
	}
	at := invalidUTF8At(body)
	return api.NewError(fiber.StatusBadRequest, fmt.Sprintf("body is not valid UTF-8: byte 0x%02X at offset %d", body[at], at))
}

// invalidUTF8At returns the offset of the first byte of b that does not
// start a valid UTF-8 sequence, or -1.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// shutdownTimeout bounds the wait for requests in progress when ingest stops.
const shutdownTimeout = 10 * time.Second

// Run serves the API and keeps the blacklist bucket and the quorum check
// until ctx ends; then it stops accepting and waits for the requests in
// progress (up to shutdownTimeout) before the rest stops.
func (s *Server) Run(ctx context.Context) error {
	return run.Ordered(ctx, s.serve, func(ctx context.Context) error {
		defer s.presence.Close()
		return run.All(ctx, s.bucket.Run, s.quorum.Run, s.ensureAPIs, s.stats.Run)
	})
}

func (s *Server) serve(ctx context.Context) error {
	if s.ln == nil {
		<-ctx.Done()
		return nil
	}
	served := make(chan error, 1)
	go func() { served <- s.app.Listener(s.ln) }()
	select {
	case err := <-served:
		if err == nil {
			err = errors.New("stopped serving")
		}
		return fmt.Errorf("API_PORT: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("ingest stopping")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.app.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return <-served
}

// Addr returns the address the API listens on (nil without a listener).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}
