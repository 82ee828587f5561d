// Package edge is the public gateway: it admits client connections (SSE,
// WebSocket, long-polling), subscribes to their users' NATS subjects, and
// streams each message to every connection of its user.
package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/rig"
)

// Server is one edge node.
type Server struct {
	cfg      *config.Edge
	log      *slog.Logger
	broker   *broker.Broker
	verifier *auth.Verifier
	hub      *hub.Hub
	subs     *subscriber
	app      *fiber.App

	draining atomic.Bool
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// New builds an edge on an open broker. Call Serve to accept connections.
func New(cfg *config.Edge, log *slog.Logger, b *broker.Broker) *Server {
	s := &Server{
		cfg:      cfg,
		log:      log,
		broker:   b,
		verifier: auth.NewVerifier(cfg.JWT.SecretKey, cfg.JWT.UserField, cfg.JWT.RolesField, cfg.JWT.PrivilegedRoles),
	}
	s.subs = newSubscriber(b.NC, log)
	s.hub = hub.New(s.subs)
	s.subs.hub = s.hub
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		ReadBufferSize:        8 << 10,
		ErrorHandler:          api.ErrorHandler(log),
	})
	// Streams own their connections after the upgrade: fasthttp must not
	// close them, nor keep its per-request buffers for them.
	s.app.Server().KeepHijackedConns = true
	s.routes()

	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.subs.start(ctx, &s.wg)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.heartbeats(ctx)
	}()
	return s
}

// Hub exposes the registry of connected clients (for tests and metrics).
func (s *Server) Hub() *hub.Hub { return s.hub }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(ln)
}

// Shutdown stops accepting, tells every client to reconnect elsewhere, waits
// up to the drain timeout for them to go, closes the rest, and stops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// Stop accepting first so reconnecting clients land on another edge.
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.app.ShutdownWithContext(ctx) }()

	reconnect := &rig.Event{Kind: rig.KindReconnect, Data: []byte(`{"reason":"edge restarting"}`)}
	s.hub.Each(func(c hub.Client) { c.(*client.Client).Finish(reconnect, client.ReasonDraining) })
	drain, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	if !waitFor(drain, func() bool { return s.hub.Len() == 0 }) {
		n := s.hub.Len()
		s.hub.Each(func(c hub.Client) { c.(*client.Client).Close(client.ReasonShutdown) })
		s.log.Warn("drain timeout: closed remaining connections", "connections", n)
	}
	waitFor(ctx, func() bool { return s.hub.Len() == 0 })
	err := <-shutdownDone
	s.stop()
	s.wg.Wait()
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
