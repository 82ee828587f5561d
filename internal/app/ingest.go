package app

import (
	"context"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/ingest"
	"github.com/rig-go/rig/internal/run"
)

// Ingest runs the back-end API until ctx ends, then lets the requests in
// progress finish and closes NATS last.
func Ingest(ctx context.Context, env Env) error {
	cfg, err := config.ParseIngest(env.Args, env.Getenv, env.Stdout)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(env.Stderr).With("component", "ingest")
	env.setDefault(log)
	verifier, err := auth.New(ctx, cfg.JWT, log)
	if err != nil {
		return err
	}
	ln, err := env.listenOn("API_PORT", cfg.APIHost, cfg.APIPort)
	if err != nil {
		return fmt.Errorf("API_HOST=%s API_PORT=%d: %w", cfg.APIHost, cfg.APIPort, err)
	}
	if len(cfg.APITokens) == 0 && !loopback(ln.Addr()) {
		// Once, at start, where an operator reads: whoever reaches this
		// address can publish to any user, blacklist any session and
		// rewrite the edge's API-gateway routes.
		log.Warn("INSECURE: the ingest API is unauthenticated and reachable from other machines; set API_TOKENS, or API_HOST=127.0.0.1",
			"addr", ln.Addr().String())
	}
	// No reconnect buffer: a publish while NATS is away must fail (503)
	// rather than wait in a buffer and go out after the client was told no.
	b, err := broker.Open(cfg.NATS, log, nats.ReconnectBufSize(-1), nats.CustomInboxPrefix(broker.IngestInbox))
	if err != nil {
		ln.Close()
		return err
	}
	srv, err := ingest.New(cfg, log, b, ln, verifier)
	if err != nil {
		ln.Close()
		b.Close()
		return err
	}
	api := port(srv.Addr())
	log.Info("ingest listening", "addr", ln.Addr().String(), "url", fmt.Sprintf("http://localhost:%d", api), "auth", len(cfg.APITokens) > 0,
		"messages", fmt.Sprintf("POST http://localhost:%d/v1/messages", api), "nats", cfg.NATS.URLs)
	env.started(Addrs{Public: srv.Addr(), NATS: b.EmbeddedURL()})
	if err := run.Ordered(ctx, srv.Run, b.Run); err != nil {
		return err
	}
	log.Info("ingest stopped")
	return nil
}

// loopback reports whether a listener's address is reachable only from
// this machine.
func loopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}
